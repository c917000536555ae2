"""The model-facing file tools over one directory: paths confined to it, list, read, write, edit,
search. The one home of their logic, for every provider.

Standard library only, and Python 3.8 compatible, because this one file runs in two places: on
the host behind the local provider's LocalWorkspace (a subclass of DirectoryTools), and inside a
remote sandbox (uploaded with sandboxes/sandbox_runner.py, which builds a DirectoryTools there),
so that every provider answers the model with the same text, the same limits and the same
refusals. Nothing here may import Django or the rest of Omoi; the contract suite
(tests/sandboxes/test_provider_contract.py) holds both providers to the same answers.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
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


def tail_text(data: bytes, total: int) -> str:
    """The tail of a command's output as the model reads it: `data` holds the last bytes of
    `total` bytes written; what was cut is said, not hidden."""
    omitted = total - len(data)
    text = data.decode("utf-8", errors="replace")
    return f"… [{omitted} earlier bytes omitted]\n{text}" if omitted > 0 else text


def _is_binary(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return b"\x00" in handle.read(BINARY_SNIFF_BYTES)
    except OSError:
        return True


def _encode(content: object) -> bytes:
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


def _compile(pattern: object) -> re.Pattern:
    if not isinstance(pattern, str) or not pattern:
        raise WorkspaceError("pattern must be a non-empty string")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise WorkspaceError(f"pattern is longer than {MAX_PATTERN_CHARS} characters")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise WorkspaceError(f"invalid regular expression {pattern!r}: {exc}") from exc


class DirectoryTools:
    """The file tools over the directory `root` (a git checkout). Every path is resolved, symbolic
    links included, and must land inside the root; writes into `.git` are refused.

    `root_alias()` names another absolute path that means the root (the local provider's confined
    commands see the workspace as /workspace, so a path the model copied from a command's output
    works in the tools too); None by default."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(os.path.realpath(root))

    def root_alias(self) -> str | None:
        return None

    # --- paths ----------------------------------------------------------------------------

    def resolve(self, path: str, *, write: bool = False) -> Path:
        """The real path `path` names, which must lie inside the workspace (and, for a write,
        outside .git); otherwise PathRefused."""
        if not isinstance(path, str):
            raise WorkspaceError("path must be a string")
        if "\x00" in path:
            raise PathRefused("the path contains a NUL byte")
        text = path.strip() or "."
        alias = self.root_alias()
        if alias and (text == alias or text.startswith(alias + "/")):
            text = "." + text[len(alias) :]
        candidate = Path(text)
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
        """The workspace-relative form of a path a tool was given (raises PathRefused outside)."""
        return self.relative(self.resolve(path))

    # --- the tools ------------------------------------------------------------------------

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
        with target.open("r", encoding="utf-8", errors="replace", newline=None) as handle:
            return self._numbered_lines(handle, target=target, path=path, start_line=start_line, end_line=end_line)

    def _numbered_lines(
        self,
        lines: Iterable[str],
        *,
        target: Path,
        path: str,
        start_line: int | None,
        end_line: int | None,
    ) -> str:
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
        data = _encode(content)
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
        target.write_bytes(_encode(text.replace(old, new, 1)))
        removed, added = old.count("\n") + 1, new.count("\n") + 1
        return f"edited {self.relative(target)}: replaced 1 occurrence ({removed} lines → {added} lines)"

    def search(self, pattern: str, path: str = ".") -> str:
        regex = _compile(pattern)
        base = self.resolve(path)
        if not base.exists():
            raise WorkspaceError(f"no such file or directory: {path}")
        matches: list[str] = []
        complete = True
        for file in self._search_files(base):
            try:
                with file.open("r", encoding="utf-8", errors="replace") as handle:
                    complete = self._search_lines(regex, file=file, lines=handle, matches=matches)
            except OSError:
                continue
            if not complete:
                break
        if not matches:
            return f"no matches for {pattern!r} in {self.relative(base)}"
        if not complete:
            matches.append(f"… more than {MAX_SEARCH_MATCHES} matches; narrow the pattern or the path")
        return "\n".join(matches)

    def _search_lines(self, regex: re.Pattern, *, file: Path, lines: Iterable[str], matches: list[str]) -> bool:
        """Append `path:line: text` for each matching line; False once the bound is hit."""
        shown_path = self.relative(file)
        for number, line in enumerate(lines, start=1):
            if regex.search(line):
                if len(matches) >= MAX_SEARCH_MATCHES:
                    return False
                text = line.rstrip("\n")
                if len(text) > MAX_SEARCH_LINE_CHARS:
                    text = text[:MAX_SEARCH_LINE_CHARS] + " …"
                matches.append(f"{shown_path}:{number}: {text}")
        return True

    def _search_files(self, base: Path) -> Iterator[Path]:
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
