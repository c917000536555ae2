"""The admin: read-only workflow fields, inlines, and actions that go through the services."""

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from tests.factories import TaskFactory, UserFactory
from tests.tickets.conftest import make_ticket, satisfy_gate
from tickets.models import Phase, PhaseHistory, TaskStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_(db) -> Client:
    client = Client()
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


def run_action(client: Client, action: str, ids: list[int], model: str = "ticket") -> list[str]:
    response = client.post(f"/admin/tickets/{model}/", {"action": action, "_selected_action": ids}, follow=True)
    assert response.status_code == 200
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_move_to_next_phase_goes_through_the_gate_and_reports_refusals(admin_client_, project):
    ready = make_ticket(project=project, phase=Phase.DESIGN, title="Ready")
    satisfy_gate(ready, Phase.DESIGN)
    not_ready = make_ticket(project=project, phase=Phase.DESIGN, title="Not ready")
    done = make_ticket(project=project, phase=Phase.DONE, title="Done")

    messages = run_action(admin_client_, "move_to_next_phase", [ready.pk, not_ready.pk, done.pk])

    assert messages == [
        f"#{not_ready.pk} Not ready: the DESIGN gate does not pass: missing artifact design_doc",
        f"#{done.pk} Done: DONE has no next phase (unblock a blocked ticket instead)",
        "Moved 1 ticket(s).",
    ]
    ready.refresh_from_db()
    not_ready.refresh_from_db()
    assert (ready.phase, not_ready.phase) == (Phase.IMPLEMENTATION, Phase.DESIGN)
    assert list(PhaseHistory.objects.values_list("ticket_id", "to_phase", "actor")) == [
        (ready.pk, "IMPLEMENTATION", "admin:root")
    ]


def test_block_and_unblock_actions(admin_client_, project):
    ticket = make_ticket(project=project, phase=Phase.TESTING)

    assert run_action(admin_client_, "block", [ticket.pk]) == ["Blocked 1 ticket(s)."]
    ticket.refresh_from_db()
    assert (ticket.phase, ticket.blocked_reason, ticket.blocked_message) == (
        "BLOCKED",
        "other",
        "blocked from the admin by root",
    )
    assert run_action(admin_client_, "unblock", [ticket.pk]) == ["Unblocked 1 ticket(s)."]
    ticket.refresh_from_db()
    assert ticket.phase == Phase.TESTING
    assert run_action(admin_client_, "unblock", [ticket.pk]) == [
        f"#{ticket.pk} {ticket.title}: ticket #{ticket.pk} is not blocked (it is in TESTING)"
    ]


def test_retry_action_on_tasks(admin_client_, project):
    failed = TaskFactory(ticket=make_ticket(project=project, phase=Phase.DESIGN), status=TaskStatus.FAILED)
    running = TaskFactory(ticket=failed.ticket, status=TaskStatus.RUNNING)

    messages = run_action(admin_client_, "retry", [failed.pk, running.pk], model="task")

    assert messages == [
        f"task #{running.pk}: task #{running.pk} is running; only a failed or cancelled task can be retried",
        "Returned 1 task(s) to pending.",
    ]
    failed.refresh_from_db()
    assert failed.status == TaskStatus.PENDING


def test_pages_render_with_workflow_fields_read_only(admin_client_, project):
    ticket = make_ticket(project=project, phase=Phase.DESIGN)
    task = TaskFactory(ticket=ticket)
    satisfy_gate(ticket, Phase.DESIGN)

    for url in [
        "/admin/tickets/ticket/",
        "/admin/tickets/ticket/?phase__exact=DESIGN&blocked_reason__isempty=1",
        f"/admin/tickets/ticket/?project__id__exact={project.pk}",
        "/admin/tickets/ticket/?q=Ticket",
        "/admin/tickets/task/",
        "/admin/tickets/project/",
        "/admin/tickets/phasehistory/",
        "/admin/tickets/phasegateartifact/",
        "/admin/tickets/phasegateresult/",
        f"/admin/tickets/task/{task.pk}/change/",
        f"/admin/tickets/project/{project.pk}/change/",
    ]:
        assert admin_client_.get(url).status_code == 200, url

    page = admin_client_.get(f"/admin/tickets/ticket/{ticket.pk}/change/").content.decode()
    assert 'name="phase"' not in page
    assert 'name="blocked_reason"' not in page
    assert "design_doc" in page  # the artifacts inline
    task_page = admin_client_.get(f"/admin/tickets/task/{task.pk}/change/").content.decode()
    assert 'name="status"' not in task_page


def test_the_project_form_takes_setup_command_and_network_allowed_with_the_test_commands_validation(
    admin_client_, project, local_repository
):
    form = {
        "name": project.name,
        "owner": project.owner_id,
        "repository": str(local_repository),
        "default_branch": "main",
        "github_repo": "",
        "test_command": "pytest -q",
        "setup_command": "npm ci\x1b[2J",
        "network_allowed": "on",
    }

    refused = admin_client_.post(f"/admin/tickets/project/{project.pk}/change/", form)

    assert refused.status_code == 200
    assert "a command must not contain control characters" in refused.content.decode()
    project.refresh_from_db()
    assert (project.setup_command, project.network_allowed) == ("", False)

    accepted = admin_client_.post(
        f"/admin/tickets/project/{project.pk}/change/", {**form, "setup_command": "pip install -e '.[test]'"}
    )

    assert accepted.status_code == 302
    project.refresh_from_db()
    assert (project.setup_command, project.network_allowed) == ("pip install -e '.[test]'", True)
