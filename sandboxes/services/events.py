"""The event stream. Every step of planning and execution records an event here; a client
resumes a spec's stream with `after=N` because sequences grow by one per spec, with no gaps.

Call `event_record` inside the transaction that made the change it describes, so that an event
exists exactly when its change does. Inside `events_batch()` the events of a block are buffered and
written at its end in bulk: per spec, one counter statement takes a whole range of sequence
numbers (`INSERT … ON CONFLICT … DO UPDATE … RETURNING`) and one INSERT writes the rows. The
counter row stays locked until the transaction commits, which keeps each spec's sequence ordered and
gap-free across concurrent writers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction

from omoi.text import storable, storable_json
from sandboxes.models import SandboxEvent

PAYLOAD_TEXT_LIMIT = 4000


def truncate_text(text: str, limit: int = PAYLOAD_TEXT_LIMIT) -> str:
    return storable(text, limit)


@dataclass
class _Pending:
    type: str
    payload: dict[str, Any]
    spec_id: int | None
    ticket_id: int | None
    task_id: int | None
    sandbox_id: int | None


_buffer = threading.local()

_COUNTER_SQL = """
INSERT INTO sandboxes_eventcounter (spec_id, last_sequence) VALUES (%s, %s)
ON CONFLICT (spec_id) DO UPDATE SET last_sequence = sandboxes_eventcounter.last_sequence + %s
RETURNING last_sequence
"""


def _take_sequences(spec_id: int, count: int) -> int:
    """Reserve `count` sequence numbers of the spec's stream; returns the last one."""
    with connection.cursor() as cursor:
        cursor.execute(_COUNTER_SQL, [spec_id, count, count])
        return int(cursor.fetchone()[0])


def _write(pending: list[_Pending]) -> list[SandboxEvent]:
    by_spec: dict[int, int] = {}
    for item in pending:
        if item.spec_id is not None:
            by_spec[item.spec_id] = by_spec.get(item.spec_id, 0) + 1
    next_sequence: dict[int, int] = {}
    for spec_id in sorted(by_spec):  # a fixed order, so two writers of several specs cannot deadlock
        last = _take_sequences(spec_id, by_spec[spec_id])
        next_sequence[spec_id] = last - by_spec[spec_id] + 1
    rows = []
    for item in pending:
        sequence = None
        if item.spec_id is not None:
            sequence = next_sequence[item.spec_id]
            next_sequence[item.spec_id] += 1
        rows.append(
            SandboxEvent(
                type=item.type,
                payload=storable_json(item.payload),
                spec_id=item.spec_id,
                ticket_id=item.ticket_id,
                task_id=item.task_id,
                sandbox_id=item.sandbox_id,
                sequence=sequence,
            )
        )
    return SandboxEvent.objects.bulk_create(rows)


@contextmanager
def events_batch() -> Iterator[None]:
    """A transaction whose events are buffered and written in bulk at its end, inside it (so an
    event still exists exactly when its change does). Nested blocks join the outer one."""
    outer = getattr(_buffer, "items", None)
    if outer is not None:
        mark = len(outer)
        try:
            with transaction.atomic():
                yield
        except BaseException:
            del outer[mark:]  # the block's changes were rolled back: so are its events
            raise
        return
    with transaction.atomic():
        _buffer.items = []
        try:
            yield
            items = _buffer.items
        finally:
            _buffer.items = None
        if items:
            _write(items)


def event_record(
    *,
    type: str,
    payload: dict[str, Any] | None = None,
    spec_id: int | None = None,
    ticket_id: int | None = None,
    task_id: int | None = None,
    sandbox_id: int | None = None,
) -> SandboxEvent | None:
    """Record one event (buffered inside `events_batch()`, then None is returned)."""
    item = _Pending(
        type=type,
        payload=payload or {},
        spec_id=spec_id,
        ticket_id=ticket_id,
        task_id=task_id,
        sandbox_id=sandbox_id,
    )
    items = getattr(_buffer, "items", None)
    if items is not None:
        items.append(item)
        return None
    with transaction.atomic():
        return _write([item])[0]
