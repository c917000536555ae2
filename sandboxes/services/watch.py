"""The guardian at work: before each turn of a run, assess its recent turns (sandboxes/guardian.py)
and act on the assessment — queue a nudge or an escalation for the next turn (delivered with it,
like an operator's message) with its event, record flags, or tell the caller to stop the run."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from omoi.models import LLMUsage
from sandboxes.guardian import ESCALATE, NUDGE, STOP, Assessment, assess
from sandboxes.models import AgentRun, QueuedMessage
from sandboxes.services.agent import run_messages
from sandboxes.services.events import event_record, truncate_text


def files_written(messages: list[dict]) -> list[str]:
    """The paths the run wrote or edited, as its tool calls name them."""
    paths = []
    for message in messages:
        if message.get("role") != "assistant":
            continue
        for block in message.get("content") or []:
            if isinstance(block, dict) and block.get("name") in ("write_file", "edit_file"):
                path = str((block.get("input") or {}).get("path", "")).strip().lstrip("./")
                if path and path not in paths:
                    paths.append(path)
    return paths


def guardian_review(
    *,
    run: AgentRun,
    ticket_id: int | None = None,
    planned_files: list[str] | None = None,
    changed_files: list[str] | None = None,
    changes_files: bool = True,
    messages: list[dict] | None = None,
) -> Assessment:
    """Assess the run and act: a nudge or an escalation is queued for the coming turn (and its
    event recorded); a stop is only answered (the caller ends the run and blocks the work)."""
    if not settings.OMOI_GUARDIAN_ENABLED or run.turns == 0:
        return Assessment(findings=[], step=0)
    messages = run_messages(run) if messages is None else messages
    if changed_files is None:
        changed_files = files_written(messages)
    costs = [
        Decimal(cost)
        for cost in LLMUsage.objects.filter(agent_run_id=run.pk).order_by("turn").values_list("cost_usd", flat=True)
    ]
    assessment = assess(
        messages=messages,
        level=run.guardian_level,
        last_step_turn=run.guardian_turn,
        turn_costs=costs,
        planned_files=planned_files,
        changed_files=changed_files,
        changes_files=changes_files,
    )
    common = {"spec_id": run.spec_id, "ticket_id": ticket_id, "task_id": run.task_id, "sandbox_id": run.sandbox_id}
    logged = {entry.get("rule") for entry in run.guardian_log if entry.get("step") == "flag"}
    new_flags = [flag for flag in assessment.flags if flag.rule not in logged]
    if not assessment.step and not new_flags:
        return assessment
    with transaction.atomic():
        locked = AgentRun.objects.select_for_update(no_key=True).get(pk=run.pk)
        log = list(locked.guardian_log)
        for flag in new_flags:
            log.append({"step": "flag", "rule": flag.rule, "evidence": flag.evidence, "turn": locked.turns})
            event_record(
                type="guardian.flagged",
                payload={"run": run.pk, "rule": flag.rule, "evidence": truncate_text(flag.evidence, 1000)},
                **common,
            )
        fields = ["guardian_log", "updated_at"]
        if assessment.step:
            name = {NUDGE: "nudge", ESCALATE: "escalate", STOP: "stop"}[assessment.step]
            findings = [f.as_dict() for f in assessment.findings if f.rule not in {x.rule for x in assessment.flags}]
            log.append({"step": name, "turn": locked.turns, "findings": findings, "at": timezone.now().isoformat()})
            locked.guardian_level, locked.guardian_turn = assessment.step, locked.turns
            fields += ["guardian_level", "guardian_turn"]
            payload = {"run": run.pk, "turn": locked.turns, "findings": findings, "message": assessment.message}
            if assessment.step in (NUDGE, ESCALATE):
                QueuedMessage.objects.create(
                    run=locked, task_id=run.task_id, spec_id=run.spec_id, source="guardian", author="guardian",
                    text=assessment.message,
                )  # fmt: skip
            event_record(
                type={NUDGE: "guardian.nudged", ESCALATE: "guardian.escalated", STOP: "guardian.stopped"}[
                    assessment.step
                ],
                payload=payload,
                **common,
            )
        locked.guardian_log = log
        locked.save(update_fields=fields)
        run.guardian_level, run.guardian_turn, run.guardian_log = locked.guardian_level, locked.guardian_turn, log
    return assessment
