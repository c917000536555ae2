"""Thin Celery entry points of the planning domain: take ids, call one service."""

from celery import shared_task


@shared_task(name="specs.tasks.spec_step_task", acks_late=True, ignore_result=True)
def spec_step_task(spec_id: int) -> str:
    """A spec's next step (a planning turn, the bridge, completion, the pull request), under the
    spec's lease: a duplicate delivery does nothing. Its queue is chosen when it is sent."""
    from specs.services.steps import spec_step

    return spec_step(spec_id=spec_id)
