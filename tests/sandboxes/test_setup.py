"""The setup step (a project's setup_command): once per sandbox, with network, recorded, its result
reused by the spec's later sandboxes, a failure raised for the caller to block the ticket."""

import base64
import hashlib
import zipfile

import pytest

from sandboxes.models import Sandbox, SandboxEvent, SandboxStatus
from sandboxes.services.sandbox import sandbox_acquire
from sandboxes.services.setup import SetupFailed, sandbox_setup_run
from tests.factories import SpecFactory, TicketFactory
from tests.sandboxes.conftest import git

pytestmark = pytest.mark.django_db

# A dependency installed into the sandbox's Python environment (a wheel in the repository: no index
# needed), a dependency directory in the tree and a cache in the home, as `pip install` and `npm ci` do.
SETUP = (
    "python -m pip install --quiet --no-index --no-deps vendor/leftpad_py-0.1-py3-none-any.whl "
    "&& mkdir -p node_modules/leftpad && echo 'module.exports = 1' > node_modules/leftpad/index.js "
    "&& echo warm > $HOME/.cache-marker && echo setup-done"
)


def write_wheel(path) -> None:
    """A minimal pure-Python wheel of a package `leftpad_py`."""
    files = {
        "leftpad_py/__init__.py": "def pad(text, width):\n    return text.rjust(width)\n",
        "leftpad_py-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: leftpad-py\nVersion: 0.1\n",
        "leftpad_py-0.1.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    record.append("leftpad_py-0.1.dist-info/RECORD,,")
    files["leftpad_py-0.1.dist-info/RECORD"] = "\n".join(record) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)


@pytest.fixture
def python_repo(git_repo):
    (git_repo / "requirements.txt").write_text("leftpad-py==0.1\n")
    write_wheel(git_repo / "vendor" / "leftpad_py-0.1-py3-none-any.whl")
    (git_repo / ".gitignore").write_text("node_modules/\n")
    (git_repo / "tests" / "test_dependency.py").write_text(
        "import leftpad_py\n\n\ndef test_pad():\n    assert leftpad_py.pad('a', 2) == ' a'\n"
    )
    git("add", "-A", cwd=git_repo)
    git("commit", "--quiet", "-m", "packaging", cwd=git_repo)
    return git_repo


def acquire(spec, repo, branch, *, ref="main"):
    """A new ticket of the spec and its sandbox (one sandbox per ticket)."""
    ticket = TicketFactory(spec=spec, project=spec.project, user=spec.user)
    sandbox, workspace = sandbox_acquire(spec_id=spec.pk, ticket_id=ticket.pk, source=str(repo), ref=ref, branch=branch)
    return sandbox, workspace


def setup_events(spec):
    return [event.payload for event in SandboxEvent.objects.filter(spec=spec, type="sandbox.setup").order_by("id")]


def test_setup_installs_into_the_sandbox_and_a_later_sandbox_of_the_spec_reuses_it(python_repo, sandbox_root):
    spec = SpecFactory()
    first, first_ws = acquire(spec, python_repo, "omoi/one")

    outcome = sandbox_setup_run(sandbox_id=first.pk, command=SETUP, cache_key=f"spec-{spec.pk}")

    assert (outcome.reused, outcome.result.exit_code) == (False, 0)
    assert outcome.result.stdout.endswith("setup-done\n")
    imported = first_ws.run_command("cd /tmp && python -c 'import leftpad_py; print(leftpad_py.pad(\"x\", 3))'")
    assert (imported.exit_code, imported.stdout) == (0, "  x\n"), imported.as_text()
    # The console script `pytest` (the worker's, copied into the sandbox's environment) sees it too.
    tested = first_ws.run_command("pytest -q -p no:cacheprovider tests/test_dependency.py")
    assert tested.exit_code == 0, tested.as_text()
    # The package went into the sandbox's own environment, never into the worker's.
    assert first_ws.run_command("python -m pip show leftpad-py").exit_code == 0
    assert (first_ws.home / ".venv").is_dir()
    assert not [path for path in first_ws.home.glob(".venv/lib/python*/site-packages/leftpad_py")] == []
    assert git("status", "--porcelain", cwd=first_ws.root) == ""

    second, second_ws = acquire(spec, python_repo, "omoi/two")
    reused = sandbox_setup_run(sandbox_id=second.pk, command=SETUP, cache_key=f"spec-{spec.pk}")

    assert reused.reused is True
    assert (second_ws.root / "node_modules" / "leftpad" / "index.js").read_text() == "module.exports = 1\n"
    assert (second_ws.home / ".cache-marker").read_text() == "warm\n"
    imported = second_ws.run_command("cd /tmp && python -c 'import leftpad_py; print(leftpad_py.__file__)'")
    assert imported.stdout.startswith(second_ws.seen_paths()[1]), imported.as_text()
    events = setup_events(spec)
    assert [(e["sandbox"], e["ok"], e["reused"], e["exit_code"]) for e in events] == [
        (first.pk, True, False, 0),
        (second.pk, True, True, 0),
    ]
    assert events[0]["command"] == SETUP
    assert events[0]["output"].endswith("setup-done")
    assert events[0]["duration_s"] > 0


def test_setup_runs_once_per_sandbox(python_repo, sandbox_root):
    spec = SpecFactory()
    sandbox, workspace = acquire(spec, python_repo, "omoi/once")
    command = "echo run >> $HOME/runs"

    sandbox_setup_run(sandbox_id=sandbox.pk, command=command, cache_key="k")
    again = sandbox_setup_run(sandbox_id=sandbox.pk, command=command, cache_key="k")

    assert again.repeated is True
    assert (workspace.home / "runs").read_text() == "run\n"
    assert len(setup_events(spec)) == 1


def test_a_changed_dependency_manifest_runs_the_setup_again(python_repo, sandbox_root):
    spec = SpecFactory()
    first, _ = acquire(spec, python_repo, "omoi/a")
    sandbox_setup_run(sandbox_id=first.pk, command="echo installed", cache_key="spec")
    git("checkout", "--quiet", "-b", "deps", cwd=python_repo)
    (python_repo / "requirements.txt").write_text("leftpad-py==0.1\nrequests==2.32.3\n")
    git("add", "-A", cwd=python_repo)
    git("commit", "--quiet", "-m", "a dependency", cwd=python_repo)
    sandbox, workspace = acquire(spec, python_repo, "omoi/b", ref="deps")

    outcome = sandbox_setup_run(sandbox_id=sandbox.pk, command="echo installed", cache_key="spec")

    assert outcome.reused is False
    assert [e["reused"] for e in setup_events(spec)] == [False, False]


def test_a_failing_setup_raises_with_its_output_records_it_and_caches_nothing(python_repo, sandbox_root):
    spec = SpecFactory()
    sandbox, _ = acquire(spec, python_repo, "omoi/fail")
    command = "echo resolving; echo 'ERROR: No matching distribution found for nosuchpackage' >&2; exit 1"

    with pytest.raises(SetupFailed) as failed:
        sandbox_setup_run(sandbox_id=sandbox.pk, command=command, cache_key="spec")

    assert failed.value.message == (
        f"the setup command `{command}` exited with code 1:\n"
        "resolving\nERROR: No matching distribution found for nosuchpackage"
    )
    assert [(e["ok"], e["exit_code"]) for e in setup_events(spec)] == [(False, 1)]
    later, _ = acquire(spec, python_repo, "omoi/later")
    with pytest.raises(SetupFailed):
        sandbox_setup_run(sandbox_id=later.pk, command=command, cache_key="spec")
    assert [e["reused"] for e in setup_events(spec)] == [False, False]


def test_setup_has_the_network_that_agent_commands_do_not(python_repo, sandbox_root):
    from tests.sandboxes.test_hostile import Listener, connect_command, host_address

    server = Listener(address="0.0.0.0")
    connect = connect_command(host_address(), server.port)
    spec = SpecFactory()
    sandbox, workspace = acquire(spec, python_repo, "omoi/net")
    try:
        agent_command = workspace.run_command(connect)
        outcome = sandbox_setup_run(sandbox_id=sandbox.pk, command=connect, cache_key="net")
    finally:
        server.close()

    if workspace.confined:
        assert "connected" not in agent_command.stdout
    assert outcome.result.stdout == "connected\n"


def test_setup_refuses_a_sandbox_that_is_not_ready(python_repo, sandbox_root):
    sandbox = Sandbox.objects.create(provider="local", status=SandboxStatus.RELEASED)

    with pytest.raises(Exception, match="is released, not ready"):
        sandbox_setup_run(sandbox_id=sandbox.pk, command="true", cache_key="k")
    with pytest.raises(ValueError, match="no setup command"):
        sandbox_setup_run(sandbox_id=sandbox.pk, command="  ", cache_key="k")
