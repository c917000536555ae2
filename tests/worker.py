"""A real Celery worker process for integration tests.

The worker runs `celery -A omoi worker` in a subprocess against the test database (a file for
SQLite, the test database for PostgreSQL) and the configured broker, so serialization, routing,
acks and transactions behave exactly as in production.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.db import connection

from omoi.celery import queues_purge

ALL_QUEUES = "planning,execution,events,default"
BASE_DIR = Path(settings.BASE_DIR)


def database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


def purge_broker() -> None:
    queues_purge()


class WorkerProcess:
    def __init__(
        self,
        *,
        env: dict[str, str] | None = None,
        concurrency: int = 2,
        log_path: Path,
        beat: bool = False,
        name: str | None = None,
    ) -> None:
        self.extra_env = env or {}
        self.concurrency = concurrency
        self.beat = beat
        self.log_path = log_path
        # The node name: a worker restarted under the same name is the same machine coming back.
        self.name = name or f"test-{uuid.uuid4().hex[:8]}@%h"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0, *, wait: bool = True) -> "WorkerProcess":
        environment = {**os.environ, "DATABASE_URL": database_url(), **self.extra_env}
        if "DATABASE_URL" not in os.environ:
            # The test process runs on the embedded default (DEBUG on); naming its test database
            # to the worker must not make the worker start as production.
            environment.setdefault("DJANGO_DEBUG", "true")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        offset = self.log_path.stat().st_size
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "omoi",
                "worker",
                "-Q",
                ALL_QUEUES,
                "-c",
                str(self.concurrency),
                "--loglevel=INFO",
                "-n",
                self.name,
                "--without-gossip",
                "--without-mingle",
                *(["-B", "--schedule", str(self.log_path.with_suffix(".beat"))] if self.beat else []),
            ],
            cwd=BASE_DIR,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if not wait:
            return self  # a worker that may die at once (a fault point in its first step)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            exited = self.process.poll() is not None
            with open(self.log_path, "rb") as handle:
                handle.seek(offset)
                if b" ready." in handle.read():
                    return self  # ready, though it may have died since (a fault point in its first step)
            if exited:
                raise RuntimeError(f"worker exited early:\n{self.log()}")
            time.sleep(0.2)
        raise RuntimeError(f"worker did not become ready in {timeout}s:\n{self.log()}")

    def alive(self) -> bool:
        return bool(self.process and self.process.poll() is None)

    def kill(self) -> None:
        """SIGKILL the worker and its pool children at once, as a crashed machine would."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self._reap_group()

    def _reap_group(self) -> None:
        """Whatever else of the worker's process group is left (it died by its own fault point)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def stop(self) -> None:
        """The test is done with its worker: SIGKILL it. Everything a worker does survives that (the
        point of the leases), and a warm shutdown spends ~6 s waiting for billiard to join its idle
        pool children."""
        self.kill()

    def log(self, tail: int | None = 8000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-tail:] if tail else text


def wait_for(predicate, *, timeout: float = 60.0, interval: float = 0.25, message: str = "condition", worker=None):
    """Poll `predicate` until it returns a truthy value; fail with the worker's log if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    log = worker.log() if worker else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {message}\n--- worker log ---\n{log}")
