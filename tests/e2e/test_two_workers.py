"""Two worker processes with data directories of their own — two machines in miniature, sharing
only the database and the broker — carry one spec of several tickets together; and when one of
them is killed for good in the middle, the other finishes its work: its sandboxes are declared
lost, the tickets start again from their last verified commit, and nothing is lost or duplicated."""

from __future__ import annotations

import subprocess
import time
from collections import Counter

import pytest
from django.conf import settings as django_settings

from sandboxes import git
from sandboxes.models import Sandbox, SandboxEvent
from specs.models import Spec
from tests.e2e.conftest import launch_sample
from tests.support.generated import TEST_COMMAND, write_independent_tasks_script
from tickets.models import Phase, Ticket

pytestmark = pytest.mark.worker

TICKETS = 6


def machine_env(tmp_path, name: str, common: dict) -> dict:
    root = tmp_path / name
    return {
        **common,
        "OMOI_DATA_DIR": str(root),
        "OMOI_REPOS_DIR": str(root / "repos"),
        "OMOI_SANDBOX_ROOT": str(root / "sandboxes"),
    }


@pytest.fixture
def common_env(tmp_path, fake_github, settings):
    settings.GITHUB_API_URL = fake_github.url
    settings.OMOI_REPOS_DIR = tmp_path / "web" / "repos"
    return {
        "OMOI_REPLAY_SCRIPT": write_independent_tasks_script(tmp_path / "script.json", TICKETS),
        "GITHUB_API_URL": fake_github.url,
        "GITHUB_TOKEN": "test-github-token",
        "OMOI_BROKER_DIR": str(django_settings.CELERY_BROKER_DIR),
        "OMOI_LEASE_S": "3",
    }


def launch(api, user, sample_repository, fake_github) -> int:
    return launch_sample(
        api, user=user, sample_repository=sample_repository, fake_github=fake_github, idea="Add six features",
        test_command=TEST_COMMAND,
    )  # fmt: skip


def wait_for_pull_request(spec_id: int, workers, timeout: float = 240.0) -> Spec:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        spec = Spec.objects.filter(pk=spec_id, pull_request_number__isnull=False).first()
        if spec is not None:
            return spec
        time.sleep(0.3)
    from omoi.models import Lease
    from tickets.models import Task

    spec = Spec.objects.get(pk=spec_id)
    state = {
        "tickets": list(Ticket.objects.filter(spec_id=spec_id).values_list("pk", "phase", "blocked_message")),
        "tasks": list(Task.objects.filter(ticket__spec_id=spec_id).values_list("ticket_id", "task_type", "status")),
        "leases": list(Lease.objects.values_list("kind", "object_id", "owner", "failures", "last_error")),
        "sandboxes": list(Sandbox.objects.filter(spec_id=spec_id).values_list("pk", "ticket_id", "node", "status")),
    }
    logs = "\n".join(worker.log(3000) for worker in workers)
    raise AssertionError(f"no pull request: {spec.status} {spec.last_error!r}\n{state}\n{logs}")


def turns_by_node(spec_id: int) -> Counter:
    return Counter(
        event.payload.get("node", "")
        for event in SandboxEvent.objects.filter(spec_id=spec_id, type="agent.turn", ticket__isnull=False)
    )


def assert_all_work_merged_once(spec: Spec, fake_github, tmp_path) -> None:
    tickets = Ticket.objects.filter(spec=spec)
    assert tickets.count() == spec.tasks.count() == TICKETS
    assert {ticket.phase for ticket in tickets} == {Phase.DONE}
    checkout = tmp_path / "checkout"
    git.clone(f"{fake_github.url}/acme/textkit.git", checkout, branch=spec.branch_name)
    subjects = git.git_run("log", "--no-merges", "--format=%s", "origin/main..HEAD", cwd=checkout).splitlines()
    assert subjects[0] == f"Omoi spec #{spec.pk}: the evidence report", subjects  # docs/omoi/SPEC-<id>.md
    assert len(subjects) == len(set(subjects)) == TICKETS + 1, subjects
    merges = git.git_run("log", "--merges", "--format=%s", "origin/main..HEAD", cwd=checkout).splitlines()
    assert len(merges) == TICKETS, merges
    tests = subprocess.run(TEST_COMMAND.split(), cwd=checkout, capture_output=True, text=True)
    assert tests.returncode == 0 and f"Ran {TICKETS + 2} tests" in tests.stderr, tests.stderr


def test_two_machines_share_one_spec(start_worker, api, user, sample_repository, common_env, tmp_path, fake_github):
    first = start_worker(env=machine_env(tmp_path, "a", common_env), name="a@%h", concurrency=1, beat=True)
    second = start_worker(env=machine_env(tmp_path, "b", common_env), name="b@%h", concurrency=1)

    spec = wait_for_pull_request(launch(api, user, sample_repository, fake_github), [first, second])

    assert spec.status == "completed"
    shares = turns_by_node(spec.pk)
    assert {node.split("@")[0] for node in shares} == {"a", "b"}
    assert all(count > 0 for count in shares.values()), shares
    # Each machine kept its own mirror of the spec: code crossed between them only as git data.
    assert any((tmp_path / "a" / "repos").glob("spec-*.git")) and any((tmp_path / "b" / "repos").glob("spec-*.git"))
    assert_all_work_merged_once(spec, fake_github, tmp_path)


def test_a_machine_lost_for_good_loses_nothing(
    start_worker, api, user, sample_repository, common_env, tmp_path, fake_github
):
    first = start_worker(env=machine_env(tmp_path, "a", common_env), name="a@%h", concurrency=1, beat=True)
    second = start_worker(env=machine_env(tmp_path, "b", common_env), name="b@%h", concurrency=1)
    spec_id = launch(api, user, sample_repository, fake_github)
    deadline = time.monotonic() + 120
    while not Sandbox.objects.filter(spec_id=spec_id, ticket__isnull=False, node__startswith="b@").exists():
        assert time.monotonic() < deadline, second.log()
        time.sleep(0.1)

    second.kill()  # and never comes back

    spec = wait_for_pull_request(spec_id, [first])
    assert spec.status == "completed"
    assert Sandbox.objects.filter(spec_id=spec_id, node__startswith="b@", status="lost").exists() or not (
        Spec.objects.filter(pk=spec_id).exists()
    )
    assert_all_work_merged_once(spec, fake_github, tmp_path)
