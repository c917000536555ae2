"""Leases (omoi/leases.py): a unit of work is claimed by one worker at a time, only its holder
records the outcome, and a failing step backs off and ends in a visible state."""

import time
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from omoi import leases
from omoi.leases import (
    WORK_KINDS,
    LeaseLost,
    WorkKind,
    lease_claim,
    lease_release,
    work_enqueue,
    work_enqueue_many,
)
from omoi.models import Lease
from sandboxes.models import SandboxEvent
from sandboxes.services.events import event_record

TASK = "tests.tasks.probe_step_task"


@pytest.fixture
def given_up(monkeypatch):
    """A work kind "probe" whose give_up is recorded: (object id, error)."""
    calls: list[tuple[int, str]] = []
    kind = WorkKind(
        name="probe",
        task_name=TASK,
        route=lambda object_id: f"probe-{object_id % 2}",
        give_up=lambda o, e: calls.append((o, e)),
    )
    monkeypatch.setitem(WORK_KINDS, "probe", kind)
    return calls


@pytest.fixture
def sends(monkeypatch):
    """Every message omoi.leases sends (on commit or at once), with its back-off: (task, args, queue, countdown)."""
    sent: list[tuple[str, tuple, str, float | None]] = []
    monkeypatch.setattr(
        leases,
        "_send",
        lambda kind, object_id, queue, countdown=None, label="": sent.append(
            (WORK_KINDS[kind].task_name, (object_id,), queue, countdown)
        ),
    )
    return sent


def lease(object_id: int = 1) -> Lease:
    return Lease.objects.get(kind="probe", object_id=object_id)


def expire(object_id: int = 1) -> None:
    Lease.objects.filter(kind="probe", object_id=object_id).update(expires_at=timezone.now() - timedelta(seconds=1))


def enqueue(object_id: int = 1) -> bool:
    with transaction.atomic():
        return work_enqueue(kind="probe", object_id=object_id)


def test_work_enqueue_records_a_waiting_step_and_sends_it_once_on_commit(
    db, given_up, sends, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        assert enqueue(7) is True
        assert enqueue(7) is False  # already waiting: its message is on its way
        assert sends == []  # nothing leaves before the commit

    assert sends == [(TASK, (7,), "probe-1", None)]
    row = lease(7)
    assert (row.owner, row.expires_at, row.queue, row.rerun, row.claims, row.failures) == (
        "",
        None,
        "probe-1",
        False,
        0,
        0,
    )


def test_work_enqueue_of_an_unknown_kind_is_refused(db):
    with pytest.raises(ValueError, match="unknown work kind 'nope'"):
        work_enqueue(kind="nope", object_id=1)
    assert not Lease.objects.exists()


def test_work_enqueue_many_records_each_step_once_in_one_statement(
    db, given_up, sends, django_capture_on_commit_callbacks, django_assert_num_queries
):
    enqueue(2)
    with django_capture_on_commit_callbacks(execute=True), django_assert_num_queries(1):
        assert sorted(work_enqueue_many(kind="probe", object_ids=[1, 2, 3], queue="bulk")) == [1, 3]

    assert sorted(sends) == [(TASK, (1,), "bulk", None), (TASK, (3,), "bulk", None)]
    assert Lease.objects.filter(kind="probe").count() == 3


def test_a_second_claim_of_a_held_step_gets_none(db, given_up):
    enqueue()
    held = lease_claim(kind="probe", object_id=1)

    assert held is not None
    assert lease_claim(kind="probe", object_id=1) is None  # a duplicate delivery does nothing
    row = lease(1)
    assert (row.owner, row.claims) == (held.owner, 1)
    assert row.expires_at > timezone.now()
    assert lease_claim(kind="probe", object_id=2) is None  # nothing to do: no step recorded


def test_a_claim_after_expiry_succeeds_and_the_old_holders_outcome_is_lost(db, given_up):
    enqueue()
    old = lease_claim(kind="probe", object_id=1)
    expire()
    new = lease_claim(kind="probe", object_id=1)
    assert new is not None and new.owner != old.owner

    with pytest.raises(LeaseLost), transaction.atomic():
        event_record(type="probe.outcome", payload={"by": "old"})
        old.finish()

    assert not SandboxEvent.objects.exists()  # the old holder's outcome was rolled back with it
    assert old.lost.is_set()
    row = lease(1)
    assert (row.owner, row.claims) == (new.owner, 2)
    with transaction.atomic():
        event_record(type="probe.outcome", payload={"by": "new"})
        new.finish()
    assert list(SandboxEvent.objects.values_list("payload", flat=True)) == [{"by": "new"}]
    assert not Lease.objects.exists()  # done: nothing more to run


def test_work_arriving_while_the_step_runs_makes_it_run_once_more(
    db, given_up, sends, django_capture_on_commit_callbacks
):
    enqueue()
    held = lease_claim(kind="probe", object_id=1)
    held.release_local()  # from here on, the enqueue comes from elsewhere (another worker, a request)

    with django_capture_on_commit_callbacks(execute=True):
        assert enqueue() is False
    assert (sends, lease(1).rerun) == ([], True)  # nothing sent while it runs: the holder is told

    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        held.finish()

    row = lease(1)
    assert (row.owner, row.expires_at, row.rerun) == ("", None, False)  # handed to the next step
    assert sends == [(TASK, (1,), "probe-1", None)]


def test_work_the_step_itself_makes_due_hands_it_to_the_next_step(
    db, given_up, sends, django_capture_on_commit_callbacks
):
    enqueue()
    held = lease_claim(kind="probe", object_id=1)

    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        assert enqueue() is False  # this very step runs it: noted in memory, no statement
        held.finish()

    assert lease(1).owner == ""
    assert sends == [(TASK, (1,), "probe-1", None)]


def test_finish_with_more_hands_off_and_without_ends_the_step(db, given_up, sends, django_capture_on_commit_callbacks):
    enqueue()
    held = lease_claim(kind="probe", object_id=1)
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        held.finish(more=True)
    assert lease(1).owner == "" and sends == [(TASK, (1,), "probe-1", None)]

    again = lease_claim(kind="probe", object_id=1)
    with transaction.atomic():
        again.finish()
    assert not Lease.objects.exists()


def test_transient_failures_back_off_and_retry_up_to_the_cap_then_give_up(
    db, settings, given_up, sends, django_capture_on_commit_callbacks
):
    settings.OMOI_WORK_MAX_FAILURES = 3
    settings.OMOI_WORK_BACKOFF_S = 2.0
    settings.OMOI_WORK_BACKOFF_MAX_S = 3.0
    enqueue()
    delays = []
    for attempt, expected in enumerate(["retry", "retry", "gave_up"], start=1):
        held = lease_claim(kind="probe", object_id=1)
        assert held is not None, attempt
        before = timezone.now()
        with django_capture_on_commit_callbacks(execute=True):
            assert held.fail(f"connection refused \x00 #{attempt}", transient=True) == expected
        if expected == "retry":
            row = lease(1)
            assert (row.owner, row.failures, row.last_error) == ("", attempt, f"connection refused \ufffd #{attempt}")
            delays.append(sends[-1][3])
            assert row.not_before >= before + timedelta(seconds=delays[-1])
            assert lease_claim(kind="probe", object_id=1) is None  # still backing off
            Lease.objects.filter(pk=row.pk).update(not_before=timezone.now())

    assert delays == [2.0, 3.0]  # doubling, capped by OMOI_WORK_BACKOFF_MAX_S
    assert given_up == [(1, "connection refused \ufffd #3")]
    assert not Lease.objects.exists()


def test_a_permanent_failure_gives_up_at_once(db, given_up, sends):
    enqueue()
    held = lease_claim(kind="probe", object_id=1)

    assert held.fail("bad data", transient=False) == "gave_up"

    assert given_up == [(1, "bad data")]
    assert not Lease.objects.exists()
    assert held.fail("again", transient=False) == "lost"  # nothing left to fail


def test_a_step_whose_workers_keep_dying_is_given_up(db, settings, given_up):
    settings.OMOI_WORK_MAX_CLAIMS = 2
    enqueue()
    assert lease_claim(kind="probe", object_id=1) is not None
    expire()
    assert lease_claim(kind="probe", object_id=1) is not None
    expire()

    assert lease_claim(kind="probe", object_id=1) is None

    assert given_up == [(1, "a worker was lost 2 times running this step")]
    assert not Lease.objects.exists()


def test_lease_release_forgets_a_step(db, given_up):
    enqueue()
    lease_release(kind="probe", object_id=1)
    assert lease_claim(kind="probe", object_id=1) is None


def test_the_heartbeat_renews_the_expiry_while_the_step_runs(transactional_db, settings, given_up, sends):
    settings.OMOI_LEASE_S = 0.6
    enqueue()
    held = lease_claim(kind="probe", object_id=1)
    first_expiry = lease(1).expires_at

    with held.heartbeat():
        time.sleep(1.0)  # longer than the lease: only the heartbeat keeps it
        assert lease(1).expires_at > first_expiry
        assert lease_claim(kind="probe", object_id=1) is None
        held.check()

    with transaction.atomic():
        held.finish()
    assert not Lease.objects.exists()


def test_the_heartbeat_notices_a_lease_taken_over_and_the_holder_stops(transactional_db, settings, given_up, sends):
    settings.OMOI_LEASE_S = 0.3
    enqueue()
    held = lease_claim(kind="probe", object_id=1)

    with held.heartbeat():
        Lease.objects.filter(kind="probe", object_id=1).update(owner="another-worker")
        deadline = time.monotonic() + 5
        while not held.lost.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(LeaseLost):
            held.check()

    assert lease(1).owner == "another-worker"
