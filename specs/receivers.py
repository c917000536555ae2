"""Reactions of the planning domain to what the execution domain reports. Receivers only
enqueue a task by id; the work happens in specs/services/completion.py."""

from django.dispatch import receiver

from tickets.signals import ticket_blocked, ticket_completed


@receiver(ticket_completed, dispatch_uid="specs.ticket_completed")
def ticket_completed_received(sender, *, ticket_id: int, spec_id: int | None, **kwargs) -> None:
    if spec_id is not None:
        from specs.tasks import spec_completion_task

        spec_completion_task.delay(spec_id)


@receiver(ticket_blocked, dispatch_uid="specs.ticket_blocked")
def ticket_blocked_received(
    sender, *, ticket_id: int, spec_id: int | None, reason: str, message: str, **kwargs
) -> None:
    if spec_id is not None:
        from specs.tasks import spec_execution_failed_task

        spec_execution_failed_task.delay(spec_id, ticket_id, reason, message[:2000])
