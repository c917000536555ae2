"""Live event streams: a spec's SandboxEvent rows as Server-Sent Events.

Workers commit events (`sandboxes.services.events.event_record`); a stream reads them back from
the database, so it works on every stack, the embedded default included.

Idle streams must cost next to nothing, so a stream never polls by itself. Each server process
runs ONE poller (an asyncio task of its event loop) that reads the new events of every spec that
has a listener, in one query per interval, keeps the recent ones in a buffer per spec, and wakes
that spec's listeners. Between polls nobody holds a database connection: every read runs in a
worker thread that closes its connection when it is done. A listener that starts further back
than the buffer reads its backlog itself, page by page, once.

Sequences grow by one per spec in commit order (`event_record` takes the spec's counter row
lock), so a listener resumes after the last sequence it saw with no gap and no duplicate. The
poller still accepts only the next sequence of each spec and waits a moment at a hole, so a
change of the writers cannot silently skip an event.

A stream ends once its spec is settled, as told by the `settled` function the caller passes
(the specs app knows what "final" means; this app does not import it), after every event has
been delivered: the last frame is an `end` event.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from django.db.models import Q

from sandboxes.models import SandboxEvent

logger = logging.getLogger(__name__)

# Given spec ids, answers the settled ones with their status: {spec_id: "completed", ...}.
SettledCheck = Callable[[list[int]], dict[int, str]]

POLL_ROWS = 1000  # events read per poll, over all specs; a full page polls again at once
BACKLOG_ROWS = 500  # events read per backlog page by a listener that starts far back
BUFFER_EVENTS = 2000  # recent events kept per spec, so reconnecting listeners read no backlog
FRAMES_PER_WRITE = 200
LINGER_S = 30.0  # a spec without listeners stays followed this long, for quick reconnects
STATUS_EVERY_S = 10.0  # settledness is re-read at least this often, besides after every event
GAP_WAIT_S = 5.0  # how long a hole in the sequences is waited for before it is stepped over
RETRY_MS = 2000  # the reconnection delay a browser's EventSource is told to use

EVENT_FIELDS = ("spec_id", "sequence", "type", "payload", "created_at", "ticket_id", "task_id")


def event_data(row: dict[str, Any]) -> dict[str, Any]:
    """An event as the REST API shows it (`GET /specs/{id}/events`)."""
    created = row["created_at"]
    return {
        "sequence": row["sequence"],
        "type": row["type"],
        "payload": row["payload"],
        "created_at": created.isoformat().replace("+00:00", "Z") if created else None,
        "ticket": row["ticket_id"],
        "task": row["task_id"],
    }


def _line(value: str) -> str:
    """One field value of an SSE frame: a line break would end the field, so none gets through."""
    return value.replace("\r", " ").replace("\n", " ")


def sse_frame(*, sequence: int, type: str, data: dict[str, Any]) -> bytes:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    return f"id: {sequence}\nevent: {_line(type)}\ndata: {body}\n\n".encode()


def sse_comment(text: str) -> bytes:
    return f": {_line(text)}\n\n".encode()


def sse_end(*, status: str = "", sequence: int) -> bytes:
    """The last frame: an `end` event with no `id:`, so it does not move a client's position."""
    body = json.dumps({"status": status, "last_sequence": sequence}, separators=(",", ":"))
    return f"event: end\ndata: {body}\n\n".encode()


# --- Database reads (in a worker thread; the connection is closed before returning) ------------


def _closing(function):
    def run(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        finally:
            connections.close_all()

    return run


def _read_new(cursors: dict[int, int], limit: int) -> list[dict[str, Any]]:
    condition = Q()
    for spec_id, cursor in cursors.items():
        condition |= Q(spec_id=spec_id, sequence__gt=cursor)
    rows = SandboxEvent.objects.filter(condition).order_by("spec_id", "sequence").values(*EVENT_FIELDS)
    return list(rows[:limit])


def _poll(
    cursors: dict[int, int], limit: int, checks: dict[int, SettledCheck], due: set[int]
) -> tuple[list[dict[str, Any]], set[int], dict[int, str]]:
    """One poll: the new events of the followed specs; then, for the specs that got events and
    those due, whether they are settled. Settledness is read after the events, so an event
    committed in between is found by the next poll's read."""
    rows = _read_new(cursors, limit)
    asked = due | {row["spec_id"] for row in rows}
    by_check: dict[SettledCheck, list[int]] = {}
    for spec_id in sorted(asked):
        by_check.setdefault(checks[spec_id], []).append(spec_id)
    settled: dict[int, str] = {}
    for check, spec_ids in by_check.items():
        settled.update(check(spec_ids))
    return rows, asked, settled


def _read_backlog(spec_id: int, after: int, upto: int, limit: int) -> list[dict[str, Any]]:
    rows = SandboxEvent.objects.filter(spec_id=spec_id, sequence__gt=after, sequence__lte=upto)
    return list(rows.order_by("sequence").values(*EVENT_FIELDS)[:limit])


async def _in_thread(function, *args):
    """Run a database read off the event loop, in a thread of its own that closes its
    connection afterwards: no stream holds a connection while it waits."""
    return await sync_to_async(_closing(function), thread_sensitive=False)(*args)


# --- The broker -------------------------------------------------------------------------------


@dataclass(eq=False)
class Topic:
    """What the process follows of one spec: the recent frames, contiguous from `base + 1` to
    `cursor`, and the listeners' wake-up signal."""

    spec_id: int
    base: int
    settled_check: SettledCheck
    frames: list[bytes] = field(default_factory=list)
    listeners: int = 0
    idle_since: float | None = None
    status_read_at: float | None = None
    final_poll: int | None = None  # the poll whose status read last found the spec final
    settled: bool = False
    status: str = ""
    gap_since: float | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def cursor(self) -> int:
        return self.base + len(self.frames)

    def append(self, sequence: int, frame: bytes) -> None:
        if sequence != self.cursor + 1:
            # Stepping over a hole: restart the buffer after it (listeners behind read backlog).
            self.frames, self.base = [], sequence - 1
        self.frames.append(frame)
        if len(self.frames) > BUFFER_EVENTS * 3 // 2:
            drop = len(self.frames) - BUFFER_EVENTS
            self.frames, self.base = self.frames[drop:], self.base + drop

    def frames_after(self, sequence: int) -> list[bytes]:
        start = max(sequence - self.base, 0)
        return self.frames[start : start + FRAMES_PER_WRITE]

    def notify(self) -> None:
        waking, self.changed = self.changed, asyncio.Event()
        waking.set()


class EventBroker:
    """The streams of one event loop (one server process): its topics and its single poller."""

    def __init__(self, *, poll_s: float | None = None, keepalive_s: float | None = None) -> None:
        self.poll_s = poll_s if poll_s is not None else settings.OMOI_STREAM_POLL_S
        self.keepalive_s = keepalive_s if keepalive_s is not None else settings.OMOI_STREAM_KEEPALIVE_S
        self.topics: dict[int, Topic] = {}
        self.polls = 0
        self._poller: asyncio.Task | None = None
        self._wake = asyncio.Event()

    # listeners

    async def listen(self, *, spec_id: int, after: int, latest: int, settled: SettledCheck) -> AsyncIterator[bytes]:
        """The SSE frames of the spec's events after sequence `after`, then an `end` frame once
        the spec is settled; a comment every keep-alive interval while nothing happens. `latest`
        is the spec's last sequence when the request came: a spec is never followed from beyond
        it, so an `after` from the future cannot make the poller skip events others wait for."""
        topic = self._join(spec_id, min(after, latest), settled)
        last = after
        try:
            yield f"retry: {RETRY_MS}\n\n".encode()
            while True:
                if last < topic.base:
                    rows = await _in_thread(_read_backlog, spec_id, last, topic.base, BACKLOG_ROWS)
                    if not rows:  # the rows are gone (the spec was deleted): go on from the buffer
                        last = topic.base
                        continue
                    last = rows[-1]["sequence"]
                    yield b"".join(sse_frame(sequence=r["sequence"], type=r["type"], data=event_data(r)) for r in rows)
                    continue
                frames = topic.frames_after(last)
                if frames:
                    last += len(frames)
                    yield b"".join(frames)
                    continue
                if topic.settled:
                    yield sse_end(status=topic.status, sequence=last)
                    return
                waiter = topic.changed
                try:
                    await asyncio.wait_for(waiter.wait(), timeout=self.keepalive_s)
                except TimeoutError:
                    yield sse_comment("keep-alive")
        finally:
            self._leave(topic)

    def _join(self, spec_id: int, after: int, settled: SettledCheck) -> Topic:
        topic = self.topics.get(spec_id)
        if topic is None:
            topic = self.topics[spec_id] = Topic(spec_id=spec_id, base=after, settled_check=settled)
        topic.listeners += 1
        topic.idle_since = None
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._run(), name="omoi-event-poller")
        self._wake.set()
        return topic

    def _leave(self, topic: Topic) -> None:
        topic.listeners -= 1
        if topic.listeners <= 0:
            topic.idle_since = time.monotonic()

    # the poller

    async def _run(self) -> None:
        while self.topics:
            self._wake.clear()
            try:
                full = await self.poll_once()
            except Exception:
                logger.exception("the event poller failed; trying again")
                full = False
                await asyncio.sleep(self.poll_s * 4)
            if full:
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_s)
            except TimeoutError:
                pass
        self._poller = None

    async def poll_once(self) -> bool:
        """One poll for every followed spec; True when the page was full (poll again at once)."""
        now = time.monotonic()
        for spec_id, topic in list(self.topics.items()):
            if topic.listeners <= 0 and topic.idle_since is not None and now - topic.idle_since > LINGER_S:
                del self.topics[spec_id]
        if not self.topics:
            return False
        topics = dict(self.topics)
        due = {
            spec_id
            for spec_id, topic in topics.items()
            if topic.status_read_at is None or now - topic.status_read_at > STATUS_EVERY_S
        }
        checks = {spec_id: topic.settled_check for spec_id, topic in topics.items()}
        cursors = {spec_id: topic.cursor for spec_id, topic in topics.items()}
        rows, asked, settled = await _in_thread(_poll, cursors, POLL_ROWS, checks, due)
        self.polls += 1
        poll = self.polls
        changed = self._apply(topics, rows, now)
        with_rows = {row["spec_id"] for row in rows}
        for spec_id in asked:
            topic = topics[spec_id]
            topic.status_read_at = now
            if spec_id in settled:
                topic.status = settled[spec_id]
                if topic.final_poll is None or spec_id in with_rows:
                    topic.final_poll = poll
            else:
                topic.final_poll = None
        for spec_id, topic in topics.items():
            # Settled: found final by an earlier poll, and this later read brought nothing new.
            settled_now = topic.final_poll is not None and topic.final_poll < poll and spec_id not in with_rows
            if settled_now != topic.settled:
                topic.settled = settled_now
                changed.add(topic)
        for topic in changed:
            topic.notify()
        return len(rows) >= POLL_ROWS

    def _apply(self, topics: dict[int, Topic], rows: Iterable[dict[str, Any]], now: float) -> set[Topic]:
        changed: set[Topic] = set()
        held: set[int] = set()
        for row in rows:
            topic = topics[row["spec_id"]]
            sequence = row["sequence"]
            if sequence <= topic.cursor or topic.spec_id in held:
                continue
            if sequence != topic.cursor + 1:
                topic.gap_since = topic.gap_since or now
                if now - topic.gap_since < GAP_WAIT_S:
                    held.add(topic.spec_id)
                    continue
                logger.warning(
                    "spec %s: events %s..%s never appeared; streaming on from %s",
                    topic.spec_id,
                    topic.cursor + 1,
                    sequence - 1,
                    sequence,
                )
            topic.gap_since = None
            topic.append(sequence, sse_frame(sequence=sequence, type=row["type"], data=event_data(row)))
            changed.add(topic)
        return changed


_brokers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, EventBroker] = weakref.WeakKeyDictionary()


def broker() -> EventBroker:
    """The broker of the running event loop: one per server process (uvicorn runs one loop)."""
    loop = asyncio.get_running_loop()
    found = _brokers.get(loop)
    if found is None:
        found = _brokers[loop] = EventBroker()
    return found


def spec_event_snapshot(*, spec_id: int, after: int, settled: SettledCheck) -> Iterator[bytes]:
    """The stream's body under WSGI (runserver, in-process clients), where a response holds a
    thread for as long as it lasts: the events there are now, then `end` if the spec is settled,
    then the response ends and an EventSource reconnects after `retry` with Last-Event-ID. Reads
    the settledness first, so an event written meanwhile is sent before any `end`."""
    status = settled([spec_id]).get(spec_id)
    yield f"retry: {RETRY_MS}\n\n".encode()
    last = after
    while True:
        rows = _read_backlog(spec_id, last, 2**62, BACKLOG_ROWS)
        if not rows:
            break
        last = rows[-1]["sequence"]
        yield b"".join(sse_frame(sequence=r["sequence"], type=r["type"], data=event_data(r)) for r in rows)
    if status is not None:
        yield sse_end(status=status, sequence=last)


async def spec_event_stream(*, spec_id: int, after: int, latest: int, settled: SettledCheck) -> AsyncIterator[bytes]:
    """The response body of `GET /specs/{id}/stream`. It first lets go of the database
    connection the request's view used (the view runs in this request's own thread), so an open
    stream holds no connection."""
    await sync_to_async(connections.close_all)()
    async for chunk in broker().listen(spec_id=spec_id, after=after, latest=latest, settled=settled):
        yield chunk
