"""Celery entry points of the platform itself."""

from celery import shared_task

from omoi.reconcile import reconcile


@shared_task(name="omoi.tasks.reconcile_task", acks_late=True, ignore_result=True)
def reconcile_task() -> dict:
    """Beat (every OMOI_RECONCILE_INTERVAL_S): set moving again whatever should move and does not."""
    return reconcile()
