"""The workspace protocol: one sandbox as agent tools and host steps see it, whatever the boundary.

This module holds what every provider shares besides the file tools: the `Workspace` protocol,
its errors, the `CommandResult` of a command, the environment a command starts with, and the git
options that keep a repository's own configuration from running code. The file tools' logic
(paths confined to the workspace, list, read, write, edit, search) has one home,
`sandboxes.fstools.DirectoryTools`, standard library only, which the local provider's
LocalWorkspace inherits and the Daytona provider's runner runs inside the remote sandbox, so both
answer the model alike. Implementations: `sandboxes.providers.local.LocalWorkspace` (a directory
on this worker, commands confined by bubblewrap) and `sandboxes.providers.daytona.DaytonaWorkspace`
(a remote Daytona sandbox).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from sandboxes.fstools import PathRefused, WorkspaceError

__all__ = [
    "CommandRefused",
    "CommandResult",
    "PathRefused",
    "Workspace",
    "WorkspaceError",
]

MAX_OUTPUT_CHARS = 20_000
MAX_COMMAND_TIMEOUT_S = 600

# What git runs with inside a sandbox: nothing of the repository's own configuration may run code
# through hooks, fsmonitor or signing; only local (file) transports.
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


class CommandRefused(WorkspaceError):
    """A command was not run at all: this worker cannot confine it and running it unconfined is
    not allowed (OMOI_ALLOW_UNCONFINED), or the confinement that was required is unusable. The
    tool layer answers it as a refusal; a host step that meets it blocks with reason environment."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool
    duration_s: float
    # Which limit ended the command early besides the timeout ("disk"), else "".
    killed_by: str = ""

    def as_text(self) -> str:
        """The result as the model reads it."""
        head = f"exit code {self.exit_code}" + (" (timed out; the command was killed)" if self.timed_out else "")
        if self.killed_by:
            head += f" (killed: {self.killed_by})"
        parts = [f"{head}, {self.duration_s:.1f} s"]
        parts.append("--- stdout ---\n" + (self.stdout or "(empty)"))
        if self.stderr:
            parts.append("--- stderr ---\n" + self.stderr)
        return "\n".join(parts)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.killed_by


@runtime_checkable
class Workspace(Protocol):
    """One sandbox as agent tools and host steps see it. Two implementations: the local provider's
    directory (commands confined by bubblewrap) and Daytona's remote sandbox.

    Tool methods answer text written for the model and raise WorkspaceError / PathRefused for
    anything the model asked that cannot be done. Host needs go through `git`, `read_bytes` and
    `write_bytes`: git runs inside the boundary (never on the host in a tree an agent controlled),
    and code leaves the sandbox only as bytes (a git bundle) that the host fetches into its own
    repository. Composite operations (commit, export) are built on these in
    sandboxes.services.gitstore.

    `confined` is False when commands run without a real boundary (the local provider on a worker
    without bubblewrap); `run_command` and `git` then raise CommandRefused unless running
    unconfined is allowed (OMOI_ALLOW_UNCONFINED). `network_allowed` is the project's setting:
    when True every command may use the network, otherwise only those asked with network=True.
    """

    label: str
    confined: bool
    network_allowed: bool

    def list_files(self, path: str = ".") -> str: ...

    def read_file(self, path: str, start_line: int | None = None, end_line: int | None = None) -> str: ...

    def write_file(self, path: str, content: str) -> str: ...

    def edit_file(self, path: str, old: str, new: str) -> str: ...

    def search(self, pattern: str, path: str = ".") -> str: ...

    def display_path(self, path: str) -> str:
        """The workspace-relative form of a path a tool was given (raises PathRefused outside)."""
        ...

    def run_command(self, command: str, timeout_s: float | None = None, *, network: bool = False) -> CommandResult:
        """`bash -c command` in the workspace root, behind the provider's boundary. `network=True`
        (the setup step) lets this one command use the network."""
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


# --- the environment a command starts with ----------------------------------------------------


def command_environment(
    *, path_dirs: list[str], home: str, tmpdir: str, workspace: str, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The whole environment of a sandbox command, built from scratch (never from os.environ, so
    none of the server's secrets), with the paths as the command sees them."""
    env = {
        "PATH": ":".join(path_dirs),
        "HOME": home,
        "TMPDIR": tmpdir,
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
        "OMOI_WORKSPACE": workspace,
    }
    env.update(extra or {})
    return env


def check_extra_environment(extra: dict[str, str] | None) -> dict[str, str]:
    """Explicit extra variables for commands; a name that looks like a secret is rejected."""
    for name in extra or {}:
        if SECRET_NAME_PATTERN.search(name):
            raise ValueError(f"{name} looks like a secret and may not enter a sandbox")
    return dict(extra or {})


def clamp_timeout(timeout_s: float | None, default: float) -> float:
    """A command's timeout: the one asked for (or the default), between 1 s and MAX_COMMAND_TIMEOUT_S."""
    timeout = float(timeout_s) if timeout_s else float(default)
    return max(1.0, min(timeout, float(MAX_COMMAND_TIMEOUT_S)))


def check_command(command: object) -> str:
    if not isinstance(command, str) or not command.strip():
        raise WorkspaceError("command must be a non-empty string")
    if "\x00" in command:
        raise WorkspaceError("command must not contain a NUL byte")
    return command
