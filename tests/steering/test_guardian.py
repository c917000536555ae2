"""The guardian against scripted agents that loop: each rule notices its loop, and the guardian
nudges, escalates, then stops the run and blocks the ticket as stuck with the evidence, in that
order; a healthy run is left alone; flags only warn."""

from __future__ import annotations

import pytest

from sandboxes.models import AgentRun, SandboxEvent
from specs.models import Spec
from tests.steering.conftest import loop
from tests.support.steps import drain
from tickets.models import PhaseGateArtifact, Task, Ticket

IMPLEMENT = "TSK-001:implement_feature"


def guardian_events(spec: Spec) -> list[tuple[str, list[str]]]:
    return [
        (event.type, sorted({f["rule"] for f in event.payload.get("findings", [])}))
        for event in SandboxEvent.objects.filter(spec=spec, type__startswith="guardian.").order_by("sequence")
        if event.type != "guardian.flagged"
    ]


def assert_stopped_as_stuck(spec: Spec, rule: str, *, within_turns: int) -> AgentRun:
    events = guardian_events(spec)
    assert [kind for kind, _ in events] == ["guardian.nudged", "guardian.escalated", "guardian.stopped"], events
    assert all(rule in rules for _, rules in events), events
    ticket = Ticket.objects.get(spec=spec, spec_task__key="TSK-001")
    assert (ticket.phase, ticket.blocked_reason) == ("BLOCKED", "stuck")
    assert "[Guardian] The run was stopped" in ticket.blocked_message
    task = Task.objects.get(ticket=ticket, task_type="implement_feature")
    assert task.status == "failed"
    evidence = PhaseGateArtifact.objects.get(ticket=ticket, artifact_type="guardian").content
    assert rule in {finding["rule"] for finding in evidence["findings"]}
    run = AgentRun.objects.get(task=task)
    nudge = next(entry for entry in run.guardian_log if entry["step"] == "nudge")
    assert nudge["turn"] <= within_turns, run.guardian_log
    # The guardian's messages reached the model in the transcript, and did not reset its count.
    texts = str(list(run.transcript.values_list("content", flat=True)))
    assert "[Guardian] You seem to be going in circles" in texts and "[Guardian — second warning]" in texts
    assert Spec.objects.get(pk=spec.pk).status == "failed"
    return run


@pytest.mark.django_db(transaction=True)
def test_the_same_call_with_the_same_result_is_nudged_escalated_then_stopped(steering):
    spec = steering({IMPLEMENT: loop({"tool": "read_file", "input": {"path": "textkit/core.py"}})})

    drain()

    run = assert_stopped_as_stuck(spec, "repeat", within_turns=6)
    assert run.turns <= 8


@pytest.mark.django_db(transaction=True)
def test_the_same_call_failing_again_and_again_between_other_calls_is_caught(steering):
    failing = {"tool": "read_file", "input": {"path": "textkit/missing.py"}}
    turns = []
    for index in range(6):
        turns += [failing, {"tool": "search", "input": {"pattern": f"def {index}x", "path": "."}}]
    spec = steering({IMPLEMENT: turns})

    drain()

    assert_stopped_as_stuck(spec, "error_loop", within_turns=6)


@pytest.mark.django_db(transaction=True)
def test_two_calls_alternating_with_the_same_results_are_caught(steering):
    a = {"tool": "read_file", "input": {"path": "textkit/core.py"}}
    b = {"tool": "list_files", "input": {"path": "tests"}}
    spec = steering({IMPLEMENT: [a, b] * 6})

    drain()

    assert_stopped_as_stuck(spec, "alternation", within_turns=6)


@pytest.mark.django_db(transaction=True)
def test_turns_without_any_tool_call_are_caught(steering):
    spec = steering({IMPLEMENT: loop({"text": "I am thinking about it."})})

    drain()

    assert_stopped_as_stuck(spec, "idle", within_turns=6)


@pytest.mark.django_db(transaction=True)
def test_many_turns_without_a_file_written_are_caught(steering, settings):
    settings.OMOI_GUARDIAN_NO_CHANGE_TURNS = 5
    turns = [{"tool": "read_file", "input": {"path": "textkit/core.py", "start_line": n}} for n in range(1, 15)]
    spec = steering({IMPLEMENT: turns})

    drain()

    assert_stopped_as_stuck(spec, "no_change", within_turns=6)


@pytest.mark.django_db(transaction=True)
def test_verification_failing_twice_with_the_same_tests_is_caught(steering, settings):
    settings.OMOI_TASK_MAX_VERIFICATIONS = 10
    broken = (
        "import unittest\n\n\nclass Broken(unittest.TestCase):\n    def test_never(self):\n"
        "        self.assertEqual(1, 2)\n"
    )
    turns = [{"tool": "write_file", "input": {"path": "tests/test_broken.py", "content": broken}}]
    turns += loop({"tool": "finish", "input": {"summary": "Done, surely."}}, 10)
    spec = steering({IMPLEMENT: turns})

    drain()

    assert_stopped_as_stuck(spec, "same_failure", within_turns=6)


@pytest.mark.django_db(transaction=True)
def test_a_healthy_run_is_not_disturbed(steering):
    spec = steering({})  # the demo's own agents: they read, write, test and finish

    drain()

    assert Spec.objects.get(pk=spec.pk).status == "completed"
    assert not SandboxEvent.objects.filter(spec=spec, type__startswith="guardian.").exists()


@pytest.mark.django_db(transaction=True)
def test_a_costly_turn_and_files_outside_the_plan_are_flagged_not_stopped(steering):
    cheap = {"usage": {"input_tokens": 100, "output_tokens": 10}}
    turns = [{"tool": "read_file", "input": {"path": "textkit/core.py", "start_line": n}, **cheap} for n in range(1, 5)]
    turns.append(
        {
            "tool": "write_file",
            "input": {"path": "docs/notes.md", "content": "notes\n"},
            "usage": {"input_tokens": 200_000, "output_tokens": 4000},
        }
    )
    turns += [{"tool": "read_file", "input": {"path": "textkit/core.py", "start_line": 7}, **cheap}]
    implement = [*turns, *sample_implementation()]
    spec = steering({IMPLEMENT: implement})

    drain()

    flags = {e.payload["rule"] for e in SandboxEvent.objects.filter(spec=spec, type="guardian.flagged")}
    assert flags == {"cost_spike", "outside_plan"}
    assert not SandboxEvent.objects.filter(spec=spec, type__in=["guardian.nudged", "guardian.stopped"]).exists()
    assert Spec.objects.get(pk=spec.pk).status == "completed"


def sample_implementation() -> list[dict]:
    from tests.e2e.conftest import sample_script

    return sample_script()["conversations"][IMPLEMENT]
