"""Automatic progression: completing the last task of a phase makes the ticket's step due (a lease
row, its message sent on commit), and that step moves the ticket. Run here as a worker runs it; the
real chain through Celery is covered by tests/e2e/test_spec_to_pull_request.py."""

import pytest

from tests.factories import TaskFactory
from tests.support.steps import drain, waiting_steps
from tests.tickets.conftest import PASSING_ARTIFACTS, make_ticket
from tickets.models import Executor, Phase, PhaseGateResult, PhaseHistory
from tickets.services import task_complete


@pytest.mark.django_db
def test_completing_the_last_task_lets_the_tickets_step_move_the_ticket(project, capture_sends):
    ticket = make_ticket(project=project, phase=Phase.DEPLOYMENT)
    deploy = TaskFactory(ticket=ticket, phase=Phase.DEPLOYMENT, task_type="deploy", executor=Executor.HOST)
    (artifact_type, content) = PASSING_ARTIFACTS[Phase.DEPLOYMENT][0]

    with capture_sends() as sent:
        task_complete(
            task_id=deploy.pk,
            result={"summary": "merged", "artifacts": [{"type": artifact_type, "content": content}]},
            actor="host-merge",
        )

    assert sent == [("tickets.tasks.ticket_step_task", (ticket.pk,), "execution")]
    assert waiting_steps() == [("ticket", ticket.pk)]
    assert drain() == [("ticket", ticket.pk, "idle")]
    move = PhaseHistory.objects.get(ticket=ticket, from_phase=Phase.DEPLOYMENT)
    assert (move.to_phase, move.actor, move.reason) == ("DONE", "system", "DEPLOYMENT gate passed")
    ticket.refresh_from_db()
    assert ticket.phase == Phase.DONE
    assert list(PhaseGateResult.objects.filter(ticket=ticket).values_list("phase", "status", "validated_by")) == [
        ("DEPLOYMENT", "passed", "system")
    ]
