"""Thin Celery entry points of the planning domain: take ids, call one service.

The execution side (completion, the pull request step, a failed execution) is here too: they
change specs. Planning phase tasks are named `specs.tasks.planning_*` and routed to the planning
queue; the others run on the default queue.
"""

import logging

from celery import shared_task

from specs.services.bridge import SpecNotExecutable, spec_execute
from specs.services.completion import (
    completion_sweep,
    spec_completion_check,
    spec_execution_failed,
    spec_pull_request_open,
)
from specs.services.planning import planning_phase_run, planning_sweep

logger = logging.getLogger(__name__)


@shared_task(name="specs.tasks.spec_completion_task", acks_late=True)
def spec_completion_task(spec_id: int) -> None:
    """A ticket of the spec reached DONE: update progress, complete the spec when all are done."""
    spec_completion_check(spec_id=spec_id)


@shared_task(
    name="specs.tasks.spec_pull_request_task",
    acks_late=True,
    autoretry_for=(ConnectionError, TimeoutError),
    retry_backoff=True,
    max_retries=5,
)
def spec_pull_request_task(spec_id: int) -> None:
    """Push the spec branch and open the pull request, once."""
    spec_pull_request_open(spec_id=spec_id)


@shared_task(name="specs.tasks.spec_completion_sweep_task", acks_late=True)
def spec_completion_sweep_task() -> dict:
    return completion_sweep()


@shared_task(name="specs.tasks.spec_execution_failed_task", acks_late=True)
def spec_execution_failed_task(spec_id: int, ticket_id: int, reason: str, message: str) -> None:
    spec_execution_failed(spec_id=spec_id, ticket_id=ticket_id, reason=reason, message=message)


# --- Planning ----------------------------------------------------------------------------------


@shared_task(name="specs.tasks.planning_phase_task", acks_late=True)
def planning_phase_task(spec_id: int, phase: str) -> str:
    """Run one planning phase; it ends by enqueueing the next one (through spec_transition)."""
    return planning_phase_run(spec_id=spec_id, phase=phase)


@shared_task(name="specs.tasks.planning_sweep_task", acks_late=True)
def planning_sweep_task() -> list[int]:
    """Beat: re-enqueue planning phases that show no sign of life (see planning_sweep)."""
    return planning_sweep()


@shared_task(name="specs.tasks.spec_execute_task", acks_late=True)
def spec_execute_task(spec_id: int, actor: str = "system") -> None:
    """The spec was approved (explicitly, or implicitly without require_approval): run the bridge
    from its SpecTasks to tickets. Idempotent; a spec that is not executable is left alone."""
    try:
        spec_execute(spec_id=spec_id, actor=actor)
    except SpecNotExecutable as exc:
        logger.info("spec %s not executed: %s", spec_id, exc)
