"""The one place Task.status changes: the table of the moves a task may make (TASK_MOVES) and the
service that makes them (task_transition), stamping the times each move implies."""

from collections.abc import Iterable

from django.utils import timezone

from tickets.errors import InvalidTaskState
from tickets.models import Task, TaskStatus

TASK_MOVES: dict[str, set[str]] = {
    TaskStatus.PENDING: {TaskStatus.RUNNING, TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED},
    TaskStatus.RUNNING: {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED},
    TaskStatus.COMPLETED: {TaskStatus.PENDING},  # a fresh pass through the phase
    TaskStatus.FAILED: {TaskStatus.PENDING},  # a retry
    TaskStatus.CANCELLED: {TaskStatus.PENDING},  # a retry
}


def task_transition(*, task: Task, to: str, error: str | None = None, fields: Iterable[str] = ()) -> Task:
    """The one place Task.status changes. Inside the caller's transaction, with the task locked
    (ticket first, then task): checks the move against TASK_MOVES, stamps the times it implies, and
    saves the status with `fields` (other attributes the caller set). A move to where the task is
    already is a no-op."""
    if task.status == to:
        return task
    if to not in TASK_MOVES[task.status]:
        raise InvalidTaskState(f"task #{task.pk} is {task.status}; it cannot become {to}")
    now = timezone.now()
    changed = {"status", "updated_at", *fields}
    if to == TaskStatus.RUNNING:
        task.attempts += 1
        task.started_at = now
        task.error = ""
        changed |= {"attempts", "started_at", "error"}
    elif to == TaskStatus.PENDING:
        task.started_at = None
        task.completed_at = None
        task.error = ""
        changed |= {"started_at", "completed_at", "error"}
    else:
        task.completed_at = now
        task.error = "" if to == TaskStatus.COMPLETED else (error or task.error)
        changed |= {"completed_at", "error"}
    task.status = to
    task.save(update_fields=sorted(changed))
    return task
