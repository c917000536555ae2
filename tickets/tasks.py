"""Thin Celery entry points of the workflow engine: take ids, call one service."""

from celery import shared_task

from tickets.services.context import ticket_context_summarize


@shared_task(name="tickets.tasks.ticket_step_task", acks_late=True, ignore_result=True)
def ticket_step_task(ticket_id: int) -> str:
    """A ticket's next step (progression, a task's start, one model turn, a host step), under the
    ticket's lease: a duplicate delivery does nothing. Its queue is chosen when it is sent."""
    from tickets.services.execution import ticket_step

    return ticket_step(ticket_id=ticket_id)


@shared_task(name="tickets.tasks.ticket_context_summarize_task", acks_late=True)
def ticket_context_summarize_task(ticket_id: int, context_updated_at: str) -> None:
    """Have the model rewrite a ticket's context summary (only with OMOI_CONTEXT_SUMMARY_MODEL)."""
    ticket_context_summarize(ticket_id=ticket_id, context_updated_at=context_updated_at)
