"""The Daytona provider on the wire: the real SDK against tests/support/fake_daytona.py.

What the contract suite (test_provider_contract.py) cannot show for every provider: a sandbox
named and labelled as this row's, created once even across a crash (the create that collides
answers 409 and the sandbox is found instead), stopped then deleted on release, reaped when no
run holds it, touched every turn, restarted after auto-stop, never given a secret, given network
for the setup step only, and a command's partial output recovered when its API call is lost. And
its wiring into the core: the row records the Daytona id and names no node, the reconciler reaps
what no live row holds, the setup step runs once per sandbox, and which failures retry a step.
"""

import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import daytona
import pytest
from daytona import CreateSandboxFromSnapshotParams, Daytona, DaytonaAuthenticationError, DaytonaConfig

from omoi import nodes
from omoi.reconcile import reconcile
from omoi.retry import is_transient
from sandboxes.models import Sandbox, SandboxEvent
from sandboxes.providers import SandboxGone, SandboxUnavailable, get_sandbox_provider, sandbox_boundary_line
from sandboxes.providers.daytona import (
    DaytonaSandboxProvider,
    DaytonaWorkspace,
    RemoteSandboxError,
    daytona_client,
    reset_clients,
)
from sandboxes.services.sandbox import sandbox_acquire, sandbox_touch
from sandboxes.services.setup import sandbox_setup_run
from tests.factories import TicketFactory

REPO_ROOT = Path(__file__).resolve().parents[2]


def fresh_provider() -> DaytonaSandboxProvider:
    """The provider as a new process builds it: a new SDK client, nothing remembered."""
    reset_clients()
    return get_sandbox_provider("daytona")


def acquire(provider, repo, *, sandbox=None, branch="omoi/task-1"):
    sandbox = sandbox or Sandbox.objects.create(provider="daytona")
    return sandbox, provider.acquire(sandbox=sandbox, source=str(repo), ref="main", branch=branch)


def worker_env(fake, git_repo) -> dict[str, str]:
    """A worker process's environment: configured for the fake Daytona and nothing else."""
    return {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "omoi.settings",
        "OMOI_DATA_DIR": str(git_repo.parent / "worker-data"),
        **fake.worker_env(),
    }


def creates(fake) -> list[int]:
    return [r["status"] for r in fake.requests_to("POST", "/api/sandbox")]


# --- configuration -------------------------------------------------------------------------------


def test_the_configured_daytona_provider_is_confined(fake_daytona, settings):
    provider = get_sandbox_provider("daytona")

    assert isinstance(provider, DaytonaSandboxProvider)
    assert (provider.name, provider.confined, provider.remote) == ("daytona", True, True)
    assert sandbox_boundary_line("daytona") == (
        f"daytona: commands run in remote Daytona sandboxes ({fake_daytona.api_url}, snapshot (Daytona default); "
        "no network unless asked)"
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"DAYTONA_API_KEY": ""}, "Daytona is not configured: set DAYTONA_API_KEY"),
        ({"DAYTONA_SANDBOX_PREFIX": "Omoi_Prod"}, "DAYTONA_SANDBOX_PREFIX 'Omoi_Prod' must be"),
        (
            {"DAYTONA_SNAPSHOT": "omoi", "DAYTONA_IMAGE": "python:3.12"},
            "set DAYTONA_SNAPSHOT or DAYTONA_IMAGE, not both",
        ),
    ],
)
def test_a_misconfigured_daytona_says_what_to_set(fake_daytona, settings, changes, message):
    for name, value in changes.items():
        setattr(settings, name, value)

    with pytest.raises(SandboxUnavailable, match=message):
        get_sandbox_provider("daytona")


@pytest.mark.django_db
def test_a_wrong_api_key_is_refused_and_creates_nothing(fake_daytona, settings, git_repo):
    settings.DAYTONA_API_KEY = "not-the-key"

    with pytest.raises(DaytonaAuthenticationError):
        acquire(fresh_provider(), git_repo)

    assert creates(fake_daytona) == [401]
    assert fake_daytona.live() == []


def test_one_client_per_process(fake_daytona, monkeypatch):
    first = daytona_client()

    assert daytona_client() is first
    monkeypatch.setattr(os, "getpid", lambda: -1)
    assert daytona_client() is not first


# --- creation, crash, release, reap ---------------------------------------------------------------


@pytest.mark.django_db
def test_a_sandbox_is_made_from_the_snapshot_named_and_labelled_with_no_environment(fake_daytona, settings, git_repo):
    settings.DAYTONA_SNAPSHOT = "omoi-python"
    sandbox, workspace = acquire(fresh_provider(), git_repo)

    [remote] = fake_daytona.live()
    request = json.loads(fake_daytona.requests_to("POST", "/api/sandbox")[0]["body"])
    assert remote.name == workspace.name == f"omoi-{sandbox.pk}"
    assert remote.id == workspace.external_id
    assert remote.labels["omoi.instance"] == "omoi"
    assert remote.labels["omoi.sandbox"] == str(sandbox.pk)
    assert remote.snapshot == "omoi-python"
    assert (request["env"], request["networkBlockAll"], request["autoStopInterval"]) == ({}, True, 15)
    assert request["public"] is False
    assert workspace.label == f"daytona:omoi-{sandbox.pk}"
    assert str(workspace.root) == f"{remote.home}/workspace"


@pytest.mark.django_db
def test_after_a_crash_the_sandbox_is_found_again_instead_of_made_twice(fake_daytona, git_repo, monkeypatch):
    sandbox = Sandbox.objects.create(provider="daytona")
    real_prepare = DaytonaWorkspace.prepare

    def killed(self, **kwargs):
        raise SystemExit("worker killed between create and clone")

    monkeypatch.setattr(DaytonaWorkspace, "prepare", killed)
    with pytest.raises(SystemExit):
        acquire(fresh_provider(), git_repo, sandbox=sandbox)
    monkeypatch.setattr(DaytonaWorkspace, "prepare", real_prepare)

    _, workspace = acquire(fresh_provider(), git_repo, sandbox=sandbox)
    workspace.write_file("work.txt", "kept\n")
    _, again = acquire(fresh_provider(), git_repo, sandbox=sandbox)

    assert creates(fake_daytona) == [200, 409, 409]
    assert [s.name for s in fake_daytona.live()] == [f"omoi-{sandbox.pk}"]
    assert again.external_id == workspace.external_id
    assert again.read_file("work.txt") == "     1\tkept"
    assert again.git("symbolic-ref", "--short", "HEAD").stdout == "omoi/task-1\n"


@pytest.mark.django_db
def test_a_worker_killed_mid_acquire_leaves_one_sandbox_that_the_next_acquire_takes(fake_daytona, git_repo):
    """A real process, SIGKILLed while it uploads the code into the sandbox it just created."""
    sandbox = Sandbox.objects.create(provider="daytona")
    script = (
        "import django; django.setup()\n"
        "from sandboxes.models import Sandbox\n"
        "from sandboxes.providers import get_sandbox_provider\n"
        f"row = Sandbox(pk={sandbox.pk}, provider='daytona')\n"
        f"get_sandbox_provider().acquire(sandbox=row, source={str(git_repo)!r}, ref='main', branch='omoi/task-1')\n"
    )
    fake_daytona.uploads_open.clear()
    worker = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT, env=worker_env(fake_daytona, git_repo))
    try:
        assert fake_daytona.upload_arrived.wait(60), "the worker never reached the upload"
        worker.kill()
        worker.wait(30)
    finally:
        fake_daytona.uploads_open.set()
    [interrupted] = fake_daytona.requests_to("POST", "/files/bulk-upload")
    deadline = time.monotonic() + 10
    while "status" not in interrupted and time.monotonic() < deadline:
        time.sleep(0.02)  # the server finishes writing what the dead worker had sent

    _, workspace = acquire(fresh_provider(), git_repo, sandbox=sandbox)

    assert worker.returncode == -9
    assert creates(fake_daytona) == [200, 409]
    assert [s.name for s in fake_daytona.live()] == [f"omoi-{sandbox.pk}"]
    assert workspace.git("symbolic-ref", "--short", "HEAD").stdout == "omoi/task-1\n"
    assert workspace.read_file("calc/ops.py").startswith("     1\tdef add(a, b):")
    assert not list((Path(workspace.omoi_dir) / "incoming").glob("*.bundle"))


@pytest.mark.django_db
def test_a_name_taken_by_a_sandbox_that_is_not_ours_is_an_error(fake_daytona, git_repo):
    sandbox = Sandbox.objects.create(provider="daytona")
    other = Daytona(DaytonaConfig(api_key=fake_daytona.api_key, api_url=fake_daytona.api_url, target="us"))
    other.create(CreateSandboxFromSnapshotParams(name=f"omoi-{sandbox.pk}", labels={"team": "data"}))

    with pytest.raises(SandboxUnavailable, match="is not labelled as Omoi's sandbox"):
        acquire(fresh_provider(), git_repo, sandbox=sandbox)

    assert len(fake_daytona.live()) == 1
    with pytest.raises(SandboxGone, match="is not Omoi's sandbox"):
        fresh_provider().attach(sandbox=sandbox)


@pytest.mark.django_db
def test_release_stops_then_deletes(fake_daytona, git_repo):
    sandbox, workspace = acquire(fresh_provider(), git_repo)
    sandbox_id = workspace.external_id

    fresh_provider().release(sandbox=sandbox)
    fresh_provider().release(sandbox=sandbox)

    lifecycle = [(r["method"], r["path"]) for r in fake_daytona.requests if r["path"].startswith("/api/sandbox/")]
    stop, delete = ("POST", f"/api/sandbox/{sandbox_id}/stop"), ("DELETE", f"/api/sandbox/{sandbox_id}")
    assert lifecycle.index(stop) < lifecycle.index(delete)
    assert lifecycle.count(delete) == 1
    assert fake_daytona.live() == []
    assert [s.id for s in fake_daytona.destroyed] == [sandbox_id]
    assert not fake_daytona.destroyed[0].directory.exists()


@pytest.mark.django_db
def test_the_reaper_deletes_only_this_installations_sandboxes_that_no_run_holds(fake_daytona, settings, git_repo):
    provider = fresh_provider()
    held_by_id = acquire(provider, git_repo)[1]
    held_by_name = acquire(provider, git_repo)[1]
    orphan = acquire(provider, git_repo)[1]
    other = Daytona(DaytonaConfig(api_key=fake_daytona.api_key, api_url=fake_daytona.api_url, target="us"))
    foreign = other.create(CreateSandboxFromSnapshotParams(name="staging-1", labels={"omoi.instance": "staging"}))
    keep = {held_by_id.external_id, held_by_name.name}

    settings.DAYTONA_REAP_GRACE_S = 3600
    spared = fresh_provider().reap(keep=keep)
    settings.DAYTONA_REAP_GRACE_S = 0
    removed = fresh_provider().reap(keep=keep)

    assert spared == []
    assert removed == [orphan.external_id]
    assert {s.id for s in fake_daytona.live()} == {held_by_id.external_id, held_by_name.external_id, foreign.id}


# --- every turn ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_touch_refreshes_the_sandboxs_activity(fake_daytona, git_repo):
    sandbox, _ = acquire(fresh_provider(), git_repo)

    fresh_provider().touch(sandbox=sandbox)
    fresh_provider().touch(sandbox=sandbox)

    assert fake_daytona.live()[0].activity_refreshes == 2


@pytest.mark.django_db
def test_an_auto_stopped_sandbox_is_started_again_by_the_next_turn(fake_daytona, git_repo):
    sandbox, workspace = acquire(fresh_provider(), git_repo)
    workspace.write_file("thinking.txt", "before the pause\n")
    daytona_client().get(workspace.external_id).stop()

    reopened = fresh_provider().attach(sandbox=sandbox)

    assert fake_daytona.live()[0].state == "started"
    assert reopened.read_file("thinking.txt") == "     1\tbefore the pause"


@pytest.mark.django_db
def test_a_sandbox_daytona_lost_is_gone(fake_daytona, git_repo):
    sandbox, workspace = acquire(fresh_provider(), git_repo)
    daytona_client().delete(daytona_client().get(workspace.external_id))

    with pytest.raises(SandboxGone, match=f"Daytona has no sandbox omoi-{sandbox.pk}"):
        fresh_provider().attach(sandbox=sandbox)
    fresh_provider().release(sandbox=sandbox)
    with pytest.raises(SandboxGone):
        fresh_provider().touch(sandbox=sandbox)


@pytest.mark.django_db
def test_a_runner_an_agent_altered_is_replaced_by_the_next_turn(fake_daytona, git_repo):
    sandbox, workspace = acquire(fresh_provider(), git_repo)
    answer = {"ok": {"exit_code": 0, "stdout": "all passed", "stderr": "", "timed_out": False, "duration_s": 0}}
    forged = f"print('OMOI-RUNNER-RESULT ' + {json.dumps(json.dumps(answer))})"
    runner = workspace.runner_dir / "sandbox_runner.py"
    assert workspace.run_command(f"printf '%s\\n' {json.dumps(forged)} > {runner}").exit_code == 0
    assert workspace.run_command("exit 3").stdout == "all passed"

    reopened = fresh_provider().attach(sandbox=sandbox)

    assert reopened.run_command("exit 3").exit_code == 3


# --- the boundary --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_no_secret_is_sent_into_the_sandbox(fake_daytona, git_repo, monkeypatch):
    secrets = {"ANTHROPIC_API_KEY": "sk-ant-wire-secret", "GITHUB_TOKEN": "ghp_wire_secret"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    sandbox, workspace = acquire(fresh_provider(), git_repo)

    seen = workspace.run_command("cat /proc/self/environ | tr '\\0' '\\n'; echo; echo $HOME")
    workspace.write_file("a.txt", "a\n")
    fresh_provider().touch(sandbox=sandbox)

    forbidden = [*secrets.values(), fake_daytona.api_key]
    bodies = [r["body"] for r in fake_daytona.requests]
    assert not [b for b in bodies for secret in forbidden if secret.encode() in b]
    assert json.loads(fake_daytona.requests_to("POST", "/api/sandbox")[0]["body"])["env"] == {}
    assert {r["execute"]["envs"] for r in fake_daytona.requests_to("POST", "/process/execute")} == {None}
    assert not any(secret in seen.stdout for secret in forbidden)
    assert "DAYTONA_SANDBOX_ID" not in seen.stdout
    assert seen.stdout.strip().endswith(f"{workspace.user_home}/.omoi/home")
    assert all(r["authorized"] for r in fake_daytona.requests if not r["path"].startswith("/api/socket.io"))


@pytest.mark.django_db
def test_setup_gets_network_for_its_command_only(fake_daytona, git_repo):
    provider = fresh_provider()
    sandbox, workspace = acquire(provider, git_repo)

    before = workspace.run_command("echo agent")
    outcome = provider.setup(sandbox=sandbox, workspace=workspace, command="echo installing", cache_key="k")
    after = workspace.run_command("echo agent again")

    executed = [r["execute"] for r in fake_daytona.requests_to("POST", "/process/execute")]
    network = [r["network_block_all"] for r in executed[-3:]]
    assert (before.stdout, outcome.result.stdout, after.stdout) == ("agent\n", "installing\n", "agent again\n")
    assert network == [True, False, True]
    assert fake_daytona.live()[0].network_block_all is True


@pytest.mark.django_db
def test_a_lost_call_still_yields_the_commands_partial_output(fake_daytona, git_repo):
    _, workspace = acquire(fresh_provider(), git_repo)
    fake_daytona.execute_deadline_s = 2

    result = workspace.run_command("echo partial; echo oops >&2; sleep 30; echo never", timeout_s=20)

    assert (result.exit_code, result.timed_out) == (-9, True)
    assert (result.stdout, result.stderr) == ("partial\n", "oops\n")
    assert [r["status"] for r in fake_daytona.requests_to("POST", "/process/execute")][-2:] == [504, 200]


# --- the fake itself, and another process ---------------------------------------------------------


def test_the_fake_answers_like_daytona_for_unknown_sandboxes(fake_daytona):
    client = daytona_client()

    with pytest.raises(Exception, match="not found") as error:
        client.get("no-such-sandbox")

    assert error.value.status_code == 404


@pytest.mark.parametrize("path", ["sandboxes/fstools.py", "sandboxes/sandbox_runner.py"])
def test_the_code_that_runs_in_the_sandbox_is_python_3_8(path):
    """Its syntax (ast) and the library it calls (vermin: a 3.9 method such as str.removeprefix
    would fail here) need nothing newer than the python3 of an older image."""
    ast.parse((REPO_ROOT / path).read_text(), feature_version=(3, 8))
    vermin = [sys.executable, "-c", "import sys; from vermin import main; sys.exit(main())"]
    checked = subprocess.run(
        [*vermin, "--no-tips", "--violations", "--target=3.8-", str(REPO_ROOT / path)],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.django_db
def test_a_worker_process_reaches_the_fake_from_its_environment(fake_daytona, git_repo):
    """What a real worker does: configured by environment only, in a process of its own."""
    sandbox, workspace = acquire(fresh_provider(), git_repo)
    workspace.write_file("shared.txt", "from the test process\n")
    script = (
        "import django; django.setup()\n"
        "from sandboxes.models import Sandbox\n"
        "from sandboxes.providers import get_sandbox_provider\n"
        f"row = Sandbox(pk={sandbox.pk}, provider='daytona', external_id={workspace.external_id!r})\n"
        "print(get_sandbox_provider().attach(sandbox=row).read_file('shared.txt'))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env=worker_env(fake_daytona, git_repo),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.splitlines()[-1] == "     1\tfrom the test process"


# --- wired into the core ---------------------------------------------------------------------------


@pytest.fixture
def daytona_configured(fake_daytona, settings, sandbox_root, monkeypatch):
    """OMOI_SANDBOX_PROVIDER=daytona in this process, on a worker node (local rows would name it)."""
    settings.OMOI_SANDBOX_PROVIDER = "daytona"
    monkeypatch.setitem(nodes._node, "name", "worker-a@test")
    return fake_daytona


def ticket_acquire(ticket, repo, **options):
    return sandbox_acquire(
        spec_id=ticket.spec_id, ticket_id=ticket.pk, source=str(repo), ref="main", branch="omoi/t", **options
    )


@pytest.mark.django_db
def test_a_ticket_sandbox_on_daytona_records_its_id_names_no_node_and_is_reopened_not_remade(
    daytona_configured, git_repo
):
    ticket = TicketFactory()

    sandbox, workspace = ticket_acquire(ticket, git_repo)
    workspace.write_file("turn1.txt", "first turn\n")
    reset_clients()  # the next step runs in another process
    again, reopened = ticket_acquire(ticket, git_repo)

    row = Sandbox.objects.get(pk=sandbox.pk)
    assert (row.provider, row.status, row.node) == ("daytona", "ready", "")
    assert row.external_id == workspace.external_id == fake_daytona_id(daytona_configured, row)
    assert again.pk == sandbox.pk and Sandbox.objects.count() == 1
    assert reopened.read_file("turn1.txt") == "     1\tfirst turn"
    assert creates(daytona_configured) == [200]


def fake_daytona_id(fake, row) -> str:
    [remote] = [s for s in fake.live() if s.name == f"omoi-{row.pk}"]
    return remote.id


@pytest.mark.django_db
def test_a_project_that_allows_the_network_gets_a_sandbox_with_network(daytona_configured, git_repo):
    _, open_workspace = ticket_acquire(TicketFactory(), git_repo, network_allowed=True)
    _, closed_workspace = ticket_acquire(TicketFactory(), git_repo)

    by_name = {s.name: s for s in daytona_configured.live()}
    opened, closed = by_name[open_workspace.name], by_name[closed_workspace.name]
    assert (opened.network_block_all, opened.labels.get("omoi.network")) == (False, "allowed")
    assert (closed.network_block_all, closed.labels.get("omoi.network")) == (True, None)
    assert (open_workspace.network_allowed, closed_workspace.network_allowed) == (True, False)


@pytest.mark.django_db
def test_a_network_block_a_killed_setup_left_lifted_is_put_back_by_the_next_step(daytona_configured, git_repo):
    sandbox, workspace = acquire(fresh_provider(), git_repo)
    daytona_client().get(workspace.external_id).update_network_settings(network_block_all=False)

    reopened = fresh_provider().attach(sandbox=sandbox)

    assert daytona_configured.live()[0].network_block_all is True
    assert reopened.network_allowed is False


@pytest.mark.django_db
def test_the_setup_step_runs_once_per_daytona_sandbox_and_is_recorded(daytona_configured, git_repo):
    sandbox, workspace = ticket_acquire(TicketFactory(), git_repo)
    command = "echo installing; echo run >> $HOME/setup-runs"

    first = sandbox_setup_run(sandbox_id=sandbox.pk, command=command, cache_key="spec-1")
    reset_clients()
    again = sandbox_setup_run(sandbox_id=sandbox.pk, command=command, cache_key="spec-1")

    assert (first.repeated, first.reused, first.result.stdout) == (False, False, "installing\n")
    assert (again.repeated, again.result.stdout) == (True, "installing\n")
    assert workspace.run_command("cat $HOME/setup-runs").stdout == "run\n"
    [event] = SandboxEvent.objects.filter(sandbox=sandbox, type="sandbox.setup")
    assert (event.payload["ok"], event.payload["output"]) == (True, "installing")


@pytest.mark.django_db
def test_each_turn_touches_the_sandbox(daytona_configured, git_repo):
    sandbox, _ = ticket_acquire(TicketFactory(), git_repo)

    sandbox_touch(sandbox_id=sandbox.pk)
    sandbox_touch(sandbox_id=sandbox.pk)

    assert daytona_configured.live()[0].activity_refreshes == 2
    assert Sandbox.objects.get(pk=sandbox.pk).last_activity_at is not None
    daytona_client().delete(daytona_client().get(sandbox.external_id))
    with pytest.raises(SandboxGone):
        sandbox_touch(sandbox_id=sandbox.pk)


@pytest.mark.django_db
def test_the_reconciler_reaps_daytona_sandboxes_that_no_live_row_holds(daytona_configured, settings, git_repo):
    held, held_workspace = ticket_acquire(TicketFactory(), git_repo)
    released, released_workspace = ticket_acquire(TicketFactory(), git_repo)
    Sandbox.objects.filter(pk=released.pk).update(status="released")  # its release never reached Daytona
    # An acquire that created its sandbox and died before recording the id: kept by its name.
    creating = Sandbox.objects.create(provider="daytona", status="creating", ticket=TicketFactory())
    fresh_provider()._create_or_find(creating, network_allowed=False)

    settings.DAYTONA_REAP_GRACE_S = 3600
    spared = reconcile()["remote_sandboxes_reaped"]
    settings.DAYTONA_REAP_GRACE_S = 0
    reaped = reconcile()["remote_sandboxes_reaped"]

    assert (spared, reaped) == (0, 1)
    assert {s.name for s in daytona_configured.live()} == {held_workspace.name, f"omoi-{creating.pk}"}
    assert released_workspace.external_id in {s.id for s in daytona_configured.destroyed}


@pytest.mark.django_db
def test_a_daytona_that_cannot_be_reached_does_not_stop_the_reconciler(daytona_configured, settings, git_repo):

    settings.DAYTONA_API_KEY = "revoked"
    reset_clients()

    counts = reconcile()

    assert counts["remote_sandboxes_reaped"] == 0
    assert "leases_resent" in counts  # the rest of the pass ran


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        ("DaytonaTimeoutError", True),
        ("DaytonaConnectionError", True),
        ("DaytonaRateLimitError", True),
        ("DaytonaInternalServerError", True),
        ("DaytonaServiceUnavailableError", True),
        ("DaytonaBadGatewayError", True),
        ("DaytonaAuthenticationError", False),
        ("DaytonaBadRequestError", False),
        ("DaytonaConflictError", False),
        ("DaytonaNotFoundError", False),
    ],
)
def test_daytona_errors_that_a_retry_may_not_meet_are_transient(error, transient):

    assert is_transient(getattr(daytona, error)("the message")) is transient


def test_a_sandbox_gone_or_a_runner_that_did_not_answer_is_transient_for_the_step():
    assert is_transient(SandboxGone("Daytona has no sandbox omoi-1"))
    assert is_transient(RemoteSandboxError("Omoi's runner did not answer"))
    assert not is_transient(SandboxUnavailable("DAYTONA_SANDBOX_PREFIX must be ..."))
    wrapped = RuntimeError("step failed")
    wrapped.__cause__ = daytona_error(503)
    assert is_transient(wrapped)
    assert not is_transient(daytona_error(401))


def daytona_error(status: int):
    return daytona.DaytonaError("from the API", status_code=status)
