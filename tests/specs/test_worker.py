"""Acceptance with a real Celery worker process and the replay model: idea → planning_complete."""

from io import StringIO

import pytest
from django.core.management import call_command

from omoi.models import Lease, LLMUsage
from sandboxes.models import AgentRun, Sandbox, SandboxEvent
from specs.models import Spec, SpecAcceptanceCriterion, SpecRequirement, SpecTask, SpecTaskDependency
from specs.tasks import spec_step_task
from tests.factories import ProjectFactory
from tests.specs.scripts import (
    DESIGN,
    EXPECTED_DEPENDENCIES,
    EXPECTED_REQUIREMENT_LINKS,
    EXPECTED_REQUIREMENTS,
    EXPLORATION,
    IDEA,
    planning_script,
    write_script,
)
from tests.worker import wait_for

pytestmark = pytest.mark.worker


def planned_rows(spec):
    return {
        "spec": Spec.objects.filter(pk=spec.pk)
        .values_list("status", "current_phase", "phase_data", "design", "phase_attempts", "updated_at")
        .get(),
        "requirements": list(SpecRequirement.objects.filter(spec=spec).values_list("pk", "key", "updated_at")),
        "criteria": list(SpecAcceptanceCriterion.objects.filter(requirement__spec=spec).values_list("pk", "text")),
        "tasks": list(SpecTask.objects.filter(spec=spec).values_list("pk", "key", "updated_at")),
        "links": list(SpecTaskDependency.objects.filter(task__spec=spec).values_list("pk", flat=True)),
        "runs": list(AgentRun.objects.filter(spec=spec).values_list("pk", "status", "turns")),
        "events": SandboxEvent.objects.filter(spec=spec).count(),
        "sandboxes": Sandbox.objects.filter(spec=spec).count(),
        "usage": LLMUsage.objects.filter(spec=spec).count(),
    }


def test_a_real_worker_plans_a_launched_spec_to_planning_complete(
    start_worker, api, user, repository, planning_env, tmp_path
):
    script = write_script(tmp_path / "script.json", planning_script())
    worker = start_worker(env={**planning_env, "OMOI_REPLAY_SCRIPT": script})
    project = ProjectFactory(owner=user, name="notes", repository=str(repository))

    launched = api.post("/api/v1/specs/launch", {"project": project.pk, "idea": IDEA}, format="json")
    assert launched.status_code == 201, launched.json()
    spec = Spec.objects.get(pk=launched.json()["id"])

    wait_for(
        lambda: Spec.objects.get(pk=spec.pk).status != "planning", timeout=120, worker=worker, message="planning ends"
    )
    spec.refresh_from_db()
    assert (spec.status, spec.current_phase, spec.last_error) == ("planning_complete", "sync", "")
    assert spec.phase_data["explore"] == EXPLORATION and spec.design == DESIGN
    requirements = SpecRequirement.objects.filter(spec=spec).prefetch_related("criteria").order_by("position")
    assert {r.key: [c.text for c in r.criteria.order_by("position")] for r in requirements} == EXPECTED_REQUIREMENTS
    tasks = SpecTask.objects.filter(spec=spec).order_by("position")
    assert [t.key for t in tasks] == ["TSK-001", "TSK-002", "TSK-003"]
    dependencies = SpecTaskDependency.objects.filter(task__spec=spec)
    assert {(d.task.key, d.depends_on.key) for d in dependencies} == EXPECTED_DEPENDENCIES
    assert {(t.key, r.key) for t in tasks for r in t.requirements.all()} == EXPECTED_REQUIREMENT_LINKS
    phases = [
        e.payload["phase"]
        for e in SandboxEvent.objects.filter(spec=spec, type="spec.phase_completed").order_by("sequence")
    ]
    assert phases == ["explore", "requirements", "design", "tasks", "sync"]
    assert list(AgentRun.objects.filter(spec=spec).order_by("id").values_list("phase", "status")) == [
        ("explore", "finished"),
        ("requirements", "finished"),
        ("design", "finished"),
        ("tasks", "finished"),
    ]

    # Once the spec's last step is over, a duplicate delivery of any step changes nothing.
    wait_for(lambda: not Lease.objects.exists(), timeout=30, worker=worker, message="the spec's steps end")
    before = planned_rows(spec)
    for _ in range(5):
        assert spec_step_task(spec.pk) == "held"
    assert planned_rows(spec) == before

    # The API shows the plan and its events.
    events = api.get(f"/api/v1/specs/{spec.pk}/events?after=0").json()
    assert "spec.planning_complete" in [e["type"] for e in events["results"]]
    assert api.get(f"/api/v1/specs/{spec.pk}/transcripts").json()["results"][0]["phase"] == "explore"


def test_the_cli_launches_and_follows_planning_phase_by_phase(start_worker, user, repository, planning_env, tmp_path):
    script = write_script(tmp_path / "script.json", planning_script())
    start_worker(env={**planning_env, "OMOI_REPLAY_SCRIPT": script})
    ProjectFactory(owner=user, name="notes", repository=str(repository))
    out = StringIO()

    call_command("omoi", "launch", IDEA, "--project", "notes", "--wait", "--timeout", "120", stdout=out)

    spec = Spec.objects.get()
    assert spec.status == "planning_complete"
    usage = LLMUsage.objects.filter(spec=spec)
    tokens_in = sum(u.input_tokens for u in usage)
    tokens_out = sum(u.output_tokens for u in usage)
    cost = sum(u.cost_usd for u in usage)
    lines = out.getvalue().splitlines()
    assert lines[0] == f"Spec #{spec.pk} launched on notes as alice; it waits for approval when planned."
    progress = [line for line in lines if line.startswith(("▶", "✓"))]
    assert progress == [
        "▶ EXPLORE",
        "✓ EXPLORE done: python-library, 2 key files, tests: python -m unittest discover -s tests",
        "▶ REQUIREMENTS",
        "✓ REQUIREMENTS done: 3 requirements, 5 acceptance criteria",
        "▶ DESIGN",
        "✓ DESIGN done: 2 components, 1 risks",
        "▶ TASKS",
        "✓ TASKS done: 3 tasks, 3 dependencies",
        "▶ SYNC",
        "✓ SYNC done: 3 requirements, 3 tasks in sync",
        "✓ planning complete",
    ]
    assert "    · list_files ." in lines and "    · read_file notes/store.py" in lines
    assert lines[-6:] == [
        f"Spec #{spec.pk} {IDEA!r}: planning_complete (phase sync)",
        "  requirements  3 (5 acceptance criteria)",
        "  tasks         3",
        "  dependencies  3 between tasks, 4 task → requirement",
        f"  model         7 calls, {tokens_in + tokens_out} tokens ({tokens_in} in, {tokens_out} out), "
        f"about ${cost:.4f}",
        f"  next          approve it: POST /api/v1/specs/{spec.pk}/approve",
    ]
