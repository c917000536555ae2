"""Two movers at the same moment, each on its own database connection (meaningful on PostgreSQL,
where the row lock decides; on SQLite the database serialises writers and the test still holds)."""

import threading

import pytest
from django.db import connection

from tests.tickets.conftest import make_ticket, satisfy_gate
from tickets.errors import InvalidTransition
from tickets.models import Phase, PhaseGateResult, PhaseHistory
from tickets.services import ticket_transition


def race(*calls):
    """Run each call in its own thread (so its own connection), released together by a barrier."""
    barrier = threading.Barrier(len(calls))
    outcomes: list = [None] * len(calls)

    def run(index: int, call) -> None:
        try:
            barrier.wait(timeout=10)
            outcomes[index] = ("ok", call())
        except Exception as exc:  # the loser's refusal is part of the outcome
            outcomes[index] = ("error", exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n, call)) for n, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


@pytest.mark.django_db(transaction=True)
def test_two_conflicting_moves_at_once_exactly_one_wins(project):
    for _ in range(5):
        ticket = make_ticket(project=project, phase=Phase.TESTING)
        satisfy_gate(ticket, Phase.TESTING)

        outcomes = race(
            lambda pk=ticket.pk: ticket_transition(ticket_id=pk, to=Phase.DEPLOYMENT, actor="forward"),
            lambda pk=ticket.pk: ticket_transition(ticket_id=pk, to=Phase.IMPLEMENTATION, actor="back"),
        )

        winners = [value for kind, value in outcomes if kind == "ok"]
        losers = [value for kind, value in outcomes if kind == "error"]
        assert len(winners) == 1 and len(losers) == 1, outcomes
        assert isinstance(losers[0], InvalidTransition)
        ticket.refresh_from_db()
        assert ticket.phase == winners[0].phase
        assert ticket.previous_phase == Phase.TESTING
        history = list(PhaseHistory.objects.filter(ticket=ticket).values_list("from_phase", "to_phase"))
        assert history == [("TESTING", ticket.phase)]
        assert losers[0].from_phase == ticket.phase  # the loser saw the winner's move, not the old phase


@pytest.mark.django_db(transaction=True)
def test_the_same_move_twice_at_once_is_recorded_once(project):
    ticket = make_ticket(project=project, phase=Phase.DEPLOYMENT)
    satisfy_gate(ticket, Phase.DEPLOYMENT)

    outcomes = race(
        lambda: ticket_transition(ticket_id=ticket.pk, to=Phase.DONE, actor="one"),
        lambda: ticket_transition(ticket_id=ticket.pk, to=Phase.DONE, actor="two"),
    )

    assert [kind for kind, _ in outcomes] == ["ok", "ok"]
    ticket.refresh_from_db()
    assert ticket.phase == Phase.DONE
    assert PhaseHistory.objects.filter(ticket=ticket).count() == 1
    assert PhaseGateResult.objects.filter(ticket=ticket).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_step_recording_its_outcome_and_a_user_retrying_a_task_at_once_both_succeed(project):
    """The ticket's step records a task's outcome (its lease, then the ticket) while a user retries
    another task of the ticket (the ticket, then its step's lease): one waits for the other, neither
    fails (no deadlock: both take the ticket first)."""
    import time

    from django.db import transaction

    from omoi.leases import lease_claim
    from omoi.models import Lease
    from tickets.models import Task, TaskStatus
    from tickets.services import task_retry
    from tickets.services.execution.outcomes import task_complete_running

    ticket = make_ticket(project=project, phase=Phase.IMPLEMENTATION)
    running = Task.objects.create(
        ticket=ticket, phase=Phase.IMPLEMENTATION, task_type="implement_feature", status=TaskStatus.RUNNING
    )
    failed = Task.objects.create(
        ticket=ticket, phase=Phase.IMPLEMENTATION, task_type="write_tests", status=TaskStatus.FAILED
    )
    Task.objects.filter(pk__in=[running.pk, failed.pk]).update(executor="agent")
    with transaction.atomic():
        from tickets.services.execution import ticket_work_enqueue

        ticket_work_enqueue(ticket_id=ticket.pk)
    holder_ready = threading.Event()

    def step() -> str:
        held = lease_claim(kind="ticket", object_id=ticket.pk)
        running.ticket = ticket
        with transaction.atomic():
            held.finish(more=True)
            holder_ready.set()
            time.sleep(0.5)  # the user's request arrives meanwhile
            task_complete_running(task=running, result={"summary": "done"}, actor="host")
        return "recorded"

    def user() -> str:
        holder_ready.wait(timeout=10)
        task_retry(task_id=failed.pk, actor="alice")
        return "retried"

    outcomes = race(step, user)

    assert outcomes == [("ok", "recorded"), ("ok", "retried")], outcomes
    assert dict(Task.objects.filter(ticket=ticket).values_list("task_type", "status")) == {
        "implement_feature": "completed",
        "write_tests": "pending",
    }
    assert Lease.objects.get(kind="ticket", object_id=ticket.pk).owner == ""  # the next step is due
