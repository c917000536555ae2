"""COMPLETE: a spec is done when every one of its tickets is DONE; then the pull request step runs
exactly once. A spec whose ticket is BLOCKED fails with the ticket's reason (a retry resumes it).

Both run in the spec's step (specs/services/steps.py), under the spec's lease: twenty tickets
finishing at the same moment enqueue one step, which sees them all. The pull request step pushes
and calls GitHub outside every row lock (the lease keeps a second delivery away), then records the
outcome in a short transaction; GitHub is asked for an existing pull request from the branch first,
so a retry never opens a second one.
"""

from __future__ import annotations

from collections import Counter

from django.db import transaction
from django.utils import timezone

from omoi.faults import fault_point
from omoi.github import GitHubClient, push_target
from omoi.leases import Held
from sandboxes.services.events import event_record, events_batch
from specs.evidence import criteria_evidence
from specs.models import Spec, SpecAcceptanceCriterion, SpecPhase, SpecStatus, SpecTaskStatus
from specs.services.planning import spec_transition
from specs.services.report import pull_request_body, spec_report_commit
from tickets.models import Phase, Ticket
from tickets.services import repository
from tickets.workflow import WORKING_PHASES


class PullRequestNotReady(Exception):
    """The spec is not completed, so there is no finished work to propose."""


def _criteria_verify(spec: Spec) -> None:
    """Store on each acceptance criterion its evidence (specs/evidence.py): verified only when a
    task that covers it has a test that went from failing to passing, with the reason otherwise."""
    now = timezone.now()
    criteria = []
    for criterion, evidence in criteria_evidence(spec):
        criterion.verified = evidence["verified"]
        criterion.evidence = evidence
        criterion.verified_at = now if criterion.verified else None
        criteria.append(criterion)
    SpecAcceptanceCriterion.objects.bulk_update(criteria, ["verified", "evidence", "verified_at"])


# The status a SpecTask takes from its ticket's phase.
SPEC_TASK_STATUS_OF_PHASE: dict[str, str] = {
    Phase.BACKLOG: SpecTaskStatus.PENDING,
    **dict.fromkeys(WORKING_PHASES, SpecTaskStatus.IN_PROGRESS),
    Phase.DONE: SpecTaskStatus.COMPLETED,
    Phase.BLOCKED: SpecTaskStatus.BLOCKED,
}


def spec_tasks_follow_tickets(*, spec_id: int) -> dict[str, int]:
    """Each SpecTask's status follows its ticket: pending (backlog), in progress, completed (DONE),
    blocked. One read of the tickets' phases, then one UPDATE per status that changed (usually none
    or one), whatever the number of tasks. Returns how many of the spec's tickets are in each phase."""
    from specs.models import SpecTask

    changes: dict[str, list[int]] = {}
    phases: Counter[str] = Counter()
    for spec_task_id, current, phase in Ticket.objects.filter(spec_id=spec_id).values_list(
        "spec_task_id", "spec_task__status", "phase"
    ):
        phases[phase] += 1
        status = SPEC_TASK_STATUS_OF_PHASE.get(phase)
        if spec_task_id is not None and status is not None and status != current:
            changes.setdefault(status, []).append(spec_task_id)
    for status, ids in changes.items():
        SpecTask.objects.filter(pk__in=ids).update(status=status)
    return phases


def spec_completion_check(*, spec_id: int, held: Held | None = None) -> str:
    """The executing spec's progress: when every ticket is DONE the spec completes (its criteria
    verified with their evidence; the pull request step follows); when a ticket is BLOCKED the spec
    fails with its reason. Returns "completed", "failed", "progress" or "stale"."""
    with events_batch():
        spec = Spec.objects.select_for_update(no_key=True).get(pk=spec_id)
        if held is not None:
            held.finish(object_locked=True)
        if spec.status != SpecStatus.EXECUTING:
            return "stale"
        phases = spec_tasks_follow_tickets(spec_id=spec.pk)
        total, done = sum(phases.values()), phases.get(Phase.DONE, 0)
        if phases.get(Phase.BLOCKED):
            ticket = (
                Ticket.objects.filter(spec=spec, phase=Phase.BLOCKED).select_related("spec_task").order_by("id").first()
            )
            label = ticket.spec_task.key if ticket.spec_task_id else f"#{ticket.pk}"
            error = f"Ticket {label} ({ticket.title}) is blocked: {ticket.blocked_reason}. {ticket.blocked_message}"
            spec_transition(
                spec_id=spec.pk,
                status=SpecStatus.FAILED,
                actor="system",
                reason="a ticket is blocked",
                error=error[:4000],
            )
            event_record(
                type="spec.failed",
                payload={
                    "phase": spec.current_phase,
                    "ticket": ticket.pk,
                    "reason": ticket.blocked_reason,
                    "error": error[:4000],
                },
                spec_id=spec.pk,
            )
            return "failed"
        if total == 0 or done < total:
            progress = (done * 100 // total) if total else 0
            if progress != spec.progress:
                spec.progress = progress
                spec.save(update_fields=["progress", "updated_at"])
                event_record(
                    type="spec.progress", payload={"done": done, "total": total, "progress": progress}, spec_id=spec.pk
                )
            return "progress"
        fault_point("completion.verifying")
        _criteria_verify(spec)
        spec_transition(
            spec_id=spec.pk,
            status=SpecStatus.COMPLETED,
            phase=SpecPhase.COMPLETE,
            actor="system",
            reason="every ticket is done",
        )
        verified = SpecAcceptanceCriterion.objects.filter(requirement__spec=spec, verified=True).count()
        event_record(
            type="spec.completed",
            payload={"tickets": total, "criteria_verified": verified, "branch": spec.branch_name},
            spec_id=spec.pk,
        )
    return "completed"


def pull_request_due(spec: Spec) -> bool:
    """A completed spec whose branch has not been pushed yet, or whose pull request (when the
    project names a GitHub repository) is not open yet."""
    if spec.status != SpecStatus.COMPLETED:
        return False
    if spec.project.github_repo:
        return not spec.pull_request_url
    return not spec.branch_pushed_at


def spec_pull_request_open(*, spec_id: int, held: Held | None = None) -> Spec:
    """Push the spec branch to the project's repository and, when the project names a GitHub
    repository, open the pull request: the network work outside every row lock (the caller holds
    the spec's lease), the outcome recorded in short transactions. Runs its effects once per spec."""
    spec = Spec.objects.select_related("project").get(pk=spec_id)
    if spec.status != SpecStatus.COMPLETED:
        raise PullRequestNotReady(f"spec {spec.pk} is {spec.status}: only a completed spec gets a pull request")
    project = spec.project
    if not spec.branch_pushed_at:
        # The full evidence report travels with the branch (a commit made in the bare mirror);
        # the pull request's body links to it.
        spec_report_commit(spec_id=spec.pk)
        push_url, token = push_target(project)
        repository.spec_branch_push(spec=spec, url=push_url, token=token)
        fault_point("pull_request.pushed")
        if held is not None:
            held.check()
        with events_batch():
            pushed = {"branch_pushed_at": timezone.now(), "updated_at": timezone.now()}
            if not project.github_repo:
                pushed["last_error"] = ""  # without GitHub the push is the whole step: it succeeded
            Spec.objects.filter(pk=spec.pk).update(**pushed)
            event_record(
                type="spec.branch_pushed",
                payload={"branch": spec.branch_name, "repository": push_url},
                spec_id=spec.pk,
            )
    if project.github_repo and not spec.pull_request_url:
        pull = GitHubClient.for_project(project).pull_request_open(
            repo=project.github_repo,
            head=spec.branch_name,
            base=project.default_branch,
            title=spec.title,
            body=pull_request_body(spec),
        )
        fault_point("pull_request.opened")
        if held is not None:
            held.check()
        with events_batch():
            # A completed spec's last_error can only say why its pull request was missing.
            updated = Spec.objects.filter(pk=spec.pk, pull_request_url="").update(
                pull_request_url=pull.url, pull_request_number=pull.number, last_error="", updated_at=timezone.now()
            )
            if updated:
                event_record(
                    type="spec.pull_request_opened",
                    payload={
                        "number": pull.number,
                        "url": pull.url,
                        "created": pull.created,
                        "branch": spec.branch_name,
                    },
                    spec_id=spec.pk,
                )
    if held is not None:
        with transaction.atomic():
            held.finish()
    spec.refresh_from_db()
    return spec
