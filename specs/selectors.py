"""Reads of the planning domain, with their joins built in so an endpoint's query count does not
grow with its rows."""

from __future__ import annotations

from django.db.models import Count, Prefetch, QuerySet, Sum

from omoi.models import LLMUsage
from sandboxes.models import AgentRun, AgentRunKind
from specs.models import Spec, SpecRequirement, SpecTask
from tickets.selectors import project_ids_visible_to


def specs_visible_to(user) -> QuerySet[Spec]:
    """Specs of the projects the user owns or belongs to; nothing else exists for them."""
    return Spec.objects.filter(project__in=project_ids_visible_to(user))


def spec_list(*, user) -> QuerySet[Spec]:
    return (
        specs_visible_to(user)
        .select_related("project", "user")
        .annotate(
            requirements_count=Count("requirements", distinct=True),
            tasks_count=Count("tasks", distinct=True),
        )
        .order_by("-id")
    )


def spec_detail(*, user) -> QuerySet[Spec]:
    """Specs with their requirements (and criteria) and tasks (with dependency keys, requirement
    keys and ticket) prefetched: a fixed number of queries however many rows."""
    tasks = SpecTask.objects.select_related("ticket").prefetch_related(
        Prefetch("dependencies", queryset=SpecTask.objects.only("id", "key")),
        Prefetch("requirements", queryset=SpecRequirement.objects.only("id", "key")),
    )
    return (
        specs_visible_to(user)
        .select_related("project", "user", "approved_by")
        .prefetch_related(
            Prefetch("requirements", queryset=SpecRequirement.objects.prefetch_related("criteria")),
            Prefetch("tasks", queryset=tasks),
        )
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


def spec_transcripts(*, spec_id: int, kind: str | None = AgentRunKind.PLANNING) -> QuerySet[AgentRun]:
    runs = AgentRun.objects.filter(spec_id=spec_id).prefetch_related("transcript").order_by("id")
    return runs.filter(kind=kind) if kind else runs
