"""Messages to a running agent: an operator's guidance, stored as pending and delivered exactly
once at the next turn boundary of the task's run (sandboxes.services.agent.agent_turn_run)."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from omoi.text import storable
from sandboxes.models import QueuedMessage
from sandboxes.services.events import event_record, truncate_text
from tickets.errors import InvalidTaskState
from tickets.models import Executor, TaskStatus
from tickets.services.tasks import _lock

MAX_MESSAGE_CHARS = 10_000


def task_message_send(*, task_id: int, text: str, author: str, idempotency_key: str = "") -> tuple[QueuedMessage, bool]:
    """Queue `text` for the task's agent. Returns (message, created): a repeated idempotency_key
    answers the first message. InvalidTaskState when the task has no agent run to take it (a host
    task) or its work is over (completed, failed, cancelled)."""
    text = storable(text.strip(), MAX_MESSAGE_CHARS)
    if not text:
        raise ValueError("the message is empty")
    key = storable(idempotency_key.strip(), 200)
    with transaction.atomic():
        ticket, task = _lock(task_id)
        if key:
            existing = QueuedMessage.objects.filter(task_id=task.pk, idempotency_key=key).first()
            if existing is not None:
                return existing, False
        if task.executor != Executor.AGENT:
            raise InvalidTaskState(f"task #{task.pk} is carried out by the host: there is no agent to message")
        if task.status not in (TaskStatus.PENDING, TaskStatus.RUNNING):
            raise InvalidTaskState(f"task #{task.pk} is {task.status}: its run is over")
        try:
            with transaction.atomic():
                message = QueuedMessage.objects.create(
                    task_id=task.pk, spec_id=ticket.spec_id, source="operator", author=author, text=text,
                    idempotency_key=key,
                )  # fmt: skip
        except IntegrityError:
            return QueuedMessage.objects.get(task_id=task.pk, idempotency_key=key), False
        event_record(
            type="agent.message_queued",
            payload={"message": message.pk, "author": author, "text": truncate_text(text, 2000)},
            spec_id=ticket.spec_id,
            ticket_id=ticket.pk,
            task_id=task.pk,
        )
    return message, True
