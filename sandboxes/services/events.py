"""The event stream. Every step of planning and execution records an event here; a client
resumes a spec's stream with `after=N` because sequences grow by one per spec, with no gaps.

Call `event_record` inside the transaction that made the change it describes, so that an event
exists exactly when its change does. Inside `events_batch()` the events of a block are buffered and
written at its end in bulk: per spec, one counter statement takes a whole range of sequence
numbers (`INSERT … ON CONFLICT … DO UPDATE … RETURNING`) and one INSERT writes the rows; on
PostgreSQL a batch of one spec's events is a single statement doing both. The counter row stays
locked until the transaction commits, which keeps each spec's sequence ordered and gap-free across
concurrent writers.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

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


# A batch of one spec's events on PostgreSQL: the counter's range and the rows in one statement.
_BATCH_SQL = """
WITH counter AS (
    INSERT INTO sandboxes_eventcounter (spec_id, last_sequence) VALUES (%(spec)s, %(count)s)
    ON CONFLICT (spec_id) DO UPDATE SET last_sequence = sandboxes_eventcounter.last_sequence + %(count)s
    RETURNING last_sequence
)
INSERT INTO sandboxes_sandboxevent (sandbox_id, spec_id, ticket_id, task_id, type, payload, sequence, created_at)
SELECT item.sandbox_id, %(spec)s, item.ticket_id, item.task_id, item.type, item.payload::jsonb,
       counter.last_sequence - %(count)s + item.ordinal, %(now)s
FROM counter,
     unnest(%(sandboxes)s::bigint[], %(tickets)s::bigint[], %(tasks)s::bigint[], %(types)s::text[],
            %(payloads)s::text[]) WITH ORDINALITY AS item(sandbox_id, ticket_id, task_id, type, payload, ordinal)
"""


def _write_batch(pending: list[_Pending]) -> None:
    """Write a batch's events (inside its transaction): one statement when they are one spec's on
    PostgreSQL, else as `_write` does."""
    spec_ids = {item.spec_id for item in pending}
    if connection.vendor != "postgresql" or len(spec_ids) != 1 or None in spec_ids:
        _write(pending)
        return
    params = {
        "spec": spec_ids.pop(),
        "count": len(pending),
        "now": timezone.now(),
        "sandboxes": [item.sandbox_id for item in pending],
        "tickets": [item.ticket_id for item in pending],
        "tasks": [item.task_id for item in pending],
        "types": [item.type for item in pending],
        "payloads": [json.dumps(storable_json(item.payload)) for item in pending],
    }
    with connection.cursor() as cursor:
        cursor.execute(_BATCH_SQL, params)


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
            _write_batch(items)


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
