"""Messages to a running agent: stored as pending, seen by the model exactly once at the next turn
boundary, where the transcript keeps them; idempotent by key; refused once the run is over."""

from __future__ import annotations

import pytest

from sandboxes.models import AgentRun, QueuedMessage, SandboxEvent
from specs.models import Spec
from tests.support.steps import drain, run_step, waiting_steps
from tickets.models import Task

IMPLEMENT = "TSK-001:implement_feature"
GUIDANCE = "Please keep stats.py free of third-party imports."


def step_until(predicate, limit: int = 50) -> None:
    for _ in range(limit):
        if predicate():
            return
        due = waiting_steps()
        assert due, "nothing left to run"
        run_step(*due[0])
    raise AssertionError("the condition never held")


def transcript_text(run: AgentRun) -> str:
    return str(list(run.transcript.order_by("position").values_list("content", flat=True)))


@pytest.mark.django_db(transaction=True)
def test_a_message_sent_mid_run_is_seen_once_at_the_next_turn(steering, api):
    spec = steering({})
    implement = {
        "task__ticket__spec": spec,
        "task__task_type": "implement_feature",
        "task__ticket__spec_task__key": "TSK-001",
    }
    step_until(lambda: AgentRun.objects.filter(**implement, turns__gte=1).exists())
    run = AgentRun.objects.get(**implement)
    task = run.task

    sent = api.post(f"/api/v1/tasks/{task.pk}/messages", {"text": GUIDANCE, "idempotency_key": "k1"}, format="json")
    again = api.post(f"/api/v1/tasks/{task.pk}/messages", {"text": "a different text", "idempotency_key": "k1"})

    assert sent.status_code == 201, sent.json()
    assert sent.json()["status"] == "pending"
    assert again.status_code == 200 and again.json()["id"] == sent.json()["id"]
    assert QueuedMessage.objects.filter(task=task).count() == 1
    step_until(lambda: AgentRun.objects.get(pk=run.pk).turns >= 2)
    message = QueuedMessage.objects.get(task=task)
    assert (message.status, message.run_id, message.delivered_turn) == ("delivered", run.pk, 2)
    # The model saw it in the user message its second turn answered, and only there.
    rows = list(run.transcript.order_by("position"))
    seen_by_turn_two = rows[2]  # user(first message), assistant(turn 1), user(results + the message)
    assert seen_by_turn_two.role == "user" and GUIDANCE in str(seen_by_turn_two.content)
    drain()
    run.refresh_from_db()
    assert transcript_text(run).count(GUIDANCE) == 1
    injected = SandboxEvent.objects.filter(spec=spec, type="agent.message_injected")
    assert [(e.payload["message"], e.payload["turn"]) for e in injected] == [(message.pk, 2)]
    assert Spec.objects.get(pk=spec.pk).status == "completed"


@pytest.mark.django_db(transaction=True)
def test_a_message_to_a_finished_task_or_a_host_task_is_a_409(steering, api):
    spec = steering({})
    drain()
    finished = Task.objects.get(ticket__spec=spec, ticket__spec_task__key="TSK-001", task_type="implement_feature")
    host = Task.objects.get(ticket__spec=spec, ticket__spec_task__key="TSK-001", task_type="run_tests")

    for task in (finished, host):
        response = api.post(f"/api/v1/tasks/{task.pk}/messages", {"text": GUIDANCE}, format="json")
        assert response.status_code == 409, response.json()
    assert not QueuedMessage.objects.exists()
    assert api.post(f"/api/v1/tasks/{finished.pk}/messages", {"text": "  "}, format="json").status_code == 400
