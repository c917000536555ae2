"""A spec's evidence, read from its tickets' tasks: which test went from failing to passing for each
acceptance criterion, in which commit, with which coverage of the changed lines. Read-only
(selectors and display helpers); `specs.services.completion` stores the result on each criterion
when the spec completes, and the pull request, the admin, the API and the spec page show it.

A criterion is covered by the tickets of the planned tasks linked to its requirement. It is
verified only when every such ticket is DONE with its commits and passing tests, and at least one
of their tasks has red-to-green evidence: a test file it wrote failed against the code before the
change and passes after it. Otherwise it is unverified, and the evidence says why ("not measured"
when the project's runner cannot be run by file: the criterion is not testable by Omoi there).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from specs.models import Spec, SpecAcceptanceCriterion
from tickets.evidence import MEASURED, NOT_MEASURED, RED_TO_GREEN
from tickets.models import Executor, Phase, PhaseGateArtifact, Task, TaskStatus, Ticket

VERDICT_WORDS = {
    RED_TO_GREEN: "red → green",
    "passed_before": "passed before the change",
    "not_green_after": "not green on its own",
    NOT_MEASURED: "not measured",
}


COVERAGE_FILE_KEYS = ("path", "status", "changed", "covered", "percent", "never_run", "reason")


def _run_brief(run: dict[str, Any] | None) -> dict[str, Any]:
    run = run or {}
    return {key: run.get(key) for key in ("outcome", "passed", "failed", "errors", "skipped")}


def task_evidence(task_id: int, task_type: str, title: str, result: dict[str, Any]) -> dict[str, Any] | None:
    """A completed agent task's verification, compact: its commit, the suite's counts, each test
    file's verdict with its runs before and after, and the coverage of its changed lines."""
    verification = next(
        (
            a.get("content")
            for a in result.get("artifacts", [])
            if isinstance(a, dict) and a.get("type") == "test_results"
        ),
        None,
    )
    if not isinstance(verification, dict):
        return None
    red_green = verification.get("red_to_green") or {}
    coverage = verification.get("coverage") or {}
    return {
        "task": task_id,
        "task_type": task_type,
        "title": title,
        "commit": verification.get("commit") or next(iter(result.get("commits") or []), ""),
        "base": verification.get("base", ""),
        "tests": {key: verification.get(key) for key in ("command", "passed", "failed", "errors", "skipped")},
        "red_to_green": {
            "status": red_green.get("status", NOT_MEASURED),
            "reason": red_green.get("reason", "no red-to-green measurement was recorded"),
            "before_commit": red_green.get("before_commit", ""),
            "red_to_green": red_green.get("red_to_green", 0),
            "files": [
                {
                    "path": item.get("path"),
                    "verdict": item.get("verdict"),
                    "reason": item.get("reason", ""),
                    "command": item.get("command", ""),
                    "before": _run_brief(item.get("before")),
                    "after": _run_brief(item.get("after")),
                }
                for item in red_green.get("files", [])
            ],
        },
        "coverage": {
            "status": coverage.get("status", NOT_MEASURED),
            "reason": coverage.get("reason", ""),
            "percent": coverage.get("percent"),
            "changed": coverage.get("changed"),
            "covered": coverage.get("covered"),
            "files": [
                {
                    key: item.get(key)
                    for key in ("path", "status", "changed", "covered", "percent", "never_run", "reason")
                }
                for item in coverage.get("files", [])
            ],
        },
    }


def spec_ticket_evidence(spec: Spec) -> dict[int, dict[str, Any]]:
    """Per ticket of the spec: key, title, phase, commits, latest test results and each agent task's
    verification. Three queries, whatever the number of tickets."""
    evidence: dict[int, dict[str, Any]] = {}
    for ticket in Ticket.objects.filter(spec=spec).select_related("spec_task").order_by("id"):
        evidence[ticket.pk] = {
            "ticket": ticket.pk,
            "key": ticket.spec_task.key if ticket.spec_task_id else "",
            "title": ticket.title,
            "phase": ticket.phase,
            "commits": [],
            "tests": None,
            "tasks": [],
        }
    tasks = (
        Task.objects.filter(ticket__spec=spec)
        .order_by("ticket_id", "id")
        .values_list("pk", "ticket_id", "task_type", "title", "executor", "status", "result")
    )
    for task_id, ticket_id, task_type, title, executor, status, result in tasks:
        result = result or {}
        item = evidence.get(ticket_id)
        if item is None:
            continue
        for sha in result.get("commits", []):
            if sha not in item["commits"]:
                item["commits"].append(sha)
        if executor == Executor.AGENT and status == TaskStatus.COMPLETED:
            verified = task_evidence(task_id, task_type, title, result)
            if verified is not None:
                item["tasks"].append(verified)
    artifacts = PhaseGateArtifact.objects.filter(ticket__spec=spec, artifact_type="test_results").order_by("id")
    for ticket_id, phase, content in artifacts.values_list("ticket_id", "phase", "content"):
        content = content or {}
        if ticket_id in evidence:
            evidence[ticket_id]["tests"] = {
                "command": content.get("command", ""),
                "passed": content.get("passed", 0),
                "failed": content.get("failed", 0),
                "phase": phase,
            }
    return evidence


def tickets_by_requirement(spec: Spec) -> dict[int, list[int]]:
    covering: dict[int, list[int]] = defaultdict(list)
    rows = Ticket.objects.filter(spec=spec, spec_task__isnull=False).values_list(
        "pk", "spec_task__requirement_links__requirement_id"
    )
    for ticket_id, requirement_id in rows:
        if requirement_id is not None and ticket_id not in covering[requirement_id]:
            covering[requirement_id].append(ticket_id)
    return covering


def _ticket_done(item: dict[str, Any]) -> str:
    """Why a covering ticket does not count yet ("" when it does)."""
    label = item["key"] or f"ticket #{item['ticket']}"
    if item["phase"] != Phase.DONE:
        return f"{label} is {item['phase']}, not DONE"
    tests = item["tests"] or {}
    if tests.get("failed", 1) != 0 or not tests.get("passed"):
        return f"{label} has no passing test run"
    if not item["commits"]:
        return f"{label} has no commit"
    return ""


def criterion_evidence(tickets: list[dict[str, Any]]) -> dict[str, Any]:
    """The evidence of one criterion from the tickets that cover it: verified, the reason, and the
    tickets with their tasks' verifications."""
    if not tickets:
        return {"verified": False, "reason": "no ticket covers this criterion's requirement", "tickets": []}
    problems = [problem for problem in (_ticket_done(item) for item in tickets) if problem]
    tasks = [task for item in tickets for task in item["tasks"]]
    green = [
        f"{file['path']}"
        for task in tasks
        for file in task["red_to_green"]["files"]
        if file.get("verdict") == RED_TO_GREEN
    ]
    if problems:
        verified, reason = False, "; ".join(problems)
    elif green:
        verified, reason = True, "red → green: " + ", ".join(dict.fromkeys(green))
    elif tasks and all(task["red_to_green"]["status"] == NOT_MEASURED for task in tasks):
        reasons = dict.fromkeys(task["red_to_green"]["reason"] for task in tasks)
        verified, reason = False, "not testable by Omoi here: " + "; ".join(reasons)
    else:
        reasons = [
            f"{task['task_type']}: {task['red_to_green']['reason']}" for task in tasks if task["red_to_green"]["reason"]
        ]
        verified = False
        reason = "no test written for it went from failing to passing" + (f" ({'; '.join(reasons)})" if reasons else "")
    return {"verified": verified, "reason": reason, "tickets": tickets}


def criteria_evidence(spec: Spec) -> list[tuple[SpecAcceptanceCriterion, dict[str, Any]]]:
    """Every criterion of the spec with its evidence (not saved: completion stores it)."""
    evidence = spec_ticket_evidence(spec)
    covering = tickets_by_requirement(spec)
    criteria = SpecAcceptanceCriterion.objects.filter(requirement__spec=spec).order_by(
        "requirement__position", "requirement_id", "position", "id"
    )
    return [
        (
            criterion,
            criterion_evidence([evidence[t] for t in covering.get(criterion.requirement_id, []) if t in evidence]),
        )
        for criterion in criteria
    ]


# --- display ---------------------------------------------------------------------------------------


def run_text(run: dict[str, Any] | None) -> str:
    """{"outcome": "error", "errors": 1} → "error (1 error)"."""
    if not run or not run.get("outcome"):
        return "not run"
    parts = []
    for key, word in (("passed", "passed"), ("failed", "failed"), ("errors", "error"), ("skipped", "skipped")):
        number = run.get(key) or 0
        if number:
            parts.append(f"{number} {word}{'s' if word == 'error' and number != 1 else ''}")
    return f"{run['outcome'].replace('_', ' ')} ({', '.join(parts) or 'no test ran'})"


def coverage_text(coverage: dict[str, Any]) -> list[str]:
    """One line per changed source file ("textkit/stats.py: 4 of 5 changed lines ran (80.0%), never
    run: 12"), or why coverage was not measured."""
    if coverage.get("status") != MEASURED:
        return [coverage.get("reason") or "not measured"]
    lines = []
    for item in coverage.get("files", []):
        if item.get("status") != MEASURED:
            lines.append(f"{item.get('path')}: not measured ({item.get('reason', '')})")
            continue
        text = f"{item['path']}: {item['covered']} of {item['changed']} changed lines ran ({item['percent']}%)"
        if item.get("never_run"):
            text += f", never run: {item['never_run']}"
        lines.append(text)
    return lines or ["no executable line changed"]


@dataclass
class TestLine:
    __test__ = False  # not a pytest test class

    path: str
    verdict: str
    before: str
    after: str
    red_to_green: bool


@dataclass
class EvidenceRow:
    """One task's evidence as a reader sees it."""

    ticket: str
    ticket_id: int
    task: str
    task_id: int
    commit: str
    tests: list[TestLine] = field(default_factory=list)
    red_to_green_note: str = ""
    coverage: list[str] = field(default_factory=list)


@dataclass
class CriterionEvidenceDisplay:
    verified: bool
    status: str
    reason: str
    rows: list[EvidenceRow]


def criterion_evidence_display(criterion: SpecAcceptanceCriterion) -> CriterionEvidenceDisplay:
    """A criterion's stored evidence in display form, for the spec page, the admin and the report:
    its status and reason, and per task the commit, each test file's before → after and the
    coverage of the changed lines. Reads only the criterion's row."""
    evidence = criterion.evidence or {}
    rows = []
    for ticket in evidence.get("tickets", []):
        label = ticket.get("key") or f"ticket #{ticket.get('ticket')}"
        for task in ticket.get("tasks", []):
            red_green = task.get("red_to_green") or {}
            rows.append(
                EvidenceRow(
                    ticket=label,
                    ticket_id=ticket.get("ticket"),
                    task=task.get("task_type", ""),
                    task_id=task.get("task"),
                    commit=(task.get("commit") or "")[:12],
                    tests=[
                        TestLine(
                            path=item.get("path", ""),
                            verdict=VERDICT_WORDS.get(item.get("verdict"), str(item.get("verdict"))),
                            before=run_text(item.get("before")),
                            after=run_text(item.get("after")),
                            red_to_green=item.get("verdict") == RED_TO_GREEN,
                        )
                        for item in red_green.get("files", [])
                    ],
                    red_to_green_note="" if red_green.get("files") else red_green.get("reason", ""),
                    coverage=coverage_text(task.get("coverage") or {}),
                )
            )
    verified = bool(criterion.verified)
    return CriterionEvidenceDisplay(
        verified=verified,
        status="verified" if verified else "unverified",
        reason=evidence.get("reason", "" if verified else "not verified yet"),
        rows=rows,
    )


def criterion_evidence_html(criterion: SpecAcceptanceCriterion) -> str:
    """The criterion's evidence rendered with the include `specs/criterion_evidence.html`: safe
    HTML (render_to_string marks it so), every value escaped by the template."""
    from django.template.loader import render_to_string

    return render_to_string("specs/criterion_evidence.html", {"evidence": criterion_evidence_display(criterion)})
