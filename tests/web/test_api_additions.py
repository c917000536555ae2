"""What issue 12 adds to the REST API and the admin: staff see every project, create-pr says why
when a project has no GitHub repository, and the admin reads well (labels, JSON, seconds)."""

import re

import pytest
from django.test import Client

from omoi.leases import work_labels
from sandboxes.services.events import event_record
from specs.models import Spec
from tests.conftest import client_for
from tests.e2e.conftest import make_sample_repository, planned_spec
from tests.factories import ProjectFactory, UserFactory
from tests.web.transcripts import run_with_transcript
from tickets.models import Phase, PhaseGateResult, PhaseHistory, Ticket

pytestmark = pytest.mark.django_db


def test_a_superuser_sees_every_project_and_its_board(user):
    project = ProjectFactory(owner=user, name="alices")
    Ticket.objects.create(project=project, user=user, title="One", phase=Phase.BACKLOG)
    root = client_for(UserFactory(username="root", is_staff=True, is_superuser=True))
    nobody = client_for(UserFactory(username="nobody"))

    assert [p["name"] for p in root.get("/api/v1/projects").json()["results"]] == ["alices"]
    board = root.get(f"/api/v1/board/view?project={project.pk}")
    assert board.status_code == 200 and board.json()["total"] == 1
    assert nobody.get("/api/v1/projects").json()["results"] == []
    assert nobody.get(f"/api/v1/board/view?project={project.pk}").status_code == 404


def test_create_pr_without_a_github_repository_is_a_409_that_says_why(api, user):
    project = ProjectFactory(owner=user, name="local", github_repo="")
    spec = planned_spec(project=project, user=user)
    Spec.objects.filter(pk=spec.pk).update(status="completed", branch_name="omoi/spec-1-x")

    response = api.post(f"/api/v1/specs/{spec.pk}/create-pr")

    assert response.status_code == 409
    body = response.json()
    assert body["detail"].startswith("project 'local' names no GitHub repository (github_repo)")
    assert (body["status"], body["branch"]) == ("completed", "omoi/spec-1-x")


def test_admin_pages_read_well(user):
    admin = Client()
    admin.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    spec = planned_spec(project=ProjectFactory(owner=user, name="textkit"), user=user)
    Spec.objects.filter(pk=spec.pk).update(phase_attempts={"explore": 1, "design": 2})
    run = run_with_transcript(
        kind="planning", spec=spec, phase="explore", status="finished", turns=4, result={"commit": "abc"},
        messages=[{"role": "user", "content": "hi"}],
    )  # fmt: skip
    ticket = Ticket.objects.create(project=spec.project, user=user, title="One", phase=Phase.REQUIREMENTS)
    PhaseGateResult.objects.create(
        ticket=ticket, phase=Phase.REQUIREMENTS, status="failed", blocking_reasons=["no requirements_doc"],
        validated_by="test",
    )  # fmt: skip
    event = event_record(type="spec.progress", payload={"done": 1, "nested": {"a": [1, 2]}}, spec_id=spec.pk)

    spec_page = admin.get(f"/admin/specs/spec/{spec.pk}/change/").content.decode()
    ticket_page = admin.get(f"/admin/tickets/ticket/{ticket.pk}/change/").content.decode()
    run_page = admin.get(f"/admin/sandboxes/agentrun/{run.pk}/change/").content.decode()
    event_page = admin.get(f"/admin/sandboxes/sandboxevent/{event.pk}/change/").content.decode()
    task_page = admin.get(f"/admin/specs/spectask/{spec.tasks.get(key='TSK-002').pk}/change/").content.decode()

    assert "explore run" in spec_page and "AgentRun object" not in spec_page
    assert "requirements gate failed" in ticket_page.lower() and "object (" not in ticket_page
    assert "TSK-002 depends on TSK-001" in task_page and "TSK-002 covers REQ-002" in task_page
    assert '<pre class="omoi-json"' in spec_page and "&quot;design&quot;: 2" in spec_page
    assert re.search(r"\{\n  &quot;(explore|design)&quot;: [12],\n  &quot;(explore|design)&quot;: [12]\n\}", spec_page)
    assert "&quot;nested&quot;: {\n    &quot;a&quot;: [\n" in event_page
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", run_page)
    labels = re.findall(r"<label[^>]*>([^<]*)</label>", run_page)
    assert "Result:" in labels and "Transcript:" in labels and "Messages:" not in labels
    assert "{\n  &quot;commit&quot;: &quot;abc&quot;\n}" in run_page
    moved = PhaseHistory.objects.create(
        ticket=ticket, from_phase="BACKLOG", to_phase="REQUIREMENTS", actor="test", artifacts=[{"type": "doc"}]
    )
    history = admin.get(f"/admin/tickets/phasehistory/{moved.pk}/change/").content.decode()
    assert "BACKLOG → REQUIREMENTS by test" in history
    assert '<pre class="omoi-json" style="white-space: pre-wrap; margin: 0">[\n  {\n    &quot;type&quot;' in history


def test_every_admin_page_renders(user):
    from django.contrib import admin as django_admin

    from tests.web.test_pages import story

    story(user)
    PhaseHistory.objects.create(
        ticket=Ticket.objects.first(), from_phase="BACKLOG", to_phase="REQUIREMENTS", actor="test", artifacts=[]
    )
    PhaseGateResult.objects.create(
        ticket=Ticket.objects.first(), phase="REQUIREMENTS", status="passed", validated_by="t"
    )
    admin = Client()
    admin.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    checked = 0
    for model in django_admin.site._registry:
        meta = model._meta
        assert admin.get(f"/admin/{meta.app_label}/{meta.model_name}/").status_code == 200, meta.label
        instance = model.objects.first()
        if instance is None:
            continue
        page = admin.get(f"/admin/{meta.app_label}/{meta.model_name}/{instance.pk}/change/")
        assert page.status_code == 200, meta.label
        assert " object (" not in page.content.decode(), meta.label
        checked += 1
    assert checked >= 12


def test_each_step_s_message_names_what_the_step_is_for_flower(
    user, monkeypatch, settings, tmp_path, django_capture_on_commit_callbacks
):
    """Flower shows a task's arguments as the message's argsrepr: a step names its spec or ticket
    and what it is about to do, not a bare id."""
    from omoi.celery import app
    from specs.services.bridge import spec_execute
    from specs.services.planning import spec_launch

    settings.OMOI_REPOS_DIR = tmp_path / "repos"
    sent = []
    monkeypatch.setattr(app, "send_task", lambda name, args, **options: sent.append((name, args, options)))
    repository = make_sample_repository(tmp_path / "textkit")
    project = ProjectFactory(owner=user, name="textkit", repository=str(repository))
    with django_capture_on_commit_callbacks(execute=True):
        launched = spec_launch(project_id=project.pk, user=user, idea="Add word statistics")
    planned = planned_spec(project=project, user=user)
    with django_capture_on_commit_callbacks(execute=True):
        spec_execute(spec_id=planned.pk, actor="test")

    tickets = {t.spec_task.key: t.pk for t in Ticket.objects.filter(spec=planned).select_related("spec_task")}
    first = tickets["TSK-001"]  # TSK-002 waits for it: no step yet
    assert [(name, args, options["argsrepr"], options["kwargsrepr"]) for name, args, options in sent] == [
        ("specs.tasks.spec_step_task", [launched.pk], f"spec {launched.pk} planning explore", ""),
        ("tickets.tasks.ticket_step_task", [first], f"ticket {first} TSK-001 IMPLEMENTATION implement_feature", ""),
    ]
    # Labels are read when the message is sent, for many objects at once; a missing one reads as before.
    loose = Ticket.objects.create(project=project, user=user, title="Loose", phase=Phase.BACKLOG)
    assert work_labels("spec", [planned.pk, launched.pk, 999_999]) == {
        planned.pk: f"spec {planned.pk} progress",
        launched.pk: f"spec {launched.pk} planning explore",
        999_999: "spec 999999",
    }
    assert work_labels("ticket", [loose.pk]) == {loose.pk: f"ticket {loose.pk} BACKLOG"}
