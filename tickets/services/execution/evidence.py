"""The sandbox side of a task's evidence (tickets/evidence.py holds the pure side): what the task
changed, the suite under coverage.py, and each test file it wrote run before and after its change.

Everything runs inside the sandbox, through `workspace.run_command`: git (the task's changes are
read from a snapshot of the working tree written through a throwaway index, so the workspace's own
index and HEAD stay as they are), coverage.py (from the worker's environment, which the sandbox sees
read-only), and the "before" tree, exported with git from the base commit into the sandbox's home
directory (outside the repository, so no configuration or conftest.py of the "after" tree is found
above it), with the test files copied in from the working tree. Results come back as files under
`.git/omoi-evidence/` read with `workspace.read_bytes`; the host runs nothing in the agent's tree.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from sandboxes.workspace import MAX_COMMAND_TIMEOUT_S, WORKSPACE_GIT_OPTIONS, Workspace, WorkspaceError
from tickets.checks import is_documentation_path, is_test_path, test_results_of
from tickets.evidence import (
    MEASURED,
    NOT_APPLICABLE,
    NOT_MEASURED,
    RED_TO_GREEN,
    changed_lines,
    coverage_not,
    coverage_summary,
    file_verdict,
    name_status,
    red_green_not,
    red_green_summary,
    run_record,
)
from tickets.runners import Unsupported, coverage_plan, file_command, include_pattern_safe

EVIDENCE_DIR = ".git/omoi-evidence"
OBJECT_NAME = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
SCRATCH = '"$HOME/.omoi-before"'
READ_LIMIT = 8 * 1024 * 1024
OUTPUT_TAIL = 20_000
OUTPUT_TAIL_CHARS = 3000
COVERAGE_REPORT_END = "OMOI_COVERAGE_REPORT"


class EvidenceError(Exception):
    """The sandbox could not produce what the evidence needs (git failed in it, a file is
    missing): the verification goes on without that part, saying so."""


def _git() -> str:
    return " ".join(shlex.quote(word) for word in ("git", *WORKSPACE_GIT_OPTIONS, "-c", "core.quotePath=false"))


def _read(workspace: Workspace, name: str, *, missing_ok: bool = False) -> str:
    try:
        return workspace.read_bytes(f"{EVIDENCE_DIR}/{name}", limit=READ_LIMIT).decode("utf-8", errors="replace")
    except WorkspaceError as exc:
        if missing_ok:
            return ""
        raise EvidenceError(f"{name}: {exc}") from exc


def is_code_path(path: str) -> bool:
    return not is_test_path(path) and not is_documentation_path(path)


# --- what the task changed ---------------------------------------------------------------------------


@dataclass
class TaskChanges:
    """The working tree as a tree object (`tree`), and what differs from the base commit: each
    path's status (A, M, D, T) and the changed lines of each Python file."""

    base: str
    tree: str
    files: dict[str, str]
    lines: dict[str, list[int]] = field(default_factory=dict)

    @property
    def test_files(self) -> list[str]:
        return sorted(path for path in self.files if is_test_path(path))

    @property
    def code_files(self) -> list[str]:
        """Changed files a test can catch: neither tests nor documentation."""
        return sorted(path for path in self.files if is_code_path(path))

    @property
    def source_lines(self) -> dict[str, list[int]]:
        """Changed lines of the Python files that are not tests (the code the tests should run)."""
        return {
            path: numbers
            for path, numbers in self.lines.items()
            if path.endswith(".py") and not is_test_path(path) and self.files.get(path) != "D" and numbers
        }


_CHANGES_SCRIPT = """set -e
export GIT_CONFIG_NOSYSTEM=1 GIT_OPTIONAL_LOCKS=0
g() {{ {git} "$@"; }}
out={out}
rm -rf "$out"; mkdir -p "$out"
scratch=$(mktemp -d)
if [ -f .git/index ]; then cp .git/index "$scratch/index"; fi
tree=$(GIT_INDEX_FILE="$scratch/index" g add -A && GIT_INDEX_FILE="$scratch/index" g write-tree)
rm -rf "$scratch"
g diff -z --name-status --no-renames {base} "$tree" > "$out/names"
g diff -U0 --no-color --no-ext-diff --no-textconv --no-renames {base} "$tree" -- '*.py' > "$out/lines.diff"
echo "$tree"
"""


def task_changes(workspace: Workspace, *, base: str) -> TaskChanges:
    """What the working tree changes against `base` (committed or not, untracked files included,
    ignored files left out), read inside the sandbox."""
    script = _CHANGES_SCRIPT.format(git=_git(), out=EVIDENCE_DIR, base=shlex.quote(base))
    result = workspace.run_command(script, timeout_s=300)
    lines = result.stdout.strip().splitlines()
    if result.exit_code != 0 or result.timed_out or not lines or not OBJECT_NAME.fullmatch(lines[-1].strip()):
        raise EvidenceError(f"reading the task's changes failed (exit {result.exit_code}): {result.stderr[-1000:]}")
    return TaskChanges(
        base=base,
        tree=lines[-1].strip(),
        files=name_status(_read(workspace, "names")),
        lines=changed_lines(_read(workspace, "lines.diff")),
    )


def changed_between(workspace: Workspace, *, old: str, tree: str) -> dict[str, str]:
    """{path: status} between two trees or commits, read inside the sandbox."""
    revisions = f"{shlex.quote(old)} {shlex.quote(tree)}"
    script = f"{_git()} diff -z --name-status --no-renames {revisions} > {EVIDENCE_DIR}/names-old"
    result = workspace.run_command(script, timeout_s=300)
    if result.exit_code != 0 or result.timed_out:
        raise EvidenceError(f"git diff in the sandbox failed (exit {result.exit_code}): {result.stderr[-1000:]}")
    return name_status(_read(workspace, "names-old"))


# --- the suite, under coverage.py where it can be ----------------------------------------------------

_COVERAGE_REPORT = """
import json, sys
try:
    import coverage
    measured = coverage.Coverage(data_file=sys.argv[1], config_file=False)
    measured.load()
except Exception as exc:
    json.dump({"error": f"{type(exc).__name__}: {exc}"[:500]}, sys.stdout)
    raise SystemExit(0)
files = {}
for path in sys.argv[2:]:
    try:
        _name, statements, _excluded, missing, _text = measured.analysis2(path)
        files[path] = {"statements": sorted(statements), "missing": sorted(missing)}
    except Exception as exc:
        files[path] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
json.dump({"tool": f"coverage.py {coverage.__version__}", "files": files}, sys.stdout)
"""

_SUITE_SCRIPT = """out={out}
mkdir -p "$out"; rm -f "$out/coverage.json" "$out/coverage.state"
data=$(mktemp -d)
if {python} -c 'import coverage' >/dev/null 2>&1; then
  echo measured > "$out/coverage.state"
  {run}
  rc=$?
  {python} - "$data/coverage" {files} > "$out/coverage.json" 2>/dev/null <<'{end}'
{report}
{end}
  rm -rf "$data"
  exit $rc
fi
echo unavailable > "$out/coverage.state"
{command}
"""


@dataclass
class SuiteRun:
    test_results: dict[str, Any]
    coverage: dict[str, Any]


def suite_run(workspace: Workspace, *, command: str, changes: TaskChanges | None) -> SuiteRun:
    """Run the project's test command in the sandbox: under coverage.py measuring the task's
    changed Python source when the command allows it, as written otherwise. The coverage part is
    "not applicable" when no Python source changed and "not measured" (with the reason) when it
    cannot be measured."""
    timeout = settings.OMOI_COMMAND_TIMEOUT_S
    source = changes.source_lines if changes is not None else {}
    coverage: dict[str, Any]
    script = command
    plan = None
    if changes is None:
        coverage = coverage_not(NOT_MEASURED, "the task's changes could not be read")
    elif not settings.OMOI_COVERAGE:
        coverage = coverage_not(NOT_MEASURED, "coverage is switched off (OMOI_COVERAGE)")
    elif not source:
        coverage = coverage_not(NOT_APPLICABLE, "the task changed no Python source outside the tests")
    else:
        try:
            plan = coverage_plan(command)
        except Unsupported as exc:
            coverage = coverage_not(NOT_MEASURED, f"not measured: {exc}")
        else:
            files = sorted(source)
            include = files if all(include_pattern_safe(path) for path in files) else []
            script = _SUITE_SCRIPT.format(
                out=EVIDENCE_DIR,
                python=shlex.quote(plan.python),
                run=plan.run_command(data_file_word='"$data/coverage"', include=include),
                files=" ".join(shlex.quote(path) for path in files),
                end=COVERAGE_REPORT_END,
                report=_COVERAGE_REPORT.strip(),
                command=command,
            )
    result = workspace.run_command(script, timeout_s=timeout)
    output = "\n".join(part for part in (result.stdout, result.stderr) if part)
    test_results = test_results_of(
        command=command,
        exit_code=result.exit_code,
        output=output,
        timed_out=result.timed_out,
        duration_s=result.duration_s,
    )
    test_results["output_tail"] = output[-OUTPUT_TAIL_CHARS:]
    if plan is not None:
        coverage = _coverage_result(workspace, source=source, python=plan.python)
    return SuiteRun(test_results=test_results, coverage=coverage)


def _coverage_result(workspace: Workspace, *, source: dict[str, list[int]], python: str) -> dict[str, Any]:
    import json

    state = _read(workspace, "coverage.state", missing_ok=True).strip()
    if state == "unavailable":
        return coverage_not(NOT_MEASURED, f"not measured: coverage.py cannot be imported by `{python}` in the sandbox")
    raw = _read(workspace, "coverage.json", missing_ok=True)
    try:
        report = json.loads(raw) if raw.strip() else {}
    except (ValueError, RecursionError):
        report = {}
    if not isinstance(report, dict) or not isinstance(report.get("files"), dict):
        error = report.get("error") if isinstance(report, dict) else None
        return coverage_not(NOT_MEASURED, f"not measured: coverage.py reported nothing ({error or 'no data'})")
    return coverage_summary(changed=source, report=report["files"], tool=str(report.get("tool", "coverage.py")))


# --- red to green --------------------------------------------------------------------------------------

_RED_GREEN_SCRIPT = """export GIT_CONFIG_NOSYSTEM=1 GIT_OPTIONAL_LOCKS=0
g() {{ {git} "$@"; }}
out={out}/runs
rm -rf "$out"; mkdir -p "$out"
scratch={scratch}
chmod -R u+w "$scratch" 2>/dev/null; rm -rf "$scratch"; mkdir -p "$scratch"
index=$(mktemp -d)
if ! GIT_INDEX_FILE="$index/index" g read-tree {before} >"$out/export.log" 2>&1 \\
   || ! GIT_INDEX_FILE="$index/index" g checkout-index -a -f --prefix="$scratch/" >>"$out/export.log" 2>&1; then
  rm -rf "$index"; echo "the code before the change could not be exported" > "$out/problem"; exit 0
fi
rm -rf "$index"
apply() {{
  rm -rf -- "$scratch/$1"
  if [ -e "$1" ] || [ -L "$1" ]; then mkdir -p -- "$(dirname -- "$scratch/$1")" && cp -P -- "$1" "$scratch/$1"; fi
}}
{applies}
paths() {{ p="$PWD"; [ -d src ] && p="$PWD/src:$p"; echo "$p${{PYTHONPATH:+:$PYTHONPATH}}"; }}
run() {{
  start=$(date +%s.%N)
  ( cd "$2" && PYTHONPATH="$(paths)" timeout -k 5 {timeout} bash -c "$3" ) > "$out/$1.full" 2>&1
  echo $? > "$out/$1.rc"
  echo "$start $(date +%s.%N)" > "$out/$1.time"
  tail -c {tail} "$out/$1.full" > "$out/$1.out"; rm -f "$out/$1.full"
}}
{runs}
chmod -R u+w "$scratch" 2>/dev/null; rm -rf "$scratch"
echo done > "$out/finished"
"""


def red_green_runs(
    workspace: Workspace, *, before: str, apply: list[str], files: list[tuple[str, str]]
) -> tuple[list[dict[str, Any]], str]:
    """Run each (path, command) of `files` on the code at `before` with the `apply` test files
    copied from the working tree (deleted where the working tree no longer has them), then in the
    working tree. Returns each file's record (before, after, verdict) and a problem ("" when none)."""
    workspace_dir = "."
    runs = []
    for index, (_path, command) in enumerate(files):
        runs.append(f"run before-{index} {SCRATCH} {shlex.quote(command)}")
        runs.append(f"run after-{index} {workspace_dir} {shlex.quote(command)}")
    per_run = max(10, min(settings.OMOI_COMMAND_TIMEOUT_S, MAX_COMMAND_TIMEOUT_S))
    script = _RED_GREEN_SCRIPT.format(
        git=_git(),
        out=EVIDENCE_DIR,
        scratch=SCRATCH,
        before=shlex.quote(before),
        applies="\n".join(f"apply {shlex.quote(path)}" for path in apply),
        timeout=int(per_run),
        tail=OUTPUT_TAIL,
        runs="\n".join(runs),
    )
    result = workspace.run_command(script, timeout_s=MAX_COMMAND_TIMEOUT_S)
    problem = _read(workspace, "runs/problem", missing_ok=True).strip()
    if problem:
        return [], f"{problem}: {_read(workspace, 'runs/export.log', missing_ok=True)[-500:]}".strip()
    records = []
    for index, (path, command) in enumerate(files):
        before_run = _file_run(workspace, f"before-{index}", command)
        after_run = _file_run(workspace, f"after-{index}", command)
        item: dict[str, Any] = {"path": path, "command": command}
        if before_run is None or after_run is None:
            item.update(verdict=NOT_MEASURED, reason="the runs did not finish in the time allowed")
        else:
            verdict, reason = file_verdict(before_run, after_run)
            item.update(before=before_run, after=after_run, verdict=verdict, reason=reason)
        records.append(item)
    if result.timed_out:
        return records, "the runs did not finish in the time allowed"
    return records, ""


def _file_run(workspace: Workspace, name: str, command: str) -> dict[str, Any] | None:
    code = _read(workspace, f"runs/{name}.rc", missing_ok=True).strip()
    if not code.lstrip("-").isdigit():
        return None
    output = _read(workspace, f"runs/{name}.out", missing_ok=True)
    times = _read(workspace, f"runs/{name}.time", missing_ok=True).split()
    try:
        duration = float(times[1]) - float(times[0])
    except (IndexError, ValueError):
        duration = 0.0
    exit_code = int(code)
    timed_out = exit_code in (124, 137)
    return run_record(command=command, exit_code=exit_code, output=output, timed_out=timed_out, duration_s=duration)


def ticket_fork_point(ticket, *, head: str) -> str | None:
    """Where the ticket's branch left its base branch (the code before the ticket's change), read
    in the host's bare mirror (no working tree)."""
    from sandboxes.services import gitstore
    from tickets.services import repository

    scope = repository.ticket_scope(ticket)
    base_tip = gitstore.ref_get(scope=scope, name=repository.base_branch_for(ticket))
    if base_tip is None:
        return None
    mirror = repository.scope_mirror(scope=scope, project=ticket.project)
    gitstore.mirror_ensure_commits(scope=scope, path=mirror, shas=[base_tip, head])
    return gitstore.merge_base(mirror, base_tip, head)


def red_to_green(
    workspace: Workspace, *, command: str, changes: TaskChanges, fork_point: Callable[[], str | None]
) -> dict[str, Any]:
    """The red-to-green evidence of a task whose suite passed. The "before" is the task's base
    commit when the task changed code; for a task that changed only tests (a test-writing task
    after the implementation), the ticket's fork point, so its tests are held against the ticket's
    change; when nothing but tests changed at all there is no change to test."""
    if not settings.OMOI_RED_GREEN:
        return red_green_not(NOT_MEASURED, "red to green is switched off (OMOI_RED_GREEN)")
    written = [path for path in changes.test_files if changes.files[path] != "D"]
    if not written:
        return red_green_not(NOT_APPLICABLE, "the task added or changed no test file")
    before, label, since = changes.base, "the task's base commit", changes.files
    if not changes.code_files:
        fork = fork_point()
        if not fork or fork == changes.base:
            reason = "the task changed only tests (or prose), and the ticket no code before it"
            return red_green_not(NOT_APPLICABLE, reason)
        since = changed_between(workspace, old=fork, tree=changes.tree)
        if not any(is_code_path(path) for path in since):
            return red_green_not(NOT_APPLICABLE, "neither the task nor its ticket changed code outside the tests")
        before, label = fork, "the ticket's fork point (the task changed only tests)"
    modules: list[tuple[str, str]] = []
    skipped: list[dict[str, Any]] = []
    for path in written:
        try:
            modules.append((path, file_command(command, path)))
        except Unsupported as exc:
            skipped.append({"path": path, "verdict": NOT_MEASURED, "reason": str(exc)})
    if not modules:
        reasons = "; ".join(item["reason"] for item in skipped)
        return red_green_not(NOT_MEASURED, f"not measured: {reasons}", before_commit=before, before_label=label)
    limit = max(1, settings.OMOI_RED_GREEN_MAX_FILES)
    for path, _command in modules[limit:]:
        reason = f"only {limit} files are run (OMOI_RED_GREEN_MAX_FILES)"
        skipped.append({"path": path, "verdict": NOT_MEASURED, "reason": reason})
    modules = modules[:limit]
    apply = sorted(path for path in since if is_test_path(path))
    records, problem = red_green_runs(workspace, before=before, apply=apply, files=modules)
    if not records and problem:
        return red_green_not(NOT_MEASURED, f"not measured: {problem}", before_commit=before, before_label=label)
    summary = red_green_summary(
        records + skipped, before_commit=before, before_label=label, applied=apply, problem=problem
    )
    if summary["red_to_green"] == 0 and not summary["passed_before"]:
        summary["reason"] = "no test file went red to green: " + "; ".join(
            f"{item['path']}: {item.get('reason', '')}" for item in summary["files"]
        )
    return summary


__all__ = [
    "EvidenceError",
    "MEASURED",
    "RED_TO_GREEN",
    "SuiteRun",
    "TaskChanges",
    "changed_between",
    "red_to_green",
    "suite_run",
    "task_changes",
]
