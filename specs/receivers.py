"""Reactions of the planning domain to what the execution domain reports. Receivers only make sure
the spec's step runs (specs/services/steps.py does the work)."""

from django.db import transaction
from django.dispatch import receiver

from tickets.signals import ticket_blocked, ticket_completed


def _spec_step_due(spec_id: int) -> None:
    from specs.services.planning import spec_work_enqueue

    with transaction.atomic():
        spec_work_enqueue(spec_id=spec_id)


@receiver(ticket_completed, dispatch_uid="specs.ticket_completed")
def ticket_completed_received(sender, *, ticket_id: int, spec_id: int | None, **kwargs) -> None:
    if spec_id is not None:
        _spec_step_due(spec_id)


@receiver(ticket_blocked, dispatch_uid="specs.ticket_blocked")
def ticket_blocked_received(
    sender, *, ticket_id: int, spec_id: int | None, reason: str, message: str, **kwargs
) -> None:
    if spec_id is not None:
        _spec_step_due(spec_id)
