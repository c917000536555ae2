"""The execution controls of the REST API: the bridge on request, the pull request step on
request, and a retry that resumes a spec whose execution failed."""

import pytest
from django.utils import timezone

from sandboxes import git
from specs.models import Spec
from specs.services.bridge import spec_execute
from tests.e2e.conftest import planned_spec
from tests.factories import ProjectFactory
from tests.support.steps import drain, waiting_steps
from tickets.models import PhaseHistory, Task, Ticket
from tickets.services import repository

pytestmark = pytest.mark.django_db


@pytest.fixture
def project(user, sample_repository, execution_env):
    return ProjectFactory(owner=user, repository=str(sample_repository), github_repo="acme/textkit")


def test_execute_tasks_makes_one_ticket_per_planned_task_once(api, user, project):
    spec = planned_spec(project=project, user=user)

    first = api.post(f"/api/v1/specs/{spec.pk}/execute-tasks")
    second = api.post(f"/api/v1/specs/{spec.pk}/execute-tasks/")

    assert first.status_code == 200, first.json()
    assert first.json()["status"] == "executing"
    assert second.status_code == 200
    tickets = list(Ticket.objects.filter(spec=spec).select_related("spec_task").order_by("id"))
    assert [(t.spec_task.key, t.phase, t.user_id, t.priority) for t in tickets] == [
        # TSK-001 can start: its planned documents were taken from the spec, its agent is next.
        ("TSK-001", "IMPLEMENTATION", user.pk, "high"),
        # TSK-002 waits for TSK-001 in REQUIREMENTS.
        ("TSK-002", "REQUIREMENTS", user.pk, "medium"),
    ]
    assert list(tickets[1].dependencies.all()) == [tickets[0]]
    assert dict(
        Task.objects.filter(ticket__spec=spec, task_type="analyze_requirements").values_list("ticket_id", "status")
    ) == {tickets[0].pk: "completed", tickets[1].pk: "pending"}
    assert list(PhaseHistory.objects.filter(ticket=tickets[0]).values_list("from_phase", "to_phase")) == [
        ("", "BACKLOG"),
        ("BACKLOG", "REQUIREMENTS"),
        ("REQUIREMENTS", "DESIGN"),
        ("DESIGN", "IMPLEMENTATION"),
    ]
    assert PhaseHistory.objects.filter(ticket__spec=spec).count() == 6
    spec.refresh_from_db()
    assert spec.branch_name.startswith(f"omoi/spec-{spec.pk}-")
    main = git.git_run("rev-parse", "main", cwd=project.repository).strip()
    assert repository.spec_branch_sha(spec=spec) == main  # the spec branch starts at the default branch
    assert waiting_steps() == [("ticket", tickets[0].pk)]  # TSK-002 waits for TSK-001


def test_execute_tasks_is_a_409_unless_planning_is_complete_and_approved(api, user, project):
    unapproved = planned_spec(project=project, user=user, approved=False)
    planning = planned_spec(project=project, user=user)
    Spec.objects.filter(pk=planning.pk).update(status="planning", current_phase="design")

    waiting = api.post(f"/api/v1/specs/{unapproved.pk}/execute-tasks")
    early = api.post(f"/api/v1/specs/{planning.pk}/execute-tasks")

    assert waiting.status_code == 409
    assert "waits for approval" in waiting.json()["detail"]
    assert early.status_code == 409
    assert "only once planning is complete" in early.json()["detail"]
    assert not Ticket.objects.exists()


def test_another_user_cannot_execute_or_open_a_pull_request(other_api, user, project):
    spec = planned_spec(project=project, user=user)

    assert other_api.post(f"/api/v1/specs/{spec.pk}/execute-tasks").status_code == 404
    assert other_api.post(f"/api/v1/specs/{spec.pk}/create-pr").status_code == 404
    assert not Ticket.objects.exists()


def _completed(spec):
    spec_execute(spec_id=spec.pk, actor="test")
    Spec.objects.filter(pk=spec.pk).update(status="completed", current_phase="complete", completed_at=timezone.now())
    return Spec.objects.get(pk=spec.pk)


def test_create_pr_is_a_409_before_the_spec_is_completed(api, user, project):
    spec = planned_spec(project=project, user=user)

    response = api.post(f"/api/v1/specs/{spec.pk}/create-pr")

    assert response.status_code == 409
    assert "only a completed spec gets a pull request" in response.json()["detail"]


def test_create_pr_opens_the_pull_request_once(api, user, project, fake_github, settings):
    settings.GITHUB_API_URL = fake_github.url
    spec = _completed(planned_spec(project=project, user=user))

    first = api.post(f"/api/v1/specs/{spec.pk}/create-pr")
    second = api.post(f"/api/v1/specs/{spec.pk}/create-pr")

    assert first.status_code == 200, first.json()
    assert first.json()["pull_request_number"] == 1
    assert second.json()["pull_request_url"] == first.json()["pull_request_url"]
    assert len(fake_github.pulls) == 1
    assert "REQ-001" in fake_github.pulls[0]["body"]
    assert fake_github.branch_exists("acme/textkit", spec.branch_name)
    assert not git.branch_exists(project.repository, spec.branch_name)


def test_a_refused_pull_request_is_a_502_with_github_s_reason(api, user, project, fake_github, settings):
    settings.GITHUB_API_URL = fake_github.url
    settings.GITHUB_TOKEN = "revoked"
    fake_github.git.push_token = None  # the push is let through; the REST API refuses the token
    spec = _completed(planned_spec(project=project, user=user))

    response = api.post(f"/api/v1/specs/{spec.pk}/create-pr")

    assert response.status_code == 502
    assert "HTTP 401: Bad credentials" in response.json()["detail"]
    spec.refresh_from_db()
    assert spec.pull_request_url == "" and fake_github.pulls == []


def test_retry_resumes_a_spec_whose_execution_failed(api, user, project):
    from tickets.services.transitions import ticket_block

    spec = planned_spec(project=project, user=user)
    spec_execute(spec_id=spec.pk, actor="test")
    ticket = Ticket.objects.get(spec=spec, spec_task__key="TSK-001")
    ticket_block(ticket_id=ticket.pk, reason="failing_checks", actor="host", message="tests failed")
    Spec.objects.filter(pk=spec.pk).update(status="failed", last_error="Ticket TSK-001 is blocked")

    response = api.post(f"/api/v1/specs/{spec.pk}/retry")

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "executing"
    assert response.json()["last_error"] == ""
    ticket.refresh_from_db()
    assert ticket.phase == "IMPLEMENTATION" and ticket.blocked_reason == ""  # where it was blocked


def test_cancelling_an_executing_spec_stops_its_work(api, user, project):
    from omoi.models import Lease, LLMUsage
    from sandboxes.models import AgentRun

    spec = planned_spec(project=project, user=user)
    spec_execute(spec_id=spec.pk, actor="test")
    task = Task.objects.get(ticket__spec_task__key="TSK-001", task_type="implement_feature")
    Task.objects.filter(pk=task.pk).update(status="running")
    run = AgentRun.objects.create(kind="task", spec=spec, task=task, phase=task.phase, status="running")

    response = api.post(f"/api/v1/specs/{spec.pk}/cancel")

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "cancelled"
    # Open tasks are cancelled; the planned documents stay what they were.
    assert set(Task.objects.filter(ticket__spec=spec).exclude(task_type__in=["analyze_requirements", "create_design"])
               .values_list("status", flat=True)) == {"cancelled"}  # fmt: skip
    assert set(Task.objects.filter(ticket__spec=spec).values_list("status", flat=True)) == {"cancelled", "completed"}
    run.refresh_from_db()
    assert run.status == "cancelled"
    # The tickets' steps that were already on their way find the spec cancelled and do nothing.
    assert {outcome for _kind, _id, outcome in drain()} == {"idle"}
    assert AgentRun.objects.filter(spec=spec).count() == 1
    assert not LLMUsage.objects.exists()
    assert not Lease.objects.exists()
