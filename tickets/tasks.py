"""Thin Celery entry points of the workflow engine: take ids, call one service."""

from celery import shared_task

from tickets.services.context import ticket_context_summarize
from tickets.services.transitions import SYSTEM_ACTOR, ticket_progress, ticket_progress_sweep


@shared_task(name="tickets.tasks.ticket_progress_task", acks_late=True)
def ticket_progress_task(ticket_id: int, phase: str) -> None:
    """A phase's work is over: judge its gate and move the ticket on (or block it). Idempotent: a
    no-op once the ticket has left `phase`."""
    ticket_progress(ticket_id=ticket_id, phase=phase, actor=SYSTEM_ACTOR)


@shared_task(name="tickets.tasks.ticket_progress_sweep_task", acks_late=True)
def ticket_progress_sweep_task() -> list[int]:
    """Beat: re-enqueue progression that a lost message left undone."""
    return ticket_progress_sweep()


@shared_task(name="tickets.tasks.ticket_context_summarize_task", acks_late=True)
def ticket_context_summarize_task(ticket_id: int, context_updated_at: str) -> None:
    """Have the model rewrite a ticket's context summary (only with OMOI_CONTEXT_SUMMARY_MODEL)."""
    ticket_context_summarize(ticket_id=ticket_id, context_updated_at=context_updated_at)


# --- execution: agent runs and host steps (tickets/services/execution.py) ----------------------
# One model turn per task, so a crash repeats at most one turn and many runs share the workers.
# Each entry point re-reads the database and returns early when its work is done or superseded.


@shared_task(name="tickets.tasks.agent_task_start_task", acks_late=True)
def agent_task_start_task(task_id: int) -> None:
    from tickets.services.execution import task_run_start

    task_run_start(task_id=task_id)


@shared_task(name="tickets.tasks.agent_run_begin_task", acks_late=True)
def agent_run_begin_task(task_id: int) -> None:
    from tickets.services.execution import agent_run_begin

    agent_run_begin(task_id=task_id)


@shared_task(name="tickets.tasks.agent_turn_task", acks_late=True)
def agent_turn_task(run_id: int, turn: int) -> str:
    from tickets.services.execution import task_turn_run

    return task_turn_run(run_id=run_id, turn=turn)


@shared_task(name="tickets.tasks.agent_host_step_task", acks_late=True)
def agent_host_step_task(task_id: int) -> str:
    from tickets.services.execution import host_step_run

    return host_step_run(task_id=task_id)


@shared_task(name="tickets.tasks.agent_execution_sweep_task", acks_late=True)
def agent_execution_sweep_task() -> dict:
    from tickets.services.execution import execution_sweep

    return execution_sweep()
