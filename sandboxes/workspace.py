"""The workspace protocol: one sandbox as agent tools and host steps see it, whatever the boundary.

This module holds what every provider shares: the `Workspace` protocol, its errors, the
`CommandResult` of a command, the environment a command starts with, the git options that keep
a repository's own configuration from running code, and the pure text logic of the file tools
(how a listing, a file read, an edit and a search answer the model), so that a remote provider
answers exactly like the local one. Implementations: `sandboxes.providers.local.LocalWorkspace`
(a directory on this worker, commands confined by bubblewrap) and the Daytona provider's remote
sandbox.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

MAX_LIST_ENTRIES = 500
MAX_READ_LINES = 2000
MAX_READ_CHARS = 100_000
MAX_LINE_CHARS = 2000
MAX_WRITE_BYTES = 5_000_000
MAX_SEARCH_MATCHES = 200
MAX_SEARCH_FILE_BYTES = 2_000_000
MAX_SEARCH_LINE_CHARS = 300
MAX_PATTERN_CHARS = 1000
MAX_OUTPUT_CHARS = 20_000
MAX_COMMAND_TIMEOUT_S = 600
BINARY_SNIFF_BYTES = 8192

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

SKIPPED_DIRS = {".git"}
UNLISTED_DIRS = {
    "node_modules",
    "__pycache__",
    ".venv",
    "venv",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".tox",
    ".eggs",
}
SYSTEM_PATH_DIRS = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
SECRET_NAME_PATTERN = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|DATABASE_URL|BROKER_URL)", re.I)


class WorkspaceError(Exception):
    """A tool could not do what was asked (no such file, ambiguous edit, bad regex...). The
    message is written for the model."""


class PathRefused(WorkspaceError):
    """A path escapes the workspace or writes into .git."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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
    repository. Composite operations (commit, export) are built on these in sandboxes.transfer.

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


# --- the file tools' answers, independent of where the files are ---------------------------------


def listing_text(entries: list[str], *, more: int, base: str) -> str:
    """The answer of list_files: `entries` (relative paths, directories ending in '/', symbolic
    links in '@', at most MAX_LIST_ENTRIES) and how many more were not shown."""
    if not entries:
        return f"{base}/ is empty"
    lines = list(entries)
    if more:
        lines.append(f"… {more}+ more entries not shown; list a subdirectory")
    return "\n".join(lines)


def read_lines_text(
    lines: Iterable[str], *, shown_path: str, asked_path: str, start_line: int | None, end_line: int | None
) -> str:
    """The answer of read_file for a text file whose lines (with their line ends) are `lines`."""
    start = 1 if start_line is None else int(start_line)
    if start < 1:
        raise WorkspaceError("start_line must be 1 or more")
    if end_line is not None and int(end_line) < start:
        raise WorkspaceError("end_line must not be before start_line")
    last_wanted = start + MAX_READ_LINES - 1 if end_line is None else min(int(end_line), start + MAX_READ_LINES - 1)
    shown: list[str] = []
    chars = 0
    total = 0
    last_shown = start - 1
    for number, line in enumerate(lines, start=1):
        total = number
        if number < start or number > last_wanted or chars >= MAX_READ_CHARS:
            continue
        line = line.rstrip("\n")
        if len(line) > MAX_LINE_CHARS:
            line = line[:MAX_LINE_CHARS] + " … [line truncated]"
        shown.append(f"{number:>6}\t{line}")
        chars += len(line) + 8
        last_shown = number
    if total == 0:
        return f"{shown_path} is empty"
    if start > total:
        raise WorkspaceError(f"{asked_path} has {total} lines; start_line {start} is past the end")
    text = "\n".join(shown)
    if last_shown < total and (end_line is None or last_shown < int(end_line)):
        text += (
            f"\n… [{shown_path} has {total} lines; showing {start}-{last_shown}; "
            f"read more with start_line={last_shown + 1}]"
        )
    return text


def is_binary(head: bytes) -> bool:
    """Whether the first BINARY_SNIFF_BYTES of a file say it is binary."""
    return b"\x00" in head


def encode_content(content: object) -> bytes:
    """write_file's content as bytes, within MAX_WRITE_BYTES."""
    if not isinstance(content, str):
        raise WorkspaceError("content must be a string")
    try:
        data = content.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise WorkspaceError(f"content is not valid Unicode text: {exc.reason} at position {exc.start}") from exc
    if len(data) > MAX_WRITE_BYTES:
        raise WorkspaceError(f"content is {len(data)} bytes; the limit is {MAX_WRITE_BYTES}")
    return data


def write_text(*, shown_path: str, content: str, size: int, existed: bool) -> str:
    lines = content.count("\n") + (0 if content.endswith("\n") or not content else 1)
    verb = "overwrote" if existed else "created"
    return f"{verb} {shown_path} ({size} bytes, {lines} lines)"


def check_edit(old: object, new: object) -> None:
    if not isinstance(old, str) or not isinstance(new, str):
        raise WorkspaceError("old and new must be strings")
    if old == "":
        raise WorkspaceError("old must not be empty; use write_file to create a file")
    if old == new:
        raise WorkspaceError("old and new are the same; nothing to change")


def apply_edit(text: str, old: str, new: str, *, asked_path: str, shown_path: str) -> tuple[str, str]:
    """The file's new text after replacing the one occurrence of `old`, and edit_file's answer."""
    count = text.count(old)
    if count == 0:
        raise WorkspaceError(
            f"old text not found in {asked_path} (0 occurrences); read the file and copy the exact text, "
            "including whitespace and indentation"
        )
    if count > 1:
        raise WorkspaceError(
            f"old text found {count} times in {asked_path}; it must occur exactly once: include more "
            "surrounding lines to make it unique"
        )
    removed, added = old.count("\n") + 1, new.count("\n") + 1
    message = f"edited {shown_path}: replaced 1 occurrence ({removed} lines → {added} lines)"
    return text.replace(old, new, 1), message


def compile_pattern(pattern: object) -> re.Pattern[str]:
    if not isinstance(pattern, str) or not pattern:
        raise WorkspaceError("pattern must be a non-empty string")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise WorkspaceError(f"pattern is longer than {MAX_PATTERN_CHARS} characters")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise WorkspaceError(f"invalid regular expression {pattern!r}: {exc}") from exc


def search_lines(regex: re.Pattern[str], *, shown_path: str, lines: Iterable[str], matches: list[str]) -> bool:
    """Append `path:line: text` for each matching line to `matches`; False once the bound is hit."""
    for number, line in enumerate(lines, start=1):
        if regex.search(line):
            if len(matches) >= MAX_SEARCH_MATCHES:
                return False
            text = line.rstrip("\n")
            if len(text) > MAX_SEARCH_LINE_CHARS:
                text = text[:MAX_SEARCH_LINE_CHARS] + " …"
            matches.append(f"{shown_path}:{number}: {text}")
    return True


def search_text(matches: list[str], *, complete: bool, pattern: str, base: str) -> str:
    if not matches:
        return f"no matches for {pattern!r} in {base}"
    if not complete:
        matches = [*matches, f"… more than {MAX_SEARCH_MATCHES} matches; narrow the pattern or the path"]
    return "\n".join(matches)
