"""How the local provider runs a command: behind bubblewrap where it works, otherwise as a plain
child process that says it is not isolated; always under resource limits and a wall-clock timeout.

Behind bubblewrap a command gets new user, PID, IPC, UTS and network namespaces (the network only
when asked: the setup step, or a project that allows it; then through slirp4netns, a user-mode
network stack that reaches the internet but not the worker's loopback, where it is installed), a
root file system that holds only the
system directories (read-only), a few files of /etc that programs need (never /etc/shadow), the
Python installation the worker runs on (read-only, so `python -m pytest` works), the objects of the
repository the workspace was cloned from (read-only, so `git clone --shared` alternates resolve),
the workspace at /workspace and its own home at /home/agent (the only writable places), a private
/tmp (a size-limited tmpfs) and /proc, and no capabilities. Nothing else of the host is there: not
the worker's home, OMOI_DATA_DIR, the database file, `.env` or the checkout of Omoi itself.

Limits: CPU time, address space, file size, open files (setrlimit, inherited by every process);
the number of processes (a pids cgroup per command where this process may create one, otherwise
RLIMIT_NPROC, which the kernel enforces for any user but root); disk (the command is killed when
the file system it writes to grows by more than OMOI_SANDBOX_DISK_BYTES or falls below
OMOI_SANDBOX_MIN_FREE_BYTES); the wall-clock timeout kills the whole process tree and keeps the
output read so far.

Which boundary this process uses is probed once (`confinement_probe`), per OMOI_SANDBOX_CONFINEMENT:
`auto` (bubblewrap when it works here, else unconfined), `bubblewrap` (required: commands are
refused when it does not work), `none` (never confine; for debugging).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

from django.conf import settings

from omoi.faults import fault_point
from sandboxes.fstools import tail_text
from sandboxes.workspace import MAX_OUTPUT_CHARS, SYSTEM_PATH_DIRS, CommandRefused, CommandResult

WORKSPACE_MOUNT = "/workspace"
HOME_MOUNT = "/home/agent"
SANDBOX_UID = 1000
SANDBOX_HOSTNAME = "omoi-sandbox"
# Directories of the root file system bound read-only (or recreated as the host's symlinks).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What of /etc programs need: the dynamic linker's cache, name service switch, certificates (for
# the setup step's downloads), Debian's alternatives (many /usr/bin entries point there), time
# zone, MIME and libmagic data. /etc/passwd, group, hosts and hostname are written for the
# sandbox; nothing else of /etc (shadow, the host's users, pip or npm credentials) is visible.
ETC_ENTRIES = (
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "ssl",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "nsswitch.conf",
    "host.conf",
    "gai.conf",
    "protocols",
    "services",
    "networks",
    "mime.types",
    "magic",
    "magic.mime",
    "os-release",
    "debian_version",
    "lsb-release",
    "perl",
    "inputrc",
    "locale.alias",
)
ETC_NETWORK_ENTRIES = ("resolv.conf",)
PASSWD = (
    "root:x:0:0:root:/root:/usr/sbin/nologin\n"
    f"agent:x:{SANDBOX_UID}:{SANDBOX_UID}:Omoi sandbox:{HOME_MOUNT}:/bin/bash\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
)
GROUP = f"root:x:0:\nagent:x:{SANDBOX_UID}:\nnogroup:x:65534:\n"
HOSTS = f"127.0.0.1\tlocalhost {SANDBOX_HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n"

# slirp4netns's fixed addresses: the sandbox is 10.0.2.100, its DNS forwarder 10.0.2.3.
SLIRP_RESOLV_CONF = "nameserver 10.0.2.3\n"
SLIRP_START_TIMEOUT_S = 10
SLIRP_ATTEMPTS = 3
# ioctl on a namespace descriptor: the user namespace that owns it (linux/nsfs.h, _IO(0xb7, 0x1)).
NS_GET_USERNS = 0xB701

CPU_SECONDS_BEYOND_TIMEOUT = 10
DISK_CHECK_INTERVAL_S = 0.1


@dataclass(frozen=True)
class Limits:
    """What one command may use. Every number comes from settings (docs/sandboxes.md)."""

    cpu_seconds: int
    memory_bytes: int
    file_size_bytes: int
    processes: int
    open_files: int
    disk_bytes: int
    min_free_bytes: int
    tmp_bytes: int

    @classmethod
    def for_timeout(cls, timeout_s: float) -> Limits:
        return cls(
            cpu_seconds=int(timeout_s) + CPU_SECONDS_BEYOND_TIMEOUT,
            memory_bytes=int(settings.OMOI_SANDBOX_MEMORY_BYTES),
            file_size_bytes=int(settings.OMOI_SANDBOX_FILE_SIZE_BYTES),
            processes=int(settings.OMOI_SANDBOX_MAX_PROCESSES),
            open_files=int(settings.OMOI_SANDBOX_OPEN_FILES),
            disk_bytes=int(settings.OMOI_SANDBOX_DISK_BYTES),
            min_free_bytes=int(settings.OMOI_SANDBOX_MIN_FREE_BYTES),
            tmp_bytes=int(settings.OMOI_SANDBOX_TMP_BYTES),
        )


@dataclass(frozen=True)
class Probe:
    """What this process found it can do, once: the boundary commands run behind."""

    confined: bool
    # What confines commands ("bubblewrap 0.8.0"), or why nothing does.
    reason: str
    # OMOI_SANDBOX_CONFINEMENT=bubblewrap and bubblewrap does not work: refuse every command.
    required_but_missing: bool = False
    bwrap: str = ""
    disable_userns: bool = False
    # How the number of processes is limited: "cgroup v1", "cgroup v2", "rlimit" or "none".
    process_limit: str = "none"
    cgroup_dirs: tuple[str, ...] = ()
    cgroup_version: int = 0
    # Unconfined only: the prefix that gives a command its own PID namespace, or ().
    pid_namespace: tuple[str, ...] = field(default_factory=tuple)
    # The slirp4netns that gives a command asking for the network a network of its own ("" when the
    # command shares the worker's network instead).
    slirp4netns: str = ""

    def describe(self) -> str:
        """One line for the CLI and events: what isolates commands here, or that nothing does."""
        if self.confined:
            network = "slirp4netns, without the worker's loopback" if self.slirp4netns else "the worker's network"
            return (
                f"commands confined by {self.reason} (no network unless asked, then {network}; "
                f"processes limited by {self.process_limit})"
            )
        return f"commands are NOT isolated: {self.reason}"


_probes: dict[str, Probe] = {}
_probe_lock = threading.Lock()


def confinement_mode() -> str:
    mode = str(getattr(settings, "OMOI_SANDBOX_CONFINEMENT", "auto")).strip().lower()
    if mode not in ("auto", "bubblewrap", "none"):
        raise ValueError(f"OMOI_SANDBOX_CONFINEMENT must be auto, bubblewrap or none, not {mode!r}")
    return mode


def confinement_probe() -> Probe:
    """The boundary of this process's commands, probed once per process and mode."""
    mode = confinement_mode()
    with _probe_lock:
        if mode not in _probes:
            _probes[mode] = _probe(mode)
        return _probes[mode]


def confinement_probe_reset() -> None:
    """Forget what was probed (tests change the machine's answers)."""
    with _probe_lock:
        _probes.clear()


def unconfined_allowed() -> bool:
    return bool(getattr(settings, "OMOI_ALLOW_UNCONFINED", settings.DEBUG))


def _probe(mode: str) -> Probe:
    cgroup_version, cgroup_dirs = _cgroup_probe()
    if cgroup_version:
        process_limit = f"cgroup v{cgroup_version}"
    elif os.geteuid() != 0:
        process_limit = "rlimit"
    else:
        process_limit = "none"
    if mode == "none":
        return Probe(
            confined=False,
            reason="OMOI_SANDBOX_CONFINEMENT is 'none'",
            process_limit=process_limit,
            cgroup_dirs=cgroup_dirs,
            cgroup_version=cgroup_version,
            pid_namespace=tuple(_pid_namespace_prefix()),
        )
    bwrap, version, disable_userns, problem = _bubblewrap_probe()
    if problem is None:
        probe = Probe(
            confined=True,
            reason=f"bubblewrap {version}".strip(),
            bwrap=bwrap,
            disable_userns=disable_userns,
            process_limit=process_limit,
            cgroup_dirs=cgroup_dirs,
            cgroup_version=cgroup_version,
        )
        network_mode = str(getattr(settings, "OMOI_SANDBOX_NETWORK", "auto")).strip().lower()
        slirp = shutil.which("slirp4netns", path=":".join(SYSTEM_PATH_DIRS)) if network_mode != "host" else None
        if slirp and _slirp_works(replace(probe, slirp4netns=slirp)):
            probe = replace(probe, slirp4netns=slirp)
        return probe
    return Probe(
        confined=False,
        reason=problem,
        required_but_missing=mode == "bubblewrap",
        process_limit=process_limit,
        cgroup_dirs=cgroup_dirs,
        cgroup_version=cgroup_version,
        pid_namespace=tuple(_pid_namespace_prefix()),
    )


def _bubblewrap_probe() -> tuple[str, str, bool, str | None]:
    """(path, version, whether --disable-userns works, problem or None): runs the real argv once."""
    if not sys.platform.startswith("linux"):
        return "", "", False, "bubblewrap needs Linux"
    bwrap = shutil.which("bwrap", path=":".join(SYSTEM_PATH_DIRS))
    if not bwrap:
        return "", "", False, "bubblewrap is not installed (Debian package `bubblewrap`)"
    try:
        version = subprocess.run(
            [bwrap, "--version"], capture_output=True, text=True, timeout=10, env={}, stdin=subprocess.DEVNULL
        ).stdout.split()[-1:]
    except (OSError, subprocess.TimeoutExpired) as exc:
        return bwrap, "", False, f"bubblewrap cannot run: {exc}"
    version_text = version[0] if version else ""
    problem = "bubblewrap did not start"
    with tempfile.TemporaryDirectory(prefix="omoi-bwrap-probe-") as tmp:
        workspace, home = Path(tmp) / "workspace", Path(tmp) / "home"
        workspace.mkdir()
        home.mkdir()
        for disable_userns in (True, False):
            probe = Probe(confined=True, reason="probe", bwrap=bwrap, disable_userns=disable_userns)
            argv, fds, _ = bubblewrap_argv(
                probe,
                command=["/bin/sh", "-c", f"test -w {WORKSPACE_MOUNT} && test ! -e /etc/shadow && echo omoi-probe-ok"],
                workspace=workspace,
                home=home,
                read_only=python_installation_paths(),
                network=False,
                limits=Limits.for_timeout(10),
            )
            try:
                completed = subprocess.run(
                    argv,
                    capture_output=True,
                    text=True,
                    timeout=20,
                    env={"PATH": ":".join(SYSTEM_PATH_DIRS)},
                    stdin=subprocess.DEVNULL,
                    pass_fds=fds,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                problem = f"bubblewrap does not work here: {exc}"
                continue
            finally:
                for fd in fds:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            if completed.returncode == 0 and completed.stdout.strip() == "omoi-probe-ok":
                return bwrap, version_text, disable_userns, None
            problem = f"bubblewrap does not work here: {(completed.stderr or completed.stdout).strip()[:500]}"
    return bwrap, version_text, False, problem


def _slirp_works(probe: Probe) -> bool:
    """Whether a command with network through slirp4netns runs here (it needs /dev/net/tun, and in
    a container the permission to use it); otherwise such commands share the worker's network."""
    with tempfile.TemporaryDirectory(prefix="omoi-slirp-probe-") as tmp:
        workspace, home = Path(tmp) / "workspace", Path(tmp) / "home"
        workspace.mkdir()
        home.mkdir()
        argv, fds, network = bubblewrap_argv(
            probe,
            command=["/bin/sh", "-c", "grep -q tap0 /proc/net/dev && echo omoi-network-ok"],
            workspace=workspace,
            home=home,
            read_only=[],
            network=True,
            limits=Limits.for_timeout(10),
        )
        try:
            process = subprocess.Popen(
                argv,
                pass_fds=fds,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env={"PATH": ":".join(SYSTEM_PATH_DIRS)},
                start_new_session=True,
            )
        except OSError:
            return False
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        try:
            network.start()
            output, _ = process.communicate(timeout=20)
            return output.strip() == b"omoi-network-ok"
        except (OSError, subprocess.TimeoutExpired):
            _kill_group(process.pid)
            process.wait()
            return False
        finally:
            network.stop()
            if process.stdout:
                process.stdout.close()


def _pid_namespace_prefix() -> list[str]:
    """Unconfined commands still get a PID namespace where unshare works (as root, or through an
    unprivileged user namespace): it hides the worker's processes and kills leftovers."""
    mode = str(getattr(settings, "OMOI_SANDBOX_PID_NAMESPACE", "auto")).lower()
    unshare = shutil.which("unshare", path=":".join(SYSTEM_PATH_DIRS))
    if mode in ("off", "0", "false", "no") or not unshare or not sys.platform.startswith("linux"):
        return []
    for options in (
        ["--pid", "--fork", "--mount-proc", "--kill-child"],
        ["--user", "--map-root-user", "--pid", "--fork", "--mount-proc", "--kill-child"],
    ):
        try:
            probe = subprocess.run(
                [unshare, *options, "/bin/true"], stdin=subprocess.DEVNULL, capture_output=True, timeout=10, env={}
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return [unshare, *options]
    return []


# --- what a bubblewrap sandbox sees ------------------------------------------------------------


def python_installation_paths() -> list[Path]:
    """The Python installation commands need, as host paths to bind read-only at the same place:
    the interpreter's installation (sys.base_prefix) and the worker's virtual environment, if any.
    Nothing else of their parent directories (which may be the worker's home or Omoi's checkout)."""
    paths = []
    for prefix in (sys.base_prefix, sys.prefix):
        real = Path(os.path.realpath(prefix))
        if real.is_dir() and real not in paths and not _under_system_dirs(real):
            paths.append(real)
    executable = Path(os.path.realpath(getattr(sys, "_base_executable", sys.executable))).parent.parent
    if executable.is_dir() and executable not in paths and not _under_system_dirs(executable):
        paths.append(executable)
    return paths


def _under_system_dirs(path: Path) -> bool:
    return any(path == Path(d) or Path(d) in path.parents for d in SYSTEM_DIRS)


def _data_fd(text: str) -> int:
    """A pipe's read end holding `text`, for --ro-bind-data and --args (which fit a pipe's buffer;
    anything larger would block here, so it is refused)."""
    data = text.encode()
    if len(data) > 60_000:
        raise ValueError("a sandbox command line is limited to 60,000 bytes")
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, data)
    finally:
        os.close(write_end)
    return read_end


def bubblewrap_argv(
    probe: Probe,
    *,
    command: list[str],
    workspace: Path,
    home: Path,
    read_only: list[Path],
    network: bool,
    limits: Limits,
) -> tuple[list[str], list[int], SlirpNetwork | None]:
    """The bwrap command line that runs `command`, the file descriptors it reads (pass them to the
    child, close them after), and, for a command with network through slirp4netns, what starts
    that network once bwrap has made the namespace. bwrap reads its options from a pipe (--args),
    so the sandbox's first process (bwrap itself) shows no host path in its /proc/1/cmdline."""
    args = ["--unshare-user", "--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"]
    fds: list[int] = []
    slirp = None
    if not network or probe.slirp4netns:
        args.append("--unshare-net")
    if network and probe.slirp4netns:
        slirp = SlirpNetwork(probe.slirp4netns)
        fds += [slirp.info_child, slirp.block_child]
        args += ["--info-fd", str(slirp.info_child), "--block-fd", str(slirp.block_child)]
    if probe.disable_userns:
        args.append("--disable-userns")
    args += ["--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", SANDBOX_HOSTNAME]
    args += ["--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    for directory in SYSTEM_DIRS:
        if os.path.islink(directory):
            args += ["--symlink", os.readlink(directory), directory]
        elif os.path.isdir(directory):
            args += ["--ro-bind", directory, directory]
    args += ["--dir", "/etc"]
    for name in ETC_ENTRIES + (ETC_NETWORK_ENTRIES if network and not slirp else ()):
        if os.path.lexists(f"/etc/{name}"):
            args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    generated = [
        ("/etc/passwd", PASSWD),
        ("/etc/group", GROUP),
        ("/etc/hosts", HOSTS),
        ("/etc/hostname", SANDBOX_HOSTNAME + "\n"),
    ]
    if slirp:
        generated.append(("/etc/resolv.conf", SLIRP_RESOLV_CONF))
    for target, text in generated:
        fd = _data_fd(text)
        fds.append(fd)
        args += ["--ro-bind-data", str(fd), target]
    args += ["--proc", "/proc", "--dev", "/dev", "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp"]
    args += ["--dir", "/var", "--symlink", "../tmp", "/var/tmp"]
    for path in read_only:
        path = Path(path)
        if not path.is_absolute() or path == Path("/") or not path.exists():
            continue
        if any(str(path) == m or str(path).startswith(m + "/") or m.startswith(str(path) + "/") for m in _mounts()):
            continue
        args += ["--ro-bind", str(path), str(path)]
    args += ["--bind", str(workspace), WORKSPACE_MOUNT, "--bind", str(home), HOME_MOUNT]
    # The root itself (a tmpfs bubblewrap made) is read-only too: /tmp, the workspace and the home
    # are the only places a command can write.
    args += ["--remount-ro", "/", "--chdir", WORKSPACE_MOUNT]
    if any("\x00" in arg for arg in args):
        raise ValueError("a sandbox's paths must not contain NUL bytes")
    fds.append(_data_fd("\x00".join(args) + "\x00"))
    return [probe.bwrap, "--args", str(fds[-1]), "--", *command], fds, slirp


class SlirpNetwork:
    """A network for one command through slirp4netns: a user-mode TCP/IP stack attached to the
    sandbox's own network namespace, which reaches what the worker reaches outside (the internet,
    a package index) except the worker's loopback (--disable-host-loopback). bwrap reports the
    sandbox's first process on --info-fd and waits on --block-fd until the network is up."""

    def __init__(self, executable: str) -> None:
        self.executable = executable
        self.info_parent, self.info_child = os.pipe()
        self.block_child, self.block_parent = os.pipe()
        self.process: subprocess.Popen | None = None
        self.exit_parent: int | None = None

    def _child_pid(self) -> int:
        data = b""
        deadline = time.monotonic() + SLIRP_START_TIMEOUT_S
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.info_parent], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(self.info_parent, 4096)
            if not chunk:
                break
            data += chunk
            with contextlib.suppress(ValueError):
                return int(json.loads(data)["child-pid"])
        raise OSError(f"bubblewrap did not report its sandbox's process ({data[:200]!r})")

    def start(self) -> None:
        """Attach slirp4netns to the sandbox and let its command run. Raises OSError.

        slirp4netns is handed the sandbox's network namespace and the user namespace that owns it
        as open descriptors, taken once bwrap has set up the loopback: the sandbox's process moves
        on into a nested user namespace (--disable-userns), where joining its network namespace is
        no longer allowed."""
        pid = self._child_pid()
        self._wait_for_loopback(pid)
        netns = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            userns = fcntl.ioctl(netns, NS_GET_USERNS)
        except OSError:
            os.close(netns)
            raise
        try:
            problem = ""
            for attempt in range(SLIRP_ATTEMPTS):
                problem = self._attach(netns, userns)
                if not problem:
                    os.write(self.block_parent, b"1")
                    return
                time.sleep(0.02 * (attempt + 1))
            raise OSError(f"slirp4netns did not start: {problem}")
        finally:
            os.close(netns)
            os.close(userns)

    @staticmethod
    def _wait_for_loopback(pid: int) -> None:
        """bwrap reports its process before that process has set up the loopback interface of its
        network namespace; slirp4netns configuring the namespace at the same time makes one of them
        fail. Wait (briefly) until the loopback address is there."""
        deadline = time.monotonic() + SLIRP_START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if "127.0.0.1" in Path(f"/proc/{pid}/net/fib_trie").read_text():
                    return
            except OSError:
                return
            time.sleep(0.002)

    def _attach(self, netns: int, userns: int) -> str:
        """Start slirp4netns on the sandbox's network namespace; "" when it is ready, else why not."""
        ready_parent, ready_child = os.pipe()
        exit_child, exit_parent = os.pipe()
        try:
            process = subprocess.Popen(
                [self.executable, "--configure", "--mtu=65520", "--disable-host-loopback", "--ready-fd",
                 str(ready_child), "--exit-fd", str(exit_child), "--userns-path", f"/proc/self/fd/{userns}",
                 "--netns-type", "path", f"/proc/self/fd/{netns}", "tap0"],
                pass_fds=(ready_child, exit_child, netns, userns), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={"PATH": ":".join(SYSTEM_PATH_DIRS)},
                start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            os.close(exit_parent)
            return str(exc)
        finally:
            os.close(ready_child)
            os.close(exit_child)
        try:
            ready, _, _ = select.select([ready_parent], [], [], SLIRP_START_TIMEOUT_S)
            if ready and os.read(ready_parent, 1) == b"1":
                self.process, self.exit_parent = process, exit_parent
                return ""
        finally:
            os.close(ready_parent)
        os.close(exit_parent)
        try:
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        problem = process.stderr.read(2000).decode(errors="replace").strip() if process.stderr else ""
        if process.stderr:
            process.stderr.close()
        return problem or ("timed out" if not ready else "it exited")

    def stop(self) -> None:
        for fd in (self.info_parent, self.block_parent, self.exit_parent):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.exit_parent = None
        if self.process is not None:
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            if self.process.stderr:
                self.process.stderr.close()
            self.process = None


def _mounts() -> tuple[str, ...]:
    """Mount points a read-only bind may neither shadow nor sit under (binds under /tmp, /etc and
    /var are fine: they are made after those directories)."""
    return (WORKSPACE_MOUNT, HOME_MOUNT, "/proc", "/dev")


# --- per-command cgroups ---------------------------------------------------------------------------


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup paths: {"pids": "/x", "memory": "/x"} for v1, {"": "/x"} for v2."""
    paths = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            number, controllers, path = line.split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                paths[controller] = path
    return paths


def _cgroup_mounts() -> dict[str, tuple[str, str]]:
    """{"pids": (mount point, root), "memory": ..., "": (v2 mount point, root)} from mountinfo."""
    mounts: dict[str, tuple[str, str]] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            left, _, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            if len(fields) < 5 or len(tail) < 3:
                continue
            root, mount_point, fstype, super_options = fields[3], fields[4], tail[0], tail[2]
            if fstype == "cgroup2":
                mounts.setdefault("", (mount_point, root))
            elif fstype == "cgroup":
                for option in super_options.split(","):
                    if option in ("pids", "memory"):
                        mounts.setdefault(option, (mount_point, root))
    return mounts


def _cgroup_dir(mount: tuple[str, str], own: str) -> str:
    mount_point, root = mount
    relative = own[len(root) :] if root != "/" and own.startswith(root) else own
    return os.path.join(mount_point, relative.lstrip("/"))


def _cgroup_probe() -> tuple[int, tuple[str, ...]]:
    """(1 or 2, the parent directories to create command cgroups in) when this process may create
    cgroups with a pids limit, else (0, ())."""
    if not sys.platform.startswith("linux") or not getattr(settings, "OMOI_SANDBOX_CGROUPS", True):
        return 0, ()
    own, mounts = _own_cgroups(), _cgroup_mounts()
    if "pids" in mounts and "pids" in own:
        parents = [_cgroup_dir(mounts["pids"], own["pids"])]
        if "memory" in mounts and "memory" in own:
            parents.append(_cgroup_dir(mounts["memory"], own["memory"]))
        if _try_cgroups(parents, version=1):
            return 1, tuple(parents)
    if "" in mounts and "" in own:
        parent = _cgroup_dir(mounts[""], own[""])
        if _try_cgroups([parent], version=2):
            return 2, (parent,)
    return 0, ()


def _try_cgroups(parents: list[str], *, version: int) -> bool:
    made = []
    try:
        for parent in parents:
            path = os.path.join(parent, f"omoi-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            os.mkdir(path)
            made.append(path)
            if version == 2 and "pids" not in Path(path, "cgroup.controllers").read_text().split():
                return False
            if Path(path, "pids.max").exists():
                Path(path, "pids.max").write_text("64")
        return any(Path(p, "pids.max").exists() for p in made)
    except OSError:
        return False
    finally:
        for path in made:
            with contextlib.suppress(OSError):
                os.rmdir(path)


class CommandCgroup:
    """The cgroups of one command: a pids limit (and, with v1's memory controller or v2, a memory
    limit); every process of the command is in them, so all can be found and killed."""

    def __init__(self, probe: Probe, limits: Limits) -> None:
        self.version = probe.cgroup_version
        self.paths: list[str] = []
        name = f"omoi-cmd-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        for parent in probe.cgroup_dirs:
            path = os.path.join(parent, name)
            os.mkdir(path)
            self.paths.append(path)
            self._write(path, "pids.max", str(limits.processes))
            self._write(path, "memory.limit_in_bytes", str(limits.memory_bytes))
            self._write(path, "memory.max", str(limits.memory_bytes))
            self._write(path, "memory.swap.max", "0")
        self.procs_files = [os.path.join(p, "cgroup.procs") for p in self.paths]

    @staticmethod
    def _write(path: str, name: str, value: str) -> None:
        target = os.path.join(path, name)
        if os.path.exists(target):
            with contextlib.suppress(OSError):
                Path(target).write_text(value)

    def join(self) -> None:
        """Runs in the child between fork and exec: put it (and so all it starts) in the cgroups."""
        pid = str(os.getpid()).encode()
        for procs in self.procs_files:
            descriptor = os.open(procs, os.O_WRONLY)
            try:
                os.write(descriptor, pid)
            finally:
                os.close(descriptor)

    def pids(self) -> set[int]:
        found: set[int] = set()
        for procs in self.procs_files:
            with contextlib.suppress(OSError, ValueError):
                found.update(int(line) for line in Path(procs).read_text().split())
        return found

    def kill_all(self) -> None:
        for path in self.paths:
            kill_file = os.path.join(path, "cgroup.kill")
            if os.path.exists(kill_file):
                with contextlib.suppress(OSError):
                    Path(kill_file).write_text("1")
        for _ in range(100):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)

    def remove(self) -> None:
        self.kill_all()
        for path in self.paths:
            for _ in range(50):
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


# --- running a command -----------------------------------------------------------------------------

_protected = False


def protect_host_process() -> None:
    """Make this (host) process non-dumpable, so that processes a command starts, which run as the
    same user, cannot read its /proc/<pid>/environ or memory. Linux only; harmless elsewhere."""
    global _protected
    if _protected or not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_dumpable = 4
        libc.prctl(pr_set_dumpable, 0, 0, 0, 0)
    _protected = True


def _set_limit(which: int, soft: int, hard: int | None = None) -> None:
    hard = soft if hard is None else hard
    _, current_hard = resource.getrlimit(which)
    if current_hard != resource.RLIM_INFINITY:
        soft, hard = min(soft, current_hard), min(hard, current_hard)
    resource.setrlimit(which, (soft, hard))


def _die_with_parent() -> None:
    """The command dies when the worker that started it dies (a killed worker leaves no orphan;
    bubblewrap's --die-with-parent does the same for confined commands)."""
    with contextlib.suppress(OSError, AttributeError):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


def _limit_resources(limits: Limits, cgroup: CommandCgroup | None) -> None:
    """Runs in the child between fork and exec."""
    _die_with_parent()
    if cgroup is not None:
        cgroup.join()
    _set_limit(resource.RLIMIT_CPU, limits.cpu_seconds, limits.cpu_seconds + 5)
    _set_limit(resource.RLIMIT_AS, limits.memory_bytes)
    _set_limit(resource.RLIMIT_FSIZE, limits.file_size_bytes)
    _set_limit(resource.RLIMIT_NOFILE, limits.open_files)
    _set_limit(resource.RLIMIT_CORE, 0)
    # Counted per user (all processes of this uid), enforced for every user but root.
    _set_limit(resource.RLIMIT_NPROC, limits.processes)


class _TailReader(threading.Thread):
    """Drains a pipe, keeping only its last `limit` bytes, so a chatty command cannot fill memory
    or block on a full pipe."""

    def __init__(self, stream, limit: int) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.limit = limit
        self.buffer = bytearray()
        self.total = 0

    def run(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            while chunk := self.stream.read1(65536):
                self.total += len(chunk)
                self.buffer += chunk
                if len(self.buffer) > 2 * self.limit:
                    del self.buffer[: len(self.buffer) - self.limit]

    def text(self) -> str:
        return tail_text(bytes(self.buffer[-self.limit :]), self.total)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class _DiskWatch:
    """Notices a command filling the disk: the file system holding the workspace grew by more than
    `limits.disk_bytes` since the command started, or has less than `limits.min_free_bytes` free."""

    def __init__(self, path: Path, limits: Limits) -> None:
        self.path = path
        self.limits = limits
        self.start_used = self._used_and_free()[0]

    def _used_and_free(self) -> tuple[int, int]:
        stat = os.statvfs(self.path)
        return (stat.f_blocks - stat.f_bfree) * stat.f_frsize, stat.f_bavail * stat.f_frsize

    def exceeded(self) -> str:
        try:
            used, free = self._used_and_free()
        except OSError:
            return ""
        if used - self.start_used > self.limits.disk_bytes:
            return f"it wrote more than {_size(self.limits.disk_bytes)} to disk (OMOI_SANDBOX_DISK_BYTES)"
        if free < self.limits.min_free_bytes:
            return f"the disk has less than {_size(self.limits.min_free_bytes)} free (OMOI_SANDBOX_MIN_FREE_BYTES)"
        return ""


def _size(count: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= factor:
            return f"{count / factor:g} {unit}"
    return f"{count} bytes"


def run_process(
    argv: list[str],
    *,
    fault: str = "",
    cwd: Path,
    env: dict[str, str],
    timeout: float,
    limits: Limits,
    probe: Probe,
    disk_path: Path,
    pass_fds: list[int] | None = None,
    network: SlirpNetwork | None = None,
) -> CommandResult:
    """Run `argv` to its end or its timeout, under `limits`, in a session of its own (and, where
    the probe found them usable, in cgroups of its own). The timeout, a limit, and also the
    command's normal end kill everything it started; the output read until then is kept."""
    protect_host_process()
    cgroup = CommandCgroup(probe, limits) if probe.cgroup_version else None
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            argv,
            cwd=str(cwd),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
            pass_fds=tuple(pass_fds or ()),
            preexec_fn=lambda: _limit_resources(limits, cgroup),
        )
    except BaseException:
        if cgroup is not None:
            cgroup.remove()
        if network is not None:
            network.stop()
        raise
    finally:
        for fd in pass_fds or ():
            with contextlib.suppress(OSError):
                os.close(fd)
    if network is not None:
        try:
            network.start()
        except OSError as exc:
            _kill_group(process.pid)
            if cgroup is not None:
                cgroup.remove()
            process.wait()
            network.stop()
            said = process.stderr.read(2000).decode(errors="replace").strip() if process.stderr else ""
            for stream in (process.stdout, process.stderr):
                with contextlib.suppress(OSError):
                    stream.close()
            detail = f" (bubblewrap: {said})" if said else ""
            raise CommandRefused(f"refused: the sandbox's network could not be set up: {exc}{detail}") from exc
    stdout = _TailReader(process.stdout, MAX_OUTPUT_CHARS)
    stderr = _TailReader(process.stderr, MAX_OUTPUT_CHARS // 2)
    stdout.start()
    stderr.start()
    if fault:
        fault_point(fault)
    disk = _DiskWatch(disk_path, limits)
    timed_out = False
    killed_by = ""
    deadline = started + timeout
    try:
        while True:
            try:
                exit_code = process.wait(timeout=min(DISK_CHECK_INTERVAL_S, max(0.0, deadline - time.monotonic())))
                break
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() >= deadline:
                timed_out = True
            else:
                killed_by = disk.exceeded()
            if timed_out or killed_by:
                _kill_group(process.pid)
                if cgroup is not None:
                    cgroup.kill_all()
                exit_code = process.wait()
                break
    finally:
        duration = time.monotonic() - started
        _kill_group(process.pid)
        if cgroup is not None:
            cgroup.remove()
        elif process.poll() is None:
            process.kill()
            process.wait()
        if network is not None:
            network.stop()
    stdout.join(5)
    stderr.join(5)
    for stream in (process.stdout, process.stderr):
        with contextlib.suppress(OSError):
            stream.close()
    return CommandResult(
        exit_code=exit_code,
        stdout=stdout.text(),
        stderr=stderr.text(),
        timed_out=timed_out,
        duration_s=round(duration, 3),
        killed_by=killed_by,
    )
