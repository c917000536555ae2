"""Celery entry points of the platform itself."""

from celery import shared_task

from omoi.reconcile import reconcile


@shared_task(name="omoi.tasks.reconcile_task", acks_late=True, ignore_result=True)
def reconcile_task() -> dict:
    """Beat (every OMOI_RECONCILE_INTERVAL_S): set moving again whatever should move and does not."""
    return reconcile()


@shared_task(name="omoi.tasks.bench_hop_task", acks_late=True, ignore_result=True)
def bench_hop_task(remaining: int, done_path: str) -> None:
    """A bare hop, the baseline of bench/whole_spec.py: sends itself again `remaining` times, then
    touches `done_path`. No database, no work: what a hop costs the broker and the worker alone."""
    if remaining > 0:
        bench_hop_task.delay(remaining - 1, done_path)
    else:
        with open(done_path, "w"):
            pass
