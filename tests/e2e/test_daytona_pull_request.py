"""The main job end to end with OMOI_SANDBOX_PROVIDER=daytona: the same idea → pull request path as
test_spec_to_pull_request.py, in a real worker process, every sandbox a Daytona sandbox reached
through the real SDK over HTTP (tests/support/fake_daytona.py). And a worker SIGKILLed while it
holds a ticket's Daytona sandbox (the fault point "sandbox.command": a command ran there, its answer
not yet recorded) finds that sandbox again after its restart instead of creating a second one."""

from __future__ import annotations

import base64
import json
import subprocess

import pytest

from sandboxes import git
from sandboxes.models import Sandbox, SandboxEvent, SandboxStatus
from specs.models import Spec
from tests.e2e.conftest import launch_sample, sample_script, write_script
from tests.e2e.test_faults import assert_nothing_duplicated, run_until_completed
from tests.worker import database_url, wait_for
from tickets.models import Phase, Ticket

pytestmark = pytest.mark.worker


@pytest.fixture
def daytona_env(execution_env, fake_daytona, fake_github, tmp_path, settings):
    """A worker's environment: the Daytona provider against the fake, GitHub against its fake."""
    settings.GITHUB_API_URL = fake_github.url
    return {
        **execution_env,
        **fake_daytona.worker_env(),
        "OMOI_REPLAY_SCRIPT": write_script(tmp_path, sample_script()),
        "GITHUB_API_URL": fake_github.url,
    }


def created(fake_daytona) -> list[dict]:
    """The sandboxes Daytona made (the creates it accepted), as the SDK asked for them."""
    return [json.loads(r["body"]) for r in fake_daytona.requests_to("POST", "/api/sandbox") if r["status"] == 200]


def executions_by_sandbox(fake_daytona) -> dict[str, list[float]]:
    """When each Daytona sandbox was asked to run something (the toolbox's process API)."""
    times: dict[str, list[float]] = {}
    for request in fake_daytona.requests_to("POST", "/process/execute"):
        sandbox_id = request["path"].split("/")[2]
        times.setdefault(sandbox_id, []).append(request["time"])
    return times


def sent_to_daytona(fake_daytona) -> list[bytes]:
    """Everything the worker sent to Daytona: request bodies, and the runner's requests, which ride
    base64-encoded on the command line of the process API."""
    sent = []
    for request in fake_daytona.requests:
        sent.append(request["body"])
        for token in request.get("execute", {}).get("command", "").split():
            if token.startswith("b64:"):
                sent.append(base64.urlsafe_b64decode(token[4:]))
    return sent


def assert_one_daytona_sandbox_per_ticket(spec: Spec, fake_daytona) -> list[Sandbox]:
    rows = list(Sandbox.objects.filter(spec=spec).order_by("id"))
    tickets = list(Ticket.objects.filter(spec=spec))
    assert {row.provider for row in rows} == {"daytona"}
    assert {row.node for row in rows} == {""}  # remote: any worker may run their steps
    assert all(row.external_id for row in rows)
    assert not [row for row in rows if row.status == SandboxStatus.LOST]
    # The spec's planning sandbox, then one per ticket, and Daytona made exactly those.
    assert sorted(row.ticket_id for row in rows if row.ticket_id) == sorted(t.pk for t in tickets)
    assert sorted(body["name"] for body in created(fake_daytona)) == sorted(f"omoi-{row.pk}" for row in rows)
    made = {r["path"].split("/")[3] for r in fake_daytona.requests_to("DELETE", "") if r["path"].startswith("/api/")}
    assert made == {row.external_id for row in rows}  # every one released (deleted) when its work was done
    return rows


def test_an_idea_becomes_a_pull_request_with_daytona_sandboxes(
    start_worker, api, user, sample_repository, fake_github, fake_daytona, daytona_env, tmp_path
):
    worker = start_worker(env=daytona_env)
    spec_id = launch_sample(
        api, user=user, sample_repository=sample_repository, fake_github=fake_github, require_approval=True,
        test_command="",
    )  # fmt: skip

    wait_for(
        lambda: Spec.objects.get(pk=spec_id).status == "planning_complete", timeout=120, worker=worker,
        message="planning_complete",
    )  # fmt: skip
    approved = api.post(f"/api/v1/specs/{spec_id}/approve")
    assert approved.status_code == 200, approved.json()
    spec = wait_for(
        lambda: Spec.objects.filter(pk=spec_id, pull_request_number__isnull=False).first(),
        timeout=240, worker=worker, message="the pull request",
    )  # fmt: skip

    assert spec.status == "completed" and spec.progress == 100
    assert {t.phase for t in Ticket.objects.filter(spec=spec)} == {Phase.DONE}
    assert len(fake_github.pulls) == 1
    assert fake_github.pulls[0]["head"]["ref"] == spec.branch_name
    wait_for(lambda: not fake_daytona.live(), timeout=30, worker=worker, message="every Daytona sandbox released")
    rows = assert_one_daytona_sandbox_per_ticket(spec, fake_daytona)
    # The agents' commands and the host's checks ran in the tickets' Daytona sandboxes.
    ran = executions_by_sandbox(fake_daytona)
    assert all(row.external_id in ran for row in rows if row.ticket_id)
    acquired = SandboxEvent.objects.filter(spec=spec, type="sandbox.acquired").values_list("payload", flat=True)
    assert {(p["provider"], p["confined"]) for p in acquired} == {("daytona", True)}
    assert not SandboxEvent.objects.filter(spec=spec, type="sandbox.unconfined").exists()
    # Each agent turn touched its sandbox, so Daytona's auto-stop counts from the last turn.
    assert fake_daytona.requests_to("POST", "/last-activity")
    # No server secret went over the wire to Daytona (the GitHub token, the database URL).
    sent = sent_to_daytona(fake_daytona)
    assert any(b'"op": "run"' in data for data in sent)  # the runner's requests were decoded
    secrets = [daytona_env["GITHUB_TOKEN"].encode(), database_url().encode()]
    assert not [data for data in sent for secret in secrets if secret in data]

    # The spec branch was pushed to the project's repository and its tests really pass.
    checkout = tmp_path / "checkout"
    git.clone(f"{fake_github.url}/acme/textkit.git", checkout, branch=spec.branch_name)
    log = git.git_run("log", "--format=%s", "origin/main..HEAD", cwd=checkout)
    assert "TSK-001: " in log and "TSK-002: " in log
    tests = subprocess.run(
        ["python3", "-m", "unittest", "discover", "-s", "tests"], cwd=checkout, capture_output=True, text=True
    )
    assert tests.returncode == 0, tests.stderr
    assert "Ran 8 tests" in tests.stderr


def test_a_worker_killed_holding_a_daytona_sandbox_finds_it_again(
    start_worker, api, user, sample_repository, fake_github, fake_daytona, daytona_env, tmp_path
):
    faults = tmp_path / "faults"
    env = {**daytona_env, "OMOI_LEASE_S": "3", "OMOI_FAULTS": "sandbox.command", "OMOI_FAULTS_DIR": str(faults)}
    spec_id = launch_sample(api, user=user, sample_repository=sample_repository, fake_github=fake_github)

    spec, restarts = run_until_completed(start_worker, spec_id=spec_id, env=env, restarts_expected=1)

    assert restarts == 1
    killed_at = (faults / "fired-sandbox.command").stat().st_mtime
    assert_nothing_duplicated(spec, sample_repository=sample_repository, tmp_path=tmp_path, fake_github=fake_github)
    wait_for(lambda: not fake_daytona.live(), timeout=30, message="every Daytona sandbox released")
    rows = assert_one_daytona_sandbox_per_ticket(spec, fake_daytona)
    # The ticket whose command was running when its worker died: its one Daytona sandbox ran
    # commands for the killed worker and, after the restart, for the new one.
    ran = executions_by_sandbox(fake_daytona)
    [held] = [
        row for row in rows if row.ticket_id and min(ran[row.external_id]) < killed_at < max(ran[row.external_id])
    ]
    assert Sandbox.objects.filter(ticket_id=held.ticket_id).count() == 1
    assert len(created(fake_daytona)) == len(rows)
