"""Endpoints flat with size: the spec detail, the spec list, the board and the ticket list at 100
and at 10,000 tasks and tickets, and the web process's memory while serving 10,000 tickets.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/omoi_NAME python bench/endpoints.py [--small 100 --large 10000]

Runs on PostgreSQL in a throwaway database (`bench_<name>`) that it creates, migrates and drops,
so it never touches real data. Two users each get one project with one spec: the small one of
`--small` planned tasks, the large one of `--large`, every task with its requirement, its
dependency on the task before it, a ticket (spread over every board column) and a task. A real
web process (gunicorn, one worker, DEBUG off) serves both; each endpoint is asked `--repeat`
times per size and the median time is printed, with the response's bytes and the queries the
endpoint runs (counted in this process with the same request), and the ratio large/small.
Targets: ratio within 2×, equal query counts, and the web worker's resident memory after
serving the large answers under 200 MB.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omoi.settings")
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-" + secrets.token_hex(24))
os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "127.0.0.1,testserver")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

ENDPOINTS = [
    ("GET /specs/{id}", "/api/v1/specs/{spec}"),
    ("GET /specs/{id}/tasks", "/api/v1/specs/{spec}/tasks"),
    ("GET /specs (list)", "/api/v1/specs"),
    ("GET /board/view", "/api/v1/board/view?project={project}"),
    ("GET /tickets?project=", "/api/v1/tickets?project={project}"),
]


def populate(size: int) -> dict:
    from django.contrib.auth import get_user_model
    from knox.models import AuthToken

    from tests.support.bulk import spec_with_tickets
    from tickets.models import Project

    user = get_user_model().objects.create(username=f"bench-{size}")
    project = Project.objects.create(owner=user, name=f"bench-{size}", repository="/dev/null")
    started = time.perf_counter()
    spec = spec_with_tickets(project=project, user=user, rows=size)
    _, token = AuthToken.objects.create(user=user)
    print(f"  {size:>6} tasks and tickets written in {time.perf_counter() - started:.1f} s")
    return {"user": user, "project": project.pk, "spec": spec.pk, "token": token}


def queries_of(path: str, user) -> int:
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(user)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return len(captured.captured_queries) + 1  # force_authenticate skips the token lookup


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_web(port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_DEBUG": "false",
        "OMOI_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "omoi.wsgi:application", "--workers", "1",
         "--bind", f"127.0.0.1:{port}", "--timeout", "120", "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the web process exited: {process.stderr.read().decode()[-2000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
            return process
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit("the web process did not answer within 60 s")


def database_url() -> str:
    settings = connection.settings_dict
    user = settings["USER"] or ""
    password = f":{settings['PASSWORD']}" if settings["PASSWORD"] else ""
    host = settings["HOST"] or "127.0.0.1"
    port = settings["PORT"] or 5432
    return f"postgres://{user}{password}@{host}:{port}/{settings['NAME']}"


def worker_pid(master: int) -> int:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return int(children[0]) if children else master


def memory_mb(pid: int) -> tuple[float, float]:
    """Resident memory now and its peak (VmRSS, VmHWM), in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def timed_get(url: str, token: str) -> tuple[float, int]:
    request = urllib.request.Request(url, headers={"Authorization": f"Token {token}"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        body = response.read()
    return time.perf_counter() - started, len(body)


def measure(base: str, paths: dict[str, tuple[str, str]], repeat: int) -> dict[str, tuple[float, int]]:
    """Median time and bytes per size, the sizes asked in turn so that whatever else the machine
    does weighs on both alike."""
    samples: dict[str, list[tuple[float, int]]] = {name: [] for name in paths}
    for path, token in paths.values():
        timed_get(base + path, token)  # warm: connections, caches, imports
    for _ in range(repeat):
        for name, (path, token) in paths.items():
            samples[name].append(timed_get(base + path, token))
    return {name: (statistics.median(t for t, _ in got), got[-1][1]) for name, got in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        raise SystemExit("bench/endpoints.py measures PostgreSQL: set DATABASE_URL=postgres://...")

    settings_dict = connection.settings_dict
    settings_dict.setdefault("TEST", {})["NAME"] = f"bench_{settings_dict['NAME']}"
    old_name = settings_dict["NAME"]
    test_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    web = None
    try:
        print(f"Endpoints benchmark on PostgreSQL ({test_name}), {args.small} vs {args.large} tasks and tickets")
        small, large = populate(args.small), populate(args.large)
        connection.close()
        port = free_port()
        web = start_web(port)
        base = f"http://127.0.0.1:{port}"
        pid = worker_pid(web.pid)
        rss_before, _ = memory_mb(pid)
        print()
        print(f"{'endpoint':<24} {'ms small':>9} {'ms large':>9} {'ratio':>6}  {'bytes small':>11} "
              f"{'bytes large':>11}  {'queries':>9}")  # fmt: skip
        worst = 0.0
        for label, template in ENDPOINTS:
            paths = {
                name: (template.format(spec=data["spec"], project=data["project"]), data["token"])
                for name, data in (("small", small), ("large", large))
            }
            timings = measure(base, paths, args.repeat)
            users = {"small": small["user"], "large": large["user"]}
            rows = {name: (*timings[name], queries_of(paths[name][0], users[name])) for name in paths}
            ratio = rows["large"][0] / rows["small"][0]
            worst = max(worst, ratio)
            queries = f"{rows['small'][2]}/{rows['large'][2]}"
            print(f"{label:<24} {rows['small'][0] * 1000:>9.1f} {rows['large'][0] * 1000:>9.1f} {ratio:>5.2f}× "
                  f"{rows['small'][1]:>11} {rows['large'][1]:>11}  {queries:>9}")  # fmt: skip
        rss, peak = memory_mb(pid)
        print()
        print(f"worst time ratio large/small: {worst:.2f}× (target ≤ 2×)")
        print(f"web worker resident memory: {rss_before:.0f} MB at start, {rss:.0f} MB after serving "
              f"{args.large:,} tickets (peak {peak:.0f} MB; target < 200 MB)")  # fmt: skip
    finally:
        if web is not None:
            web.terminate()
            web.wait(timeout=30)
        connection.close()
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
