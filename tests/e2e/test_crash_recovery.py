"""A worker killed with SIGKILL in the middle of planning and again in the middle of an agent run,
each time replaced by a new machine (another node name): the spec still completes, and nothing is
duplicated (tickets, tasks, commits, the pull request). Recovery is the real one: the reconciler
on beat sees the dead node (its sandboxes are lost) and its expired leases, and sends the steps
again; every step is idempotent. Only the lease is shortened (the node is dead after one lease
period); the reconciler runs at its default interval."""

import subprocess
from collections import Counter

import pytest

from sandboxes import git
from sandboxes.models import SandboxEvent
from specs.models import Spec
from tests.e2e.conftest import sample_script, write_script
from tests.factories import ProjectFactory
from tests.worker import wait_for
from tickets.models import Phase, Task, Ticket

pytestmark = pytest.mark.worker


def test_killed_twice_the_spec_still_completes_without_duplicates(
    start_worker, api, user, sample_repository, fake_github, execution_env, tmp_path, settings
):
    settings.GITHUB_API_URL = fake_github.url
    env = {
        **execution_env,
        "OMOI_REPLAY_SCRIPT": write_script(tmp_path, sample_script()),
        "GITHUB_API_URL": fake_github.url,
        "OMOI_LEASE_S": "3",
    }
    fake_github.git.seed("acme/textkit", sample_repository)  # GitHub has the repository and its main
    project = ProjectFactory(owner=user, repository=str(sample_repository), github_repo="acme/textkit")
    worker = start_worker(env=env, beat=True)

    launched = api.post(
        "/api/v1/specs/launch",
        {"project": project.pk, "idea": "Add word statistics", "require_approval": False},
        format="json",
    )
    assert launched.status_code == 201, launched.json()
    spec_id = launched.json()["id"]

    def event_seen(kind, **payload):
        def seen():
            for event in SandboxEvent.objects.filter(spec_id=spec_id, type=kind):
                if all(event.payload.get(k) == v for k, v in payload.items()):
                    return True
            return False

        return seen

    wait_for(event_seen("spec.phase_started", phase="design"), timeout=90, worker=worker, message="design started")
    worker.kill()
    worker = start_worker(env=env, beat=True)

    wait_for(
        lambda: SandboxEvent.objects.filter(spec_id=spec_id, type="agent.tool_call", ticket__isnull=False).exists(),
        timeout=120, worker=worker, message="an agent run in progress",
    )  # fmt: skip
    worker.kill()
    worker = start_worker(env=env, beat=True)

    spec = wait_for(
        lambda: Spec.objects.filter(pk=spec_id, pull_request_number__isnull=False).first(),
        timeout=300, worker=worker, message="the pull request after two crashes",
    )  # fmt: skip

    assert spec.status == "completed"
    tickets = list(Ticket.objects.filter(spec=spec))
    assert len(tickets) == spec.tasks.count() == 2
    assert {t.phase for t in tickets} == {Phase.DONE}
    per_ticket = Counter(Task.objects.filter(ticket__spec=spec).values_list("ticket_id", "phase", "task_type"))
    assert set(per_ticket.values()) == {1}
    assert len(per_ticket) == 12
    assert len(fake_github.pulls) == 1
    assert spec.requirements.count() == 2

    checkout = tmp_path / "checkout"
    git.clone(f"{fake_github.url}/acme/textkit.git", checkout, branch=spec.branch_name)
    subjects = git.git_run("log", "--no-merges", "--format=%s", "origin/main..HEAD", cwd=checkout).splitlines()
    assert subjects[0] == f"Omoi spec #{spec.pk}: the evidence report", subjects  # docs/omoi/SPEC-<id>.md
    assert len(subjects) == len(set(subjects)) == 3 + 1, subjects
    merges = git.git_run("log", "--merges", "--format=%s", "origin/main..HEAD", cwd=checkout).splitlines()
    assert len(merges) == 2, merges
    tests = subprocess.run(["python3", "-m", "unittest", "discover", "-s", "tests"], cwd=checkout, capture_output=True)
    assert tests.returncode == 0
