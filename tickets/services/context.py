"""Context across phases: what each finished phase's tasks found, kept on the ticket for the
phases after it.

On every move out of a working phase, the phase's task results (summary, decisions, risks) and
artifacts are aggregated into `Ticket.context[phase]`, and `Ticket.context_summary` is rebuilt:
a bounded, rule-based digest by default. With settings.OMOI_CONTEXT_SUMMARY_MODEL true, the model
(through omoi.llm.get_provider()) rewrites the summary after the move commits; the rule-based
digest stays until it succeeds, so a model outage never holds a ticket back.
"""

import json
import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from omoi.text import storable, storable_json
from tickets.models import PhaseGateArtifact, Task, Ticket
from tickets.workflow import PHASE_SEQUENCE

logger = logging.getLogger(__name__)

CONTEXT_SUMMARY_LIMIT = 2000
TASK_SUMMARY_LIMIT = 1000


def _as_list(value: Any) -> list[str]:
    if value in (None, "", [], {}):
        return []
    if not isinstance(value, list):
        value = [value]
    return [item if isinstance(item, str) else json.dumps(item, sort_keys=True) for item in value]


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def phase_context_build(*, ticket: Ticket, phase: str) -> dict[str, Any]:
    """The aggregate of one phase: each task's outcome, every decision and risk its results name,
    and the artifacts collected in the phase (by reference; their content stays in their rows)."""
    tasks = list(Task.objects.filter(ticket=ticket, phase=phase).order_by("id"))
    artifacts = list(PhaseGateArtifact.objects.filter(ticket=ticket, phase=phase).order_by("id"))
    return phase_context_of(tasks=tasks, artifacts=artifacts)


def phase_context_of(*, tasks: list[Task], artifacts: list[PhaseGateArtifact]) -> dict[str, Any]:
    """The aggregate of one phase from its tasks and artifacts (in id order)."""
    decisions: list[str] = []
    risks: list[str] = []
    summaries: list[str] = []
    task_entries = []
    for task in tasks:
        result = task.result if isinstance(task.result, dict) else {}
        summary = _clip(str(result.get("summary") or ""), TASK_SUMMARY_LIMIT)
        if summary:
            summaries.append(f"{task.task_type}: {summary}")
        decisions += _as_list(result.get("decisions"))
        risks += _as_list(result.get("risks"))
        task_entries.append(
            {"id": task.pk, "task_type": task.task_type, "status": task.status, "summary": summary, "error": task.error}
        )
    return {
        "tasks": task_entries,
        "summary": "\n".join(summaries),
        "decisions": decisions,
        "risks": risks,
        "artifacts": [
            {"id": a.pk, "type": a.artifact_type, "path": a.path, "collected_by": a.collected_by} for a in artifacts
        ],
        "aggregated_at": timezone.now().isoformat(),
    }


def context_summary_build(context: dict[str, Any], *, limit: int = CONTEXT_SUMMARY_LIMIT) -> str:
    """A plain-text digest of every phase's context, in phase order, never longer than `limit`.
    Each phase gets an equal share, so the latest phase is never crowded out by the first."""
    phases = [phase.value for phase in PHASE_SEQUENCE if phase.value in context]
    if not phases:
        return ""
    share = max(limit // len(phases) - 1, 40)
    blocks = []
    for phase in phases:
        entry = context[phase]
        lines = [f"{phase}:"]
        if entry.get("summary"):
            lines.append(entry["summary"])
        if entry.get("decisions"):
            lines.append("Decisions: " + "; ".join(entry["decisions"]))
        if entry.get("risks"):
            lines.append("Risks: " + "; ".join(entry["risks"]))
        if entry.get("artifacts"):
            lines.append("Artifacts: " + ", ".join(sorted({a["type"] for a in entry["artifacts"]})))
        if entry.get("blocked"):
            lines.append(f"Blocked ({entry['blocked']['reason']}): {entry['blocked']['message']}")
        blocks.append(_clip("\n".join(lines), share))
    return _clip("\n\n".join(blocks), limit)


def context_aggregate(
    *, ticket: Ticket, phase: str, blocked: dict[str, str] | None = None, entry: dict[str, Any] | None = None
) -> None:
    """Fold `phase`'s results into the (locked) ticket in memory; the caller saves it with
    update_fields ["context", "context_summary", "context_updated_at"]. `entry`: the phase's
    aggregate when the caller built it already (a bulk move)."""
    entry = entry if entry is not None else phase_context_build(ticket=ticket, phase=phase)
    if blocked:
        entry["blocked"] = blocked
    ticket.context = storable_json({**(ticket.context or {}), phase: entry})
    ticket.context_summary = storable(context_summary_build(ticket.context))
    ticket.context_updated_at = timezone.now()
    if getattr(settings, "OMOI_CONTEXT_SUMMARY_MODEL", False):
        from tickets.tasks import ticket_context_summarize_task

        ticket_context_summarize_task.delay_on_commit(ticket.pk, ticket.context_updated_at.isoformat())


def ticket_context_for(ticket: Ticket) -> dict[str, Any]:
    """What a task of the ticket's next phase is given: the ticket, its planned task (if any), each
    earlier phase's aggregate and the summary."""
    spec_task = None
    if ticket.spec_task_id:
        planned = ticket.spec_task
        spec_task = {
            "key": planned.key,
            "title": planned.title,
            "description": planned.description,
            "files": planned.files,
            "acceptance_criteria": planned.acceptance_criteria,
        }
    return {
        "ticket": {"id": ticket.pk, "title": ticket.title, "description": ticket.description, "phase": ticket.phase},
        "spec_task": spec_task,
        "phases": ticket.context or {},
        "summary": ticket.context_summary,
        "last_updated": ticket.context_updated_at.isoformat() if ticket.context_updated_at else None,
    }


SUMMARY_SYSTEM_PROMPT = (
    "You condense the working notes of a software ticket for the engineer who takes over the next phase. "
    "Write plain text, at most 300 words: what was decided, what was built or found, open risks. "
    "No preamble."
)


def ticket_context_summarize(*, ticket_id: int, context_updated_at: str) -> bool:
    """Replace the rule-based summary with the model's, if the context has not changed since the
    move that asked for it. Returns whether the summary was replaced. The model call happens
    outside any transaction; only the final write locks the ticket."""
    from omoi.llm import LLMError, UsageContext, get_provider, text_of, usage_record

    ticket = Ticket.objects.get(pk=ticket_id)
    if not ticket.context_updated_at or ticket.context_updated_at.isoformat() != context_updated_at:
        return False
    context = UsageContext(conversation_key="context_summary", spec_id=ticket.spec_id, phase=ticket.phase)
    try:
        response = get_provider().complete(
            system=SUMMARY_SYSTEM_PROMPT,
            messages=[{"role": "user", "content": json.dumps(ticket.context, sort_keys=True)[:50_000]}],
            tools=[],
            context=context,
            max_tokens=800,
        )
        usage_record(provider=response.provider, model=response.model, usage=response.usage, context=context)
    except LLMError as exc:
        logger.warning("context summary for ticket %s kept rule-based: %s", ticket_id, exc)
        return False
    summary = _clip(text_of(response.content), CONTEXT_SUMMARY_LIMIT)
    if not summary:
        return False
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update(no_key=True).get(pk=ticket_id)
        if not ticket.context_updated_at or ticket.context_updated_at.isoformat() != context_updated_at:
            return False
        ticket.context_summary = storable(summary)
        ticket.save(update_fields=["context_summary", "updated_at"])
    return True
