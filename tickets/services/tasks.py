"""Tasks: generating them from templates, and their lifecycle (start, complete, fail, retry).

Lock order everywhere: the ticket, then the task. Completing the last open task of a phase
enqueues the progression task on commit; holding the ticket lock while counting open tasks is
what makes exactly one of two simultaneous completions see itself as the last.
"""

from collections.abc import Iterable
from typing import Any

from django.db import IntegrityError, transaction

from tickets.errors import InvalidArtifact, InvalidTaskState
from tickets.models import Phase, PhaseGateArtifact, Task, TaskStatus, Ticket
from tickets.selectors import OPEN_TASK_STATUSES, open_tasks_exist, runnable_tasks, task_blockers
from tickets.services.gates import artifact_validate
from tickets.services.task_transitions import task_transition
from tickets.templates import TaskTemplate, templates_for


def tasks_dispatch_runnable(*, ticket_ids: Iterable[int], task_ids: Iterable[int] | None = None) -> list[int]:
    """Tell the execution engine that these tickets may have work (one step per ticket, enqueued
    on commit: the step finds the ticket's next runnable task itself). Returns the tickets that
    have a runnable task now."""
    from tickets.services.execution.dispatch import ticket_work_enqueue

    queryset = runnable_tasks(ticket_ids=list(ticket_ids))
    if task_ids is not None:
        queryset = queryset.filter(pk__in=list(task_ids))
    tickets = sorted(set(queryset.values_list("ticket_id", flat=True)))
    for ticket_id in tickets:
        ticket_work_enqueue(ticket_id=ticket_id)
    return tickets


def _task_fields(template: TaskTemplate, ticket: Ticket) -> dict[str, Any]:
    return {
        "title": template.title(ticket)[:500],
        "description": template.description(ticket),
        "executor": template.executor,
        "priority": ticket.priority,
    }


def _tasks_create(*, ticket: Ticket, phase: str) -> list[Task]:
    created = []
    for template in templates_for(phase):
        try:
            with transaction.atomic():
                task, was_created = Task.objects.get_or_create(
                    ticket=ticket, phase=phase, task_type=template.key, defaults=_task_fields(template, ticket)
                )
        except IntegrityError:  # created by a concurrent call between our read and our insert
            continue
        if was_created:
            created.append(task)
    return created


@transaction.atomic
def tasks_generate(*, ticket_id: int, phase: str | None = None) -> list[Task]:
    """Create the tasks of `phase` (default: the ticket's current phase) from its templates, each
    exactly once per ticket; returns only the tasks this call created (a repeat returns []).
    Created tasks that may run now are dispatched."""
    ticket = Ticket.objects.select_for_update(no_key=True).get(pk=ticket_id)
    phase = phase or ticket.phase
    if phase not in Phase.values:
        raise ValueError(f"unknown phase {phase!r}")
    created = _tasks_create(ticket=ticket, phase=phase)
    if created and phase == ticket.phase:
        tasks_dispatch_runnable(ticket_ids=[ticket.pk], task_ids=[task.pk for task in created])
    return created


def tasks_reopen(*, ticket: Ticket, phase: str, statuses: Iterable[str]) -> list[int]:
    """Return the phase's tasks in `statuses` to pending, with descriptions rebuilt from their
    templates (so they carry the context gathered since). Used when a ticket re-enters a phase."""
    by_key = {template.key: template for template in templates_for(phase)}
    reopened = []
    for task in Task.objects.filter(ticket=ticket, phase=phase, status__in=list(statuses)).order_by("id"):
        template = by_key.get(task.task_type)
        fields = []
        if template is not None:
            task.description = template.description(ticket)
            fields.append("description")
        task_transition(task=task, to=TaskStatus.PENDING, fields=fields)
        reopened.append(task.pk)
    return reopened


def _lock(task_id: int, ticket_id: int | None = None) -> tuple[Ticket, Task]:
    """The task and its ticket, locked (ticket first, then task). A caller that knows the task's
    ticket passes it and saves a query."""
    if ticket_id is None:
        ticket_id = Task.objects.values_list("ticket_id", flat=True).get(pk=task_id)
    ticket = Ticket.objects.select_for_update(no_key=True).get(pk=ticket_id)
    task = Task.objects.select_for_update(no_key=True).get(pk=task_id)
    task.ticket = ticket
    return ticket, task


def _merge(old: Any, new: Any) -> Any:
    """Results are merged, never overwritten wholesale: objects merge key by key, recursively."""
    if isinstance(old, dict) and isinstance(new, dict):
        merged = dict(old)
        for key, value in new.items():
            merged[key] = _merge(old.get(key), value) if key in old else value
        return merged
    return new


def _progress_if_phase_finished(*, ticket: Ticket, task: Task, inline: bool = False) -> bool:
    """Once no task of the ticket's current phase is open, its step judges the gate (progression).
    Inside the execution engine's own step (`inline`), the step goes on by itself."""
    if task.phase != ticket.phase or open_tasks_exist(ticket_id=ticket.pk, phase=task.phase):
        return False
    if not inline:
        from tickets.services.execution.dispatch import ticket_work_enqueue

        ticket_work_enqueue(ticket_id=ticket.pk)
    return True


@transaction.atomic
def task_start(*, task_id: int, actor: str = "system") -> Task:
    """pending → running, counting the attempt; refused (InvalidTaskState, with the reasons) unless
    the task is runnable. Starting a running task again changes nothing. `actor` is who starts it."""
    ticket, task = _lock(task_id)
    if task.status == TaskStatus.RUNNING:
        return task
    blockers = task_blockers(task)
    if blockers:
        raise InvalidTaskState(f"task #{task.pk} cannot start: " + "; ".join(blockers))
    return task_transition(task=task, to=TaskStatus.RUNNING)


def _artifacts_of(result: dict[str, Any]) -> list[dict[str, Any]]:
    artifacts = result.get("artifacts", [])
    if not isinstance(artifacts, list):
        raise InvalidArtifact("result['artifacts'] must be a list of {type, path?, content}")
    for artifact in artifacts:
        if not isinstance(artifact, dict):
            raise InvalidArtifact("each entry of result['artifacts'] must be an object {type, path?, content}")
        artifact_validate(
            artifact_type=artifact.get("type"), content=artifact.get("content"), path=artifact.get("path", "")
        )
    return artifacts


@transaction.atomic
def task_complete(*, task_id: int, result: dict[str, Any], actor: str, inline: bool = False) -> Task:
    """Mark a pending or running task completed: merge `result` into Task.result, turn
    result["artifacts"] ([{type, path?, content}]) into gate artifacts of the task's phase collected
    by `actor`, and, if no task of the ticket's current phase is still open, enqueue the progression
    task on commit. Completing a completed task again changes nothing."""
    if not isinstance(result, dict):
        raise InvalidTaskState("a task result must be a JSON object")
    ticket, task = _lock(task_id)
    if task.status == TaskStatus.COMPLETED:
        return task
    if task.status not in OPEN_TASK_STATUSES:
        raise InvalidTaskState(f"task #{task.pk} is {task.status}; only a pending or running task can complete")
    artifacts = _artifacts_of(result)
    task.result = _merge(task.result or {}, result)
    task_transition(task=task, to=TaskStatus.COMPLETED, fields=["result"])
    PhaseGateArtifact.objects.bulk_create(
        [
            PhaseGateArtifact(
                ticket=ticket,
                phase=task.phase,
                artifact_type=artifact["type"].strip(),
                path=artifact.get("path", ""),
                content=artifact["content"],
                collected_by=actor,
            )
            for artifact in artifacts
        ]
    )
    _progress_if_phase_finished(ticket=ticket, task=task, inline=inline)
    return task


@transaction.atomic
def task_fail(
    *, task_id: int, error: str, actor: str, result: dict[str, Any] | None = None, inline: bool = False
) -> Task:
    """Mark a pending or running task failed for good (retries are the caller's to make first).
    When it was the last open task of the phase, progression runs and blocks the ticket with the
    failure as its reason. Failing a failed task again changes nothing."""
    ticket, task = _lock(task_id)
    if task.status == TaskStatus.FAILED:
        return task
    if task.status not in OPEN_TASK_STATUSES:
        raise InvalidTaskState(f"task #{task.pk} is {task.status}; only a pending or running task can fail")
    if result:
        task.result = _merge(task.result or {}, result)
    task_transition(task=task, to=TaskStatus.FAILED, error=error or f"failed (reported by {actor})", fields=["result"])
    _progress_if_phase_finished(ticket=ticket, task=task, inline=inline)
    return task


@transaction.atomic
def task_retry(*, task_id: int, actor: str) -> Task:
    """A failed or cancelled task back to pending (its result kept), dispatched if it may run now."""
    ticket, task = _lock(task_id)
    if task.status == TaskStatus.PENDING:
        return task
    if task.status not in (TaskStatus.FAILED, TaskStatus.CANCELLED):
        raise InvalidTaskState(f"task #{task.pk} is {task.status}; only a failed or cancelled task can be retried")
    task_transition(task=task, to=TaskStatus.PENDING)
    tasks_dispatch_runnable(ticket_ids=[ticket.pk], task_ids=[task.pk])
    return task


@transaction.atomic
def tasks_cancel(*, spec_id: int, actor: str, reason: str) -> list[int]:
    """Cancel every open (pending or running) task of a spec's tickets, so no further turn or host
    step of theirs does anything: each entry point re-reads the task and stops unless it runs."""
    cancelled = []
    ticket_ids = Ticket.objects.filter(spec_id=spec_id).order_by("id").values_list("pk", flat=True)
    list(Ticket.objects.select_for_update(no_key=True).filter(pk__in=list(ticket_ids)).order_by("id"))
    for task in (
        Task.objects.select_for_update(no_key=True)
        .filter(ticket__spec_id=spec_id, status__in=OPEN_TASK_STATUSES)
        .order_by("id")
    ):
        task_transition(task=task, to=TaskStatus.CANCELLED, error=f"{reason} (by {actor})")
        cancelled.append(task.pk)
    return cancelled
