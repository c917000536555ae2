"""Fault injection with real worker processes: the worker's whole process tree is SIGKILLed at named
moments (omoi/faults.py) — in a planning turn, right after approval, in an agent turn, while a
command runs, during the host's verification, during the merge, during completion and during the
pull-request step — and restarted at once, as a crashed machine coming back; the broker and the
database are restarted under running work. Each time the spec completes with exactly one ticket per
planned task and no duplicate task, commit, model usage row or pull request.

Only the lease is shortened (OMOI_LEASE_S); every other timing is the default.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from django.db import connection
from django.db.models import Sum

from omoi.models import Lease, LLMUsage
from sandboxes import git
from sandboxes.models import AgentRun, SandboxEvent
from specs.models import Spec
from tests.e2e.conftest import launch_sample, sample_script, write_script
from tickets.models import Phase, Task, Ticket

pytestmark = pytest.mark.worker

LEASE_S = "3"
SCENARIOS = {
    "planning_and_approval": ["planning.turn", "bridge.prepared", "bridge.committed"],
    "agent_work": ["task.turn", "sandbox.command", "verify.checked"],
    "delivery": [
        "merge.computed",
        "merge.advanced",
        "completion.verifying",
        "pull_request.pushed",
        "pull_request.opened",
    ],
}


def _on_postgres() -> bool:
    return connection.vendor == "postgresql"


def _on_redis(settings) -> bool:
    return settings.CELERY_BROKER_URL.startswith("redis://")


def run_until_completed(start, *, spec_id: int, env: dict, restarts_expected: int, timeout: float = 240.0):
    """Keep one worker (one node name) running until the spec has its pull request, restarting it
    at once each time a fault point kills it. Returns (spec, restarts)."""
    name = "faulty@%h"
    worker = start(env=env, beat=True, name=name)
    restarts = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        spec = Spec.objects.filter(pk=spec_id, pull_request_number__isnull=False).first()
        if spec is not None:
            return spec, restarts
        if not worker.alive():
            worker.kill()  # reap what is left of its process group
            restarts += 1
            worker = start(env=env, beat=True, name=name, wait=False)
        time.sleep(0.3)
    spec = Spec.objects.get(pk=spec_id)
    raise AssertionError(
        f"the spec did not complete after {restarts} restarts of {restarts_expected}: {spec.status} "
        f"{spec.current_phase} {spec.last_error!r}; leases: {list(Lease.objects.values())}\n{worker.log()}"
    )


def assert_nothing_duplicated(spec: Spec, *, sample_repository: Path, tmp_path: Path, fake_github) -> None:
    tickets = list(Ticket.objects.filter(spec=spec))
    assert spec.status == "completed"
    assert len(tickets) == spec.tasks.count() == 2
    assert {t.phase for t in tickets} == {Phase.DONE}
    per_ticket = Counter(Task.objects.filter(ticket__spec=spec).values_list("ticket_id", "phase", "task_type"))
    assert set(per_ticket.values()) == {1} and len(per_ticket) == 12
    assert not Task.objects.filter(ticket__spec=spec).exclude(status="completed").exists()
    # One usage row per model turn that counted, however often a turn's message was delivered.
    turns = AgentRun.objects.filter(spec=spec).aggregate(total=Sum("turns"))["total"]
    assert LLMUsage.objects.filter(spec=spec).count() == turns
    per_turn = Counter(LLMUsage.objects.filter(spec=spec).values_list("agent_run_id", "turn"))
    assert set(per_turn.values()) == {1}
    assert len(fake_github.pulls) == 1
    checkout = tmp_path / "checkout"
    shutil.rmtree(checkout, ignore_errors=True)
    git.clone(f"{fake_github.url}/acme/textkit.git", checkout, branch=spec.branch_name)
    subjects = git.git_run("log", "--no-merges", "--format=%s", "origin/main..HEAD", cwd=checkout).splitlines()
    assert subjects[0] == f"Omoi spec #{spec.pk}: the evidence report", subjects  # docs/omoi/SPEC-<id>.md
    assert len(subjects) == len(set(subjects)) == 3 + 1, subjects
    merges = git.git_run("log", "--merges", "--format=%s", "origin/main..HEAD", cwd=checkout).splitlines()
    assert len(merges) == 2, merges
    tests = subprocess.run(["python3", "-m", "unittest", "discover", "-s", "tests"], cwd=checkout, capture_output=True)
    assert tests.returncode == 0, tests.stderr


@pytest.fixture
def faulty_env(execution_env, tmp_path, fake_github, settings):
    settings.GITHUB_API_URL = fake_github.url
    return {
        **execution_env,
        "OMOI_REPLAY_SCRIPT": write_script(tmp_path, sample_script()),
        "GITHUB_API_URL": fake_github.url,
        "OMOI_LEASE_S": LEASE_S,
        "OMOI_FAULTS_DIR": str(tmp_path / "faults"),
    }


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_a_worker_killed_at_each_point_loses_nothing_and_duplicates_nothing(
    scenario, start_worker, api, user, sample_repository, fake_github, faulty_env, tmp_path
):
    points = SCENARIOS[scenario]
    env = {**faulty_env, "OMOI_FAULTS": ",".join(points)}
    spec_id = launch_sample(api, user=user, sample_repository=sample_repository, fake_github=fake_github)

    spec, restarts = run_until_completed(start_worker, spec_id=spec_id, env=env, restarts_expected=len(points))

    fired = sorted(path.name.removeprefix("fired-") for path in (tmp_path / "faults").iterdir())
    assert fired == sorted(points)
    assert restarts == len(points)
    assert_nothing_duplicated(spec, sample_repository=sample_repository, tmp_path=tmp_path, fake_github=fake_github)


def _restart_redis() -> None:
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", "6379", "shutdown", "nosave"], capture_output=True)
    subprocess.run(
        ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379", "--save", "", "--appendonly",
         "no"],
        check=True, capture_output=True,
    )  # fmt: skip
    for _ in range(50):
        if subprocess.run(["redis-cli", "-h", "127.0.0.1", "ping"], capture_output=True).stdout.strip() == b"PONG":
            return
        time.sleep(0.1)
    raise AssertionError("Redis did not come back")


def _restart_postgres() -> None:
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[0]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"], check=True)
    connection.close()


@pytest.mark.serial
@pytest.mark.parametrize("service", ["redis", "postgresql"])
def test_the_broker_or_the_database_restarted_mid_run_loses_nothing(
    service, start_worker, api, user, sample_repository, fake_github, faulty_env, tmp_path, settings
):
    if service == "redis" and not _on_redis(settings):
        pytest.skip("the broker here is the embedded one (CELERY_BROKER_URL is not redis://)")
    if service == "postgresql" and not _on_postgres():
        pytest.skip("the database here is the embedded SQLite (DATABASE_URL is not PostgreSQL)")
    spec_id = launch_sample(api, user=user, sample_repository=sample_repository, fake_github=fake_github)
    name = "steady@%h"
    worker = start_worker(env=faulty_env, beat=True, name=name)
    deadline = time.monotonic() + 90
    while not SandboxEvent.objects.filter(spec_id=spec_id, type="agent.tool_call", ticket__isnull=False).exists():
        assert time.monotonic() < deadline, worker.log()
        time.sleep(0.2)

    (_restart_redis if service == "redis" else _restart_postgres)()

    # The worker may exit when its broker connection breaks (kombu); like docker compose's
    # `restart: unless-stopped`, the test restarts it when it does.
    deadline = time.monotonic() + 240
    spec = None
    while time.monotonic() < deadline:
        try:
            spec = Spec.objects.filter(pk=spec_id, pull_request_number__isnull=False).first()
        except Exception:  # the database is still starting
            connection.close()
            spec = None
        if spec is not None:
            break
        if not worker.alive():
            worker.kill()
            worker = start_worker(env=faulty_env, beat=True, name=name)
        time.sleep(0.5)
    assert spec is not None, worker.log()
    assert_nothing_duplicated(spec, sample_repository=sample_repository, tmp_path=tmp_path, fake_github=fake_github)
