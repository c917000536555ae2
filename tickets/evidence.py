"""The evidence behind a verified task, as data: which of the task's changed lines ran under its
tests, and whether each test file it wrote failed before its change and passes after it. Pure
functions (no database, no sandbox): the sandbox side is tickets/services/execution/evidence.py.

A passing suite proves little when the agent wrote the tests itself. Two measurements make it
mean something:

- red to green: each test file the task added or changed runs on its own against the code before
  the change (with the test files applied and every other change left out) and after it. A file
  that passes before did not test the change.
- changed-line coverage: the suite runs under coverage.py, and each changed line of the task's
  Python source is reported as run or never run.

What cannot be measured (another runner, another language, a command with shell syntax) says
"not measured" with the reason, never a guess.
"""

from __future__ import annotations

import re
from typing import Any

from tickets.checks import checks_pass, run_outcome, test_results_of

MEASURED = "measured"
NOT_MEASURED = "not_measured"
NOT_APPLICABLE = "not_applicable"

RED_TO_GREEN = "red_to_green"
PASSED_BEFORE = "passed_before"
NOT_GREEN_AFTER = "not_green_after"

MAX_LINES_LISTED = 400
MAX_CHANGED_LINES_PER_FILE = 100_000
RUN_TAIL_CHARS = 600

_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@")
_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}


def unquote_git_path(text: str) -> str:
    """A path as git prints it in diff headers: C-quoted ("a\\tb", octal bytes) when it holds
    special characters."""
    if not (len(text) >= 2 and text.startswith('"') and text.endswith('"')):
        return text
    body = text[1:-1]
    data = bytearray()
    index = 0
    while index < len(body):
        character = body[index]
        if character == "\\" and index + 1 < len(body):
            following = body[index + 1]
            if following in _ESCAPES:
                data.append(_ESCAPES[following])
                index += 2
                continue
            if re.match(r"[0-7]{3}", body[index + 1 : index + 4]):
                data.append(int(body[index + 1 : index + 4], 8) & 0xFF)
                index += 4
                continue
        data += character.encode()
        index += 1
    return data.decode("utf-8", errors="replace")


def changed_lines(diff: str) -> dict[str, list[int]]:
    """The added or modified lines (numbers in the new version) of each file in a `git diff -U0`
    output, at most MAX_CHANGED_LINES_PER_FILE per file. Deleted files have none."""
    lines: dict[str, list[int]] = {}
    current: str | None = None
    for line in diff.splitlines():
        if line.startswith("+++ "):
            target = unquote_git_path(line[4:].rstrip("\t"))
            current = None if target == "/dev/null" else target.removeprefix("b/")
            if current is not None:
                lines.setdefault(current, [])
            continue
        if current is None:
            continue
        match = _HUNK.match(line)
        if match and len(lines[current]) < MAX_CHANGED_LINES_PER_FILE:
            start = int(match.group(1))
            count = int(match.group(2)) if match.group(2) is not None else 1
            count = min(count, MAX_CHANGED_LINES_PER_FILE - len(lines[current]))
            lines[current].extend(range(start, start + count))
    return {path: sorted(set(numbers)) for path, numbers in lines.items()}


def name_status(raw: str) -> dict[str, str]:
    """`git diff -z --name-status --no-renames` as {path: status letter} (A, M, D, T)."""
    parts = raw.split("\0")
    result: dict[str, str] = {}
    index = 0
    while index + 1 < len(parts):
        status, path = parts[index], parts[index + 1]
        if not status:
            break
        result[path] = status[:1]
        index += 2
    return result


def line_ranges(numbers: list[int]) -> str:
    """[3, 4, 5, 9] → "3-5, 9"."""
    ranges: list[str] = []
    run: list[int] = []
    for number in sorted(set(numbers)):
        if run and number == run[-1] + 1:
            run.append(number)
            continue
        if run:
            ranges.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [number]
    if run:
        ranges.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ", ".join(ranges)


def _numbers(value: Any) -> list[int]:
    """Line numbers from a report the sandbox wrote (anything else is ignored)."""
    if not isinstance(value, list):
        return []
    return [n for n in value if isinstance(n, int) and not isinstance(n, bool)]


def _percent(covered: int, total: int) -> float:
    return round(100.0 * covered / total, 1) if total else 100.0


def coverage_summary(*, changed: dict[str, list[int]], report: dict[str, Any], tool: str) -> dict[str, Any]:
    """Which changed lines ran, per file: `changed` holds each source file's changed line numbers,
    `report` coverage.py's analysis of it ({"statements": [...], "missing": [...]}, or
    {"error": ...}). Only executable lines count: a changed comment or blank line neither ran nor
    failed to."""
    files = []
    total_changed = total_covered = 0
    for path in sorted(changed):
        analysis = report.get(path)
        if not isinstance(analysis, dict) or "statements" not in analysis:
            reason = (analysis or {}).get("error") if isinstance(analysis, dict) else None
            files.append({"path": path, "status": NOT_MEASURED, "reason": str(reason or "coverage.py has no analysis")})
            continue
        statements = {n for n in _numbers(analysis.get("statements"))}
        missing = {n for n in _numbers(analysis.get("missing"))}
        executable = [n for n in changed[path] if n in statements]
        never_run = [n for n in executable if n in missing]
        covered = len(executable) - len(never_run)
        total_changed += len(executable)
        total_covered += covered
        files.append(
            {
                "path": path,
                "status": MEASURED,
                "changed": len(executable),
                "covered": covered,
                "percent": _percent(covered, len(executable)),
                "never_run": line_ranges(never_run),
                "never_run_lines": never_run[:MAX_LINES_LISTED],
            }
        )
    return {
        "status": MEASURED,
        "reason": "",
        "tool": tool,
        "files": files,
        "changed": total_changed,
        "covered": total_covered,
        "percent": _percent(total_covered, total_changed),
    }


def coverage_not(status: str, reason: str) -> dict[str, Any]:
    return {"status": status, "reason": reason, "files": []}


def uncovered_files(coverage: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in coverage.get("files", []) if f.get("status") == MEASURED and f.get("never_run")]


# --- red to green ---------------------------------------------------------------------------------


def run_record(*, command: str, exit_code: int, output: str, timed_out: bool, duration_s: float) -> dict[str, Any]:
    """One file's run, before or after: its outcome, counts and the end of its output."""
    results = test_results_of(
        command=command, exit_code=exit_code, output=output, timed_out=timed_out, duration_s=duration_s
    )
    return {
        "outcome": run_outcome(results),
        "passed": results["passed"],
        "failed": results["failed"],
        "errors": results["errors"],
        "skipped": results["skipped"],
        "exit_code": exit_code,
        "duration_s": round(duration_s, 3),
        "tail": output[-RUN_TAIL_CHARS:],
        "_pass": checks_pass(results),
    }


def file_verdict(before: dict[str, Any], after: dict[str, Any]) -> tuple[str, str]:
    """(verdict, reason) for one test file: red_to_green when it did not pass before the change
    and passes after it; passed_before when it already passed (it does not test the change);
    not_green_after when it does not pass on its own after the change although the suite passed
    (so its own run proves nothing either way: not held against the task)."""
    if not after.get("_pass"):
        return NOT_GREEN_AFTER, f"on its own after the change it ended {after.get('outcome')}"
    if before.get("_pass"):
        return PASSED_BEFORE, "it passed before the change, so it does not test it"
    return RED_TO_GREEN, f"{before.get('outcome')} before the change, passed after it"


def red_green_not(status: str, reason: str, **extra: Any) -> dict[str, Any]:
    return {"status": status, "reason": reason, "files": [], "red_to_green": 0, "passed_before": [], **extra}


def red_green_summary(files: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    for item in files:
        for side in ("before", "after"):
            if isinstance(item.get(side), dict):
                item[side].pop("_pass", None)
    return {
        "status": MEASURED,
        "reason": "",
        "files": files,
        "red_to_green": sum(1 for f in files if f.get("verdict") == RED_TO_GREEN),
        "passed_before": [f["path"] for f in files if f.get("verdict") == PASSED_BEFORE],
        **extra,
    }


def has_red_to_green(test_results: dict[str, Any] | None) -> bool:
    section = (test_results or {}).get("red_to_green") or {}
    return bool(section.get("red_to_green"))


# --- what goes back to the model ------------------------------------------------------------------


def _counts(run: dict[str, Any]) -> str:
    parts = [f"{run.get(key)} {key}" for key in ("passed", "failed", "errors") if run.get(key)]
    return ", ".join(parts) or "no test ran"


def evidence_findings(*, red_green: dict[str, Any], coverage: dict[str, Any], coverage_required: bool) -> list[str]:
    """What the host holds against the task although its suite passed: test files that passed
    before the change, and (when OMOI_COVERAGE_REQUIRED) changed lines that never ran."""
    findings = []
    before = red_green.get("before_commit", "")[:12]
    for item in red_green.get("files", []):
        if item.get("verdict") == PASSED_BEFORE:
            findings.append(
                f"{item['path']} passed against the code before the change (commit {before} with only the "
                f"test files applied: {_counts(item.get('before') or {})}), so it does not test the change. "
                "Make its new or changed tests fail without the change and pass with it."
            )
    if coverage_required:
        for item in uncovered_files(coverage):
            findings.append(
                f"{item['path']}: changed lines {item['never_run']} never ran under the tests "
                f"({item['covered']} of {item['changed']} changed lines ran). Test them, or remove them."
            )
    return findings
