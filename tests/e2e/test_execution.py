"""Execution with a real worker, from a planned spec: the host's verification decides, and the
sandbox refuses what a model must not do."""

import pytest

from sandboxes.models import SandboxEvent
from specs.models import Spec
from specs.services.bridge import spec_execute
from tests.e2e.conftest import planned_spec, sample_script, write_script
from tests.factories import ProjectFactory
from tests.worker import wait_for
from tickets.models import PhaseGateArtifact, Task, Ticket

pytestmark = pytest.mark.worker

BROKEN_STATS = "def word_count(text):\n    return 0\n"
TEST_CMD = "python3 -m unittest discover -s tests -v"


def test_finish_with_failing_tests_does_not_complete_the_task(
    start_worker, user, sample_repository, execution_env, tmp_path
):
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
    worker = start_worker(
        env={**execution_env, "OMOI_REPLAY_SCRIPT": write_script(tmp_path, script), "OMOI_TASK_MAX_VERIFICATIONS": "3"}
    )
    project = ProjectFactory(owner=user, repository=str(sample_repository), test_command=TEST_CMD)
    spec = planned_spec(project=project, user=user, script=script)

    spec_execute(spec_id=spec.pk, actor="test")

    ticket = wait_for(
        lambda: Ticket.objects.filter(spec=spec, spec_task__key="TSK-001", phase="BLOCKED").first(),
        timeout=120, worker=worker, message="TSK-001 blocked",
    )  # fmt: skip
    assert ticket.blocked_reason == "failing_checks"
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
    failed = wait_for(
        lambda: Spec.objects.filter(pk=spec.pk, status="failed").first(), worker=worker, message="spec failed"
    )
    assert "TSK-001" in failed.last_error and "failing_checks" in failed.last_error


def test_escapes_and_environment_reads_are_refused_and_recorded(
    start_worker, user, sample_repository, execution_env, tmp_path
):
    script = sample_script()
    attempts = [
        {"tool": "read_file", "input": {"path": "../../../etc/passwd"}},
        {"tool": "write_file", "input": {"path": "/tmp/omoi-escape.txt", "content": "x"}},
        {"tool": "run_command", "input": {"command": "printenv"}},
    ]
    script["conversations"]["TSK-001:implement_feature"] = (
        attempts + script["conversations"]["TSK-001:implement_feature"]
    )
    worker = start_worker(env={**execution_env, "OMOI_REPLAY_SCRIPT": write_script(tmp_path, script)})
    project = ProjectFactory(owner=user, repository=str(sample_repository), test_command=TEST_CMD)
    spec = planned_spec(project=project, user=user, script=script)

    spec_execute(spec_id=spec.pk, actor="test")

    wait_for(
        lambda: SandboxEvent.objects.filter(spec=spec, type="task.verified").exists(),
        timeout=120, worker=worker, message="TSK-001 verified",
    )  # fmt: skip
    refused = list(SandboxEvent.objects.filter(spec=spec, type="sandbox.refused").order_by("sequence"))
    assert [event.payload["tool"] for event in refused] == ["read_file", "write_file", "run_command"]
    assert all(event.payload["reason"] for event in refused)
    import os

    assert not os.path.exists("/tmp/omoi-escape.txt")


def test_a_run_that_hits_its_turn_limit_ends_with_a_clear_reason(
    start_worker, user, sample_repository, execution_env, tmp_path
):
    script = sample_script()
    script["conversations"]["TSK-001:implement_feature"] = [
        {"tool": "read_file", "input": {"path": "textkit/core.py"}} for _ in range(6)
    ]
    worker = start_worker(
        env={**execution_env, "OMOI_REPLAY_SCRIPT": write_script(tmp_path, script), "OMOI_TASK_MAX_TURNS": "3"}
    )
    project = ProjectFactory(owner=user, repository=str(sample_repository), test_command=TEST_CMD)
    spec = planned_spec(project=project, user=user, script=script)

    spec_execute(spec_id=spec.pk, actor="test")

    ticket = wait_for(
        lambda: Ticket.objects.filter(spec=spec, spec_task__key="TSK-001", phase="BLOCKED").first(),
        timeout=120, worker=worker, message="TSK-001 blocked by its budget",
    )  # fmt: skip
    assert ticket.blocked_reason == "budget"
    assert "turn limit reached (3 turns)" in ticket.blocked_message
    task = Task.objects.get(ticket=ticket, task_type="implement_feature")
    assert task.status == "failed" and task.error == "turn limit reached (3 turns)"
    assert SandboxEvent.objects.filter(spec=spec, type="agent.turn").count() == 3
