"""How a task's work ends, recorded inside the step's outcome transaction: completed (its ticket's
step goes on inline), or given up (failed with its evidence, the ticket BLOCKED with a typed
reason; ticket_transition sends `ticket_blocked` on commit so the planning side learns of it)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from omoi.text import storable
from sandboxes.services.events import event_record, truncate_text
from tickets.models import Phase, Task, TaskStatus, Ticket
from tickets.services.gates import artifact_collect
from tickets.services.tasks import _lock, task_complete, task_fail
from tickets.services.transitions import ticket_transition


def task_event(task: Task, type: str, payload: dict[str, Any]) -> None:
    """An event about a task, on its spec's stream (ticket and task attached)."""
    event_record(type=type, payload=payload, spec_id=task.ticket.spec_id, ticket_id=task.ticket_id, task_id=task.pk)


def task_complete_running(*, task: Task, result: dict[str, Any], actor: str) -> bool:
    """Inside a transaction: complete a task that is still running. False when it is not (another
    delivery, a cancel, finished it first)."""
    _ticket, locked = _lock(task.pk)
    if locked.status != TaskStatus.RUNNING:
        return False
    task_complete(task_id=task.pk, result=result, actor=actor, inline=True)
    return True


def task_give_up(
    *,
    task_id: int,
    reason: str,
    blocked: str,
    evidence: list[dict[str, Any]] | None = None,
    details: str = "",
) -> bool:
    """A task that cannot succeed: it fails with its evidence, its ticket is BLOCKED with the typed
    reason, and `ticket_blocked` is sent on commit. False when the task had already ended."""
    with transaction.atomic():
        _ticket, task = _lock(task_id)
        if task.status not in (TaskStatus.PENDING, TaskStatus.RUNNING):
            return False
        for artifact in evidence or []:
            artifact_collect(
                ticket_id=task.ticket_id,
                phase=task.phase,
                artifact_type=artifact["type"],
                content=artifact["content"],
                collected_by="host-verification",
            )
        task_fail(task_id=task.pk, error=storable(reason, 4000), actor="host", result={"evidence": evidence or []})
        message = f"{task.task_type} failed: {reason}"
        if details:
            message += f"\n\n{truncate_text(details, 2000)}"
        message = storable(message)
        ticket_block_for(ticket_id=task.ticket_id, blocked=blocked, message=message)
        task_event(
            task,
            "task.failed",
            {"task": task.pk, "task_type": task.task_type, "reason": storable(reason), "blocked_reason": blocked},
        )
    return True


def ticket_block_for(*, ticket_id: int, blocked: str, message: str) -> None:
    """Block a working ticket with a typed reason (inside a transaction) and tell the planning side."""
    ticket = Ticket.objects.get(pk=ticket_id)
    if ticket.phase in (Phase.BLOCKED, Phase.DONE, Phase.BACKLOG):
        return
    ticket_transition(
        ticket_id=ticket.pk,
        to=Phase.BLOCKED,
        actor="host",
        reason=message[:500],
        blocked_reason=blocked,
        blocked_message=message,
    )
