"""The report a reviewer reads: every requirement with its acceptance criteria, each criterion with
the tickets, commits and tests behind it (each test file's result before and after the change),
what is unverified and why, and the spec's cost and duration.

Two renderings of one report: the full one, committed to the spec branch as
`docs/omoi/SPEC-<id>.md` before the branch is pushed (so the pull request carries it), and the pull
request's body, which must stay under GitHub's limit (65,536 characters): it gives each criterion
its red-to-green tests in one line, drops what does not fit, and always ends with the link to the
full report, the unverified criteria and the cost and duration.

The report is committed in the host's bare mirror, never in a checkout: a blob, a tree made on a
temporary index from the branch's tip, a commit, and the branch moved with a compare-and-set that
keeps the commit's bundle (so any worker can rebuild it). Its content depends only on what the
completed spec holds, so a repeated step finds the same file on the branch and commits nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from omoi.github import github_web_url
from sandboxes.services import gitstore
from specs.evidence import VERDICT_WORDS, coverage_text, run_text
from specs.models import Spec, SpecRequirement
from specs.selectors import spec_usage
from tickets.evidence import RED_TO_GREEN
from tickets.services import repository

BODY_LIMIT = 65_536
BODY_MARGIN = 1_536  # room for the closing sections, counted before they are known
REPORT_COMMIT_ATTEMPTS = 5


def report_path(spec: Spec) -> str:
    return f"docs/omoi/SPEC-{spec.pk}.md"


def report_url(spec: Spec) -> str:
    """Where a reviewer opens the full report: the file on the spec branch on GitHub, or its path
    when the project names no GitHub repository."""
    if spec.project.github_repo and spec.branch_name:
        return f"{github_web_url()}/{spec.project.github_repo}/blob/{spec.branch_name}/{report_path(spec)}"
    return report_path(spec)


def _duration(spec: Spec) -> str:
    if not spec.completed_at:
        return "not finished"
    seconds = int((spec.completed_at - spec.created_at).total_seconds())
    hours, rest = divmod(max(seconds, 0), 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{hours} h"] if hours else []
    if hours or minutes:
        parts.append(f"{minutes} min")
    parts.append(f"{seconds} s")
    return " ".join(parts)


def cost_and_duration(spec: Spec) -> list[str]:
    usage = spec_usage(spec_id=spec.pk)
    cost = Decimal(str(usage["cost_usd"]))
    return [
        "## Cost and duration",
        "",
        f"- Model cost: ${cost:.4f} over {usage['calls']} model calls "
        f"({usage['input_tokens']} input and {usage['output_tokens']} output tokens)",
        f"- Duration: {_duration(spec)} from launch to completion",
    ]


@dataclass
class CriterionReport:
    key: str
    text: str
    verified: bool
    reason: str
    tests: list[str]  # "`tests/test_stats.py` error (1 error) → passed (2 passed), TSK-001 at abc123"
    detail: list[str]  # the full report's lines about its tickets, tasks, files and coverage


def _commit(sha: str) -> str:
    return f"`{sha[:10]}`" if sha else "no commit"


def _criterion_report(requirement: SpecRequirement, criterion) -> CriterionReport:
    evidence = criterion.evidence or {}
    tests: list[str] = []
    detail: list[str] = []
    for ticket in evidence.get("tickets", []):
        label = ticket.get("key") or f"ticket #{ticket.get('ticket')}"
        commits = ", ".join(_commit(sha) for sha in ticket.get("commits", [])) or "no commits"
        suite = ticket.get("tests") or {}
        suite_text = (
            f"`{suite.get('command')}`: {suite.get('passed')} passed, {suite.get('failed')} failed"
            if suite
            else "no test run"
        )
        detail.append(
            f"  - {label} (ticket #{ticket.get('ticket')}, {ticket.get('phase')}): commits {commits}; {suite_text}"
        )
        for task in ticket.get("tasks", []):
            red_green = task.get("red_to_green") or {}
            detail.append(f"    - `{task.get('task_type')}` at {_commit(task.get('commit', ''))}:")
            for item in red_green.get("files", []):
                line = (
                    f"`{item.get('path')}` {run_text(item.get('before'))} → {run_text(item.get('after'))}: "
                    f"{VERDICT_WORDS.get(item.get('verdict'), item.get('verdict'))}"
                )
                detail.append(f"      - {line} (`{item.get('command')}`)")
                if item.get("verdict") == RED_TO_GREEN:
                    tests.append(
                        f"`{item.get('path')}` {run_text(item.get('before'))} → {run_text(item.get('after'))} "
                        f"({label} `{task.get('task_type')}` at {_commit(task.get('commit', ''))})"
                    )
            if not red_green.get("files"):
                detail.append(f"      - red to green: {red_green.get('reason') or 'not measured'}")
            for line in coverage_text(task.get("coverage") or {}):
                detail.append(f"      - coverage: {line}")
    return CriterionReport(
        key=requirement.key,
        text=criterion.text,
        verified=bool(criterion.verified),
        reason=evidence.get("reason", "not verified"),
        tests=list(dict.fromkeys(tests)),
        detail=detail,
    )


def _requirements(spec: Spec) -> list[tuple[SpecRequirement, list[CriterionReport]]]:
    requirements = SpecRequirement.objects.filter(spec=spec).prefetch_related("criteria").order_by("position", "id")
    return [
        (requirement, [_criterion_report(requirement, c) for c in requirement.criteria.all()])
        for requirement in requirements
    ]


def _header(spec: Spec, sections: list[tuple[SpecRequirement, list[CriterionReport]]]) -> list[str]:
    criteria = [c for _r, items in sections for c in items]
    verified = sum(1 for c in criteria if c.verified)
    return [
        f"# Omoi spec #{spec.pk}: {spec.title}",
        "",
        "## Idea",
        "",
        spec.idea.strip(),
        "",
        f"**{verified} of {len(criteria)} acceptance criteria verified**: each verified criterion has a test that "
        "failed against the code before the change and passes after it, run by the host in the sandbox.",
        "",
    ]


def _unverified(
    sections: list[tuple[SpecRequirement, list[CriterionReport]]], *, limit: int | None = None
) -> list[str]:
    missing = [c for _r, items in sections for c in items if not c.verified]
    lines = ["## Unverified", ""]
    if not missing:
        return [*lines, "Every acceptance criterion is verified.", ""]
    shown = missing if limit is None else missing[:limit]
    lines += [f"- {c.key}: {c.text} — {c.reason}" for c in shown]
    if len(shown) < len(missing):
        lines.append(f"- … and {len(missing) - len(shown)} more in the full report")
    return [*lines, ""]


def spec_report(spec: Spec) -> str:
    """The full report (the file committed to the spec branch)."""
    sections = _requirements(spec)
    lines = _header(spec, sections)
    lines += ["## Requirements", ""]
    for requirement, criteria in sections:
        lines += [f"### {requirement.key} {requirement.title}", "", f"> {requirement.text}", ""]
        if not criteria:
            lines += ["No acceptance criteria.", ""]
        for criterion in criteria:
            lines.append(f"- [{'x' if criterion.verified else ' '}] {criterion.text}")
            lines.append(f"  - {'verified' if criterion.verified else 'unverified'}: {criterion.reason}")
            lines += criterion.detail
        lines.append("")
    lines += _unverified(sections)
    lines += cost_and_duration(spec)
    return "\n".join(lines) + "\n"


def pull_request_body(spec: Spec) -> str:
    """The pull request's body: each requirement with its criteria, each criterion with the tickets
    and the tests that went red to green; under GitHub's limit, with a link to the full report."""
    sections = _requirements(spec)
    link = f"Full report: [{report_path(spec)}]({report_url(spec)})"
    head = "\n".join([*_header(spec, sections), link, "", "## Requirements", "", ""])
    tail = "\n".join(["", *_unverified(sections, limit=50), *cost_and_duration(spec)])
    budget = BODY_LIMIT - BODY_MARGIN - len(head) - len(tail)
    blocks: list[str] = []
    used = 0
    left_out = 0
    for requirement, criteria in sections:
        lines = [f"### {requirement.key} {requirement.title}", "", f"> {requirement.text}", ""]
        tickets = {
            (t.get("key") or f"#{t.get('ticket')}", t.get("ticket"), tuple(t.get("commits", [])))
            for c in requirement.criteria.all()
            for t in (c.evidence or {}).get("tickets", [])
        }
        for key, ticket_id, commits in sorted(tickets, key=lambda item: item[1] or 0):
            shown = ", ".join(_commit(sha) for sha in commits) or "no commits"
            lines.append(f"Ticket #{ticket_id} {key}: commits {shown}")
        if not tickets:
            lines.append("No ticket covers this requirement.")
        lines.append("")
        for criterion in criteria:
            lines.append(f"- [{'x' if criterion.verified else ' '}] {criterion.text}")
            if criterion.tests:
                lines += [f"  - red → green: {test}" for test in criterion.tests]
            else:
                lines.append(f"  - unverified: {criterion.reason}")
        block = "\n".join(lines) + "\n"
        if used + len(block) > budget:
            left_out += 1
            continue
        blocks.append(block)
        used += len(block)
    if left_out:
        blocks.append(f"*{left_out} requirement(s) did not fit here: see the full report.*\n")
    body = head + "\n".join(blocks) + tail + "\n"
    return body[:BODY_LIMIT]


def spec_report_commit(*, spec_id: int) -> str | None:
    """Commit the full report to the spec branch (in this worker's bare mirror) and move the branch
    to it; returns the new commit, or None when the branch already holds this very report."""
    spec = Spec.objects.select_related("project").get(pk=spec_id)
    scope = repository.spec_scope(spec)
    content = spec_report(spec).encode()
    for _ in range(REPORT_COMMIT_ATTEMPTS):
        mirror = repository.scope_mirror(scope=scope, project=spec.project)
        tip = gitstore.ref_get(scope=scope, name=spec.branch_name)
        if tip is None:
            raise gitstore.TransferError(f"the spec branch {spec.branch_name} is not recorded")
        gitstore.mirror_ensure_commits(scope=scope, path=mirror, shas=[tip])
        sha = gitstore.mirror_commit_file(
            mirror,
            scope=scope,
            parent=tip,
            path=report_path(spec),
            content=content,
            message=f"Omoi spec #{spec.pk}: the evidence report\n\n{report_path(spec)}: requirements, "
            "acceptance criteria and the tests behind them.",
        )
        if sha is None:
            return None
        bundle = gitstore.bundle_from_mirror(mirror, tip=sha, base=tip)
        if gitstore.ref_advance(scope=scope, name=spec.branch_name, old=tip, new=sha, bundle=bundle, spec_id=spec.pk):
            return sha
    raise gitstore.TransferError(f"the branch {spec.branch_name} kept moving while the report was committed")
