"""A whole spec on a zero-latency model, against a bare Celery chain of the same number of hops.

    python bench/whole_spec.py [--sizes 2 10 50] [--memory-specs 50] [--workers 1]

Each size N launches a spec of N independent tasks (a generated replay script: each task writes a
module and its test, then finishes; the test command is the sample's unittest run), with no
approval, and times launch → completed with its branch pushed, on a real worker (concurrency 2,
beat on) against the configured database and broker (PostgreSQL + Redis in production: set
DATABASE_URL and CELERY_BROKER_URL). It counts the hops (Celery task executions of the spec's and
tickets' steps) from the worker's log, then times a bare chain of that many hops (a task that only
sends itself again) on the same worker, and prints both and their ratio, the hops per ticket, and
what a hop costs the worker by kind (median and p95 of the tasks' own durations).

--memory-specs M runs M specs of 2 tasks one after another and prints the worker's resident memory
after 5 and after M. --workers 2 runs two workers with data directories of their own (two
machines) and prints how the model turns were shared between them.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

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

STEP_TASKS = ("specs.tasks.spec_step_task", "tickets.tasks.ticket_step_task")


def launch(project, user, idea: str) -> int:
    from specs.services.planning import spec_launch

    return spec_launch(project_id=project.pk, user=user, idea=idea, require_approval=False).pk


def make_project(user, repository: Path, name: str):
    from tests.support.generated import TEST_COMMAND
    from tickets.models import Project

    return Project.objects.create(
        owner=user, name=name, repository=str(repository), default_branch="main", test_command=TEST_COMMAND
    )


def step_durations(worker: Worker, offset: int) -> dict[str, list[float]]:
    """The spec's and tickets' step durations since `offset`, by their outcome."""
    import re

    with open(worker.log_path, "rb") as handle:
        handle.seek(offset)
        text = handle.read().decode(errors="replace")
    by_kind: dict[str, list[float]] = {}
    pattern = re.compile(
        r"Task (specs|tickets)\.tasks\.(spec|ticket)_step_task\[[^\]]+\] succeeded in ([\d.e-]+)s: '([^']*)'"
    )
    for match in pattern.finditer(text):
        by_kind.setdefault(f"{match.group(2)}:{match.group(4)}", []).append(float(match.group(3)) * 1000)
    return by_kind


def use_script(path: Path, size: int) -> None:
    """Specs run one after another, so the worker's one replay script is rewritten for each (the
    replay provider reloads a script whose file changed)."""
    from tests.support.generated import write_independent_tasks_script

    write_independent_tasks_script(path, size)


def run_size(size: int, *, workers: list[Worker], user, root: Path) -> dict:
    use_script(root / "script.json", size)
    repository = sample_repository(root / f"repo-{size}")
    project = make_project(user, repository, f"bench-{size}-{time.monotonic_ns()}")
    offsets = [worker.log_offset() for worker in workers]
    started = time.perf_counter()
    spec_id = launch(project, user, f"Add {size} features")
    wait_for_spec(spec_id, until=done, timeout=60 + 20 * size, worker=workers[0])
    elapsed = time.perf_counter() - started
    durations: dict[str, list[float]] = {}
    for worker, offset in zip(workers, offsets, strict=True):
        for kind, values in step_durations(worker, offset).items():
            durations.setdefault(kind, []).extend(values)
    hops = sum(len(values) for values in durations.values())
    ticket_hops = sum(len(values) for kind, values in durations.items() if kind.startswith("ticket:"))
    return {"spec_id": spec_id, "elapsed": elapsed, "hops": hops, "ticket_hops": ticket_hops, "durations": durations}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[2, 10, 50])
    parser.add_argument("--memory-specs", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, choices=[1, 2])
    args = parser.parse_args()

    from django.conf import settings

    from tests.support.generated import write_independent_tasks_script

    root = Path(tempfile.mkdtemp(prefix="omoi-bench-spec-"))
    script = write_independent_tasks_script(root / "script.json", 2)
    with throwaway_database("spec") as database_url:
        user = bench_user()
        common = {
            "DATABASE_URL": database_url,
            "OMOI_REPLAY_SCRIPT": script,
            "OMOI_LLM_PROVIDER": "replay",
            "OMOI_BROKER_DIR": str(settings.CELERY_BROKER_DIR),
        }
        names = ["bench-a@%h", "bench-b@%h"][: args.workers]
        workers = []
        for index, name in enumerate(names):
            data = root / f"node-{index}"
            env = {
                **common,
                "OMOI_DATA_DIR": str(data),
                "OMOI_REPOS_DIR": str(data / "repos"),
                "OMOI_SANDBOX_ROOT": str(data / "sandboxes"),
            }
            workers.append(Worker(env=env, name=name, concurrency=2, beat=index == 0))
        settings.OMOI_REPOS_DIR = root / "web" / "repos"
        try:
            print(f"Whole spec vs a bare Celery chain of the same hops — {stack()}, {args.workers} worker(s) x 2")
            bare_chain(20)  # warm the worker
            header = f"{'tickets':>7} {'omoi s':>8} {'hops':>6} {'hops/ticket':>11} {'bare chain s':>12} {'ratio':>7}"
            print(header)
            results = []
            for size in args.sizes:
                result = run_size(size, workers=workers, user=user, root=root)
                baseline = bare_chain(result["hops"])
                results.append(result)
                print(
                    f"{size:>7} {result['elapsed']:>8.2f} {result['hops']:>6} {result['ticket_hops'] / size:>11.1f} "
                    f"{baseline:>12.3f} {result['elapsed'] / baseline:>6.1f}x"
                )
            print("\nWhat a step costs the worker (its own duration, ms), by step and outcome, over every run above:")
            merged: dict[str, list[float]] = {}
            for result in results:
                for kind, values in result["durations"].items():
                    merged.setdefault(kind, []).extend(values)
            print(f"  {'step:outcome':<24} {'count':>6} {'median':>8} {'p95':>8}")
            for kind in sorted(merged):
                values = merged[kind]
                print(
                    f"  {kind:<24} {len(values):>6} {statistics.median(values):>8.1f} {percentile(values, 0.95):>8.1f}"
                )
            if args.workers == 2:
                from sandboxes.models import SandboxEvent

                shares = Counter(
                    event.payload.get("node", "?")
                    for event in SandboxEvent.objects.filter(type="agent.turn", ticket__isnull=False)
                )
                total = sum(shares.values())
                print(
                    "\nModel turns by worker:",
                    ", ".join(f"{node} {count} ({count / total:.0%})" for node, count in shares.items()),
                )
            if args.memory_specs:
                print(f"\nWorker memory over {args.memory_specs} specs of 2 tickets, one after another:")
                rss = {}
                use_script(root / "script.json", 2)
                for number in range(1, args.memory_specs + 1):
                    repository = sample_repository(root / f"memory-{number}")
                    project = make_project(user, repository, f"memory-{number}-{time.monotonic_ns()}")
                    spec_id = launch(project, user, "Add 2 features (memory)")
                    wait_for_spec(spec_id, until=done, timeout=120, worker=workers[0])
                    if number in (5, args.memory_specs):
                        rss[number] = sum(worker.rss_bytes() for worker in workers)
                        print(f"  after {number:>3} specs: {rss[number] / 2**20:7.1f} MiB")
                if 5 in rss and args.memory_specs in rss:
                    print(f"  ratio {args.memory_specs} / 5: {rss[args.memory_specs] / rss[5]:.2f}")
        finally:
            for worker in workers:
                worker.stop()


if __name__ == "__main__":
    main()
