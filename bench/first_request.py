"""Ticket runnable → its first model request, against a bare Celery chain of 3 hops.

    python bench/first_request.py [--runs 20]

A planned spec of the sample repository (one ticket ready to run) is bridged in this process: the
moment its commit sends the ticket's step (the ticket is runnable) is the start. A real worker (concurrency 2) takes the
ticket's step, moves it through its planned-document phases, starts its first agent task and asks
the model: an instrumented replay provider (bench/timed.py) writes the time the request arrives.
The baseline is a chain of three bare hops (task → task → task) on the same worker and broker.
Prints the median and p95 of both and their ratio. Target: ≤ 30 ms on PostgreSQL + Redis.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

from support import (
    Worker,
    bare_chain,
    bench_user,
    done,
    percentile,
    sample_repository,
    stack,
    throwaway_database,
    wait_for_spec,
)


def recording(send, times: list[float]):
    """`omoi.leases._send` that notes when each step is sent (on the commit that made it due)."""

    def wrapped(*args, **kwargs):
        times.append(time.time())
        return send(*args, **kwargs)

    return wrapped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    from django.conf import settings

    from omoi import leases
    from specs.services.bridge import spec_execute
    from tests.e2e.conftest import planned_spec, write_script
    from tests.support.generated import TEST_COMMAND, independent_tasks_script
    from tickets.models import Project

    root = Path(tempfile.mkdtemp(prefix="omoi-bench-first-"))
    trace = root / "trace.log"
    settings.OMOI_REPOS_DIR = root / "repos"
    with throwaway_database("first") as database_url:
        user = bench_user()
        env = {
            "DATABASE_URL": database_url,
            "OMOI_LLM_PROVIDER": "bench.timed:TimedReplay",
            "OMOI_REPLAY_SCRIPT": write_script(root, independent_tasks_script(1)),
            "OMOI_BENCH_TRACE": str(trace),
            "OMOI_REPOS_DIR": str(root / "repos"),
            "OMOI_SANDBOX_ROOT": str(root / "sandboxes"),
            "OMOI_BROKER_DIR": str(settings.CELERY_BROKER_DIR),
        }
        worker = Worker(env=env, name="first@%h", concurrency=2, beat=False)
        try:
            for _ in range(5):
                bare_chain(3)
            firsts, bares = [], []
            for number in range(args.runs):
                repository = sample_repository(root / f"repo-{number}")
                project = Project.objects.create(
                    owner=user, name=f"first-{number}", repository=str(repository), test_command=TEST_COMMAND
                )
                spec = planned_spec(project=project, user=user, script=independent_tasks_script(1))
                # The bridge's slow part (the mirror) is done before the commit we time from.
                from tickets.services.repository import spec_branch_name, spec_repo_prepare

                branch = spec_branch_name(spec_id=spec.pk, title=spec.title)
                spec_repo_prepare(spec=spec, branch=branch)
                trace.write_text("")
                sent: list[float] = []
                with mock.patch.object(leases, "_send", recording(leases._send, sent)):
                    spec_execute(spec_id=spec.pk, actor="bench")  # commits: TSK-001's ticket is runnable
                started = sent[0]  # its step was sent when the bridge committed
                deadline = time.monotonic() + 30
                while "TSK-001:implement_feature" not in trace.read_text():
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"no model request:\n{worker.log()[-3000:]}")
                    time.sleep(0.0005)
                line = next(x for x in trace.read_text().splitlines() if x.endswith("TSK-001:implement_feature"))
                firsts.append(float(line.split()[0]) - started)
                wait_for_spec(spec.pk, until=done, timeout=60, worker=worker)  # the worker is idle again
                bares.append(bare_chain(3))
        finally:
            worker.stop()
        ms = 1000
        print(f"Ticket runnable → first model request — {stack()}, {args.runs} runs")
        for label, values in (("omoi:", firsts), ("bare 3-hop chain:", bares)):
            median, p95 = statistics.median(values) * ms, percentile(values, 0.95) * ms
            print(f"  {label:<17} median {median:7.1f} ms   p95 {p95:7.1f} ms")
        print(f"  ratio (medians): {statistics.median(firsts) / statistics.median(bares):.1f}x")


if __name__ == "__main__":
    main()
