"""Reads of the planning domain, with their joins built in so an endpoint's query count does not
grow with its rows."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import Count, Exists, Min, OuterRef, Prefetch, Q, QuerySet, Subquery, Sum
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import Coalesce

from omoi.models import LLMUsage
from sandboxes.models import AgentRun, AgentRunKind, EventCounter, SandboxEvent
from specs.models import Spec, SpecAcceptanceCriterion, SpecPhase, SpecRequirement, SpecStatus, SpecTask
from tickets.models import Phase, Ticket
from tickets.selectors import count_of, project_ids_visible_to


def specs_visible_to(user) -> QuerySet[Spec]:
    """Specs of the projects the user owns or belongs to; nothing else exists for them."""
    return Spec.objects.filter(project__in=project_ids_visible_to(user))


def _spec_counts() -> dict:
    """A spec's counts as correlated subqueries: each counts one table by an index on its spec,
    so the cost follows the spec's own rows, never a join of two child tables."""
    spec = OuterRef("pk")
    return {
        "requirements_count": count_of(SpecRequirement.objects.filter(spec=spec)),
        "criteria_count": count_of(SpecAcceptanceCriterion.objects.filter(requirement__spec=spec)),
        "criteria_verified_count": count_of(
            SpecAcceptanceCriterion.objects.filter(requirement__spec=spec, verified=True)
        ),
        "tasks_count": count_of(SpecTask.objects.filter(spec=spec)),
        "tickets_count": count_of(Ticket.objects.filter(spec=spec)),
        "tickets_done_count": count_of(Ticket.objects.filter(spec=spec, phase=Phase.DONE)),
    }


FINAL_STATUSES = (SpecStatus.COMPLETED, SpecStatus.FAILED, SpecStatus.CANCELLED)


def specs_settled(spec_ids: list[int]) -> dict[int, str]:
    """Of these specs, the ones with nothing more to come, with their status (one query): failed
    or cancelled ones, completed ones once their pull request step has run (the pull request is
    open or, for a project without a GitHub repository, the branch was pushed), and deleted ones.
    A spec's event stream ends when it is settled."""
    pushed = SandboxEvent.objects.filter(spec_id=OuterRef("pk"), type="spec.branch_pushed")
    rows = (
        Spec.objects.filter(pk__in=spec_ids)
        .annotate(pushed=Exists(pushed))
        .values_list("pk", "status", "pull_request_url", "project__github_repo", "pushed")
    )
    settled = dict.fromkeys(spec_ids, "deleted")
    for spec_id, status, pull_request_url, github_repo, branch_pushed in rows:
        del settled[spec_id]
        if status not in FINAL_STATUSES:
            continue
        if status != SpecStatus.COMPLETED or pull_request_url or (not github_repo and branch_pushed):
            settled[spec_id] = status
    return settled


def spec_list(*, user) -> QuerySet[Spec]:
    """Specs with their requirement and task counts (subqueries, not joins), without the large
    JSON columns a list does not show."""
    counts = _spec_counts()
    return (
        specs_visible_to(user)
        .select_related("user")
        .defer("phase_data", "design")
        .annotate(requirements_count=counts["requirements_count"], tasks_count=counts["tasks_count"])
        .order_by("-id")
    )


# Planning outputs that a spec's rows already hold (and that grow with them) stay out of its
# detail; the requirements and tasks endpoints page through the rows instead.
DETAIL_PHASE_DATA = [SpecPhase.EXPLORE]


def spec_detail(*, user) -> QuerySet[Spec]:
    """Specs with counts, not rows: the detail's cost does not grow with the spec. phase_data is
    read key by key (only the phases the detail shows)."""
    return (
        specs_visible_to(user)
        .select_related("user", "approved_by")
        .defer("phase_data")
        .annotate(
            **_spec_counts(),
            last_sequence=Coalesce(
                Subquery(EventCounter.objects.filter(spec=OuterRef("pk")).values("last_sequence")[:1]), 0
            ),
            **{f"phase_data_{phase}": KeyTransform(phase, "phase_data") for phase in DETAIL_PHASE_DATA},
        )
    )


def spec_requirements(*, spec: Spec) -> QuerySet[SpecRequirement]:
    """The spec's requirements in order, their criteria prefetched (per page)."""
    return SpecRequirement.objects.filter(spec=spec).prefetch_related("criteria").order_by("position", "id")


def spec_tasks(*, spec: Spec) -> QuerySet[SpecTask]:
    """The spec's tasks in order, with dependency keys, requirement keys and ticket (per page)."""
    return (
        SpecTask.objects.filter(spec=spec)
        .select_related("ticket")
        .prefetch_related(
            Prefetch("dependencies", queryset=SpecTask.objects.only("id", "key")),
            Prefetch("requirements", queryset=SpecRequirement.objects.only("id", "key")),
        )
        .order_by("position", "id")
    )


def spec_usage(*, spec_id: int) -> dict[str, int | str]:
    """Model calls and tokens spent on the spec, from LLMUsage."""
    totals = LLMUsage.objects.filter(spec_id=spec_id).aggregate(
        calls=Count("id"),
        input_tokens=Sum("input_tokens"),
        output_tokens=Sum("output_tokens"),
        cache_creation_input_tokens=Sum("cache_creation_input_tokens"),
        cache_read_input_tokens=Sum("cache_read_input_tokens"),
        cost_usd=Sum("cost_usd"),
    )
    return {
        "calls": totals["calls"] or 0,
        "input_tokens": totals["input_tokens"] or 0,
        "output_tokens": totals["output_tokens"] or 0,
        "cache_creation_input_tokens": totals["cache_creation_input_tokens"] or 0,
        "cache_read_input_tokens": totals["cache_read_input_tokens"] or 0,
        "cost_usd": str(totals["cost_usd"] or "0"),
    }


def spec_usage_by_phase(*, spec_id: int) -> list[dict[str, object]]:
    """Model calls, tokens and cost of the spec per phase (planning phases by name, ticket phases
    of its tasks' runs), in the order the phases were first used: one query."""
    rows = (
        LLMUsage.objects.filter(spec_id=spec_id)
        .values("phase")
        .annotate(
            calls=Count("id"),
            input_tokens=Sum("input_tokens"),
            output_tokens=Sum("output_tokens"),
            cost_usd=Sum("cost_usd"),
            first=Min("id"),
        )
        .order_by("first")
    )
    return [
        {
            "phase": row["phase"] or "-",
            "calls": row["calls"],
            "input_tokens": row["input_tokens"] or 0,
            "output_tokens": row["output_tokens"] or 0,
            "tokens": (row["input_tokens"] or 0) + (row["output_tokens"] or 0),
            "cost_usd": row["cost_usd"] or 0,
        }
        for row in rows
    ]


SPEC_TIMELINE_TYPES = (
    "spec.launched",
    "spec.status_changed",
    "spec.phase_started",
    "spec.phase_completed",
    "spec.phase_retry",
    "spec.phase_failed",
    "spec.phase_requeued",
    "spec.planning_complete",
    "spec.approved",
    "spec.replan_requested",
    "spec.requirement_updated",
    "spec.executing",
    "spec.execution_resumed",
    "spec.execution_stopped",
    "spec.completed",
    "spec.failed",
    "spec.branch_pushed",
    "spec.pull_request_opened",
    "spec.pull_request_failed",
    "spec.budget_changed",
    "agent.message_queued",
    "agent.message_injected",
    "guardian.nudged",
    "guardian.escalated",
    "guardian.stopped",
    "guardian.flagged",
)


def spec_timeline(*, spec_id: int) -> QuerySet[SandboxEvent]:
    """The spec's own events (phases, status moves, approval, completion, the pull request), the
    steering of its agents (messages, the guardian, the budget) and its tickets being blocked, in
    order: what happened to the spec, without every tool call."""
    return SandboxEvent.objects.filter(
        Q(type__in=SPEC_TIMELINE_TYPES) | Q(type="ticket.transitioned", payload__to_phase=Phase.BLOCKED),
        spec_id=spec_id,
    ).order_by("sequence")


def spec_budget(*, spec: Spec) -> dict[str, str]:
    """The spec's budget as the API and the spec page show it: its limit (Spec.budget_usd, else
    OMOI_SPEC_BUDGET_USD), what its model calls cost so far, what calls being made now hold, and
    what remains (never below zero). One query."""
    from omoi.budgets import budget_state
    from tickets.services.execution.runs import spec_budget_usd

    state = budget_state(f"spec:{spec.pk}")
    limit = spec_budget_usd(spec)
    spent, reserved = Decimal(state["spent_usd"]), Decimal(state["reserved_usd"])
    return {
        "limit_usd": str(limit),
        "spent_usd": str(spent),
        "reserved_usd": str(reserved),
        "remaining_usd": str(max(limit - spent - reserved, Decimal(0))),
    }


def spec_transcripts(*, spec_id: int, kind: str | None = AgentRunKind.PLANNING) -> QuerySet[AgentRun]:
    runs = AgentRun.objects.filter(spec_id=spec_id).prefetch_related("transcript").order_by("id")
    return runs.filter(kind=kind) if kind else runs
