"""What live event streams cost: 100 clients on one spec while a spec of 10 tickets runs.

    python bench/stream.py [--clients 100] [--tickets 10] [--idle 10]

Runs against the configured database (DATABASE_URL, or the embedded SQLite) and broker, in a
throwaway test database it creates and destroys. It starts a real uvicorn server and a real
Celery worker (the model replays the shared generator's script for N independent tasks on the
sample repository, tests/support/generated.py), connects the clients to
`GET /api/v1/specs/{id}/stream`, then starts the worker, so every event is delivered live.

It prints:
- the delay from an event's commit to its arrival at each client (median, p95, max), measured
  two ways: from the row's `created_at` (set when the row is inserted, a little before its
  transaction commits: an upper bound) and from the moment a 20 ms observer first sees the row
  (a lower bound, within 20 ms);
- whether every client received every event exactly once, in order;
- the database statements per second while nothing happens (PostgreSQL only: transactions
  counted by pg_stat_database; each autocommit statement is one): the server with no client, the
  same with 100 idle streams, and the baseline of what a client does without a stream (polling
  GET /api/v1/specs/{id}/events once a second), 100 of them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omoi.settings")
os.environ.setdefault("OMOI_SQLITE_TEST_NAME", "bench-stream.sqlite3")

import django  # noqa: E402

django.setup()

import logging  # noqa: E402

import httpx  # noqa: E402
from django.db import connection, connections  # noqa: E402

from specs.cli.demo import prepare_sample  # noqa: E402
from tests.support.generated import TEST_COMMAND, write_independent_tasks_script  # noqa: E402

IDEA = "Add {tickets} feature functions to textkit, each with its test (stream benchmark)."
OBSERVER_INTERVAL_S = 0.02
CONNECT_BATCH = 10
logging.getLogger("httpx").setLevel(logging.WARNING)


def statements() -> int | None:
    """Transactions committed or rolled back in this database so far (PostgreSQL), read on a
    connection of its own that is closed at once, so its statistics are flushed."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()")
        value = cursor.fetchone()[0]
    connections.close_all()
    return value


def per_second(window_s: float, measure) -> float | None:
    before = statements()
    measure(window_s)
    after = statements()
    if before is None or after is None:
        return None
    return max(after - before - 1, 0) / window_s  # the first read is itself one statement


class Observer(threading.Thread):
    """Notes when each event of the spec first becomes visible in the database."""

    def __init__(self, spec_id: int) -> None:
        super().__init__(daemon=True)
        self.spec_id = spec_id
        self.seen: dict[int, float] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        from sandboxes.models import SandboxEvent

        last = 0
        try:
            while not self.stopping.is_set():
                rows = SandboxEvent.objects.filter(spec_id=self.spec_id, sequence__gt=last).values_list(
                    "sequence", flat=True
                )
                now = time.time()
                for sequence in rows:
                    self.seen.setdefault(sequence, now)
                    last = max(last, sequence)
                time.sleep(OBSERVER_INTERVAL_S)
        finally:
            connection.close()


async def stream_client(
    client: httpx.AsyncClient, url: str, after: int, connected: asyncio.Semaphore
) -> list[tuple[int, float, float]]:
    """One client: (sequence, arrival time, created_at) for each event, until the `end` event."""
    received: list[tuple[int, float, float]] = []
    headers = {"Accept": "text/event-stream"}
    async with client.stream("GET", url, params={"after": after}, headers=headers) as response:
        response.raise_for_status()
        sequence, event, data = None, None, []
        async for line in response.aiter_lines():
            if line.startswith("retry:"):
                connected.release()  # the stream's first frame: this client listens
                continue
            if line == "":
                if event == "end":
                    return received
                if sequence is not None and data:
                    created = datetime.fromisoformat(json.loads("".join(data))["created_at"]).timestamp()
                    received.append((sequence, time.time(), created))
                sequence, event, data = None, None, []
            elif line.startswith("id:"):
                sequence = int(line[3:].strip())
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
    return received


async def idle_streams(server_url: str, spec_id: int, cookies: dict, clients: int, window_s: float) -> float | None:
    url = f"{server_url}/api/v1/specs/{spec_id}/stream"
    headers = {"Accept": "text/event-stream"}
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=0)
    timeout = httpx.Timeout(30, read=None)
    async with httpx.AsyncClient(timeout=timeout, limits=limits, cookies=cookies) as client:
        opened = []
        for _ in range(clients):  # one after another
            stream = client.stream("GET", url, headers=headers)
            response = await stream.__aenter__()
            response.raise_for_status()
            opened.append(stream)
        await asyncio.sleep(2)  # every stream caught up and waiting
        result = await asyncio.to_thread(per_second, window_s, time.sleep)
        for stream in opened:
            await stream.__aexit__(None, None, None)
    return result


async def polling_clients(server_url: str, spec_id: int, cookies: dict, clients: int, window_s: float) -> float | None:
    """The baseline: each client asks GET /events?after=N once a second. A refused request (the
    database out of connections, say) is counted and printed, not retried sooner."""
    url = f"{server_url}/api/v1/specs/{spec_id}/events"
    headers: dict[str, str] = {}
    stop = asyncio.Event()
    failures: list[str] = []

    async def poll(client: httpx.AsyncClient, offset: float) -> None:
        after = 0
        await asyncio.sleep(offset)
        while not stop.is_set():
            try:
                response = await client.get(url, params={"after": after}, headers=headers)
            except httpx.HTTPError as error:
                failures.append(repr(error))
            else:
                if response.status_code == 200:
                    after = response.json()["last_sequence"]
                else:
                    failures.append(f"{response.status_code} {response.text[:200]}")
            await asyncio.sleep(1.0)

    limits = httpx.Limits(max_connections=clients + 10)
    async with httpx.AsyncClient(timeout=30, limits=limits, cookies=cookies) as client:
        tasks = [asyncio.create_task(poll(client, n / clients)) for n in range(clients)]
        await asyncio.sleep(2)
        result = await asyncio.to_thread(per_second, window_s, time.sleep)
        stop.set()
        await asyncio.gather(*tasks)
    if failures:
        print(f"  (the polling baseline had {len(failures)} failed requests, the first: {failures[0]})")
    return result


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def run(clients: int, tickets: int, idle_s: float) -> None:
    from django.contrib.auth import get_user_model

    from sandboxes.selectors import last_sequence
    from specs.models import Spec
    from specs.services.planning import spec_launch
    from tests.web.server import ServerProcess
    from tests.web.sse import session_cookie
    from tests.worker import WorkerProcess, purge_broker
    from tickets.models import Project

    work = Path(tempfile.mkdtemp(prefix="omoi-bench-stream-"))
    repository = work / "textkit"
    prepare_sample(repository)
    script_path = write_independent_tasks_script(work / "textkit.replay.json", tickets)
    environment = {
        "OMOI_REPLAY_SCRIPT": script_path,
        "OMOI_REPOS_DIR": str(work / "repos"),
        "OMOI_SANDBOX_ROOT": str(work / "sandboxes"),
    }
    user = get_user_model().objects.create(username="bench")
    cookies = session_cookie(user)  # the streams authenticate as a logged-in browser does
    project = Project.objects.create(owner=user, name="textkit", repository=str(repository), test_command=TEST_COMMAND)
    purge_broker()
    server = ServerProcess(log_path=work / "server.log").start()
    worker = WorkerProcess(env=environment, concurrency=2, log_path=work / "worker.log")
    try:
        connections.close_all()  # flush this process's own statistics (the setup) before measuring
        time.sleep(2)
        floor = per_second(idle_s / 2, time.sleep)

        spec = spec_launch(project_id=project.pk, user=user, idea=IDEA.format(tickets=tickets), require_approval=False)
        start = last_sequence(spec_id=spec.pk)
        observer = Observer(spec.pk)
        observer.start()

        async def watch() -> list[list[tuple[int, float, float]]]:
            connected = asyncio.Semaphore(0)
            limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=0)
            url = f"{server.url}/api/v1/specs/{spec.pk}/stream"
            timeout = httpx.Timeout(30, read=None)
            async with httpx.AsyncClient(timeout=timeout, limits=limits, cookies=cookies) as client:
                tasks = []
                # Clients arrive ten at a time, as they would, not all in the same millisecond:
                # each request holds a database connection while it is authorized.
                for batch in range(0, clients, CONNECT_BATCH):
                    for _ in range(batch, min(batch + CONNECT_BATCH, clients)):
                        tasks.append(asyncio.create_task(stream_client(client, url, start, connected)))
                    for _ in range(batch, min(batch + CONNECT_BATCH, clients)):
                        await asyncio.wait_for(connected.acquire(), 60)
                await asyncio.to_thread(worker.start)  # the work begins once every client listens
                return await asyncio.wait_for(asyncio.gather(*tasks), 900)

        began = time.monotonic()
        results = asyncio.run(watch())
        elapsed = time.monotonic() - began
        observer.stopping.set()
        observer.join()
        spec.refresh_from_db()
        worker.stop()

        sequences = list(range(start + 1, last_sequence(spec_id=spec.pk) + 1))
        exact = all([sequence for sequence, _, _ in received] == sequences for received in results)
        from_insert = [arrival - created for received in results for _, arrival, created in received]
        from_visible = [
            arrival - observer.seen[sequence]
            for received in results
            for sequence, arrival, _ in received
            if sequence in observer.seen
        ]

        streams = polling = None
        if floor is not None:
            idle = Spec.objects.create(project=project, user=user, title="idle", idea="idle", status="executing")
            streams = asyncio.run(idle_streams(server.url, idle.pk, cookies, clients, idle_s))
            polling = asyncio.run(polling_clients(server.url, idle.pk, cookies, clients, idle_s))
    except BaseException:
        print(f"the server's log ({work / 'server.log'}), its end:\n{server.log(3000)}", file=sys.stderr)
        raise
    finally:
        worker.stop()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    def rate(value: float | None) -> str:
        return f"{value:8.1f}/s" if value is not None else "   not measured (PostgreSQL only)"

    def seconds(values: list[float]) -> str:
        return (
            f"median {statistics.median(values):.3f} s  p95 {percentile(values, 0.95):.3f} s  max {max(values):.3f} s"
        )

    print(f"Stream benchmark on {connection.vendor}: {clients} clients on one spec of {tickets} tickets")
    print(f"  spec #{spec.pk}: {spec.status} in {elapsed:.1f} s; {len(sequences)} events while the clients listened")
    print(f"  every client got every event once, in order: {'yes' if exact else 'NO'}")
    print(f"  delivered: {sum(len(r) for r in results)} events to {len(results)} clients")
    print("  delay from commit to arrival at a client (target: p95 <= 1 s)")
    print(f"    from the row's insert (upper bound)        {seconds(from_insert)}")
    print(f"    from the row becoming visible (±20 ms)     {seconds(from_visible)}")
    print(f"  database statements per second while nothing happens (idle {idle_s:g} s; target <= 20/s)")
    print(f"    server, no client                      {rate(floor)}")
    print(f"    {clients} idle streams                        {rate(streams)}")
    print(f"    baseline: {clients} clients polling GET /events every 1 s {rate(polling)}")
    if streams is not None and polling:
        print(f"    streams cost {streams / polling:.3f} of the polling baseline")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--tickets", type=int, default=10)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of each idle measurement")
    options = parser.parse_args()
    settings_dict = connection.settings_dict
    if connection.vendor != "sqlite":
        settings_dict.setdefault("TEST", {})["NAME"] = f"bench_stream_{settings_dict['NAME']}"
    old_name = settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        run(options.clients, options.tickets, options.idle)
    finally:
        connections.close_all()
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
