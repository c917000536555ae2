"""The file tools' logic over one directory: paths confined to it, list, read, write, edit, search.

Standard library only, and Python 3.8 compatible, because this one file runs in two places: on
the host behind LocalWorkspace, and inside a remote sandbox (uploaded with
sandboxes/sandbox_runner.py), so that every provider answers the model with the same text, the
same limits and the same refusals. Nothing here may import Django or the rest of Omoi.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

MAX_LIST_ENTRIES = 500
MAX_READ_LINES = 2000
MAX_READ_CHARS = 100_000
MAX_LINE_CHARS = 2000
MAX_WRITE_BYTES = 5_000_000
MAX_SEARCH_MATCHES = 200
MAX_SEARCH_FILE_BYTES = 2_000_000
MAX_SEARCH_LINE_CHARS = 300
MAX_PATTERN_CHARS = 1000
BINARY_SNIFF_BYTES = 8192

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


class WorkspaceError(Exception):
    """A tool could not do what was asked (no such file, ambiguous edit, bad regex...). The
    message is written for the model."""


class PathRefused(WorkspaceError):
    """A path escapes the workspace or writes into .git."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _is_binary(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return b"\x00" in handle.read(BINARY_SNIFF_BYTES)
    except OSError:
        return True


def tail_text(data: bytes, total: int) -> str:
    """The tail of a command's output as the model reads it: `data` holds the last bytes of
    `total` bytes written; what was cut is said, not hidden."""
    omitted = total - len(data)
    text = data.decode("utf-8", errors="replace")
    return f"… [{omitted} earlier bytes omitted]\n{text}" if omitted > 0 else text


class DirectoryTools:
    """The model-facing file tools over the directory `root` (a git checkout). Every path is
    resolved, symlinks included, and must land inside the root; writes into `.git` are refused."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(os.path.realpath(root))

    def resolve(self, path: str, *, write: bool = False) -> Path:
        """The real path `path` names, which must lie inside the workspace (and, for a write,
        outside .git); otherwise PathRefused."""
        if not isinstance(path, str):
            raise WorkspaceError("path must be a string")
        if "\x00" in path:
            raise PathRefused("the path contains a NUL byte")
        candidate = Path(path.strip() or ".")
        target = candidate if candidate.is_absolute() else self.root / candidate
        resolved = Path(os.path.realpath(target))
        if resolved != self.root and self.root not in resolved.parents:
            raise PathRefused(f"{path!r} is outside the workspace; use paths relative to the repository root")
        if write and ".git" in resolved.relative_to(self.root).parts:
            raise PathRefused(f"{path!r} is inside .git; writing there is not allowed")
        return resolved

    def relative(self, resolved: Path) -> str:
        rel = resolved.relative_to(self.root).as_posix()
        return rel or "."

    def display_path(self, path: str) -> str:
        return self.relative(self.resolve(path))

    # --- file tools ---------------------------------------------------------------------

    def list_files(self, path: str = ".") -> str:
        base = self.resolve(path)
        if not base.exists():
            raise WorkspaceError(f"no such directory: {path}")
        if not base.is_dir():
            return self.relative(base)
        entries: list[str] = []
        more = 0
        for current, dirnames, filenames in os.walk(base):
            current_path = Path(current)
            dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
            names = [(d, True) for d in dirnames] + [(f, False) for f in sorted(filenames)]
            for name, is_dir in sorted(names):
                full = current_path / name
                if len(entries) >= MAX_LIST_ENTRIES:
                    more += 1
                    continue
                rel = full.relative_to(self.root).as_posix()
                if full.is_symlink():
                    entries.append(f"{rel}@")
                elif is_dir:
                    entries.append(f"{rel}/")
                else:
                    entries.append(rel)
            dirnames[:] = [d for d in dirnames if d not in UNLISTED_DIRS and not (current_path / d).is_symlink()]
            if more > 10 * MAX_LIST_ENTRIES:
                break
        if not entries:
            return f"{self.relative(base)}/ is empty"
        if more:
            entries.append(f"… {more}+ more entries not shown; list a subdirectory")
        return "\n".join(entries)

    def read_file(self, path: str, start_line: int | None = None, end_line: int | None = None) -> str:
        target = self.resolve(path)
        if not target.exists():
            raise WorkspaceError(f"no such file: {path}")
        if target.is_dir():
            raise WorkspaceError(f"{path} is a directory; use list_files")
        if _is_binary(target):
            raise WorkspaceError(f"{path} is a binary file")
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
        with target.open("r", encoding="utf-8", errors="replace", newline=None) as handle:
            for number, line in enumerate(handle, start=1):
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
            return f"{self.relative(target)} is empty"
        if start > total:
            raise WorkspaceError(f"{path} has {total} lines; start_line {start} is past the end")
        text = "\n".join(shown)
        if last_shown < total and (end_line is None or last_shown < int(end_line)):
            text += (
                f"\n… [{self.relative(target)} has {total} lines; showing {start}-{last_shown}; "
                f"read more with start_line={last_shown + 1}]"
            )
        return text

    def write_file(self, path: str, content: str) -> str:
        if not isinstance(content, str):
            raise WorkspaceError("content must be a string")
        data = content.encode("utf-8")
        if len(data) > MAX_WRITE_BYTES:
            raise WorkspaceError(f"content is {len(data)} bytes; the limit is {MAX_WRITE_BYTES}")
        target = self.resolve(path, write=True)
        if target.is_dir():
            raise WorkspaceError(f"{path} is a directory")
        existed = target.exists()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        lines = content.count("\n") + (0 if content.endswith("\n") or not content else 1)
        verb = "overwrote" if existed else "created"
        return f"{verb} {self.relative(target)} ({len(data)} bytes, {lines} lines)"

    def edit_file(self, path: str, old: str, new: str) -> str:
        if not isinstance(old, str) or not isinstance(new, str):
            raise WorkspaceError("old and new must be strings")
        if old == "":
            raise WorkspaceError("old must not be empty; use write_file to create a file")
        if old == new:
            raise WorkspaceError("old and new are the same; nothing to change")
        target = self.resolve(path, write=True)
        if not target.is_file():
            raise WorkspaceError(f"no such file: {path}")
        try:
            text = target.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WorkspaceError(f"{path} is not a UTF-8 text file") from exc
        count = text.count(old)
        if count == 0:
            raise WorkspaceError(
                f"old text not found in {path} (0 occurrences); read the file and copy the exact text, "
                "including whitespace and indentation"
            )
        if count > 1:
            raise WorkspaceError(
                f"old text found {count} times in {path}; it must occur exactly once: include more "
                "surrounding lines to make it unique"
            )
        target.write_bytes(text.replace(old, new, 1).encode("utf-8"))
        removed, added = old.count("\n") + 1, new.count("\n") + 1
        return f"edited {self.relative(target)}: replaced 1 occurrence ({removed} lines → {added} lines)"

    def search(self, pattern: str, path: str = ".") -> str:
        if not isinstance(pattern, str) or not pattern:
            raise WorkspaceError("pattern must be a non-empty string")
        if len(pattern) > MAX_PATTERN_CHARS:
            raise WorkspaceError(f"pattern is longer than {MAX_PATTERN_CHARS} characters")
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise WorkspaceError(f"invalid regular expression {pattern!r}: {exc}") from exc
        base = self.resolve(path)
        if not base.exists():
            raise WorkspaceError(f"no such file or directory: {path}")
        matches: list[str] = []
        more = False
        for file in self._search_files(base):
            try:
                with file.open("r", encoding="utf-8", errors="replace") as handle:
                    for number, line in enumerate(handle, start=1):
                        if regex.search(line):
                            if len(matches) >= MAX_SEARCH_MATCHES:
                                more = True
                                break
                            text = line.rstrip("\n")
                            if len(text) > MAX_SEARCH_LINE_CHARS:
                                text = text[:MAX_SEARCH_LINE_CHARS] + " …"
                            matches.append(f"{self.relative(file)}:{number}: {text}")
            except OSError:
                continue
            if more:
                break
        if not matches:
            return f"no matches for {pattern!r} in {self.relative(base)}"
        if more:
            matches.append(f"… more than {MAX_SEARCH_MATCHES} matches; narrow the pattern or the path")
        return "\n".join(matches)

    def _search_files(self, base: Path):
        if base.is_file():
            candidates = [base]
        else:
            candidates = []
            for current, dirnames, filenames in os.walk(base):
                dirnames[:] = sorted(
                    d
                    for d in dirnames
                    if d not in SKIPPED_DIRS and d not in UNLISTED_DIRS and not (Path(current) / d).is_symlink()
                )
                candidates.extend(Path(current) / name for name in sorted(filenames))
        for file in candidates:
            if file.is_symlink():
                try:
                    self.resolve(str(file))
                except PathRefused:
                    continue
            try:
                if not file.is_file() or file.stat().st_size > MAX_SEARCH_FILE_BYTES:
                    continue
            except OSError:
                continue
            if _is_binary(file):
                continue
            yield file
