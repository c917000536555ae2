"""Which boundary the local provider chooses, and what it says when there is none."""

import shutil
import sys
from pathlib import Path

import pytest

from sandboxes.models import SandboxEvent
from sandboxes.providers import confinement
from sandboxes.providers.confinement import (
    Limits,
    Probe,
    bubblewrap_argv,
    confinement_probe,
    confinement_probe_reset,
    python_installation_paths,
)
from sandboxes.providers.local import LocalWorkspace
from sandboxes.services.sandbox import sandbox_acquire
from sandboxes.tools import tool_execute
from tests.factories import SpecFactory


@pytest.fixture
def fresh_probe():
    confinement_probe_reset()
    yield
    confinement_probe_reset()


@pytest.fixture
def without_bubblewrap(monkeypatch, fresh_probe):
    """This machine as one without bubblewrap installed."""
    real_which = shutil.which
    monkeypatch.setattr(
        confinement.shutil, "which", lambda name, path=None: None if name == "bwrap" else real_which(name, path=path)
    )


def test_without_bubblewrap_commands_run_unconfined_only_where_allowed(workspace, settings, without_bubblewrap):
    settings.OMOI_ALLOW_UNCONFINED = True

    probe = confinement_probe()
    result = workspace.run_command("echo ran; pwd")

    assert (probe.confined, probe.reason) == (False, "bubblewrap is not installed (Debian package `bubblewrap`)")
    assert probe.describe() == "commands are NOT isolated: bubblewrap is not installed (Debian package `bubblewrap`)"
    assert workspace.confined is False
    assert result.stdout == f"ran\n{workspace.root}\n"

    settings.OMOI_ALLOW_UNCONFINED = False
    refused = tool_execute(workspace=workspace, name="run_command", tool_input={"command": "touch ran"})

    assert (refused.refused, refused.is_error) == (True, True)
    assert refused.content.startswith(
        "refused: commands would not be isolated on this worker (bubblewrap is not installed"
    )
    assert "OMOI_ALLOW_UNCONFINED=1" in refused.content
    assert not (workspace.root / "ran").exists()


def test_required_bubblewrap_refuses_every_command_when_it_is_missing(workspace, settings, without_bubblewrap):
    settings.OMOI_SANDBOX_CONFINEMENT = "bubblewrap"
    settings.OMOI_ALLOW_UNCONFINED = True

    result = tool_execute(workspace=workspace, name="run_command", tool_input={"command": "touch ran"})

    assert result.refused is True
    assert result.content.startswith("refused: OMOI_SANDBOX_CONFINEMENT requires bubblewrap")
    assert not (workspace.root / "ran").exists()


@pytest.mark.django_db
def test_an_unconfined_sandbox_says_so_on_acquire(git_repo, sandbox_root, settings, fresh_probe):
    settings.OMOI_SANDBOX_CONFINEMENT = "none"
    spec = SpecFactory()

    sandbox, workspace = sandbox_acquire(spec_id=spec.pk, source=str(git_repo), ref="main", branch="omoi/x")

    events = {event.type: event.payload for event in SandboxEvent.objects.filter(spec=spec)}
    assert events["sandbox.acquired"]["confined"] is False
    assert events["sandbox.unconfined"] == {
        "sandbox": sandbox.pk,
        "provider": "local",
        "reason": "commands are NOT isolated: OMOI_SANDBOX_CONFINEMENT is 'none'",
        "commands_allowed": True,
    }


@pytest.mark.django_db
def test_a_confined_sandbox_records_no_unconfined_event(git_repo, sandbox_root, fresh_probe):
    if not confinement_probe().confined:
        pytest.skip(f"bubblewrap does not work here: {confinement_probe().reason}")
    spec = SpecFactory()

    sandbox_acquire(spec_id=spec.pk, source=str(git_repo), ref="main", branch="omoi/y")

    assert list(SandboxEvent.objects.filter(spec=spec).values_list("type", "payload__confined")) == [
        ("sandbox.acquired", True)
    ]


def test_the_bubblewrap_command_line_binds_only_what_commands_need(tmp_path, settings):
    probe = Probe(confined=True, reason="test", bwrap="/usr/bin/bwrap", disable_userns=True)
    argv, fds, network = bubblewrap_argv(
        probe,
        command=["bash", "-c", "true"],
        workspace=tmp_path / "ws",
        home=tmp_path / "home",
        read_only=[*python_installation_paths(), Path("/"), tmp_path / "missing"],
        network=False,
        limits=Limits.for_timeout(10),
    )
    try:
        options = confinement.os.read(fds[-1], 100_000).decode().split("\x00")
    finally:
        for fd in fds:
            confinement.os.close(fd)

    assert network is None
    assert argv == ["/usr/bin/bwrap", "--args", str(fds[-1]), "--", "bash", "-c", "true"]
    assert str(tmp_path) not in " ".join(argv)
    for flag in ("--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net",
                 "--disable-userns", "--die-with-parent", "--new-session"):  # fmt: skip
        assert flag in options
    assert options[options.index("--cap-drop") + 1] == "ALL"
    bound = {options[i + 1]: options[i + 2] for i, o in enumerate(options) if o in ("--ro-bind", "--ro-bind-try")}
    writable = {options[i + 1]: options[i + 2] for i, o in enumerate(options) if o == "--bind"}
    assert writable == {str(tmp_path / "ws"): "/workspace", str(tmp_path / "home"): "/home/agent"}
    assert "/etc/shadow" not in bound and "/etc/passwd" not in bound and "/" not in bound
    assert str(Path(sys.prefix).resolve()) in bound
    # Of the worker's home (where pyenv may keep the interpreter) only the Python installation.
    assert str(Path.home()) not in bound
    assert {p for p in bound if p.startswith(str(Path.home()) + "/")} <= {str(p) for p in python_installation_paths()}
    assert "/etc/resolv.conf" not in bound
    assert options[-5:] == ["--remount-ro", "/", "--chdir", "/workspace", ""]


def test_python_is_the_workers_and_installs_stay_in_the_sandbox(workspace):
    result = workspace.run_command("python -c 'import sys, django; print(sys.version_info[:2], sys.prefix)'")

    assert result.exit_code == 0, result.as_text()
    assert result.stdout == f"{tuple(sys.version_info[:2])} {workspace.seen_paths()[1]}/.venv\n"
    assert LocalWorkspace(workspace.root).command_env()["PATH"].startswith(f"{workspace.seen_paths()[1]}/.venv/bin:")
