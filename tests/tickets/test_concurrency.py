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
