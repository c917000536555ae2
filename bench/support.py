"""What the benchmarks share: Django in a throwaway database, a real worker process, a sample
repository, and waiting for a spec. Import it first: it sets Django up."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omoi.settings")
os.environ.setdefault("OMOI_SQLITE_TEST_NAME", "bench.sqlite3")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402


@contextmanager
def throwaway_database(label: str):
    """A fresh, migrated database for the run (bench_<name> on PostgreSQL, a file on SQLite),
    destroyed afterwards; yields the DATABASE_URL a worker process needs to reach it."""
    settings_dict = connection.settings_dict
    if connection.vendor != "sqlite":
        settings_dict.setdefault("TEST", {})["NAME"] = f"bench_{label}_{settings_dict['NAME']}"
    old_name = settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        yield database_url()
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


def database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def stack() -> str:
    return f"{connection.vendor} + {'Redis' if settings.CELERY_BROKER_URL.startswith('redis') else 'embedded broker'}"


class Worker:
    """A real `celery worker` process tree (optionally with beat), its log in a file."""

    def __init__(self, *, env: dict[str, str], name: str, concurrency: int = 2, beat: bool = True) -> None:
        self.log_path = Path(tempfile.mkdtemp(prefix="omoi-bench-")) / f"{name.split('@')[0]}.log"
        self.name = name
        args = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "omoi",
            "worker",
            "-Q",
            "planning,execution,events,default",
            "-c",
            str(concurrency),
            "--loglevel=INFO",
            "-n",
            name,
            "--without-gossip",
            "--without-mingle",
        ]
        if beat:
            args += ["-B", "--schedule", str(self.log_path.with_suffix(".beat"))]
        self.process = subprocess.Popen(
            args, cwd=ROOT, env={**os.environ, **env}, stdout=open(self.log_path, "wb"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while b" ready." not in self.log_path.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_offset(self) -> int:
        return self.log_path.stat().st_size

    def succeeded_since(self, offset: int, names: tuple[str, ...]) -> list[float]:
        """Durations of the tasks named `names` that succeeded since `offset` in the log."""
        with open(self.log_path, "rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
        pattern = re.compile(
            r"Task (" + "|".join(re.escape(n) for n in names) + r")\[[^\]]+\] succeeded in ([\d.e-]+)s"
        )
        return [float(match.group(2)) for match in pattern.finditer(text)]

    def rss_bytes(self) -> int:
        """Resident memory of the worker's process tree (main process and pool)."""
        pids = {self.process.pid}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == self.process.pid:
                    pids.add(int(entry.name))
        total = 0
        for pid in pids:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except OSError:
                pass
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def sample_repository(target: Path) -> Path:
    from specs.cli.demo import prepare_sample

    prepare_sample(target)
    return target


def bench_user():
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username="bench")
    return user


def wait_for_spec(spec_id: int, *, until, timeout: float, worker: Worker | None = None):
    from specs.models import Spec

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        spec = Spec.objects.get(pk=spec_id)
        if until(spec):
            return spec
        if spec.status in ("failed", "cancelled"):
            raise RuntimeError(f"spec {spec_id} {spec.status}: {spec.last_error}")
        time.sleep(0.02)
    log = worker.log()[-4000:] if worker else ""
    raise RuntimeError(f"spec {spec_id} did not finish in {timeout:.0f}s: {Spec.objects.get(pk=spec_id).status}\n{log}")


def done(spec) -> bool:
    """Completed, and its branch pushed (the pull-request step of a project without github_repo)."""
    return spec.status == "completed" and spec.branch_pushed_at is not None


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def bare_chain(hops: int) -> float:
    """The baseline: a chain of `hops` Celery tasks that do nothing but send the next one, on the
    running worker and broker. Returns its wall time in seconds."""
    from omoi.tasks import bench_hop_task

    marker = Path(tempfile.mkdtemp(prefix="omoi-bench-hop-")) / "done"
    started = time.perf_counter()
    bench_hop_task.delay(hops - 1, str(marker))
    while not marker.exists():
        time.sleep(0.0002)
    return time.perf_counter() - started
