"""Execution from a planned spec, its steps run in this process as a worker runs them: the host's
verification decides, the sandbox refuses what a model must not do, and limits end a run with a
clear reason."""

import os

import pytest

from omoi.models import LLMUsage
from sandboxes.models import AgentRun, Sandbox, SandboxEvent
from sandboxes.selectors import run_transcript
from specs.models import Spec
from specs.services.bridge import spec_execute
from tests.e2e.conftest import planned_spec, sample_script, write_script
from tests.factories import ProjectFactory
from tests.support.steps import drain
from tickets.models import PhaseGateArtifact, Task, Ticket

pytestmark = pytest.mark.django_db

BROKEN_STATS = "def word_count(text):\n    return 0\n"
TEST_CMD = "python3 -m unittest discover -s tests -v"


@pytest.fixture
def replay(settings, tmp_path):
    def use(script: dict) -> None:
        settings.OMOI_LLM_PROVIDER = "replay"
        settings.OMOI_REPLAY_SCRIPT = write_script(tmp_path, script)

    return use


def test_finish_with_failing_tests_does_not_complete_the_task(user, sample_repository, execution_env, replay, settings):
    script = sample_script()
    finish = {"tool": "finish", "input": {"summary": "Done, trust me."}}
    real_tests = script["conversations"]["TSK-001:implement_feature"][2]
    script["conversations"]["TSK-001:implement_feature"] = [
        {"tool": "write_file", "input": {"path": "textkit/stats.py", "content": BROKEN_STATS}},
        real_tests,
        finish,
        finish,
        finish,
    ]
    replay(script)
    settings.OMOI_TASK_MAX_VERIFICATIONS = 3
    project = ProjectFactory(owner=user, repository=str(sample_repository), test_command=TEST_CMD)
    spec = planned_spec(project=project, user=user, script=script)

    spec_execute(spec_id=spec.pk, actor="test")
    drain()

    ticket = Ticket.objects.get(spec=spec, spec_task__key="TSK-001")
    assert (ticket.phase, ticket.blocked_reason) == ("BLOCKED", "failing_checks")
    assert "FAILED" in ticket.blocked_message or "failures=" in ticket.blocked_message
    task = Task.objects.get(ticket=ticket, task_type="implement_feature")
    assert task.status == "failed"
    assert "3 verifications" in task.error
    evidence = PhaseGateArtifact.objects.filter(ticket=ticket, artifact_type="test_results").last()
    assert evidence.content["failed"] >= 1 and evidence.content["exit_code"] != 0
    assert "word_count" in evidence.content["output_tail"]
    assert SandboxEvent.objects.filter(spec=spec, type="task.verification_failed").count() == 2
    assert not SandboxEvent.objects.filter(spec=spec, type="task.verified").exists()
    # The dependent ticket never started, and the spec does not stay executing.
    assert not Task.objects.filter(ticket__spec_task__key="TSK-002").exclude(status="pending").exists()
    failed = Spec.objects.get(pk=spec.pk)
    assert failed.status == "failed"
    assert "TSK-001" in failed.last_error and "failing_checks" in failed.last_error
    assert set(Sandbox.objects.filter(spec=spec).values_list("status", flat=True)) == {"released"}


def test_a_retry_after_failing_checks_resumes_the_blocked_ticket_and_the_spec_completes(
    api, user, sample_repository, execution_env, replay, settings
):
    broken = sample_script()
    finish = {"tool": "finish", "input": {"summary": "Done, trust me."}}
    broken["conversations"]["TSK-001:implement_feature"] = [
        {"tool": "write_file", "input": {"path": "textkit/stats.py", "content": BROKEN_STATS}},
        broken["conversations"]["TSK-001:implement_feature"][2],
        finish,
    ]
    replay(broken)
    settings.OMOI_TASK_MAX_VERIFICATIONS = 1
    project = ProjectFactory(owner=user, repository=str(sample_repository), test_command=TEST_CMD)
    spec = planned_spec(project=project, user=user)
    spec_execute(spec_id=spec.pk, actor="test")
    drain()
    assert Spec.objects.get(pk=spec.pk).status == "failed"

    replay(sample_script())  # the model does it right this time
    response = api.post(f"/api/v1/specs/{spec.pk}/retry")
    assert response.status_code == 200, response.json()
    drain()

    spec.refresh_from_db()
    assert (spec.status, spec.last_error) == ("completed", "")
    implement = Task.objects.get(ticket__spec=spec, ticket__spec_task__key="TSK-001", task_type="implement_feature")
    assert (implement.status, implement.attempts) == ("completed", 2)
    runs = list(implement.agent_runs.order_by("id").values_list("status", "sandbox_id"))
    assert [status for status, _sandbox in runs] == ["failed", "finished"]
    assert runs[0][1] != runs[1][1]  # the retry worked in a fresh sandbox, from the last verified commit
    assert set(Sandbox.objects.filter(spec=spec).values_list("status", flat=True)) == {"released"}


def test_work_that_cannot_be_verified_blocks_the_ticket_with_the_reason(user, sample_repository, execution_env, replay):
    script = sample_script()
    script["conversations"]["explore"][-1]["input"]["test_command"] = ""  # planning found no test command
    replay(script)
    project = ProjectFactory(owner=user, repository=str(sample_repository), test_command="")
    spec = planned_spec(project=project, user=user, script=script)

    spec_execute(spec_id=spec.pk, actor="test")
    drain()

    ticket = Ticket.objects.get(spec=spec, spec_task__key="TSK-001")
    assert (ticket.phase, ticket.blocked_reason) == ("BLOCKED", "environment")
    assert ticket.blocked_message == (
        "implement_feature failed: no test command is known: set the project's test_command"
    )
    run = AgentRun.objects.get(task__ticket=ticket)
    assert (run.status, run.stop_reason) == ("failed", "no test command is known: set the project's test_command")
    assert run_transcript(run=run)[-1]["content"][-1]["content"] == (
        "The host cannot verify: no test command is known: set the project's test_command."
    )
    assert set(Sandbox.objects.filter(spec=spec).values_list("status", flat=True)) == {"released"}
    assert Spec.objects.get(pk=spec.pk).status == "failed"


def test_escapes_and_environment_reads_are_refused_and_recorded(user, sample_repository, execution_env, replay):
    script = sample_script()
    attempts = [
        {"tool": "read_file", "input": {"path": "../../../etc/passwd"}},
        {"tool": "write_file", "input": {"path": "/tmp/omoi-escape.txt", "content": "x"}},
        {"tool": "run_command", "input": {"command": "printenv"}},
    ]
    script["conversations"]["TSK-001:implement_feature"] = (
        attempts + script["conversations"]["TSK-001:implement_feature"]
    )
    replay(script)
    project = ProjectFactory(owner=user, repository=str(sample_repository), test_command=TEST_CMD)
    spec = planned_spec(project=project, user=user, script=script)

    spec_execute(spec_id=spec.pk, actor="test")
    drain()

    assert SandboxEvent.objects.filter(spec=spec, type="task.verified").exists()
    assert Spec.objects.get(pk=spec.pk).status == "completed"
    refused = list(SandboxEvent.objects.filter(spec=spec, type="sandbox.refused").order_by("sequence"))
    assert [event.payload["tool"] for event in refused] == ["read_file", "write_file", "run_command"]
    assert all(event.payload["reason"] for event in refused)
    assert not os.path.exists("/tmp/omoi-escape.txt")


def test_a_run_that_hits_its_turn_limit_ends_with_a_clear_reason(
    user, sample_repository, execution_env, replay, settings
):
    script = sample_script()
    script["conversations"]["TSK-001:implement_feature"] = [
        {"tool": "read_file", "input": {"path": "textkit/core.py"}} for _ in range(6)
    ]
    replay(script)
    settings.OMOI_TASK_MAX_TURNS = 3
    project = ProjectFactory(owner=user, repository=str(sample_repository), test_command=TEST_CMD)
    spec = planned_spec(project=project, user=user, script=script)

    spec_execute(spec_id=spec.pk, actor="test")
    drain()

    ticket = Ticket.objects.get(spec=spec, spec_task__key="TSK-001")
    assert (ticket.phase, ticket.blocked_reason) == ("BLOCKED", "turn_limit")
    assert "turn limit reached (3 turns)" in ticket.blocked_message
    task = Task.objects.get(ticket=ticket, task_type="implement_feature")
    assert task.status == "failed" and task.error == "turn limit reached (3 turns)"
    assert SandboxEvent.objects.filter(spec=spec, type="agent.turn").count() == 3
    assert LLMUsage.objects.filter(task=task).count() == 3
    assert Spec.objects.get(pk=spec.pk).status == "failed"
    assert set(Sandbox.objects.filter(spec=spec).values_list("status", flat=True)) == {"released"}
