"""The suite runs in parallel processes (pytest-xdist, `make test`): each process gets its own data
directory (SQLite test database, embedded broker, sandboxes) and, on Redis, its own database
number, so the Celery workers a test starts take only that process's messages; pytest-django gives
each process its own PostgreSQL test database. Loaded with `-p tests.parallel` (pyproject.toml)
because Django's settings are read before any conftest.py."""

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


def _isolate(worker: str) -> None:
    base = Path(os.environ.get("OMOI_DATA_DIR") or Path(__file__).resolve().parent.parent / "var")
    os.environ["OMOI_DATA_DIR"] = str(base / f"xdist-{worker}")
    os.environ.pop("OMOI_BROKER_DIR", None)  # under the data directory, as by default
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if broker.startswith(("redis://", "rediss://")):
        parts = urlsplit(broker)
        database = int(parts.path.strip("/") or 0)
        index = int(worker.removeprefix("gw"))
        os.environ["CELERY_BROKER_URL"] = urlunsplit(parts._replace(path=f"/{(database + 1 + index) % 16}"))


if os.environ.get("PYTEST_XDIST_WORKER"):
    _isolate(os.environ["PYTEST_XDIST_WORKER"])
