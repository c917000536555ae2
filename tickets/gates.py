"""Phase gates: what a ticket must show before it leaves a working phase, in one readable table.

Each phase's gate names the artifact types it needs and the checks their content must pass, and
whether every task of the phase must be completed first. The latest artifact of each type that
was collected in the phase is the one checked, so a re-run that produces new evidence replaces
the old. Set `OMOI_PHASE_GATES` in the Django settings to replace the gate of any phase:

    OMOI_PHASE_GATES = {"DESIGN": {"tasks_completed": True, "artifacts": {}}}

Content checks (each maps a field of the artifact's JSON content to what it must satisfy):

    min_length  {field: n}         a string of at least n characters
    sections    {field: [heading]} a markdown string in which each heading starts a line
    non_empty   [field, ...]       present and not empty
    integer     [field, ...]       an integer (not a boolean)
    equals      {field: value}     exactly this JSON value (true is not 1)
    greater_than {field: n}        a number greater than n
    matches     {field: regex}     a string the regular expression matches in full
"""

import json
import re
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from tickets.models import Phase, PhaseGateArtifact, Task, TaskStatus, Ticket

PASSING_TEST_RESULTS: dict[str, Any] = {
    "integer": ["exit_code", "passed", "failed"],
    "equals": {"exit_code": 0, "failed": 0},
    "greater_than": {"passed": 0},
}

DEFAULT_PHASE_GATES: dict[str, dict[str, Any]] = {
    Phase.REQUIREMENTS: {
        "tasks_completed": True,
        "artifacts": {
            "requirements_doc": {
                "min_length": {"text": 200},
                "sections": {"text": ["## Requirements", "## Acceptance Criteria"]},
            },
        },
    },
    Phase.DESIGN: {
        "tasks_completed": True,
        "artifacts": {
            "design_doc": {"min_length": {"text": 200}, "sections": {"text": ["## Architecture"]}},
        },
    },
    Phase.IMPLEMENTATION: {
        "tasks_completed": True,
        "artifacts": {
            "code_changes": {"non_empty": ["files"], "equals": {"tests_touched": True}},
            "test_results": PASSING_TEST_RESULTS,
        },
    },
    Phase.TESTING: {
        "tasks_completed": True,
        "artifacts": {"test_results": PASSING_TEST_RESULTS},
    },
    Phase.DEPLOYMENT: {
        "tasks_completed": True,
        "artifacts": {
            "deployment": {
                "equals": {"merged": True},
                "matches": {"commit": r"[0-9a-f]{7,40}"},
                "non_empty": ["branch"],
            },
        },
    },
}

# Task statuses that keep a gate shut. A cancelled task was deliberately dropped and does not.
UNFINISHED_TASK_STATUSES = (TaskStatus.PENDING, TaskStatus.RUNNING, TaskStatus.FAILED)


def phase_gates() -> dict[str, dict[str, Any]]:
    """The effective gate table: the defaults, with any phase replaced by settings.OMOI_PHASE_GATES."""
    overrides = getattr(settings, "OMOI_PHASE_GATES", None) or {}
    unknown = set(overrides) - set(Phase.values)
    if unknown:
        raise ImproperlyConfigured(f"OMOI_PHASE_GATES names unknown phases: {', '.join(sorted(unknown))}")
    return {**{str(k): v for k, v in DEFAULT_PHASE_GATES.items()}, **overrides}


def gate_for(phase: str) -> dict[str, Any]:
    """The gate of one phase; phases without one (BACKLOG, DONE, BLOCKED) need only finished tasks."""
    return phase_gates().get(str(phase), {"tasks_completed": True, "artifacts": {}})


def _show(value: Any) -> str:
    return json.dumps(value)


def content_problems(artifact_type: str, content: Any, checks: dict[str, Any]) -> list[str]:
    """Every way `content` fails `checks`, as readable reasons (empty when it passes)."""
    if not isinstance(content, dict):
        return [f"{artifact_type}: content must be a JSON object"]
    problems: list[str] = []
    for check, argument in checks.items():
        if check == "min_length":
            for name, minimum in argument.items():
                value = content.get(name)
                if not isinstance(value, str):
                    problems.append(f"{artifact_type}: {name} must be text")
                elif len(value) < minimum:
                    problems.append(
                        f"{artifact_type}: {name} has {len(value)} characters, at least {minimum} are required"
                    )
        elif check == "sections":
            for name, headings in argument.items():
                value = content.get(name)
                if not isinstance(value, str):
                    continue  # min_length (or the absence of text) already says so
                for heading in headings:
                    if not re.search(rf"^{re.escape(heading)}\b", value, re.MULTILINE):
                        problems.append(f"{artifact_type}: {name} has no section {heading!r}")
        elif check == "non_empty":
            for name in argument:
                if content.get(name) in (None, "", [], {}):
                    problems.append(f"{artifact_type}: {name} is missing or empty")
        elif check == "integer":
            for name in argument:
                value = content.get(name)
                if not isinstance(value, int) or isinstance(value, bool):
                    problems.append(f"{artifact_type}: {name} must be an integer (is {_show(value)})")
        elif check == "equals":
            for name, expected in argument.items():
                value = content.get(name)
                if type(value) is not type(expected) or value != expected:
                    problems.append(f"{artifact_type}: {name} must be {_show(expected)} (is {_show(value)})")
        elif check == "greater_than":
            for name, minimum in argument.items():
                value = content.get(name)
                if not isinstance(value, int | float) or isinstance(value, bool) or value <= minimum:
                    problems.append(f"{artifact_type}: {name} must be greater than {minimum} (is {_show(value)})")
        elif check == "matches":
            for name, pattern in argument.items():
                value = content.get(name)
                if not isinstance(value, str) or not re.fullmatch(pattern, value):
                    problems.append(f"{artifact_type}: {name} must match {pattern!r} (is {_show(value)})")
        else:
            raise ImproperlyConfigured(f"unknown gate check {check!r} for artifact type {artifact_type!r}")
    return problems


@dataclass
class GateOutcome:
    phase: str
    passed: bool
    reasons: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def gate_check(*, ticket: Ticket, phase: str) -> GateOutcome:
    """Evaluate the exit gate of `phase` for `ticket` against the database as it is now. Reads only."""
    tasks = list(Task.objects.filter(ticket=ticket, phase=phase).order_by("id"))
    artifacts = list(PhaseGateArtifact.objects.filter(ticket=ticket, phase=phase).order_by("id"))
    return gate_judge(phase=phase, tasks=tasks, artifacts=artifacts)


def gate_judge(*, phase: str, tasks: list[Task], artifacts: list[PhaseGateArtifact]) -> GateOutcome:
    """The exit gate of `phase` judged on the phase's tasks and artifacts (in id order): the one
    rule gate_check and the bulk moves share."""
    gate = gate_for(phase)
    reasons: list[str] = []
    unfinished = [task for task in tasks if task.status in UNFINISHED_TASK_STATUSES]
    if gate.get("tasks_completed", True):
        for task in unfinished:
            if task.status == TaskStatus.FAILED:
                error = f": {task.error[:200]}" if task.error else ""
                reasons.append(f"task {task.task_type} (#{task.pk}) failed{error}")
            else:
                reasons.append(f"task {task.task_type} (#{task.pk}) is {task.status}, not completed")

    latest: dict[str, PhaseGateArtifact] = {}
    for artifact in artifacts:
        latest[artifact.artifact_type] = artifact
    artifact_details: dict[str, Any] = {}
    missing: list[str] = []
    for artifact_type, checks in gate.get("artifacts", {}).items():
        artifact = latest.get(artifact_type)
        if artifact is None:
            missing.append(artifact_type)
            reasons.append(f"missing artifact {artifact_type}")
            artifact_details[artifact_type] = {"artifact_id": None, "passed": False, "reasons": ["missing"]}
            continue
        problems = content_problems(artifact_type, artifact.content, checks)
        reasons.extend(problems)
        artifact_details[artifact_type] = {"artifact_id": artifact.pk, "passed": not problems, "reasons": problems}

    details = {
        "tasks_completed": not unfinished,
        "tasks_total": len(tasks),
        "tasks_unfinished": [{"id": t.pk, "task_type": t.task_type, "status": t.status} for t in unfinished],
        "artifacts_checked": len(artifact_details),
        "artifacts_passed": sum(1 for value in artifact_details.values() if value["passed"]),
        "missing_artifacts": missing,
        "artifacts": artifact_details,
    }
    return GateOutcome(phase=str(phase), passed=not reasons, reasons=reasons, details=details)
