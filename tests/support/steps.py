"""Run steps in the test process, as a worker would: every lease row that waits for a worker is
claimed and its step run (a spec's step, a ticket's step), until nothing waits. Tests that need
the real chain (serialization, routing, acks, crashes) start a real worker instead (tests/worker.py).

A test's own transaction never commits, so what a step does "on commit" (the signals that tell the
spec a ticket finished or blocked, sandbox releases) is run at the end of the step here, as its
commit would run it. Celery messages are not sent: the lease rows are what drain() reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

from django.test import TestCase
from django.utils import timezone

from omoi.models import Lease


@contextmanager
def as_committed() -> Iterator[None]:
    """Run the block's on-commit callbacks at its end, with Celery's sends dropped."""
    from omoi.celery import app

    with mock.patch.object(app, "send_task", lambda *args, **kwargs: None):
        with TestCase.captureOnCommitCallbacks(execute=True):
            yield


def run_step(kind: str, object_id: int) -> str:
    with as_committed():
        if kind == "spec":
            from specs.services.steps import spec_step

            return spec_step(spec_id=object_id)
        if kind == "ticket":
            from tickets.services.execution import ticket_step

            return ticket_step(ticket_id=object_id)
    raise ValueError(f"unknown kind {kind!r}")


def waiting_steps() -> list[tuple[str, int]]:
    now = timezone.now()
    return [
        (kind, object_id)
        for kind, object_id, not_before in Lease.objects.filter(owner="")
        .order_by("enqueued_at", "id")
        .values_list("kind", "object_id", "not_before")
        if not_before is None or not_before <= now
    ]


def drain(*, limit: int = 500, kinds: tuple[str, ...] = ("spec", "ticket")) -> list[tuple[str, int, str]]:
    """Run waiting steps until none waits (or `limit` steps ran); returns (kind, id, outcome)."""
    outcomes: list[tuple[str, int, str]] = []
    while len(outcomes) < limit:
        due = [(kind, object_id) for kind, object_id in waiting_steps() if kind in kinds]
        if not due:
            return outcomes
        for kind, object_id in due:
            outcomes.append((kind, object_id, run_step(kind, object_id)))
            if len(outcomes) >= limit:
                break
    raise AssertionError(f"steps did not settle within {limit} runs; the last ones: {outcomes[-10:]}")
