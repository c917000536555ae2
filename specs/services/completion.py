"""COMPLETE: a spec is done when every one of its tickets is DONE; then the pull request step runs
exactly once.

Both steps lock the spec row, so twenty tickets finishing at the same moment enqueue twenty checks
that run one after another: the first completes the spec, the rest find it completed and stop.
The pull request step holds the same lock while it pushes and calls GitHub, and GitHub is asked
for an existing pull request from the branch first, so a retry never opens a second one.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from omoi.github import GitHubClient, push_target
from sandboxes.services.events import event_record
from specs.models import Spec, SpecAcceptanceCriterion, SpecPhase, SpecRequirement, SpecStatus
from tickets.models import Phase, PhaseGateArtifact, Task, Ticket
from tickets.services import repository


class PullRequestNotReady(Exception):
    """The spec is not completed, so there is no finished work to propose."""


def _evidence_by_ticket(spec: Spec) -> dict[int, dict[str, Any]]:
    """Per ticket: its SpecTask key, commits and latest test results."""
    evidence: dict[int, dict[str, Any]] = defaultdict(lambda: {"commits": [], "tests": None})
    tickets = Ticket.objects.filter(spec=spec).select_related("spec_task")
    for ticket in tickets:
        evidence[ticket.pk]["key"] = ticket.spec_task.key if ticket.spec_task_id else ""
        evidence[ticket.pk]["title"] = ticket.title
    for ticket_id, result in Task.objects.filter(ticket__spec=spec).values_list("ticket_id", "result"):
        for sha in (result or {}).get("commits", []):
            if sha not in evidence[ticket_id]["commits"]:
                evidence[ticket_id]["commits"].append(sha)
    artifacts = PhaseGateArtifact.objects.filter(ticket__spec=spec, artifact_type="test_results").order_by("id")
    for artifact in artifacts:
        content = artifact.content or {}
        evidence[artifact.ticket_id]["tests"] = {
            "command": content.get("command", ""),
            "passed": content.get("passed", 0),
            "failed": content.get("failed", 0),
            "phase": artifact.phase,
        }
    return evidence


def _tickets_by_requirement(spec: Spec) -> dict[int, list[int]]:
    covering: dict[int, list[int]] = defaultdict(list)
    rows = Ticket.objects.filter(spec=spec, spec_task__isnull=False).values_list(
        "pk", "spec_task__requirement_links__requirement_id"
    )
    for ticket_id, requirement_id in rows:
        if requirement_id is not None:
            covering[requirement_id].append(ticket_id)
    return covering


def _criteria_verify(spec: Spec) -> None:
    """Mark each acceptance criterion verified with the evidence of the tickets that cover it."""
    evidence = _evidence_by_ticket(spec)
    covering = _tickets_by_requirement(spec)
    now = timezone.now()
    criteria = list(SpecAcceptanceCriterion.objects.filter(requirement__spec=spec))
    for criterion in criteria:
        tickets = covering.get(criterion.requirement_id, [])
        criterion.verified = bool(tickets) and all(
            (evidence[t]["tests"] or {}).get("failed", 1) == 0 and evidence[t]["commits"] for t in tickets
        )
        criterion.evidence = {"tickets": [{"ticket": t, **evidence[t]} for t in tickets]}
        criterion.verified_at = now if criterion.verified else None
    SpecAcceptanceCriterion.objects.bulk_update(criteria, ["verified", "evidence", "verified_at"])


def spec_completion_check(*, spec_id: int) -> Spec:
    """Update an executing spec's progress; when every ticket is DONE, complete it and enqueue the
    pull request step."""
    with transaction.atomic():
        spec = Spec.objects.select_for_update(no_key=True).get(pk=spec_id)
        if spec.status != SpecStatus.EXECUTING:
            return spec
        counts = Ticket.objects.filter(spec=spec).aggregate(
            total=Count("pk"), done=Count("pk", filter=Q(phase=Phase.DONE))
        )
        total, done = counts["total"], counts["done"]
        if total == 0 or done < total:
            progress = (done * 100 // total) if total else 0
            if progress != spec.progress:
                spec.progress = progress
                spec.save(update_fields=["progress", "updated_at"])
                event_record(
                    type="spec.progress", payload={"done": done, "total": total, "progress": progress}, spec_id=spec.pk
                )
            return spec
        _criteria_verify(spec)
        spec.status = SpecStatus.COMPLETED
        spec.current_phase = SpecPhase.COMPLETE
        spec.progress = 100
        spec.completed_at = timezone.now()
        spec.save(update_fields=["status", "current_phase", "progress", "completed_at", "updated_at"])
        verified = SpecAcceptanceCriterion.objects.filter(requirement__spec=spec, verified=True).count()
        event_record(
            type="spec.completed",
            payload={"tickets": total, "criteria_verified": verified, "branch": spec.branch_name},
            spec_id=spec.pk,
        )
        from specs.tasks import spec_pull_request_task

        spec_pull_request_task.delay_on_commit(spec.pk)
    return spec


def spec_execution_failed(*, spec_id: int, ticket_id: int, reason: str, message: str) -> Spec:
    """A ticket's work ended without success: the spec does not stay `executing`; it fails with
    the reason, and a retry can resume it."""
    with transaction.atomic():
        spec = Spec.objects.select_for_update(no_key=True).get(pk=spec_id)
        if spec.status != SpecStatus.EXECUTING:
            return spec
        ticket = Ticket.objects.select_related("spec_task").get(pk=ticket_id)
        label = ticket.spec_task.key if ticket.spec_task_id else f"#{ticket.pk}"
        spec.status = SpecStatus.FAILED
        spec.last_error = f"Ticket {label} ({ticket.title}) is blocked: {reason}. {message}"[:4000]
        spec.save(update_fields=["status", "last_error", "updated_at"])
        event_record(
            type="spec.failed",
            payload={"phase": spec.current_phase, "ticket": ticket.pk, "reason": reason, "error": spec.last_error},
            spec_id=spec.pk,
        )
    return spec


def pull_request_body(spec: Spec) -> str:
    evidence = _evidence_by_ticket(spec)
    covering = _tickets_by_requirement(spec)
    lines = [f"Omoi spec #{spec.pk}: {spec.title}", "", "## Idea", "", spec.idea.strip(), "", "## Requirements", ""]
    for requirement in (
        SpecRequirement.objects.filter(spec=spec).prefetch_related("criteria").order_by("position", "id")
    ):
        lines += [f"### {requirement.key} {requirement.title}", "", f"> {requirement.text}", ""]
        tickets = covering.get(requirement.pk, [])
        if not tickets:
            lines += ["- No ticket covers this requirement.", ""]
        for ticket_id in tickets:
            item = evidence[ticket_id]
            commits = ", ".join(sha[:10] for sha in item["commits"]) or "no commits"
            tests = item["tests"]
            tests_text = (
                f"{tests['passed']} passed, {tests['failed']} failed (`{tests['command']}`)" if tests else "no test run"
            )
            lines.append(f"- Ticket #{ticket_id} {item['key']} {item['title']}: commits {commits}; tests {tests_text}")
        lines.append("")
        for criterion in requirement.criteria.all():
            lines.append(f"- [{'x' if criterion.verified else ' '}] {criterion.text}")
        lines.append("")
    return "\n".join(lines)


def spec_pull_request_open(*, spec_id: int) -> Spec:
    """Push the spec branch to the project's repository and, when the project names a GitHub
    repository, open the pull request. Runs its effects once per spec."""
    with transaction.atomic():
        spec = Spec.objects.select_for_update(no_key=True, of=("self",)).select_related("project").get(pk=spec_id)
        if spec.status != SpecStatus.COMPLETED:
            raise PullRequestNotReady(f"spec {spec.pk} is {spec.status}: only a completed spec gets a pull request")
        if spec.pull_request_url:
            return spec
        project = spec.project
        push_url, token = push_target(project)
        repository.spec_branch_push(spec=spec, url=push_url, token=token)
        event_record(
            type="spec.branch_pushed",
            payload={"branch": spec.branch_name, "repository": push_url},
            spec_id=spec.pk,
        )
        if project.github_repo:
            pull = GitHubClient.for_project(project).pull_request_open(
                repo=project.github_repo,
                head=spec.branch_name,
                base=project.default_branch,
                title=spec.title,
                body=pull_request_body(spec),
            )
            spec.pull_request_url = pull.url
            spec.pull_request_number = pull.number
            spec.save(update_fields=["pull_request_url", "pull_request_number", "updated_at"])
            event_record(
                type="spec.pull_request_opened",
                payload={"number": pull.number, "url": pull.url, "created": pull.created, "branch": spec.branch_name},
                spec_id=spec.pk,
            )
    return spec


def completion_sweep(*, stuck_after_s: int | None = None) -> dict[str, int]:
    """Re-enqueue completion work whose message was lost: executing specs whose tickets are all
    DONE, and completed specs whose pull request step has not run (or failed) for a while."""
    from specs.tasks import spec_completion_task, spec_pull_request_task

    stuck_after_s = settings.OMOI_EXECUTION_STUCK_AFTER_S if stuck_after_s is None else stuck_after_s
    cutoff = timezone.now() - timedelta(seconds=stuck_after_s)
    finished = (
        Spec.objects.filter(status=SpecStatus.EXECUTING, updated_at__lt=cutoff)
        .annotate(total=Count("tickets"), done=Count("tickets", filter=Q(tickets__phase=Phase.DONE)))
        .filter(total__gt=0, total=F("done"))
        .values_list("pk", flat=True)
    )
    counts = {"completions": 0, "pull_requests": 0}
    for spec_id in finished:
        spec_completion_task.delay(spec_id)
        counts["completions"] += 1
    waiting = Spec.objects.filter(
        status=SpecStatus.COMPLETED, pull_request_url="", completed_at__lt=cutoff, project__github_repo__gt=""
    ).values_list("pk", flat=True)
    for spec_id in waiting:
        spec_pull_request_task.delay(spec_id)
        counts["pull_requests"] += 1
    return counts
