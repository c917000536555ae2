"""The hostile-agent suite: what an agent (or a repository's test or setup command) tries in order to
reach the worker's secrets, its services or other runs, against the local provider behind
bubblewrap. Every attempt must be refused or contained, and the worker and other runs unaffected.

It needs bubblewrap (CI installs it: .ci/run). Elsewhere the tests are skipped, unless
OMOI_REQUIRE_BUBBLEWRAP=1, which makes a missing or unusable bubblewrap a failure.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from sandboxes.models import Sandbox, SandboxEvent
from sandboxes.providers.confinement import WORKSPACE_MOUNT, confinement_probe, confinement_probe_reset
from sandboxes.providers.local import LocalSandboxProvider, LocalWorkspace
from sandboxes.services.agent import agent_run_start, agent_turn_run
from sandboxes.services.sandbox import sandbox_acquire
from sandboxes.tools import EXECUTION_TOOLS
from sandboxes.workspace import CommandRefused
from tests.factories import SpecFactory
from tests.sandboxes.conftest import git

SECRET = f"omoi-hostile-secret-{uuid.uuid4().hex}"


@pytest.fixture(autouse=True)
def bubblewrap_required(settings):
    """These tests are about the boundary: without it they have nothing to test. Nothing may run
    unconfined while they run."""
    settings.OMOI_ALLOW_UNCONFINED = False
    settings.OMOI_SANDBOX_CONFINEMENT = "auto"
    probe = confinement_probe()
    if not probe.confined:
        message = f"the hostile-agent suite needs bubblewrap: {probe.reason}"
        if os.environ.get("OMOI_REQUIRE_BUBBLEWRAP") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return probe


def process_count() -> int:
    return sum(1 for entry in os.listdir("/proc") if entry.isdigit())


class Listener:
    """A TCP server on 127.0.0.1 of the host (a stand-in for the web API) that counts connections."""

    def __init__(self, address: str = "127.0.0.1") -> None:
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind((address, 0))
        self.server.listen(16)
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.accepted = 0
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.running:
            try:
                connection, _ = self.server.accept()
            except OSError:
                continue
            self.accepted += 1
            connection.close()

    def close(self) -> None:
        self.running = False
        self.thread.join(2)
        self.server.close()


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


@pytest.fixture
def worker_process(tmp_path):
    """A process of the worker's user holding secrets in its environment and dumpable (so only the
    boundary, not the non-dumpable flag, keeps its /proc/<pid>/environ away)."""
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"],
        env={"PATH": "/usr/bin:/bin", "ANTHROPIC_API_KEY": SECRET, "DATABASE_URL": f"postgres://u:{SECRET}@db/x"},
    )
    yield process
    process.kill()
    process.wait()


@pytest.fixture
def host_files(tmp_path):
    """Secret files where a worker keeps them: in its home, its data directory (next to the
    database), a `.env` beside manage.py, and a file outside every sandbox. Each is removed after."""
    planted: list[Path] = []
    home = Path(os.path.expanduser("~"))
    candidates = {
        "home": home / f".omoi-hostile-{uuid.uuid4().hex}",
        "data_dir": Path(django_settings.DATA_DIR) / f"hostile-{uuid.uuid4().hex}.sqlite3",
        "outside": tmp_path / "outside-secret.txt",
    }
    for path in candidates.values():
        path.write_text(SECRET + "\n")
        planted.append(path)
    dotenv = Path(django_settings.BASE_DIR) / ".env"
    if not dotenv.exists():
        dotenv.write_text(f"OMOI_HOSTILE_TEST_MARKER={SECRET}\n")
        planted.append(dotenv)
    candidates["dotenv"] = dotenv
    yield candidates
    for path in planted:
        path.unlink(missing_ok=True)


@pytest.fixture
def two_sandboxes(git_repo, sandbox_root):
    """Two sandboxes of the local provider, made from the same source as in production."""
    provider = LocalSandboxProvider()
    first = provider.acquire(sandbox=Sandbox.objects.create(provider="local"), source=str(git_repo), ref="main",
                             branch="omoi/a")  # fmt: skip
    second = provider.acquire(sandbox=Sandbox.objects.create(provider="local"), source=str(git_repo), ref="main",
                              branch="omoi/b")  # fmt: skip
    (second.root / "private.txt").write_text(SECRET + "\n")
    return first, second


def secrets_in(text: str, secrets: list[str]) -> list[str]:
    return [secret for secret in secrets if secret and secret in text]


def host_secrets(host_files) -> list[str]:
    """Everything that counts as a secret of the host: the planted marker, the root line of
    /etc/shadow, this process's and pid 1's environment entries (none of which a command gets)."""
    secrets = [SECRET]
    try:
        secrets.append(Path("/etc/shadow").read_text().splitlines()[0])
    except (OSError, IndexError):
        pass
    for pid in ("self", "1"):
        try:
            entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\x00")
        except OSError:
            continue
        secrets += [entry.decode(errors="replace") for entry in entries if b"=" in entry and len(entry) > 12]
    if host_files["dotenv"].exists():
        secrets += [line for line in host_files["dotenv"].read_text().splitlines() if "=" in line]
    return secrets


# --- the figures the issue asks for ---------------------------------------------------------------


@pytest.mark.django_db
def test_the_hostile_battery_reads_no_secret_makes_no_connection_writes_nothing_outside(
    two_sandboxes, host_files, worker_process, listener, tmp_path, capsys
):
    workspace, neighbour = two_sandboxes
    own = {f"{name}={value}" for name, value in workspace.command_env().items()}
    secrets = [secret for secret in host_secrets(host_files) if secret not in own]
    outside = tmp_path / "written-from-a-sandbox"
    data_dir = Path(django_settings.DATA_DIR)
    database = Path(django_settings.DATABASES["default"]["NAME"])
    worker_pid = worker_process.pid
    reads = {
        "/etc/shadow": "cat /etc/shadow",
        "the database file": f"cat {database}; cat {data_dir}/*.sqlite3",
        "the data directory": f"ls -la {data_dir}; cat {host_files['data_dir']}",
        ".env": f"cat {host_files['dotenv']}",
        "Omoi's checkout": f"ls {django_settings.BASE_DIR}; cat {django_settings.BASE_DIR}/manage.py",
        "the worker's home": f"cat {host_files['home']}; ls -la ~root {os.path.expanduser('~')}",
        "/proc/1/environ": "cat /proc/1/environ",
        "the worker's /proc/<pid>/environ": f"cat /proc/{worker_pid}/environ /proc/{os.getpid()}/environ",
        "umount -l /proc, then the host's /proc": (
            f"umount -l /proc; umount /proc; cat /proc/{worker_pid}/environ; cat /proc/1/environ; ls /proc"
        ),
        "a new user namespace to regain capabilities": (
            f"unshare -rm sh -c 'umount -l /proc; cat /proc/{worker_pid}/environ'"
        ),
        "another sandbox, by ..": f"cat ../{neighbour.root.name}/private.txt",
        "another sandbox, by its host path": f"cat {neighbour.root}/private.txt",
        "a file outside every sandbox": f"cat {host_files['outside']}",
        "python reading the worker's environment": (
            f"python -c \"print(open('/proc/{worker_pid}/environ','rb').read())\""
        ),
    }
    connects = {
        "PostgreSQL 5432": 5432,
        "Redis 6379": 6379,
        "the web port": listener.port,
    }
    writes = {
        "..": "echo pwned > ../escaped.txt",
        "an absolute host path": f"echo pwned > {outside}",
        "a symlink to the host": f"ln -s {tmp_path} out && echo pwned > out/via-link.txt",
        "another sandbox's workspace": (
            f"echo pwned > {neighbour.root}/pwned.txt; echo pwned > ../{neighbour.root.name}/pwned2.txt"
        ),
        "/usr": "echo pwned > /usr/pwned.txt",
        "the Python installation": f"echo pwned > {sys.base_prefix}/pwned.txt; echo pwned > {sys.prefix}/pwned.txt",
    }

    secrets_read: dict[str, list[str]] = {}
    for name, command in reads.items():
        result = workspace.run_command(command, timeout_s=20)
        found = secrets_in(result.stdout + result.stderr, secrets)
        if found:
            secrets_read[name] = found
    connections_made: dict[str, int] = {}
    for name, port in connects.items():
        probe = (
            'python -c "import socket,sys; s=socket.socket(); s.settimeout(3); '
            f"sys.exit(0 if s.connect_ex(('127.0.0.1', {port})) == 0 else 1)\""
        )
        if workspace.run_command(probe, timeout_s=20).exit_code == 0:
            connections_made[name] = port
    for command in ("curl -s --max-time 3 http://127.0.0.1:{p}/", "bash -c 'echo > /dev/tcp/127.0.0.1/{p}'"):
        workspace.run_command(command.format(p=listener.port), timeout_s=20)
    written = {name: workspace.run_command(command, timeout_s=20) for name, command in writes.items()}
    written_outside = [
        path
        for path in [
            workspace.root.parent / "escaped.txt",
            outside,
            tmp_path / "via-link.txt",
            neighbour.root / "pwned.txt",
            neighbour.root / "pwned2.txt",
            Path("/usr/pwned.txt"),
            Path(sys.base_prefix) / "pwned.txt",
            Path(sys.prefix) / "pwned.txt",
        ]
        if path.exists()
    ]
    alive = worker_process.poll() is None

    with capsys.disabled():
        print(
            f"\nhostile battery: {len(reads)} reads, {len(connects) + 2} connections, {len(writes)} writes → "
            f"secrets read: {len(secrets_read)}, connections made: {len(connections_made) + listener.accepted}, "
            f"writes outside the workspace: {len(written_outside)}, worker alive: {'yes' if alive else 'no'}"
        )
    assert secrets_read == {}
    assert connections_made == {}
    assert listener.accepted == 0
    assert written_outside == []
    assert alive
    # Outside the workspace, its home and the private /tmp, the sandbox's own file system is read-only.
    for name in ("..", "/usr", "the Python installation"):
        assert "Read-only file system" in written[name].stderr, written[name].as_text()
    # The same attempts from the host succeed, so the zeros above are the boundary's doing.
    assert SECRET in host_files["outside"].read_text()
    with socket.create_connection(("127.0.0.1", listener.port), timeout=3):
        pass
    assert (neighbour.root / "private.txt").read_text() == SECRET + "\n"


# --- each attempt, and what the operator sees ---------------------------------------------------


@pytest.mark.django_db
def test_through_the_agent_loop_every_attempt_is_refused_or_contained_and_recorded(
    git_repo, sandbox_root, replay_script, worker_process
):
    spec = SpecFactory()
    sandbox, workspace = sandbox_acquire(spec_id=spec.pk, source=str(git_repo), ref="main", branch="omoi/hostile")
    connect = "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 5432), 3)'"
    attempts = [
        {"tool": "run_command", "input": {"command": "cat /etc/shadow"}},
        {"tool": "run_command", "input": {"command": f"umount -l /proc; cat /proc/{worker_process.pid}/environ"}},
        {"tool": "run_command", "input": {"command": "cat /proc/1/environ"}},
        {"tool": "run_command", "input": {"command": connect}},
        {"tool": "run_command", "input": {"command": "echo pwned > ../pwned.txt"}},
        {"tool": "read_file", "input": {"path": "../../../../etc/shadow"}},
        {"tool": "write_file", "input": {"path": "/tmp/pwned.txt", "content": "x"}},
    ]  # fmt: skip
    replay_script(
        {
            "hostile": [
                {"text": "Trying my luck.", "tools": attempts, "usage": {"input_tokens": 10, "output_tokens": 10}},
                {"tool": "finish", "input": {"summary": "nothing worked"}},
            ]
        }
    )
    run = agent_run_start(
        kind="task", spec_id=spec.pk, phase="IMPLEMENTATION", system_prompt="s", first_message="m",
        sandbox_id=sandbox.pk,
    )  # fmt: skip

    outcome = agent_turn_run(
        run=run,
        workspace=workspace,
        tools=EXECUTION_TOOLS,
        terminal_tools={"finish"},
        conversation_key="hostile",
    )

    assert outcome.kind == "continue"
    recorded = [
        (event.type, event.payload.get("exit_code") != 0 if event.type == "sandbox.command" else event.payload["tool"])
        for event in SandboxEvent.objects.filter(spec=spec, type__in=["sandbox.command", "sandbox.refused"]).order_by(
            "sequence"
        )
    ]
    assert recorded == [
        ("sandbox.command", True),  # cat /etc/shadow: not there
        ("sandbox.refused", "run_command"),  # /proc/<pid>/environ: refused before it runs (telemetry)...
        ("sandbox.refused", "run_command"),
        ("sandbox.command", True),  # 127.0.0.1:5432: no network
        ("sandbox.command", True),  # ../pwned.txt: read-only
        ("sandbox.refused", "read_file"),
        ("sandbox.refused", "write_file"),
    ]
    assert (
        SandboxEvent.objects.filter(spec=spec, type__in=["sandbox.command", "sandbox.refused"])
        .exclude(sandbox_id=sandbox.pk)
        .count()
        == 0
    )
    # ... and the boundary, not the pattern, is the wall: the same reads run directly find nothing.
    direct = workspace.run_command(f"umount -l /proc; cat /proc/{worker_process.pid}/environ /proc/1/environ")
    assert SECRET not in direct.stdout + direct.stderr
    results = SandboxEvent.objects.filter(spec=spec, type="agent.tool_result").order_by("sequence")
    assert not [e for e in results if SECRET in e.payload["content"] or "root:" in e.payload["content"]]
    assert not (workspace.root.parent / "pwned.txt").exists()
    assert not Path("/tmp/pwned.txt").exists()
    assert worker_process.poll() is None


@pytest.mark.django_db
def test_a_fork_bomb_is_contained_and_another_run_is_unaffected(two_sandboxes, settings, worker_process):
    settings.OMOI_SANDBOX_MAX_PROCESSES = 64
    bomber, neighbour = two_sandboxes
    before = process_count()
    peak = [before]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process_count())
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    bomb: dict = {}
    thread = threading.Thread(
        target=lambda: bomb.setdefault("result", bomber.run_command(":(){ :|:& };:; sleep 4", timeout_s=4))
    )
    thread.start()
    time.sleep(1.5)
    other = neighbour.run_command("for i in 1 2 3 4 5; do sleep 0.1 & done; wait; python -c 'print(6 * 7)'")
    thread.join()
    done.set()
    watcher.join()

    assert bomb["result"].timed_out is True
    assert (other.exit_code, other.stdout) == (0, "42\n")
    assert peak[0] - before < 64 + 40, "the bomb went past the process limit"
    deadline = time.monotonic() + 5
    while process_count() > before + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process_count() <= before + 2, "processes of the bomb survived its command"
    assert worker_process.poll() is None


@pytest.mark.django_db
def test_a_command_that_loops_for_ever_is_killed_with_its_output_kept(two_sandboxes):
    workspace, _ = two_sandboxes
    started = time.monotonic()

    result = workspace.run_command("echo before; (while true; do :; done) & while true; do :; done", timeout_s=2)

    assert (result.timed_out, result.exit_code, result.stdout) == (True, -9, "before\n")
    assert time.monotonic() - started < 6


@pytest.mark.django_db
def test_filling_the_disk_is_stopped(two_sandboxes, settings):
    workspace, _ = two_sandboxes
    settings.OMOI_SANDBOX_DISK_BYTES = 64 * 1024**2
    settings.OMOI_SANDBOX_FILE_SIZE_BYTES = 16 * 1024**2
    settings.OMOI_SANDBOX_TMP_BYTES = 8 * 1024**2

    one_file = workspace.run_command("dd if=/dev/zero of=big bs=1M count=100", timeout_s=30)
    in_tmp = workspace.run_command("dd if=/dev/zero of=/tmp/big bs=1M count=100", timeout_s=30)
    many_files = workspace.run_command(
        "i=0; while true; do dd if=/dev/zero of=f$i bs=1M count=8 2>/dev/null; i=$((i+1)); done", timeout_s=60
    )

    assert one_file.exit_code != 0
    assert (workspace.root / "big").stat().st_size <= 16 * 1024**2
    assert "No space left on device" in in_tmp.stderr
    assert many_files.killed_by.startswith("it wrote more than 64 MiB to disk")
    assert many_files.duration_s < 30
    written = sum(path.stat().st_size for path in workspace.root.glob("f*"))
    assert written < 1024**3, f"{written} bytes written before the command was stopped"


def host_address() -> str:
    """An address of this machine other than loopback (where a service listening on 0.0.0.0 answers)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))
        address = probe.getsockname()[0]
    except OSError:
        address = ""
    finally:
        probe.close()
    if not address or address.startswith("127."):
        pytest.skip("this machine has no address but loopback")
    return address


@pytest.fixture
def public_listener():
    """A TCP server on every address of the host, counting connections."""
    server = Listener(address="0.0.0.0")
    yield server
    server.close()


def connect_command(address: str, port: int) -> str:
    return f"python -c \"import socket; socket.create_connection(('{address}', {port}), 3); print('connected')\""


@pytest.mark.django_db
def test_network_through_slirp4netns_is_there_only_when_asked_and_never_reaches_the_loopback(
    two_sandboxes, public_listener, bubblewrap_required
):
    if not bubblewrap_required.slirp4netns:
        message = "slirp4netns is not installed (Debian package `slirp4netns`)"
        if os.environ.get("OMOI_REQUIRE_BUBBLEWRAP") == "1":
            pytest.fail(message)
        pytest.skip(message)
    workspace, _ = two_sandboxes
    address = host_address()

    without = workspace.run_command(connect_command(address, public_listener.port), timeout_s=20)
    loopback = workspace.run_command(connect_command("127.0.0.1", public_listener.port), timeout_s=20, network=True)
    with_network = workspace.run_command(connect_command(address, public_listener.port), timeout_s=20, network=True)
    resolver = workspace.run_command("cat /etc/resolv.conf", network=True)

    assert "connected" not in without.stdout + loopback.stdout
    assert "Network is unreachable" in without.stderr
    assert with_network.stdout == "connected\n", with_network.as_text()
    assert public_listener.accepted == 1
    assert resolver.stdout == "nameserver 10.0.2.3\n"


@pytest.mark.django_db
def test_network_shared_with_the_worker_when_slirp4netns_is_not_used(two_sandboxes, listener, settings):
    settings.OMOI_SANDBOX_NETWORK = "host"
    confinement_probe_reset()
    try:
        workspace, _ = two_sandboxes
        assert confinement_probe().slirp4netns == ""
        without = workspace.run_command(connect_command("127.0.0.1", listener.port), timeout_s=20)
        with_network = workspace.run_command(connect_command("127.0.0.1", listener.port), timeout_s=20, network=True)
    finally:
        confinement_probe_reset()

    assert "connected" not in without.stdout
    assert with_network.stdout == "connected\n"
    assert listener.accepted == 1


@pytest.mark.django_db
def test_commands_are_refused_without_a_boundary_when_unconfined_is_not_allowed(git_repo, settings, tmp_path):
    settings.OMOI_SANDBOX_CONFINEMENT = "none"
    settings.OMOI_ALLOW_UNCONFINED = False
    clone = tmp_path / "ws"
    git("clone", "--quiet", str(git_repo), str(clone), cwd=tmp_path)
    workspace = LocalWorkspace(clone)

    assert workspace.confined is False
    with pytest.raises(CommandRefused, match="commands would not be isolated on this worker"):
        workspace.run_command("touch ran")
    with pytest.raises(CommandRefused):
        workspace.git("status")
    assert not (clone / "ran").exists()


# --- a repository that plants configuration --------------------------------------------------------


@pytest.mark.django_db
def test_planted_git_configuration_runs_nothing_on_the_host(git_repo, sandbox_root, tmp_path):
    host_marker = tmp_path / "host-marker"
    secret_file = tmp_path / "host-secret.txt"
    secret_file.write_text(SECRET)
    provider = LocalSandboxProvider()
    workspace = provider.acquire(sandbox=Sandbox.objects.create(provider="local"), source=str(git_repo), ref="main",
                                 branch="omoi/planted")  # fmt: skip
    root = workspace.root
    evil = f"touch {host_marker}; touch {WORKSPACE_MOUNT}/ran-inside-$0"
    (root / "evil.sh").write_text(f"#!/bin/sh\n{evil}\ncat\n")
    (root / "evil.sh").chmod(0o755)
    hooks = root / ".git" / "evil-hooks"
    hooks.mkdir()
    for hook in ("post-commit", "pre-commit", "commit-msg"):
        (hooks / hook).write_text(f"#!/bin/sh\n{evil}\n")
        (hooks / hook).chmod(0o755)
    with (root / ".git" / "config").open("a") as config:
        config.write(
            '[filter "evil"]\n\tclean = sh -c \'touch ' + str(host_marker) + "; cat' \n\tsmudge = cat\n"
            f"[core]\n\thooksPath = {hooks}\n\tfsmonitor = {root}/evil.sh\n"
            f"[commit]\n\tgpgSign = true\n[gpg]\n\tprogram = {root}/evil.sh\n"
        )
    (root / ".gitattributes").write_text("* filter=evil\n")
    (root / "host-link").symlink_to(secret_file)
    (root / "change.txt").write_text("work\n")

    added = workspace.git("add", "-A")
    committed = workspace.git("commit", "-q", "-m", "work")
    bundled = workspace.git("bundle", "create", "work.bundle", "HEAD")
    sha = workspace.commit_all("more work") or workspace.head_sha()

    assert added.ok, added.as_text()
    assert committed.ok, committed.as_text()
    assert bundled.ok, bundled.as_text()
    assert not host_marker.exists()
    assert workspace.git("cat-file", "-p", f"{sha}:host-link").stdout == str(secret_file)
    assert SECRET not in workspace.git("cat-file", "-p", f"{sha}:change.txt").stdout
    assert SECRET.encode() not in workspace.read_bytes("work.bundle", limit=10_000_000)
