"""Event writes per second, from 1 and from 4 processes on one spec, against a bulk INSERT baseline.

    python bench/events.py [--events 5000] [--batch 10]

Each process writes --events events in transactions of --batch events (a turn's worth), all on the
same spec: Omoi's way is `event_record` inside `events_batch()` (one counter upsert takes the
sequence numbers, one INSERT writes the rows); the baseline writes the same rows with one bulk
INSERT per transaction and no sequence at all. Both run side by side in this run, against the
configured database (PostgreSQL: set DATABASE_URL), in a throwaway database. Afterwards the spec's
sequence is checked: 1..N with no gap and no duplicate. Target: ≥ 10,000 events/s from one process,
and more from 4 processes than from one.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time

from support import bench_user, stack, throwaway_database

PAYLOAD = {"run": 1, "turn": 3, "name": "run_command", "is_error": False, "content": "x" * 200}


def write_omoi(spec_id: int, events: int, batch: int) -> None:
    from sandboxes.services.events import event_record, events_batch

    for start in range(0, events, batch):
        with events_batch():
            for _ in range(min(batch, events - start)):
                event_record(type="agent.tool_result", payload=PAYLOAD, spec_id=spec_id)


def write_bare(spec_id: int, events: int, batch: int) -> None:
    from django.db import transaction

    from sandboxes.models import SandboxEvent

    for start in range(0, events, batch):
        with transaction.atomic():
            SandboxEvent.objects.bulk_create(
                [SandboxEvent(type="bench.bare", payload=PAYLOAD) for _ in range(min(batch, events - start))]
            )


def _child(writer: str, spec_id: int, events: int, batch: int, go, done) -> None:
    from django.db import connection

    connection.close()  # a connection of its own, not the parent's
    go.wait()
    (write_omoi if writer == "omoi" else write_bare)(spec_id, events, batch)
    connection.close()
    done.put(time.perf_counter())


def rate(writer: str, *, processes: int, spec_id: int, events: int, batch: int) -> float:
    """Events per second of `processes` writers started together, until the last one ends."""
    from django.db import connections

    connections.close_all()
    context = multiprocessing.get_context("fork")
    go, done = context.Event(), context.Queue()
    children = [
        context.Process(target=_child, args=(writer, spec_id, events, batch, go, done)) for _ in range(processes)
    ]
    for child in children:
        child.start()
    time.sleep(0.5)  # every child has forked and waits
    started = time.perf_counter()
    go.set()
    ends = [done.get(timeout=600) for _ in children]
    for child in children:
        child.join()
        if child.exitcode != 0:
            raise RuntimeError(f"a {writer} writer failed (exit code {child.exitcode})")
    return processes * events / (max(ends) - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000, help="events per process")
    parser.add_argument("--batch", type=int, default=10, help="events per transaction")
    args = parser.parse_args()

    from django.db.models import Count, Max, Min

    from sandboxes.models import SandboxEvent
    from specs.models import Spec
    from tickets.models import Project

    with throwaway_database("events"):
        user = bench_user()
        project = Project.objects.create(owner=user, name="events", repository="/nonexistent")
        spec = Spec.objects.create(project=project, user=user, title="events", idea="events")
        rate("omoi", processes=1, spec_id=spec.pk, events=min(args.events, 500), batch=args.batch)  # warm up
        rate("bare", processes=1, spec_id=spec.pk, events=min(args.events, 500), batch=args.batch)
        print(f"Event writes — {stack()}, {args.events} events per process, {args.batch} per transaction")
        rates = {}
        for processes in (1, 4):
            bare = rate("bare", processes=processes, spec_id=spec.pk, events=args.events, batch=args.batch)
            omoi = rate("omoi", processes=processes, spec_id=spec.pk, events=args.events, batch=args.batch)
            rates[processes] = omoi
            print(
                f"  {processes} process{'es' if processes > 1 else '  '}: bulk INSERT {bare:9,.0f}/s   "
                f"event_record {omoi:9,.0f}/s   ratio {omoi / bare:.2f}"
            )
        print(f"  4 processes / 1 process (event_record): {rates[4] / rates[1]:.2f}")
        sequence = SandboxEvent.objects.filter(spec_id=spec.pk).aggregate(
            n=Count("id"), distinct=Count("sequence", distinct=True), low=Min("sequence"), high=Max("sequence")
        )
        whole = sequence["n"] == sequence["distinct"] == sequence["high"] and sequence["low"] == 1
        print(
            f"  the spec's sequence: {sequence['n']:,} events, numbered {sequence['low']}..{sequence['high']}, "
            f"{'no gap, no duplicate' if whole else 'GAPS OR DUPLICATES'}"
        )


if __name__ == "__main__":
    main()
