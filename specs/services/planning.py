"""The planning state machine: launch, the phases as a chain of Celery tasks, and the controls.

A spec moves draft → planning → planning_complete → executing → completed, or failed or
cancelled (STATUS_MOVES). While planning, `current_phase` walks EXPLORE → REQUIREMENTS → DESIGN →
TASKS → SYNC. Every move goes through `spec_transition`, which records it (events, timestamps)
and enqueues what comes next on commit: the next phase's task, or the bridge when approval is
implicit.

A phase task (`planning_phase_run`) first claims the phase with a conditional UPDATE of
`Spec.phase_claim`, so a phase never runs twice at once; a duplicate delivery finds the spec past
that phase (or the claim taken) and changes nothing. The claim's holder beats `phase_heartbeat_at`
before every model turn; the sweeper (`planning_sweep`) breaks a claim whose heartbeat is older
than OMOI_PLANNING_STUCK_AFTER_S and re-enqueues the phase, and a holder that lost its claim stops
at its next beat without saving anything. The conversation itself is an AgentRun (transcript in
the database), so a phase resumed after a crash continues where its transcript ends.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from omoi.llm import LLMError, get_provider, tool_uses_of
from sandboxes.models import AgentRun, AgentRunKind, AgentRunStatus
from sandboxes.services.agent import agent_run_finish, agent_run_reply, agent_run_start, agent_turn_run
from sandboxes.services.events import event_record, truncate_text
from sandboxes.services.sandbox import sandbox_acquire, sandbox_release
from sandboxes.tools import READ_ONLY_TOOLS
from specs import prompts
from specs.models import Spec, SpecPhase, SpecRequirement, SpecStatus
from specs.schemas import SUBMIT_TOOL_NAMES, submit_tool
from specs.services import sync
from specs.validation import phase_output_validate
from tickets.models import Project

logger = logging.getLogger(__name__)

S = SpecStatus
STATUS_MOVES: dict[str, set[str]] = {
    S.DRAFT: {S.PLANNING, S.CANCELLED},
    S.PLANNING: {S.PLANNING, S.PLANNING_COMPLETE, S.FAILED, S.CANCELLED},
    S.PLANNING_COMPLETE: {S.PLANNING, S.EXECUTING, S.CANCELLED},
    S.EXECUTING: {S.COMPLETED, S.FAILED, S.CANCELLED},
    S.FAILED: {S.PLANNING},
    S.COMPLETED: set(),
    S.CANCELLED: set(),
}
PLANNING_PHASES = [SpecPhase.EXPLORE, SpecPhase.REQUIREMENTS, SpecPhase.DESIGN, SpecPhase.TASKS, SpecPhase.SYNC]
CONVERSATION_PHASES = PLANNING_PHASES[:4]
NEXT_PHASE = dict(zip(PLANNING_PHASES[:-1], PLANNING_PHASES[1:], strict=True))
CANCELLABLE = {S.DRAFT, S.PLANNING, S.PLANNING_COMPLETE, S.EXECUTING}
DEFAULT_PLANNING_MAX_TURNS = 30
SWEEP_BATCH = 100


class SpecConflict(Exception):
    """A control or move that makes no sense in the spec's current state (answers 409)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _max_turns() -> int:
    return int(getattr(settings, "OMOI_PLANNING_MAX_TURNS", DEFAULT_PLANNING_MAX_TURNS))


def _actor(user) -> str:
    return getattr(user, "username", "") or "system"


def _enqueue_phase(spec_id: int, phase: str) -> None:
    from specs.tasks import planning_phase_task

    planning_phase_task.delay_on_commit(spec_id, phase)


def _enqueue_execute(spec_id: int, actor: str) -> None:
    from specs.tasks import spec_execute_task

    spec_execute_task.delay_on_commit(spec_id, actor)


# --- The one move service ---------------------------------------------------------------------


@transaction.atomic
def spec_transition(
    *, spec_id: int, status: str, phase: str | None = None, actor: str, reason: str = "", error: str = ""
) -> Spec:
    """Move the spec to `status` (and `phase`, default: keep the current one), record the move, and
    enqueue what follows on commit. Moving to where the spec already is changes nothing."""
    spec = Spec.objects.select_for_update(no_key=True).get(pk=spec_id)
    phase = phase or spec.current_phase
    if spec.status == status and spec.current_phase == phase:
        return spec
    if status not in STATUS_MOVES[spec.status]:
        raise SpecConflict(f"a {spec.status} spec cannot become {status}")
    previous_status, previous_phase = spec.status, spec.current_phase
    now = timezone.now()
    spec.status, spec.current_phase, spec.phase_claim = status, phase, ""
    fields = ["status", "current_phase", "phase_claim", "phase_heartbeat_at", "updated_at"]
    if status == S.PLANNING:
        spec.phase_started_at = spec.phase_heartbeat_at = now
        spec.last_error = ""
        fields += ["phase_started_at", "last_error"]
    else:
        spec.phase_heartbeat_at = None
    if status == S.FAILED:
        spec.last_error = error or reason or "failed"
        fields.append("last_error")
    implicit_approval = status == S.PLANNING_COMPLETE and not spec.require_approval and spec.approved_at is None
    if implicit_approval:
        spec.approved_at = now
        fields.append("approved_at")
    spec.save(update_fields=list(dict.fromkeys(fields)))

    if previous_status != status:
        event_record(
            type="spec.status_changed",
            payload={
                "from": previous_status,
                "to": status,
                "phase": phase,
                "previous_phase": previous_phase,
                "actor": actor,
                "reason": reason,
            },
            spec_id=spec.pk,
        )
    if status == S.PLANNING:
        event_record(
            type="spec.phase_started",
            payload={"phase": phase, "attempts_used": spec.phase_attempts.get(phase, 0), "reason": reason},
            spec_id=spec.pk,
        )
        _enqueue_phase(spec.pk, phase)
    if implicit_approval:
        event_record(type="spec.approved", payload={"implicit": True, "actor": actor}, spec_id=spec.pk)
        _enqueue_execute(spec.pk, actor)
    return spec


# --- Launch and the controls --------------------------------------------------------------------


def _title_from(idea: str) -> str:
    line = next((line.strip() for line in idea.splitlines() if line.strip()), "Untitled spec")
    return line if len(line) <= 80 else line[:79].rstrip() + "…"


@transaction.atomic
def spec_launch(*, project_id: int, user, idea: str, title: str = "", require_approval: bool = True) -> Spec:
    """Create a spec for `idea` and start planning it: the EXPLORE task runs after commit. Two
    launches make two specs; each spec's phases run once."""
    idea = idea.strip()
    if not idea:
        raise ValueError("the idea is empty")
    project = Project.objects.get(pk=project_id)
    spec = Spec.objects.create(
        project=project,
        user=user,
        title=(title.strip() or _title_from(idea))[:500],
        idea=idea,
        status=S.DRAFT,
        current_phase=SpecPhase.EXPLORE,
        require_approval=require_approval,
    )
    event_record(
        type="spec.launched",
        payload={
            "title": spec.title,
            "project": project.pk,
            "require_approval": require_approval,
            "actor": _actor(user),
        },
        spec_id=spec.pk,
    )
    return spec_transition(
        spec_id=spec.pk, status=S.PLANNING, phase=SpecPhase.EXPLORE, actor=_actor(user), reason="launched"
    )


@transaction.atomic
def spec_approve(*, spec_id: int, user) -> Spec:
    """Approve a planned spec: the bridge turns its tasks into tickets after commit. Approving an
    approved spec again only re-sends the (idempotent) bridge task."""
    spec = Spec.objects.select_for_update(no_key=True).get(pk=spec_id)
    if spec.status != S.PLANNING_COMPLETE:
        raise SpecConflict(f"only a spec whose planning is complete can be approved; this spec is {spec.status}")
    if spec.approved_at is None:
        spec.approved_at, spec.approved_by = timezone.now(), user
        spec.save(update_fields=["approved_at", "approved_by", "updated_at"])
        event_record(type="spec.approved", payload={"implicit": False, "actor": _actor(user)}, spec_id=spec.pk)
    _enqueue_execute(spec.pk, _actor(user))
    return spec


@transaction.atomic
def spec_retry(*, spec_id: int, user) -> Spec:
    """Resume a failed spec at the phase that failed, with fresh attempts. Earlier phases' output
    (phase_data, design, requirement and task rows) is reused, not recomputed."""
    spec = Spec.objects.select_for_update(no_key=True).get(pk=spec_id)
    if spec.status != S.FAILED:
        raise SpecConflict(f"only a failed spec can be retried; this spec is {spec.status}")
    if spec.current_phase == SpecPhase.EXECUTE:
        from specs.services.bridge import spec_execution_resume

        return spec_execution_resume(spec_id=spec.pk, actor=_actor(user))
    if spec.current_phase not in PLANNING_PHASES:
        raise SpecConflict(f"this spec failed during {spec.current_phase}, which cannot be retried")
    spec.phase_attempts = {**spec.phase_attempts, spec.current_phase: 0}
    spec.save(update_fields=["phase_attempts", "updated_at"])
    return spec_transition(spec_id=spec.pk, status=S.PLANNING, actor=_actor(user), reason="retry")


@transaction.atomic
def spec_cancel(*, spec_id: int, user) -> Spec:
    spec = Spec.objects.select_for_update(no_key=True).get(pk=spec_id)
    if spec.status not in CANCELLABLE:
        raise SpecConflict(f"a {spec.status} spec cannot be cancelled")
    was_executing = spec.status == S.EXECUTING
    spec = spec_transition(spec_id=spec.pk, status=S.CANCELLED, actor=_actor(user), reason="cancelled")
    if was_executing:
        from specs.services.bridge import spec_execution_stop

        spec_execution_stop(spec_id=spec.pk, actor=_actor(user))
    running = AgentRun.objects.filter(spec=spec, kind=AgentRunKind.PLANNING, status=AgentRunStatus.RUNNING)
    for run_id in running.values_list("pk", flat=True):
        agent_run_finish(run_id=run_id, status=AgentRunStatus.CANCELLED, stop_reason="the spec was cancelled")
    return spec


@transaction.atomic
def spec_replan(*, spec_id: int, user) -> Spec:
    """Re-run DESIGN and TASKS with the requirements as they are now (edits included), then SYNC,
    which reconciles the task rows by key: unchanged tasks keep their rows (and their tickets).
    A re-planned spec needs approving again."""
    spec = Spec.objects.select_for_update(no_key=True).get(pk=spec_id)
    if spec.status not in (S.PLANNING_COMPLETE, S.FAILED):
        raise SpecConflict(f"only a planned or failed spec can be re-planned; this spec is {spec.status}")
    if not SpecRequirement.objects.filter(spec=spec).exists():
        raise SpecConflict("this spec has no requirements yet: retry it instead of re-planning")
    later = {SpecPhase.DESIGN, SpecPhase.TASKS, SpecPhase.SYNC}
    spec.phase_attempts = {phase: n for phase, n in spec.phase_attempts.items() if phase not in later}
    spec.approved_at, spec.approved_by = None, None
    spec.save(update_fields=["phase_attempts", "approved_at", "approved_by", "updated_at"])
    event_record(type="spec.replan_requested", payload={"actor": _actor(user)}, spec_id=spec.pk)
    return spec_transition(
        spec_id=spec.pk, status=S.PLANNING, phase=SpecPhase.DESIGN, actor=_actor(user), reason="replan"
    )


# --- Claims ---------------------------------------------------------------------------------------


def _claim(spec_id: int, phase: str) -> str | None:
    token = uuid.uuid4().hex
    claimed = Spec.objects.filter(pk=spec_id, status=S.PLANNING, current_phase=phase, phase_claim="").update(
        phase_claim=token, phase_heartbeat_at=timezone.now()
    )
    return token if claimed else None


def _beat(spec_id: int, token: str) -> bool:
    """Renew the claim's heartbeat; False when the claim is gone (cancelled, or broken by the
    sweeper), and the holder must stop."""
    return bool(
        Spec.objects.filter(pk=spec_id, status=S.PLANNING, phase_claim=token).update(phase_heartbeat_at=timezone.now())
    )


def _locked_if_held(spec_id: int, phase: str, token: str) -> Spec | None:
    spec = Spec.objects.select_for_update(no_key=True).get(pk=spec_id)
    if spec.status != S.PLANNING or spec.current_phase != phase or spec.phase_claim != token:
        return None
    return spec


# --- Running a phase ------------------------------------------------------------------------------


def planning_phase_run(*, spec_id: int, phase: str) -> str:
    """Run one planning phase of the spec, if it is due and nobody else runs it. Returns what
    happened: "stale" (the spec is not planning at this phase: a duplicate delivery), "busy"
    (another runner holds the claim), "completed", "failed", or "lost" (the claim went away:
    cancelled, or broken by the sweeper). Invalid output is repaired within the run."""
    spec = Spec.objects.select_related("project").filter(pk=spec_id).first()
    if spec is None or spec.status != S.PLANNING or spec.current_phase != phase:
        return "stale"
    token = _claim(spec_id, phase)
    if token is None:
        return "busy"
    try:
        if phase == SpecPhase.SYNC:
            return _sync_phase(spec_id=spec_id, token=token)
        return _conversation_phase(spec=spec, phase=phase, token=token)
    except LLMError as exc:
        _phase_fail(spec_id=spec_id, phase=phase, token=token, error=f"the model could not be used: {exc}")
        return "failed"
    except Exception as exc:
        logger.exception("planning phase %s of spec %s failed", phase, spec_id)
        _phase_fail(spec_id=spec_id, phase=phase, token=token, error=f"{phase} failed: {type(exc).__name__}: {exc}")
        return "failed"


def _active_run(spec_id: int, phase: str) -> AgentRun | None:
    return (
        AgentRun.objects.filter(spec_id=spec_id, kind=AgentRunKind.PLANNING, phase=phase, status=AgentRunStatus.RUNNING)
        .order_by("-id")
        .first()
    )


def _pending_submit(run: AgentRun, submit_name: str) -> dict[str, Any] | None:
    """The submit call of the last assistant message, when it still waits for its answer (a crash
    between the model's submit and our reply): it is validated without asking the model again."""
    if not run.messages or run.messages[-1].get("role") != "assistant":
        return None
    for block in tool_uses_of(run.messages[-1].get("content") or []):
        if block.get("name") == submit_name:
            return block
    return None


def _conversation_phase(*, spec: Spec, phase: str, token: str) -> str:
    provider = get_provider()
    project = spec.project
    try:
        sandbox, workspace = sandbox_acquire(
            spec_id=spec.pk, task_id=None, repository=project.repository, base_ref=project.default_branch, branch=None
        )
    except Exception as exc:
        _phase_fail(
            spec_id=spec.pk,
            phase=phase,
            token=token,
            error=f"the repository {project.repository} ({project.default_branch}) could not be checked out: {exc}",
        )
        return "failed"
    submit_name = SUBMIT_TOOL_NAMES[phase]
    tools = [*READ_ONLY_TOOLS, submit_tool(phase)]
    try:
        run = _active_run(spec.pk, phase)
        if run is None:
            run = agent_run_start(
                kind=AgentRunKind.PLANNING,
                spec_id=spec.pk,
                phase=phase,
                system_prompt=prompts.system_prompt(phase),
                first_message=prompts.first_message(spec, phase),
                sandbox_id=sandbox.pk,
            )
        while True:
            if not _beat(spec.pk, token):
                return _lost(spec_id=spec.pk, run=run)
            call = _pending_submit(run, submit_name)
            if call is None:
                if run.turns >= _max_turns():
                    agent_run_finish(run_id=run.pk, status=AgentRunStatus.FAILED, stop_reason="turn limit reached")
                    _phase_fail(
                        spec_id=spec.pk,
                        phase=phase,
                        token=token,
                        error=f"the model did not call {submit_name} within {_max_turns()} turns",
                    )
                    return "failed"
                outcome = agent_turn_run(
                    run_id=run.pk,
                    expected_turn=run.turns,
                    workspace=workspace,
                    tools=tools,
                    terminal_tools={submit_name},
                    conversation_key=phase,
                    provider=provider,
                )
                run.refresh_from_db()
                if outcome.kind == "stale":
                    if run.status != AgentRunStatus.RUNNING:
                        return _lost(spec_id=spec.pk, run=run)
                    continue
                if outcome.kind != "terminal":
                    continue
                call = {"id": outcome.tool_use_id, "name": outcome.name, "input": outcome.input}
            result = _submit_handle(spec_id=spec.pk, phase=phase, token=token, run=run, call=call)
            if result != "retry":
                return result
            run.refresh_from_db()
    finally:
        sandbox_release(sandbox_id=sandbox.pk)


def _lost(*, spec_id: int, run: AgentRun | None) -> str:
    """The claim went away. A cancelled spec's run ends; a run whose claim was broken stays
    running for the new holder to continue."""
    if run is not None and Spec.objects.filter(pk=spec_id, status=S.CANCELLED).exists():
        agent_run_finish(run_id=run.pk, status=AgentRunStatus.CANCELLED, stop_reason="the spec was cancelled")
    return "lost"


def _problems_message(problems: list[str], attempt: int, max_attempts: int) -> str:
    left = max_attempts - attempt
    lines = "\n".join(f"- {problem}" for problem in problems)
    tail = (
        f"Fix every problem and call the tool again ({left} attempt{'s' if left != 1 else ''} left)."
        if left > 0
        else "No attempts are left; planning of this phase has failed."
    )
    return f"The submission was rejected ({len(problems)} problem{'s' if len(problems) != 1 else ''}):\n{lines}\n{tail}"


def _submit_handle(*, spec_id: int, phase: str, token: str, run: AgentRun, call: dict[str, Any]) -> str:
    requirement_keys: list[str] = []
    if phase == SpecPhase.TASKS:
        requirement_keys = list(
            SpecRequirement.objects.filter(spec_id=spec_id).order_by("position", "id").values_list("key", flat=True)
        )
    output, problems = phase_output_validate(phase=phase, data=call.get("input"), requirement_keys=requirement_keys)
    max_attempts = settings.OMOI_PHASE_MAX_ATTEMPTS
    with transaction.atomic():
        spec = _locked_if_held(spec_id, phase, token)
        if spec is None:
            return "lost"
        attempt = int(spec.phase_attempts.get(phase, 0)) + 1
        spec.phase_attempts = {**spec.phase_attempts, phase: attempt}
        if problems:
            agent_run_reply(
                run_id=run.pk,
                tool_use_id=call["id"],
                content=_problems_message(problems, attempt, max_attempts),
                is_error=True,
            )
            if attempt < max_attempts:
                spec.save(update_fields=["phase_attempts", "updated_at"])
                event_record(
                    type="spec.phase_retry",
                    payload={"phase": phase, "attempt": attempt, "max_attempts": max_attempts, "problems": problems},
                    spec_id=spec.pk,
                )
                return "retry"
            spec.save(update_fields=["phase_attempts", "updated_at"])
            agent_run_finish(
                run_id=run.pk, status=AgentRunStatus.FAILED, stop_reason="invalid output, no attempts left"
            )
            listing = "\n".join(f"- {problem}" for problem in problems)
            _phase_fail(
                spec_id=spec.pk,
                phase=phase,
                token=token,
                error=f"the {phase} output was still invalid after {attempt} attempts:\n{listing}",
                problems=problems,
            )
            return "failed"

        data = output.model_dump(mode="json")  # type: ignore[union-attr]
        summary = _phase_output_save(spec=spec, phase=phase, data=data)
        spec.save(update_fields=["phase_data", "design", "phase_attempts", "updated_at"])
        agent_run_reply(run_id=run.pk, tool_use_id=call["id"], content=f"Accepted: {summary}.", is_error=False)
        agent_run_finish(run_id=run.pk, status=AgentRunStatus.FINISHED, stop_reason="submitted", result=data)
        event_record(
            type="spec.phase_completed",
            payload={"phase": phase, "attempts": attempt, "summary": summary, "run": run.pk},
            spec_id=spec.pk,
        )
        spec_transition(spec_id=spec.pk, status=S.PLANNING, phase=NEXT_PHASE[phase], actor="planner")
    return "completed"


def _phase_output_save(*, spec: Spec, phase: str, data: dict[str, Any]) -> str:
    """Keep the phase's validated output where it belongs, writing rows now; a short summary."""
    if phase == SpecPhase.EXPLORE:
        spec.phase_data = {**spec.phase_data, phase: data}
        return f"{data['project_type']}, {len(data['key_files'])} key files, tests: {data['test_command'] or 'none'}"
    if phase == SpecPhase.REQUIREMENTS:
        spec.phase_data = {**spec.phase_data, phase: data}
        counts = sync.requirements_reconcile(spec=spec, requirements=data["requirements"])
        criteria = sum(len(item["acceptance_criteria"]) for item in data["requirements"])
        return f"{len(data['requirements'])} requirements, {criteria} acceptance criteria" + _changes(counts)
    if phase == SpecPhase.DESIGN:
        spec.design = data
        return f"{len(data['components'])} components, {len(data['risks'])} risks"
    spec.phase_data = {**spec.phase_data, phase: data}
    counts = sync.tasks_reconcile(spec=spec, tasks=data["tasks"])
    links = sum(len(item["depends_on"]) for item in data["tasks"])
    return f"{len(data['tasks'])} tasks, {links} dependencies" + _changes(counts)


def _changes(counts: sync.SyncCounts) -> str:
    if not (counts.updated or counts.deleted or counts.kept_with_ticket or counts.unchanged):
        return ""  # a first plan: nothing to compare with
    return (
        f" ({len(counts.created)} new, {len(counts.updated)} changed, {counts.unchanged} unchanged, "
        f"{len(counts.deleted)} removed, {len(counts.kept_with_ticket)} kept for their tickets)"
    )


def _sync_phase(*, spec_id: int, token: str) -> str:
    """SYNC: reconcile the rows with the saved phase output (normally already equal: a no-op),
    then planning is complete."""
    with transaction.atomic():
        spec = _locked_if_held(spec_id, SpecPhase.SYNC, token)
        if spec is None:
            return "lost"
        requirements = (spec.phase_data.get(SpecPhase.REQUIREMENTS) or {}).get("requirements")
        tasks = (spec.phase_data.get(SpecPhase.TASKS) or {}).get("tasks")
        if not tasks:
            _phase_fail(spec_id=spec.pk, phase=SpecPhase.SYNC, token=token, error="there is no tasks output to sync")
            return "failed"
        # Requirement rows are the truth once written (edits go to both); phase_data mirrors them.
        requirement_counts = (
            sync.requirements_reconcile(spec=spec, requirements=requirements) if requirements else sync.SyncCounts()
        )
        task_counts = sync.tasks_reconcile(spec=spec, tasks=tasks)
        counts = sync.spec_counts(spec=spec)
        attempt = int(spec.phase_attempts.get(SpecPhase.SYNC, 0)) + 1
        spec.phase_attempts = {**spec.phase_attempts, SpecPhase.SYNC: attempt}
        spec.save(update_fields=["phase_attempts", "updated_at"])
        event_record(
            type="spec.phase_completed",
            payload={
                "phase": SpecPhase.SYNC,
                "attempts": attempt,
                "summary": f"{counts['requirements']} requirements, {counts['tasks']} tasks in sync",
                "requirements": requirement_counts.as_dict(),
                "tasks": task_counts.as_dict(),
            },
            spec_id=spec.pk,
        )
        event_record(
            type="spec.planning_complete",
            payload={**counts, "require_approval": spec.require_approval},
            spec_id=spec.pk,
        )
        spec_transition(spec_id=spec.pk, status=S.PLANNING_COMPLETE, actor="planner", reason="planning complete")
    return "completed"


def _phase_fail(*, spec_id: int, phase: str, token: str | None, error: str, problems: list[str] | None = None) -> bool:
    """The phase failed: the spec becomes failed at this phase, with a readable last_error."""
    with transaction.atomic():
        spec = Spec.objects.select_for_update(no_key=True).get(pk=spec_id)
        if spec.status != S.PLANNING or spec.current_phase != phase or (token and spec.phase_claim != token):
            return False
        attempts = int(spec.phase_attempts.get(phase, 0))
        event_record(
            type="spec.phase_failed",
            payload={"phase": phase, "attempts": attempts, "error": truncate_text(error), "problems": problems or []},
            spec_id=spec.pk,
        )
        spec_transition(spec_id=spec.pk, status=S.FAILED, actor="planner", reason=f"{phase} failed", error=error)
        run = _active_run(spec.pk, phase)
        if run is not None:
            agent_run_finish(run_id=run.pk, status=AgentRunStatus.FAILED, stop_reason=truncate_text(error, 250))
    return True


# --- Nothing stuck --------------------------------------------------------------------------------


def planning_sweep(*, now=None) -> list[int]:
    """Re-enqueue the current phase of every spec planning without a sign of life for
    OMOI_PLANNING_STUCK_AFTER_S (a lost message or a dead worker), breaking its stale claim; and
    re-send the bridge task of approved specs still waiting to execute. Returns the spec ids."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.OMOI_PLANNING_STUCK_AFTER_S)
    swept: list[int] = []
    stuck_ids = list(
        Spec.objects.filter(status=S.PLANNING, phase_heartbeat_at__lt=cutoff)
        .order_by("phase_heartbeat_at")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    stuck_ids += list(
        Spec.objects.filter(status=S.PLANNING, phase_heartbeat_at__isnull=True).values_list("pk", flat=True)[
            :SWEEP_BATCH
        ]
    )
    for spec_id in stuck_ids:
        with transaction.atomic():
            spec = Spec.objects.select_for_update(no_key=True).get(pk=spec_id)
            if spec.status != S.PLANNING or (spec.phase_heartbeat_at and spec.phase_heartbeat_at >= cutoff):
                continue
            idle = (now - spec.phase_heartbeat_at).total_seconds() if spec.phase_heartbeat_at else None
            claim_broken = bool(spec.phase_claim)
            spec.phase_claim, spec.phase_heartbeat_at = "", now
            spec.save(update_fields=["phase_claim", "phase_heartbeat_at", "updated_at"])
            event_record(
                type="spec.phase_requeued",
                payload={"phase": spec.current_phase, "idle_s": idle, "claim_broken": claim_broken},
                spec_id=spec.pk,
            )
            _enqueue_phase(spec.pk, spec.current_phase)
            swept.append(spec.pk)
    waiting = Spec.objects.filter(
        status=S.PLANNING_COMPLETE, approved_at__isnull=False, updated_at__lt=cutoff
    ).values_list("pk", flat=True)[:SWEEP_BATCH]
    for spec_id in list(waiting):
        with transaction.atomic():
            updated = Spec.objects.filter(
                pk=spec_id, status=S.PLANNING_COMPLETE, approved_at__isnull=False, updated_at__lt=cutoff
            ).update(updated_at=now)
            if updated:
                _enqueue_execute(spec_id, "sweeper")
                swept.append(spec_id)
    return swept
