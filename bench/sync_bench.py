"""How long SYNC takes, and how many queries, for 500 and 2,000 tasks with dependencies.

    python bench/sync_bench.py [500 2000 ...]

Runs against the configured database engine (DATABASE_URL, or the embedded SQLite) in a
throwaway test database that it creates and destroys, so it never touches real data. For each
size it times three reconciliations of the tasks (the first sync that writes every row, a repeat
that changes nothing, and a re-plan that renames a tenth of the tasks, drops five, adds five and
moves a dependency) and prints their durations and query counts.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omoi.settings")
os.environ.setdefault("OMOI_SQLITE_TEST_NAME", "bench-sync.sqlite3")

import django  # noqa: E402

django.setup()

from django.db import connection, transaction  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from tests.specs import plans  # noqa: E402

REQUIREMENTS = 20


def requirements_plan() -> list[dict]:
    return plans.requirements_plan(REQUIREMENTS)


def tasks_plan(count: int) -> list[dict]:
    return plans.tasks_plan(count, requirement_count=REQUIREMENTS)


def replanned(count: int) -> list[dict]:
    return plans.changed_plan(count, requirement_count=REQUIREMENTS)


def measure(spec, tasks) -> tuple[float, int]:
    from specs.services.sync import tasks_reconcile

    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        with transaction.atomic():
            tasks_reconcile(spec=spec, tasks=tasks)
        elapsed = time.perf_counter() - started
    return elapsed, len(queries.captured_queries)


def bench(count: int) -> list[tuple[str, float, int]]:
    from django.contrib.auth import get_user_model

    from specs.models import Spec
    from specs.services.sync import requirements_reconcile
    from tickets.models import Project

    user, _ = get_user_model().objects.get_or_create(username="bench")
    project = Project.objects.create(owner=user, name=f"bench-{count}-{time.monotonic_ns()}", repository="/dev/null")
    spec = Spec.objects.create(project=project, user=user, title=f"bench {count}", idea="bench")
    requirements_reconcile(spec=spec, requirements=requirements_plan())
    results = []
    for label, plan in (
        ("first sync", tasks_plan(count)),
        ("repeat", tasks_plan(count)),
        ("re-plan", replanned(count)),
    ):
        elapsed, queries = measure(spec, plan)
        results.append((label, elapsed, queries))
    return results


def main(sizes: list[int]) -> None:
    settings_dict = connection.settings_dict
    if connection.vendor != "sqlite":
        settings_dict.setdefault("TEST", {})["NAME"] = f"bench_{settings_dict['NAME']}"
    old_name = settings_dict["NAME"]
    test_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        print(f"SYNC benchmark on {connection.vendor} ({test_name})")
        print(f"{'tasks':>6} {'links':>6}  {'step':<11} {'seconds':>8} {'queries':>8}")
        for count in sizes:
            links = sum(len(task["depends_on"]) for task in tasks_plan(count))
            for label, elapsed, queries in bench(count):
                print(f"{count:>6} {links:>6}  {label:<11} {elapsed:>8.3f} {queries:>8}")
        if connection.vendor == "sqlite":
            print("(SQLite: Django splits bulk statements into batches of at most 999 variables, so the first")
            print(" sync of N tasks takes a few more statements per ~76 rows; PostgreSQL takes the same count.)")
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [500, 2000])
