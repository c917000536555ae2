"""Automatic progression through a real worker: completing the last task of a phase enqueues the
progression task on commit, and the worker's run of it moves the ticket."""

import pytest

from tests.factories import TaskFactory
from tests.tickets.conftest import PASSING_ARTIFACTS, make_ticket
from tests.worker import wait_for
from tickets.models import Executor, Phase, PhaseGateResult, PhaseHistory
from tickets.services import task_complete


@pytest.mark.worker
def test_completing_the_last_task_lets_the_worker_move_the_ticket(start_worker, project):
    ticket = make_ticket(project=project, phase=Phase.DEPLOYMENT)
    deploy = TaskFactory(ticket=ticket, phase=Phase.DEPLOYMENT, task_type="deploy", executor=Executor.HOST)
    worker = start_worker()
    (artifact_type, content) = PASSING_ARTIFACTS[Phase.DEPLOYMENT][0]

    task_complete(
        task_id=deploy.pk,
        result={"summary": "merged", "artifacts": [{"type": artifact_type, "content": content}]},
        actor="host-merge",
    )

    move = wait_for(
        lambda: PhaseHistory.objects.filter(ticket=ticket, from_phase=Phase.DEPLOYMENT).first(),
        worker=worker,
        message="the progression task to move the ticket",
    )
    assert (move.to_phase, move.actor, move.reason) == ("DONE", "system", "DEPLOYMENT gate passed")
    ticket.refresh_from_db()
    assert ticket.phase == Phase.DONE
    assert list(PhaseGateResult.objects.filter(ticket=ticket).values_list("phase", "status", "validated_by")) == [
        ("DEPLOYMENT", "passed", "system")
    ]
