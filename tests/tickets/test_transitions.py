"""The one transition service: the whole table, blocking and unblocking, gates, history, events."""

import pytest

from sandboxes.models import SandboxEvent
from tests.support.steps import waiting_steps
from tests.tickets.conftest import (
    allowed_pairs,
    disallowed_pairs,
    make_ticket,
    row_counts,
    satisfy_gate,
    ticket_ready_to_move,
)
from tickets.errors import GateBlocked, InvalidTransition
from tickets.models import (
    BlockedReason,
    GateStatus,
    Phase,
    PhaseGateArtifact,
    PhaseGateResult,
    PhaseHistory,
    Task,
    TaskStatus,
)
from tickets.services import ticket_block, ticket_progress, ticket_start, ticket_transition, ticket_unblock
from tickets.services.execution import next_action
from tickets.signals import ticket_blocked, ticket_completed
from tickets.templates import templates_for
from tickets.workflow import PHASE_SEQUENCE, TRANSITIONS, next_phase

pytestmark = pytest.mark.django_db


def test_the_table_is_seed_003():
    assert {phase.value: [t.value for t in targets] for phase, targets in TRANSITIONS.items()} == {
        "BACKLOG": ["REQUIREMENTS"],
        "REQUIREMENTS": ["DESIGN", "BLOCKED"],
        "DESIGN": ["IMPLEMENTATION", "BLOCKED"],
        "IMPLEMENTATION": ["TESTING", "BLOCKED"],
        "TESTING": ["DEPLOYMENT", "IMPLEMENTATION", "BLOCKED"],
        "DEPLOYMENT": ["DONE", "BLOCKED"],
        "BLOCKED": ["REQUIREMENTS", "DESIGN", "IMPLEMENTATION", "TESTING"],
        "DONE": [],
    }
    assert len(allowed_pairs()) == 16
    assert len(disallowed_pairs()) == 40
    assert [next_phase(p) for p in PHASE_SEQUENCE] == [
        "REQUIREMENTS",
        "DESIGN",
        "IMPLEMENTATION",
        "TESTING",
        "DEPLOYMENT",
        "DONE",
        None,
    ]
    assert next_phase(Phase.BLOCKED) is None


@pytest.mark.parametrize(("from_phase", "to_phase"), allowed_pairs())
def test_every_allowed_move_goes_through_the_service(project, from_phase, to_phase):
    ticket = ticket_ready_to_move(project=project, from_phase=from_phase, to_phase=to_phase)
    blocked = {"blocked_reason": BlockedReason.CLARIFICATION_NEEDED} if to_phase == Phase.BLOCKED else {}

    moved = ticket_transition(ticket_id=ticket.pk, to=to_phase, actor="alice", reason="because", **blocked)

    moved.refresh_from_db()
    assert moved.phase == to_phase
    assert moved.previous_phase == from_phase
    history = list(PhaseHistory.objects.filter(ticket=ticket).values_list("from_phase", "to_phase", "actor", "reason"))
    assert history == [(from_phase, to_phase, "alice", "because")]
    event = SandboxEvent.objects.get(ticket=ticket, type="ticket.transitioned")
    assert (event.payload["from_phase"], event.payload["to_phase"], event.payload["actor"]) == (
        from_phase,
        to_phase,
        "alice",
    )
    expected_tasks = sorted(t.key for t in templates_for(to_phase))
    assert sorted(Task.objects.filter(ticket=ticket, phase=to_phase).values_list("task_type", flat=True)) == (
        expected_tasks
    )
    if to_phase == Phase.BLOCKED:
        assert (moved.blocked_reason, moved.blocked_message) == ("clarification_needed", "because")
    else:
        assert (moved.blocked_reason, moved.blocked_message) == ("", "")


@pytest.mark.parametrize(("from_phase", "to_phase"), disallowed_pairs())
def test_every_disallowed_move_is_refused_with_a_reason_and_writes_nothing(project, from_phase, to_phase):
    ticket = ticket_ready_to_move(project=project, from_phase=from_phase, to_phase=to_phase)
    before = row_counts()

    with pytest.raises(InvalidTransition) as refused:
        ticket_transition(
            ticket_id=ticket.pk, to=to_phase, actor="alice", blocked_reason=BlockedReason.OTHER, reason="try"
        )

    assert refused.value.from_phase == from_phase
    assert refused.value.to_phase == to_phase
    assert f"cannot move from {from_phase} to {to_phase}" in str(refused.value)
    ticket.refresh_from_db()
    assert ticket.phase == from_phase
    assert row_counts() == before


def test_a_move_to_the_current_phase_is_a_repeat_and_changes_nothing(ticket_in):
    ticket = ticket_in(Phase.DESIGN)
    before = row_counts()

    same = ticket_transition(ticket_id=ticket.pk, to=Phase.DESIGN, actor="alice")

    assert same.phase == Phase.DESIGN
    assert row_counts() == before


def test_an_unknown_phase_is_refused(ticket_in):
    ticket = ticket_in(Phase.DESIGN)
    with pytest.raises(InvalidTransition, match="'LIMBO' is not a phase"):
        ticket_transition(ticket_id=ticket.pk, to="LIMBO", actor="alice")


def test_blocking_needs_a_typed_reason(ticket_in):
    ticket = ticket_in(Phase.DESIGN)
    before = row_counts()
    with pytest.raises(InvalidTransition, match="blocking needs a reason"):
        ticket_transition(ticket_id=ticket.pk, to=Phase.BLOCKED, actor="alice", blocked_reason="bored")
    assert row_counts() == before


def test_block_records_the_phase_reason_and_message_and_unblock_returns_there(ticket_in):
    ticket = ticket_in(Phase.IMPLEMENTATION)

    ticket_block(ticket_id=ticket.pk, reason=BlockedReason.ENVIRONMENT, message="no docker", actor="alice")
    ticket.refresh_from_db()
    assert (ticket.phase, ticket.previous_phase, ticket.blocked_reason, ticket.blocked_message) == (
        "BLOCKED",
        "IMPLEMENTATION",
        "environment",
        "no docker",
    )

    ticket_unblock(ticket_id=ticket.pk, actor="bob")
    ticket.refresh_from_db()
    assert (ticket.phase, ticket.previous_phase, ticket.blocked_reason, ticket.blocked_message) == (
        "IMPLEMENTATION",
        "BLOCKED",
        "",
        "",
    )
    assert list(PhaseHistory.objects.filter(ticket=ticket).values_list("from_phase", "to_phase", "actor")) == [
        ("IMPLEMENTATION", "BLOCKED", "alice"),
        ("BLOCKED", "IMPLEMENTATION", "bob"),
    ]


def test_a_ticket_blocked_in_deployment_cannot_unblock_back_there(ticket_in):
    ticket = ticket_in(Phase.BLOCKED, previous_phase=Phase.DEPLOYMENT)
    before = row_counts()

    with pytest.raises(InvalidTransition, match="cannot return to DEPLOYMENT; it may return to: REQUIREMENTS, DESIGN"):
        ticket_unblock(ticket_id=ticket.pk, actor="alice")

    assert row_counts() == before


def test_unblocking_an_unblocked_ticket_is_refused(ticket_in):
    ticket = ticket_in(Phase.DESIGN)
    with pytest.raises(InvalidTransition, match="is not blocked"):
        ticket_unblock(ticket_id=ticket.pk, actor="alice")


def test_unblocking_past_the_blocked_phase_must_pass_the_gates_it_skips(ticket_in):
    ticket = ticket_in(Phase.BLOCKED, previous_phase=Phase.DESIGN)

    with pytest.raises(GateBlocked) as blocked:
        ticket_unblock(ticket_id=ticket.pk, to=Phase.TESTING, actor="alice")
    assert blocked.value.phase == "DESIGN"
    assert blocked.value.reasons == ["missing artifact design_doc"]

    satisfy_gate(ticket, Phase.DESIGN)
    with pytest.raises(GateBlocked) as blocked:
        ticket_unblock(ticket_id=ticket.pk, to=Phase.TESTING, actor="alice")
    assert blocked.value.phase == "IMPLEMENTATION"

    satisfy_gate(ticket, Phase.IMPLEMENTATION)
    ticket_unblock(ticket_id=ticket.pk, to=Phase.TESTING, actor="alice")
    ticket.refresh_from_db()
    assert ticket.phase == Phase.TESTING
    assert list(PhaseGateResult.objects.filter(ticket=ticket).values_list("phase", "status")) == [
        ("DESIGN", "failed"),
        ("IMPLEMENTATION", "failed"),
        ("DESIGN", "passed"),
        ("IMPLEMENTATION", "passed"),
    ]


def test_a_failing_gate_refuses_the_move_keeps_only_the_gate_result(ticket_in):
    ticket = ticket_in(Phase.IMPLEMENTATION)
    Task.objects.create(ticket=ticket, phase=Phase.IMPLEMENTATION, task_type="implement_feature", title="t")
    PhaseGateArtifact.objects.create(
        ticket=ticket,
        phase=Phase.IMPLEMENTATION,
        artifact_type="test_results",
        content={"exit_code": 1, "passed": 3, "failed": 1, "output_tail": "1 failed"},
        collected_by="host",
    )
    before = row_counts()

    with pytest.raises(GateBlocked) as blocked:
        ticket_transition(ticket_id=ticket.pk, to=Phase.TESTING, actor="alice")

    reasons = [
        f"task implement_feature (#{Task.objects.get().pk}) is pending, not completed",
        "missing artifact code_changes",
        "test_results: exit_code must be 0 (is 1)",
        "test_results: failed must be 0 (is 1)",
    ]
    assert blocked.value.reasons == reasons
    result = PhaseGateResult.objects.get()
    assert blocked.value.gate_result == result
    assert (result.phase, result.status, result.blocking_reasons, result.validated_by) == (
        "IMPLEMENTATION",
        "failed",
        reasons,
        "alice",
    )
    assert result.details["missing_artifacts"] == ["code_changes"]
    ticket.refresh_from_db()
    assert ticket.phase == Phase.IMPLEMENTATION
    assert row_counts() == {**before, "gate_results": before["gate_results"] + 1}


def test_a_passing_gate_lets_the_move_through_and_stores_the_result(ticket_in):
    ticket = ticket_in(Phase.IMPLEMENTATION)
    Task.objects.create(
        ticket=ticket, phase=Phase.IMPLEMENTATION, task_type="implement_feature", status=TaskStatus.COMPLETED
    )
    satisfy_gate(ticket, Phase.IMPLEMENTATION)

    ticket_transition(ticket_id=ticket.pk, to=Phase.TESTING, actor="alice", reason="green")

    ticket.refresh_from_db()
    assert ticket.phase == Phase.TESTING
    result = PhaseGateResult.objects.get()
    assert (result.phase, result.status, result.blocking_reasons) == ("IMPLEMENTATION", GateStatus.PASSED, [])
    assert result.details["artifacts_checked"] == 2
    assert result.details["artifacts_passed"] == 2
    history = PhaseHistory.objects.get()
    assert [(a["type"], a["phase"]) for a in history.artifacts] == [
        ("code_changes", "IMPLEMENTATION"),
        ("test_results", "IMPLEMENTATION"),
    ]


def test_moves_into_blocked_and_regression_pass_no_gate(ticket_in):
    testing = ticket_in(Phase.TESTING)
    ticket_transition(ticket_id=testing.pk, to=Phase.IMPLEMENTATION, actor="alice", reason="tests found a bug")
    requirements = ticket_in(Phase.REQUIREMENTS)
    ticket_block(ticket_id=requirements.pk, reason=BlockedReason.BUDGET, actor="alice")

    testing.refresh_from_db()
    requirements.refresh_from_db()
    assert (testing.phase, requirements.phase) == (Phase.IMPLEMENTATION, Phase.BLOCKED)
    assert PhaseGateResult.objects.count() == 0


def test_regression_to_implementation_reopens_its_tasks_with_what_testing_found(ticket_in):
    ticket = ticket_in(Phase.TESTING)
    implement = Task.objects.create(
        ticket=ticket,
        phase=Phase.IMPLEMENTATION,
        task_type="implement_feature",
        status=TaskStatus.COMPLETED,
        result={"summary": "first try"},
    )
    Task.objects.create(
        ticket=ticket,
        phase=Phase.TESTING,
        task_type="run_tests",
        status=TaskStatus.COMPLETED,
        result={"summary": "2 tests fail", "risks": ["export of empty projects"]},
    )

    ticket_transition(ticket_id=ticket.pk, to=Phase.IMPLEMENTATION, actor="system", reason="tests fail")

    implement.refresh_from_db()
    assert implement.status == TaskStatus.PENDING
    assert implement.result == {"summary": "first try"}
    assert "run_tests: 2 tests fail" in implement.description
    assert "Risks: export of empty projects" in implement.description
    assert Task.objects.filter(ticket=ticket, phase=Phase.IMPLEMENTATION).count() == 2  # write_tests added once


def test_unblocking_reopens_the_failed_tasks_of_the_phase(ticket_in):
    ticket = ticket_in(Phase.BLOCKED, previous_phase=Phase.DESIGN)
    failed = Task.objects.create(
        ticket=ticket, phase=Phase.DESIGN, task_type="create_design", status=TaskStatus.FAILED, error="timeout"
    )

    ticket_unblock(ticket_id=ticket.pk, actor="alice")

    failed.refresh_from_db()
    assert (failed.status, failed.error) == (TaskStatus.PENDING, "")


def test_ticket_start_moves_a_backlog_ticket_to_requirements_once(ticket_in):
    ticket = ticket_in(Phase.BACKLOG)

    ticket_start(ticket_id=ticket.pk, actor="alice")
    ticket_start(ticket_id=ticket.pk, actor="alice")

    ticket.refresh_from_db()
    assert ticket.phase == Phase.REQUIREMENTS
    assert PhaseHistory.objects.filter(ticket=ticket).count() == 1
    assert list(Task.objects.filter(ticket=ticket).values_list("task_type", "executor")) == [
        ("analyze_requirements", "agent")
    ]


def test_done_sends_ticket_completed_on_commit_only(project, django_capture_on_commit_callbacks):
    from tests.factories import SpecFactory

    spec = SpecFactory(project=project)
    ticket = make_ticket(project=project, phase=Phase.DEPLOYMENT, spec=spec)
    satisfy_gate(ticket, Phase.DEPLOYMENT)
    received = []

    def receiver(sender, **kwargs):
        received.append(kwargs)

    ticket_completed.connect(receiver, dispatch_uid="test-done")
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            ticket_transition(ticket_id=ticket.pk, to=Phase.DONE, actor="system")
        assert received == []
        for callback in callbacks:
            callback()
    finally:
        ticket_completed.disconnect(dispatch_uid="test-done")

    assert [(r["ticket_id"], r["spec_id"]) for r in received] == [(ticket.pk, spec.pk)]
    event = SandboxEvent.objects.get(type="ticket.transitioned")
    assert (event.spec_id, event.ticket_id, event.sequence) == (spec.pk, ticket.pk, 1)


@pytest.mark.parametrize("how", ["ticket_block", "gate"])
def test_blocked_sends_ticket_blocked_on_commit_with_its_reason(project, django_capture_on_commit_callbacks, how):
    from tests.factories import SpecFactory

    spec = SpecFactory(project=project, status="executing")
    ticket = make_ticket(project=project, phase=Phase.TESTING, spec=spec)
    Task.objects.create(ticket=ticket, phase=Phase.TESTING, task_type="run_tests", status=TaskStatus.COMPLETED)
    received = []

    def receiver(sender, **kwargs):
        received.append(kwargs)

    ticket_blocked.connect(receiver, dispatch_uid="test-blocked")
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            if how == "ticket_block":
                ticket_block(ticket_id=ticket.pk, reason=BlockedReason.BUDGET, actor="alice", message="over budget")
            else:  # TESTING's gate fails: no test results
                ticket_progress(ticket_id=ticket.pk, phase=Phase.TESTING)
        assert received == []
        for callback in callbacks:
            callback()
    finally:
        ticket_blocked.disconnect(dispatch_uid="test-blocked")

    ticket.refresh_from_db()
    expected = {
        "ticket_block": ("budget", "over budget"),
        "gate": ("failing_checks", "missing artifact test_results"),
    }[how]
    assert (ticket.blocked_reason, ticket.blocked_message) == expected
    assert [(r["ticket_id"], r["spec_id"], r["reason"], r["message"]) for r in received] == [
        (ticket.pk, spec.pk, *expected)
    ]
    assert ("spec", spec.pk) in waiting_steps()  # the planning side's receiver: the spec's step looks at it


def test_a_refused_move_sends_no_signal(ticket_in, django_capture_on_commit_callbacks):
    ticket = ticket_in(Phase.DEPLOYMENT)
    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(GateBlocked):
        ticket_transition(ticket_id=ticket.pk, to=Phase.DONE, actor="system")
    assert callbacks == []


def test_a_fresh_pass_through_testing_runs_the_tests_again(ticket_in):
    ticket = ticket_in(Phase.IMPLEMENTATION)
    run_tests = Task.objects.create(
        ticket=ticket, phase=Phase.TESTING, task_type="run_tests", status=TaskStatus.COMPLETED, executor="host"
    )
    satisfy_gate(ticket, Phase.IMPLEMENTATION)

    ticket_transition(ticket_id=ticket.pk, to=Phase.TESTING, actor="system")

    run_tests.refresh_from_db()
    assert run_tests.status == TaskStatus.PENDING
    assert Task.objects.filter(ticket=ticket, phase=Phase.TESTING).count() == 1


def test_resuming_a_phase_whose_work_is_over_asks_progression_to_judge_it(ticket_in, capture_sends):
    ticket = ticket_in(Phase.BLOCKED, previous_phase=Phase.DESIGN)
    design = Task.objects.create(
        ticket=ticket, phase=Phase.DESIGN, task_type="create_design", status=TaskStatus.COMPLETED
    )
    satisfy_gate(ticket, Phase.DESIGN)

    with capture_sends() as sent:
        ticket_unblock(ticket_id=ticket.pk, actor="alice")

    design.refresh_from_db()
    assert design.status == TaskStatus.COMPLETED
    assert sent == [("tickets.tasks.ticket_step_task", (ticket.pk,), "execution")]
    assert waiting_steps() == [("ticket", ticket.pk)]
    ticket.refresh_from_db()
    assert next_action(ticket).kind == "progress"  # the step judges the gate: no work to redo

    ticket_progress(ticket_id=ticket.pk, phase=Phase.DESIGN)

    ticket.refresh_from_db()
    assert ticket.phase == Phase.IMPLEMENTATION


def test_sending_a_blocked_ticket_back_to_an_earlier_phase_redoes_that_phase(ticket_in):
    ticket = ticket_in(Phase.BLOCKED, previous_phase=Phase.DESIGN)
    requirements = Task.objects.create(
        ticket=ticket, phase=Phase.REQUIREMENTS, task_type="analyze_requirements", status=TaskStatus.COMPLETED
    )

    ticket_unblock(ticket_id=ticket.pk, to=Phase.REQUIREMENTS, actor="alice", reason="requirements were wrong")

    requirements.refresh_from_db()
    assert requirements.status == TaskStatus.PENDING
    assert PhaseGateResult.objects.count() == 0
