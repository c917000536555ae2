"""Chaos: kill the worker at a random moment of each spec, restart it at once, and measure what it
costs. Default settings (OMOI_LEASE_S 30, OMOI_RECONCILE_INTERVAL_S 10): nothing is shortened.

    python bench/chaos.py [--specs 20] [--seed 7]

Against the configured database and broker (PostgreSQL + Redis: set DATABASE_URL and
CELERY_BROKER_URL), in a throwaway database. Beat runs in a process of its own, as in production
(it is not what crashes); the worker (concurrency 2) is SIGKILLed with its whole process tree and
started again under the same name, as a machine that rebooted. Each spec is the demo's (samples/
textkit with its replay script: planning, two tickets, a pull request step that pushes the branch):
first run undisturbed, then run again with the kill at a seeded random moment within that
undisturbed time. Prints, per spec and in all: whether it completed, the duplicates found (a ticket
per planned task, a task per ticket, phase and template, a commit per task on the pushed branch, a
model usage row per turn), and the recovery time: (killed run's duration) - (undisturbed duration),
whose median, p95 and max it prints.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from support import ROOT, Worker, bench_user, done, percentile, sample_repository, stack, throwaway_database

SCRIPT = ROOT / "samples" / "textkit.replay.json"


def launch(user, repository: Path, label: str) -> int:
    from specs.services.planning import spec_launch
    from tickets.models import Project

    project = Project.objects.create(
        owner=user, name=f"{label}-{time.monotonic_ns()}", repository=str(repository), default_branch="main"
    )
    return spec_launch(project_id=project.pk, user=user, idea="Add word statistics", require_approval=False).pk


def wait_done(spec_id: int, timeout: float) -> float | None:
    from specs.models import Spec

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        spec = Spec.objects.get(pk=spec_id)
        if done(spec):
            return time.monotonic()
        time.sleep(0.05)
    return None


def duplicates(spec_id: int, repository: Path, scratch: Path) -> list[str]:
    """Everything that exists twice but should exist once."""
    from django.db.models import Sum

    from omoi.models import LLMUsage
    from sandboxes import git
    from sandboxes.models import AgentRun
    from specs.models import Spec
    from tickets.models import Task, Ticket

    spec = Spec.objects.get(pk=spec_id)
    found = []
    if Ticket.objects.filter(spec=spec).count() != spec.tasks.count():
        found.append(f"{Ticket.objects.filter(spec=spec).count()} tickets for {spec.tasks.count()} planned tasks")
    per_task = Counter(Task.objects.filter(ticket__spec=spec).values_list("ticket_id", "phase", "task_type"))
    found += [f"task {key} x{count}" for key, count in per_task.items() if count > 1]
    per_turn = Counter(LLMUsage.objects.filter(spec=spec).values_list("agent_run_id", "turn"))
    found += [f"usage of run {run} turn {turn} x{count}" for (run, turn), count in per_turn.items() if count > 1]
    turns = AgentRun.objects.filter(spec=spec).aggregate(total=Sum("turns"))["total"] or 0
    if sum(per_turn.values()) != turns:
        found.append(f"{sum(per_turn.values())} usage rows for {turns} turns")
    checkout = scratch / f"checkout-{spec_id}"
    git.clone(str(repository), checkout, branch=spec.branch_name)
    subjects = git.git_run("log", "--no-merges", "--format=%s", "origin/main..HEAD", cwd=checkout).splitlines()
    found += [f"commit {subject!r} x{count}" for subject, count in Counter(subjects).items() if count > 1]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--specs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=300.0, help="give up on a spec after this many seconds")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="omoi-chaos-"))

    from django.conf import settings

    with throwaway_database("chaos") as database_url:
        user = bench_user()
        env = {
            "DATABASE_URL": database_url,
            "OMOI_REPLAY_SCRIPT": str(SCRIPT),
            "OMOI_LLM_PROVIDER": "replay",
            "OMOI_DATA_DIR": str(root / "node"),
            "OMOI_REPOS_DIR": str(root / "node" / "repos"),
            "OMOI_SANDBOX_ROOT": str(root / "node" / "sandboxes"),
            "OMOI_BROKER_DIR": str(settings.CELERY_BROKER_DIR),
        }
        beat = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "omoi", "beat", "--loglevel=WARNING", "--schedule",
             str(root / "beat-schedule")],
            cwd=ROOT, env={**os.environ, **env}, stdout=open(root / "beat.log", "wb"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        worker = Worker(env=env, name="chaos@%h", concurrency=2, beat=False)
        print(f"Chaos on {stack()}: {args.specs} specs, seed {args.seed}, default lease and reconcile interval")
        print(f"{'spec':>4} {'undisturbed s':>13} {'kill at s':>9} {'killed run s':>12} {'recovery s':>10}  result")
        recoveries: list[float] = []
        completed = 0
        all_duplicates: list[str] = []
        try:
            for number in range(1, args.specs + 1):
                repository = sample_repository(root / f"repo-{number}-a")
                started = time.monotonic()
                spec_id = launch(user, repository, f"calm-{number}")
                finished = wait_done(spec_id, args.timeout)
                if finished is None:
                    print(f"{number:>4} the undisturbed run did not complete; see {worker.log_path}")
                    continue
                undisturbed = finished - started

                repository = sample_repository(root / f"repo-{number}-b")
                kill_at = rng.uniform(0.05, 0.95) * undisturbed
                started = time.monotonic()
                spec_id = launch(user, repository, f"chaos-{number}")
                time.sleep(max(0.0, started + kill_at - time.monotonic()))
                worker.kill()
                worker = Worker(env=env, name="chaos@%h", concurrency=2, beat=False)
                finished = wait_done(spec_id, args.timeout)
                if finished is None:
                    print(f"{number:>4} {undisturbed:>13.2f} {kill_at:>9.2f} {'—':>12} {'—':>10}  NOT COMPLETED")
                    continue
                completed += 1
                killed_run = finished - started
                recovery = max(0.0, killed_run - undisturbed)
                recoveries.append(recovery)
                found = duplicates(spec_id, repository, root)
                all_duplicates += found
                result = "completed" + (f", DUPLICATES: {'; '.join(found)}" if found else ", no duplicates")
                print(
                    f"{number:>4} {undisturbed:>13.2f} {kill_at:>9.2f} {killed_run:>12.2f} {recovery:>10.2f}  {result}"
                )
        finally:
            worker.stop()
            os.killpg(beat.pid, signal.SIGTERM)
            beat.wait(timeout=15)
        print()
        print(f"completed: {completed}/{args.specs} ({completed / args.specs:.0%})")
        print(f"duplicates found: {len(all_duplicates)}")
        if recoveries:
            print(
                f"recovery (killed run - undisturbed run): median {statistics.median(recoveries):.1f} s, "
                f"p95 {percentile(recoveries, 0.95):.1f} s, max {max(recoveries):.1f} s"
            )


if __name__ == "__main__":
    main()
