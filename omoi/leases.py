"""Durable work: leases on units of work, so a lost message or a killed worker costs at most a lease
period and nothing runs twice.

A unit of work is "the next step of object X of kind K" (a spec's, a ticket's). Its life:

    work_enqueue(kind, id)      in the transaction that made the work due: a Lease row (waiting), and
                                the kind's Celery task sent on commit. Already waiting: nothing more.
                                Already running: `rerun` is set, so the holder runs once more.
    lease_claim(kind, id)       the Celery task claims the row (owner, expiry). A second delivery finds
                                it held (or gone, when the work is done) and does nothing.
    with held.heartbeat():      the slow part (a model call, commands, git, GitHub) runs outside every
                                row lock while a thread renews the expiry.
    held.finish(more=...)       inside the short transaction that records the outcome: checks that the
                                lease is still ours (else LeaseLost rolls the outcome back), then
                                deletes the row, or hands it to the next step (waiting, sent on commit).
    held.fail(error)            a failure: transient ones back off and retry, up to a cap; then the
                                kind's give_up puts the object into a visible failed state.

The reconciler (omoi/reconcile.py) sends again every row whose expiry passed or that waited too long.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, connections, transaction
from django.db.models import Q
from django.utils import timezone

from omoi.models import Lease
from omoi.nodes import current_incarnation, current_node, lease_owner_prefix

logger = logging.getLogger(__name__)


class LeaseLost(Exception):
    """The lease expired and was claimed by another worker: this holder's outcome must not count."""


@dataclass(frozen=True)
class WorkKind:
    """How to run and route one kind of work. `task_name` is a Celery task taking the object id;
    `route` answers the queue for an object ("" = the task's own route; a node's queue when the work
    needs that node's disk); `give_up` puts an object whose step failed too often into a visible
    state (it runs inside a transaction); `lock` locks the object's own row. Code that changes an
    object locks its row and then enqueues its work (the lease row), so a holder recording its
    outcome takes them in the same order: the object, then the lease (no deadlock between them).
    `describe` names the objects' next steps for people."""

    name: str
    task_name: str
    route: Callable[[int], str]
    give_up: Callable[[int, str], None]
    lock: Callable[[int], None] | None = None
    # What the next step of each object is, in words, in one query: shown by Flower as the task's
    # arguments (the message's argsrepr), e.g. "spec 3 planning design".
    describe: Callable[[list[int]], dict[int, str]] | None = None


WORK_KINDS: dict[str, WorkKind] = {}


def work_kind_register(kind: WorkKind) -> None:
    WORK_KINDS[kind.name] = kind


def lease_seconds() -> float:
    return float(settings.OMOI_LEASE_S)


def work_labels(kind: str, object_ids: list[int]) -> dict[int, str]:
    """What each object's step is, in words, for the people who read the task lists of the broker
    and Flower: "spec 3 planning design", "ticket 7 TSK-002 IMPLEMENTATION implement_feature". One
    query for all of them. A label that cannot be read falls back to "spec 3": a label is never
    worth a lost message."""
    labels: dict[int, str] = {}
    work = WORK_KINDS.get(kind)
    if work is not None and work.describe is not None:
        try:
            labels = work.describe(list(object_ids))
        except Exception:  # noqa: BLE001 — the message goes out whatever happened to its label
            logger.warning("no label for the %s steps of %s", kind, list(object_ids), exc_info=True)
    return {object_id: labels.get(object_id) or f"{kind} {object_id}" for object_id in object_ids}


def _send(kind: str, object_id: int, queue: str, countdown: float | None = None, *, label: str = "") -> None:
    from omoi.celery import app

    work = WORK_KINDS[kind]
    options: dict = {"argsrepr": label or work_labels(kind, [object_id])[object_id], "kwargsrepr": ""}
    if queue:
        options["queue"] = queue
    if countdown:
        options["countdown"] = countdown
    app.send_task(work.task_name, args=[object_id], **options)


def _send_on_commit(kind: str, object_id: int, queue: str, countdown: float | None = None) -> None:
    transaction.on_commit(lambda: _send(kind, object_id, queue, countdown), robust=True)


_UPSERT_SQL = """
INSERT INTO omoi_lease (kind, object_id, queue, owner, enqueued_at, rerun, token, claims, failures, last_error,
                        created_at)
VALUES (%s, %s, %s, '', %s, %s, %s, 0, 0, '', %s)
ON CONFLICT (kind, object_id) DO UPDATE
SET rerun = CASE WHEN omoi_lease.owner <> '' THEN %s ELSE omoi_lease.rerun END
RETURNING token
"""


_CLAIM_SQL = """
UPDATE omoi_lease SET owner = %s, expires_at = %s, claims = claims + 1, rerun = %s
WHERE kind = %s AND object_id = %s
  AND ((owner = '' AND (not_before IS NULL OR not_before <= %s)) OR (owner <> '' AND expires_at < %s))
RETURNING claims
"""


_holding = threading.local()


def _held_here(kind: str, object_id: int) -> Held | None:
    return getattr(_holding, "leases", {}).get((kind, object_id))


def work_enqueue(*, kind: str, object_id: int, queue: str | None = None) -> bool:
    """Record that `kind:object_id` has work to do and send its task after commit. Idempotent: a
    step already waiting is not sent twice, and a step running now is told to run again (`rerun`;
    when this very thread runs it, in memory: the step looks at its object again before it ends).
    One statement. Returns True when a new step was recorded (and will be sent)."""
    if kind not in WORK_KINDS:
        raise ValueError(f"unknown work kind {kind!r}")
    held = _held_here(kind, object_id)
    if held is not None:
        held.more_work = True
        return False
    if queue is None:
        queue = WORK_KINDS[kind].route(object_id)
    now = timezone.now()
    token = uuid.uuid4().hex
    true = True
    with connection.cursor() as cursor:
        cursor.execute(_UPSERT_SQL, [kind, object_id, queue, now, False, token, now, true])
        returned = cursor.fetchone()[0]
    inserted = returned == token
    if inserted:
        _send_on_commit(kind, object_id, queue)
    return inserted


def work_enqueue_many(*, kind: str, object_ids: list[int], queue: str | None = None) -> list[int]:
    """`work_enqueue` for many objects in one statement (the bridge starting a spec's tickets).
    Objects whose step already exists are left to it. Returns the ids recorded (and sent)."""
    if not object_ids:
        return []
    if kind not in WORK_KINDS:
        raise ValueError(f"unknown work kind {kind!r}")
    now = timezone.now()
    routes = {object_id: queue if queue is not None else WORK_KINDS[kind].route(object_id) for object_id in object_ids}
    values = ", ".join(["(%s, %s, %s, '', %s, %s, '', 0, 0, '', %s)"] * len(object_ids))
    params: list = []
    for object_id in object_ids:
        params += [kind, object_id, routes[object_id], now, False, now]
    sql = (
        "INSERT INTO omoi_lease (kind, object_id, queue, owner, enqueued_at, rerun, token, claims, failures, "
        f"last_error, created_at) VALUES {values} ON CONFLICT (kind, object_id) DO NOTHING RETURNING object_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        inserted = [int(row[0]) for row in cursor.fetchall()]
    if inserted:

        def send_all() -> None:
            labels = work_labels(kind, inserted)  # one query for the labels of all
            for object_id in inserted:
                try:
                    _send(kind, object_id, routes[object_id], label=labels[object_id])
                except Exception:  # noqa: BLE001 — as a robust on_commit: the reconciler sends it again
                    logger.exception("sending the %s step of %s failed", kind, object_id)

        transaction.on_commit(send_all, robust=True)
    return inserted


def _owner_name() -> str:
    node = current_node()
    prefix = lease_owner_prefix(node, current_incarnation()) if node else "process:"
    return f"{prefix}{os.getpid()}:{uuid.uuid4().hex[:8]}"


def leases_of_lost_incarnations(*, node: str, incarnation: str, restarted: bool = True) -> int:
    """Steps held by earlier incarnations of `node` (it was restarted: they are dead) go back to
    waiting and are sent again now, and, when the node ran before (`restarted`), so is every waiting
    step. Returns how many."""
    stale = Lease.objects.filter(owner__startswith=f"{node}#").exclude(
        owner__startswith=lease_owner_prefix(node, incarnation)
    )
    now = timezone.now()
    handed = 0
    for lease in list(stale):
        updated = Lease.objects.filter(pk=lease.pk, owner=lease.owner).update(
            owner="", expires_at=None, enqueued_at=now
        )
        if updated:
            _send(
                lease.kind,
                lease.object_id,
                WORK_KINDS[lease.kind].route(lease.object_id) if lease.kind in WORK_KINDS else lease.queue,
            )
            handed += 1
    # Steps whose message the dead incarnation had taken from the broker but not yet claimed wait
    # with no message anywhere (Redis gives an unacknowledged message back only after its
    # visibility timeout): send every waiting step again, however recently it was sent (the one
    # sent just before the crash is the likeliest to have been taken); a duplicate is harmless.
    waiting = Lease.objects.filter(owner="", enqueued_at__lt=now) if restarted else Lease.objects.none()
    for lease in waiting.order_by("enqueued_at")[:1000]:
        if lease.not_before is None or lease.not_before <= now:
            lease_resend(lease)
            handed += 1
    if handed:
        logger.info("node %s restarted: %d steps of its previous run handed back or sent again", node, handed)
    return handed


class Held:
    """A claimed lease. Use `heartbeat()` around slow work, then `finish()` inside the outcome's
    transaction, or `fail()`."""

    def __init__(self, *, kind: str, object_id: int, owner: str, ttl: float) -> None:
        self.kind = kind
        self.object_id = object_id
        self.owner = owner
        self.ttl = ttl
        self.lost = threading.Event()
        self.more_work = False  # work was enqueued for this object by this step itself
        self._done = False
        leases = getattr(_holding, "leases", None)
        if leases is None:
            leases = _holding.leases = {}
        leases[(kind, object_id)] = self

    def _forget(self) -> None:
        getattr(_holding, "leases", {}).pop((self.kind, self.object_id), None)

    def __repr__(self) -> str:
        return f"Held({self.kind}:{self.object_id} by {self.owner})"

    def _mine(self):
        return Lease.objects.filter(kind=self.kind, object_id=self.object_id, owner=self.owner)

    def _lock_object(self) -> None:
        lock = WORK_KINDS[self.kind].lock
        if lock is not None:
            lock(self.object_id)

    def renew(self) -> bool:
        """Push the expiry forward; False (and `lost` set) when the lease is no longer ours."""
        renewed = self._mine().update(expires_at=timezone.now() + timedelta(seconds=self.ttl))
        if not renewed:
            self.lost.set()
        return bool(renewed)

    @contextmanager
    def heartbeat(self) -> Iterator[Held]:
        """Renew the lease every third of its period from a thread while the block runs (a model
        call or a command may take minutes). The thread opens a database connection only if the
        block outlives the first period, and closes it when it stops."""
        stop = threading.Event()

        def beat() -> None:
            try:
                while not stop.wait(self.ttl / 3):
                    try:
                        if not self.renew():
                            return
                    except Exception:  # a database blip: the next beat tries again
                        logger.warning("lease %s: heartbeat failed", self, exc_info=True)
            finally:
                connections.close_all()

        thread = threading.Thread(target=beat, name=f"lease-{self.kind}-{self.object_id}", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join(timeout=5)

    def release_local(self) -> None:
        """Stop answering for this object in this thread (the step ended without finish/fail)."""
        self._forget()

    def check(self) -> None:
        """Raise LeaseLost when the heartbeat found the lease gone (stop before doing more)."""
        if self.lost.is_set():
            raise LeaseLost(f"{self.kind}:{self.object_id}")

    def assert_mine(self) -> None:
        """Inside an outcome's transaction: lock the lease row and make sure it is still ours
        (LeaseLost otherwise, which rolls the outcome back). The step goes on; `finish` ends it."""
        if not self._mine().select_for_update().exists():
            self.lost.set()
            raise LeaseLost(f"{self.kind}:{self.object_id}")

    def finish(self, *, more: bool = False, object_locked: bool = False) -> None:
        """Inside the outcome's transaction: make sure the lease is still ours (LeaseLost otherwise,
        which rolls the outcome back), then end it, or, with `more` (or when more work arrived
        meanwhile), hand it to the next step, sent on commit. The object's row is locked first
        (`object_locked`: the caller's transaction has locked it already). One statement on the
        lease in the common cases (the row it changes is the check)."""
        if not object_locked:
            self._lock_object()
        ended = False
        if not (more or self.more_work):
            ended = bool(self._mine().filter(rerun=False).delete()[0])  # else: ours with `rerun`, or lost
        if not ended:
            queue = WORK_KINDS[self.kind].route(self.object_id)
            handed = self._mine().update(
                owner="",
                expires_at=None,
                enqueued_at=timezone.now(),
                not_before=None,
                rerun=False,
                claims=0,
                failures=0,
                last_error="",
                queue=queue,
            )
            if not handed:
                self.lost.set()
                raise LeaseLost(f"{self.kind}:{self.object_id}")
            _send_on_commit(self.kind, self.object_id, queue)
        self._done = True
        self._forget()

    def fail(self, error: str, *, transient: bool) -> str:
        """Record a failed step. A transient failure (a connection, a timeout, a rate limit) waits
        and runs again, with back-off, at most OMOI_WORK_MAX_FAILURES times in a row; anything else,
        or the cap reached, gives up: the kind's give_up records the failure where people look.
        Returns "retry", "gave_up" or "lost"."""
        from omoi.text import storable

        self._forget()
        error = storable(error, 4000)
        with transaction.atomic():
            self._lock_object()
            row = self._mine().select_for_update().values("failures").first()
            if row is None:
                return "lost"
            failures = row["failures"] + 1
            if transient and failures < settings.OMOI_WORK_MAX_FAILURES:
                delay = min(settings.OMOI_WORK_BACKOFF_S * 2 ** (failures - 1), settings.OMOI_WORK_BACKOFF_MAX_S)
                queue = WORK_KINDS[self.kind].route(self.object_id)
                self._mine().update(
                    owner="",
                    expires_at=None,
                    failures=failures,
                    last_error=error,
                    not_before=timezone.now() + timedelta(seconds=delay),
                    enqueued_at=timezone.now(),
                    queue=queue,
                )
                _send_on_commit(self.kind, self.object_id, queue, countdown=delay)
                return "retry"
            WORK_KINDS[self.kind].give_up(self.object_id, error)
            self._mine().delete()
            return "gave_up"


def lease_claim(*, kind: str, object_id: int, create: bool = False) -> Held | None:
    """Claim the step of `kind:object_id`: it must be waiting (and past its back-off) or its
    holder's lease must have expired. None when another worker holds it or there is nothing to do
    (a duplicate delivery, or work already finished). A step claimed too many times (workers keep
    dying on it) is given up."""
    now = timezone.now()
    owner = _owner_name()
    ttl = lease_seconds()
    if create:
        # A step run here and now (an API request): a lease row of our own when there is none.
        Lease.objects.bulk_create(
            [
                Lease(
                    kind=kind,
                    object_id=object_id,
                    owner="",
                    enqueued_at=now,
                    queue=WORK_KINDS[kind].route(object_id) if kind in WORK_KINDS else "",
                )
            ],
            ignore_conflicts=True,
        )
    # Due: waiting (and past its back-off), or held by someone whose lease expired. One statement
    # claims it and answers how often it was claimed.
    at = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL, [owner, at(now + timedelta(seconds=ttl)), False, kind, object_id, at(now), at(now)])
        row = cursor.fetchone()
    if row is None:
        return None
    held = Held(kind=kind, object_id=object_id, owner=owner, ttl=ttl)
    claims = row[0]
    if claims > settings.OMOI_WORK_MAX_CLAIMS:
        held.fail(f"a worker was lost {claims - 1} times running this step", transient=False)
        return None
    return held


def lease_release(*, kind: str, object_id: int) -> None:
    """Forget the step of an object that needs no more work (a cancelled spec)."""
    Lease.objects.filter(kind=kind, object_id=object_id).delete()


def leases_due(*, now=None, limit: int = 500) -> list[Lease]:
    """Steps to send again: held past their expiry (a killed worker), or waiting longer than a
    lease period past their back-off (a lost message). Each is sent at most once a lease period."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=lease_seconds())
    expired = Q(owner__gt="", expires_at__lt=now)
    waiting = Q(owner="") & (Q(not_before__isnull=True) | Q(not_before__lte=now))
    return list(Lease.objects.filter(expired | waiting, enqueued_at__lt=stale).order_by("enqueued_at")[:limit])


def lease_resend(lease: Lease) -> None:
    """Send a due step's message again (to its kind's current route) and note when."""
    if lease.kind not in WORK_KINDS:
        return
    queue = WORK_KINDS[lease.kind].route(lease.object_id)
    Lease.objects.filter(pk=lease.pk).update(enqueued_at=timezone.now(), queue=queue)
    _send(lease.kind, lease.object_id, queue)
