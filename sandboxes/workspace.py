"""A workspace: one directory (a git checkout) that an agent's tools act on, and nothing outside it.

Every path is resolved, symlinks included, and must land inside the root; writes into `.git`
are refused. A violation raises `PathRefused`, which the tool layer turns into a refusal the
model sees and an event the operator sees. (That file-tool logic lives in sandboxes.fstools, shared
with remote sandboxes, which run the same code.) Commands run under `bash -c` in the root with an
environment built from scratch (none of the server's variables, so none of its secrets), in a
session of their own so a timeout kills every process they started, under resource limits, and,
where the machine allows it (`unshare`), in a PID namespace of their own, which hides the host's
processes (and their /proc/<pid>/environ) and takes down every process the command left behind.

The host-side git helpers (`head_sha`, `commit_all`, `changed_files`, `diff_stat`) run git with
hooks disabled and without the server's environment, because the agent may have changed `.git`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import resource
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from django.conf import settings

from sandboxes.fstools import DirectoryTools, WorkspaceError, tail_text
from sandboxes.fstools import PathRefused as PathRefused
from sandboxes.git import GitError, git_run, rev_parse

MAX_OUTPUT_CHARS = 20_000
MAX_COMMAND_TIMEOUT_S = 600

# Resource limits of every command (each process it starts gets them too).
LIMIT_ADDRESS_SPACE_BYTES = 4 * 1024**3
LIMIT_FILE_SIZE_BYTES = 1024**3
LIMIT_OPEN_FILES = 1024
CPU_SECONDS_BEYOND_TIMEOUT = 10

# What git runs with inside a sandbox: nothing of the repository's own configuration may run code.
WORKSPACE_GIT_OPTIONS = (
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "commit.gpgSign=false",
    "-c",
    "tag.gpgSign=false",
    "-c",
    "user.name=Omoi",
    "-c",
    "user.email=omoi@localhost",
    "-c",
    "protocol.allow=never",
    "-c",
    "protocol.file.allow=always",
)

SYSTEM_PATH_DIRS = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
SECRET_NAME_PATTERN = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|DATABASE_URL|BROKER_URL)", re.I)


@dataclass
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool
    duration_s: float

    def as_text(self) -> str:
        """The result as the model reads it."""
        head = f"exit code {self.exit_code}" + (" (timed out; the command was killed)" if self.timed_out else "")
        parts = [f"{head}, {self.duration_s:.1f} s"]
        parts.append("--- stdout ---\n" + (self.stdout or "(empty)"))
        if self.stderr:
            parts.append("--- stderr ---\n" + self.stderr)
        return "\n".join(parts)


@runtime_checkable
class Workspace(Protocol):
    """One sandbox as agent tools and host steps see it. Two implementations: the local provider's
    directory (commands confined by bubblewrap) and Daytona's remote sandbox.

    Tool methods answer text written for the model and raise WorkspaceError / PathRefused for
    anything the model asked that cannot be done. Host needs go through `git`, `read_bytes` and
    `write_bytes`: git runs inside the boundary (never on the host in a tree an agent controlled),
    and code leaves the sandbox only as bytes (a git bundle) that the host fetches into its own
    repository. Composite operations (commit, export) are built on these in sandboxes.transfer.
    """

    label: str
    confined: bool

    def list_files(self, path: str = ".") -> str: ...

    def read_file(self, path: str, start_line: int | None = None, end_line: int | None = None) -> str: ...

    def write_file(self, path: str, content: str) -> str: ...

    def edit_file(self, path: str, old: str, new: str) -> str: ...

    def search(self, pattern: str, path: str = ".") -> str: ...

    def display_path(self, path: str) -> str:
        """The workspace-relative form of a path a tool was given (raises PathRefused outside)."""
        ...

    def run_command(self, command: str, timeout_s: float | None = None, *, network: bool = False) -> CommandResult:
        """`bash -c command` in the workspace root, behind the provider's boundary."""
        ...

    def git(self, *args: str, timeout_s: float = 120.0) -> CommandResult:
        """`git <args>` in the workspace root, inside the boundary, with hooks, fsmonitor, signing
        and external helpers off and a fixed identity (Omoi)."""
        ...

    def read_bytes(self, path: str, *, limit: int) -> bytes:
        """The bytes of a regular file in the workspace (its .git included), at most `limit`."""
        ...

    def write_bytes(self, path: str, data: bytes) -> None:
        """Create or replace a file in the workspace (its .git included) with `data`."""
        ...


def default_path_dirs() -> list[str]:
    """The sandbox's PATH: the host's Python environment first (so `python -m pytest` works in the
    local provider), then the system directories."""
    dirs = []
    if sys.prefix != sys.base_prefix:
        dirs.append(str(Path(sys.executable).parent))
    return dirs + SYSTEM_PATH_DIRS


_protected = False
_isolation_probe: dict[str, list[str]] = {}

# Ways to run a command in its own PID namespace, most preferred first: as root, then through an
# unprivileged user namespace. The namespace hides the host's processes (and their environments)
# from the command, and when its first process dies the kernel kills every process in it.
ISOLATION_OPTIONS = [
    ["--pid", "--fork", "--mount-proc", "--kill-child"],
    ["--user", "--map-root-user", "--pid", "--fork", "--mount-proc", "--kill-child"],
]


def isolation_prefix() -> list[str]:
    """The command prefix that runs a command in a PID namespace here, or [] when this machine
    cannot (then commands run as plain child processes). settings.OMOI_SANDBOX_PID_NAMESPACE:
    "auto" (default: use it when it works), "off"."""
    mode = str(getattr(settings, "OMOI_SANDBOX_PID_NAMESPACE", "auto")).lower()
    if mode in ("off", "0", "false", "no"):
        return []
    if "prefix" not in _isolation_probe:
        _isolation_probe["prefix"] = []
        unshare = shutil.which("unshare", path=":".join(SYSTEM_PATH_DIRS))
        for options in ISOLATION_OPTIONS if unshare and sys.platform.startswith("linux") else []:
            try:
                probe = subprocess.run(
                    [unshare, *options, "/bin/true"], stdin=subprocess.DEVNULL, capture_output=True, timeout=10, env={}
                )
            except (OSError, subprocess.TimeoutExpired):
                continue
            if probe.returncode == 0:
                _isolation_probe["prefix"] = [unshare, *options]
                break
    return list(_isolation_probe["prefix"])


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


def _limit_resources(cpu_seconds: int) -> None:
    """Runs in the child between fork and exec."""
    _set_limit(resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 5)
    _set_limit(resource.RLIMIT_AS, LIMIT_ADDRESS_SPACE_BYTES)
    _set_limit(resource.RLIMIT_FSIZE, LIMIT_FILE_SIZE_BYTES)
    _set_limit(resource.RLIMIT_NOFILE, LIMIT_OPEN_FILES)
    _set_limit(resource.RLIMIT_CORE, 0)


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


class LocalWorkspace(DirectoryTools):
    """The tools' view of one sandbox directory (the file tools are DirectoryTools', shared with
    remote sandboxes). `home` is the commands' HOME and TMPDIR parent; by default a sibling
    directory `<root>.home`, outside the repository so it is never committed."""

    def __init__(
        self,
        root: Path | str,
        *,
        home: Path | str | None = None,
        path_dirs: list[str] | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(root)
        self.home = Path(home) if home is not None else self.root.parent / f"{self.root.name}.home"
        self.path_dirs = path_dirs if path_dirs is not None else default_path_dirs()
        for name in extra_env or {}:
            if SECRET_NAME_PATTERN.search(name):
                raise ValueError(f"{name} looks like a secret and may not enter a sandbox")
        self.extra_env = dict(extra_env or {})
        self.label = f"local:{self.root.name}"

    # Commands run as child processes of the worker (in a PID namespace where possible), not
    # behind a real boundary; the bubblewrap provider is confined.
    confined = False

    def __repr__(self) -> str:
        return f"LocalWorkspace({str(self.root)!r})"

    # --- paths --------------------------------------------------------------------------

    # --- commands -----------------------------------------------------------------------

    def command_env(self) -> dict[str, str]:
        """The whole environment of a command, built from scratch: never from os.environ."""
        env = {
            "PATH": ":".join(self.path_dirs),
            "HOME": str(self.home),
            "TMPDIR": str(self.home / "tmp"),
            "USER": "omoi",
            "LANG": "C.UTF-8",
            "TERM": "dumb",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "NO_COLOR": "1",
            "CI": "1",
            "PAGER": "cat",
            "GIT_PAGER": "cat",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": "Omoi agent",
            "GIT_AUTHOR_EMAIL": "agent@omoi.localhost",
            "GIT_COMMITTER_NAME": "Omoi agent",
            "GIT_COMMITTER_EMAIL": "agent@omoi.localhost",
            "OMOI_WORKSPACE": str(self.root),
        }
        env.update(self.extra_env)
        return env

    def run_command(self, command: str, timeout_s: float | None = None, *, network: bool = False) -> CommandResult:
        """Run `bash -c command` in the workspace. The timeout (default OMOI_COMMAND_TIMEOUT_S,
        at most MAX_COMMAND_TIMEOUT_S) kills the command's whole process group; so does the
        command's end, so nothing it started in the background outlives it."""
        if not isinstance(command, str) or not command.strip():
            raise WorkspaceError("command must be a non-empty string")
        default = float(settings.OMOI_COMMAND_TIMEOUT_S)
        timeout = float(timeout_s) if timeout_s else default
        timeout = max(1.0, min(timeout, float(MAX_COMMAND_TIMEOUT_S)))
        (self.home / "tmp").mkdir(parents=True, exist_ok=True)
        protect_host_process()
        cpu_seconds = int(timeout) + CPU_SECONDS_BEYOND_TIMEOUT
        started = time.monotonic()
        # In a PID namespace a small shell is its first process (init), so that bash keeps normal
        # signal behaviour and the command's exit code comes back through it.
        prefix = isolation_prefix()
        argv = [*prefix, "/bin/sh", "-c", 'bash -c "$1"; exit $?', "sh", command] if prefix else ["bash", "-c", command]
        process = subprocess.Popen(
            argv,
            cwd=str(self.root),
            env=self.command_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
            preexec_fn=lambda: _limit_resources(cpu_seconds),
        )
        stdout = _TailReader(process.stdout, MAX_OUTPUT_CHARS)
        stderr = _TailReader(process.stderr, MAX_OUTPUT_CHARS // 2)
        stdout.start()
        stderr.start()
        timed_out = False
        try:
            exit_code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(process.pid)
            exit_code = process.wait()
        duration = time.monotonic() - started
        _kill_group(process.pid)
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
        )

    # --- host needs: git inside the boundary, bytes in and out -----------------------------

    def git(self, *args: str, timeout_s: float = 120.0) -> CommandResult:
        quoted = " ".join(shlex.quote(arg) for arg in ("git", *WORKSPACE_GIT_OPTIONS, *args))
        return self.run_command(quoted, timeout_s=timeout_s)

    def read_bytes(self, path: str, *, limit: int) -> bytes:
        target = self.resolve(path)
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
        try:
            descriptor = os.open(target, flags)
        except OSError as exc:
            raise WorkspaceError(f"cannot read {path}: {exc.strerror}") from exc
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            os.close(descriptor)
            raise WorkspaceError(f"{path} is not a regular file")
        with os.fdopen(descriptor, "rb") as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise WorkspaceError(f"{path} is larger than {limit} bytes")
        return data

    def write_bytes(self, path: str, data: bytes) -> None:
        target = self.resolve(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink():
            target.unlink()
        target.write_bytes(data)

    # --- host-side git ------------------------------------------------------------------

    def head_sha(self) -> str:
        return git_run("rev-parse", "HEAD", cwd=self.root).strip()

    def commit_all(self, message: str) -> str | None:
        """Commit everything (git add -A) as Omoi; None when nothing changed."""
        git_run("add", "-A", cwd=self.root)
        try:
            git_run("diff", "--cached", "--quiet", cwd=self.root)
            return None
        except GitError as exc:
            if exc.returncode != 1:
                raise
        git_run("commit", "--quiet", "--no-verify", "-m", message, cwd=self.root)
        return self.head_sha()

    def _snapshot_tree(self) -> str:
        """The tree of the working directory as `git add -A` would see it, written through a
        throwaway index so the workspace's own index is left alone."""
        with tempfile.TemporaryDirectory() as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            if rev_parse(self.root, "HEAD"):
                git_run("read-tree", "HEAD", cwd=self.root, env=env)
            git_run("add", "-A", cwd=self.root, env=env)
            return git_run("write-tree", cwd=self.root, env=env).strip()

    def _base_of(self, base_ref: str) -> str:
        base = rev_parse(self.root, base_ref) or rev_parse(self.root, f"origin/{base_ref}")
        if base is None:
            raise GitError(f"unknown revision {base_ref!r}")
        try:
            return git_run("merge-base", base, "HEAD", cwd=self.root).strip() or base
        except GitError:
            return base

    def changed_files(self, base_ref: str) -> list[str]:
        """Files changed since the work forked from `base_ref`: committed, staged, unstaged and
        untracked (ignored files excluded)."""
        output = git_run(
            "diff", "--name-only", "--no-renames", self._base_of(base_ref), self._snapshot_tree(), cwd=self.root
        )
        return [line for line in output.splitlines() if line]

    def diff_stat(self, base_ref: str) -> str:
        return git_run("diff", "--stat=120", self._base_of(base_ref), self._snapshot_tree(), cwd=self.root).rstrip()

    def remove(self) -> None:
        """Delete the workspace and its home directory (used by providers on release)."""
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.home, ignore_errors=True)
