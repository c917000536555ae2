"""The planning state machine: launch, the phases one model turn per step, and the controls.

A spec moves draft → planning → planning_complete → executing → completed, or failed or
cancelled (STATUS_MOVES), only through `spec_transition`, which records each move (events,
timestamps) and makes sure the spec's step runs when the new state has work (omoi.leases: the
"spec" kind; specs/services/steps.py drives it). While planning, `current_phase` walks EXPLORE →
REQUIREMENTS → DESIGN → TASKS → SYNC.

A planning step (`planning_step`) runs one model turn of the current phase's conversation (an
AgentRun, its transcript in the database) in the spec's planning sandbox, under the spec's lease:
a second delivery does nothing, a killed worker's step runs again from the last committed turn, and
a time limit costs one turn, never the spec. When the model submits, the output is validated; a
valid one is saved (rows written now) and the next phase begins; an invalid one goes back to the
model with every problem, a bounded number of times.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from omoi.leases import Held, work_enqueue
from omoi.llm import LLMError
from omoi.text import storable, storable_json
from sandboxes.guardian import STOP
from sandboxes.models import AgentRun, AgentRunKind, AgentRunStatus
from sandboxes.services.agent import (
    BudgetExceeded,
    agent_run_finish,
    agent_run_reply,
    agent_run_start,
    agent_turn_run,
    pending_terminal_call,
)
from sandboxes.services.events import event_record, events_batch, truncate_text
from sandboxes.services.sandbox import sandbox_acquire, sandbox_live, sandbox_release
from sandboxes.services.watch import guardian_review
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
    S.PLANNING_COMPLETE: {S.PLANNING, S.EXECUTING, S.FAILED, S.CANCELLED},
    S.EXECUTING: {S.COMPLETED, S.FAILED, S.CANCELLED},
    S.FAILED: {S.PLANNING, S.PLANNING_COMPLETE, S.EXECUTING},  # a retry resumes where it failed
    S.COMPLETED: set(),
    S.CANCELLED: set(),
}
PLANNING_PHASES = [SpecPhase.EXPLORE, SpecPhase.REQUIREMENTS, SpecPhase.DESIGN, SpecPhase.TASKS, SpecPhase.SYNC]
CONVERSATION_PHASES = PLANNING_PHASES[:4]
NEXT_PHASE = dict(zip(PLANNING_PHASES[:-1], PLANNING_PHASES[1:], strict=True))
CANCELLABLE = {S.DRAFT, S.PLANNING, S.PLANNING_COMPLETE, S.EXECUTING}
DEFAULT_PLANNING_MAX_TURNS = 30
SPEC_KIND = "spec"


class SpecConflict(Exception):
    """A control or move that makes no sense in the spec's current state (answers 409)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _max_turns() -> int:
    return int(getattr(settings, "OMOI_PLANNING_MAX_TURNS", DEFAULT_PLANNING_MAX_TURNS))


def _actor(user) -> str:
    return getattr(user, "username", "") or "system"


def spec_work_enqueue(*, spec_id: int) -> None:
    """The spec has work (a planning turn, the bridge, completion, the pull request): make sure
    its step runs, after commit."""
    work_enqueue(kind=SPEC_KIND, object_id=spec_id)


# --- The one move service ---------------------------------------------------------------------


@transaction.atomic
def spec_transition(
    *,
    spec_id: int,
    status: str,
    phase: str | None = None,
    actor: str,
    reason: str = "",
    error: str = "",
    changes: dict[str, Any] | None = None,
) -> Spec:
    """Move the spec to `status` (and `phase`, default: keep the current one): the only code that
    changes Spec.status. Checks STATUS_MOVES, applies `changes` (other fields the move sets), records
    the move, and makes sure the spec's step runs when the new state has work. Moving to where the
    spec already is changes nothing."""
    spec = Spec.objects.select_for_update(no_key=True).get(pk=spec_id)
    phase = phase or spec.current_phase
    if spec.status == status and spec.current_phase == phase:
        return spec
    if status not in STATUS_MOVES[spec.status]:
        raise SpecConflict(f"a {spec.status} spec cannot become {status}")
    previous_status, previous_phase = spec.status, spec.current_phase
    now = timezone.now()
    spec.status, spec.current_phase = status, phase
    fields = ["status", "current_phase", "updated_at"]
    for name, value in (changes or {}).items():
        setattr(spec, name, value)
        fields.append(name)
    if status in (S.PLANNING, S.EXECUTING):
        spec.last_error = ""
        fields.append("last_error")
    if status == S.PLANNING:
        spec.phase_started_at = now
        fields.append("phase_started_at")
    if status == S.FAILED:
        spec.last_error = storable(error or reason or "failed", 4000)
        fields.append("last_error")
    if status == S.COMPLETED:
        spec.completed_at, spec.progress = now, 100
        fields += ["completed_at", "progress"]
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
                "reason": storable(reason, 2000),
            },
            spec_id=spec.pk,
        )
    if status == S.PLANNING:
        event_record(
            type="spec.phase_started",
            payload={"phase": phase, "attempts_used": spec.phase_attempts.get(phase, 0), "reason": reason},
            spec_id=spec.pk,
        )
        spec_work_enqueue(spec_id=spec.pk)
    if implicit_approval:
        event_record(type="spec.approved", payload={"implicit": True, "actor": actor}, spec_id=spec.pk)
    if status == S.PLANNING_COMPLETE and spec.approved_at is not None:
        spec_work_enqueue(spec_id=spec.pk)  # the bridge
    if status == S.COMPLETED:
        spec_work_enqueue(spec_id=spec.pk)  # the pull request step
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
    spec_work_enqueue(spec_id=spec.pk)
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
        from tickets.models import Ticket

        if not Ticket.objects.filter(spec=spec).exists():
            # The bridge itself failed: run it again.
            return spec_transition(
                spec_id=spec.pk, status=S.PLANNING_COMPLETE, phase=SpecPhase.SYNC, actor=_actor(user), reason="retry"
            )
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
    _release_planning_sandbox_on_commit(spec.pk)
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


# --- Running a phase, one turn per step -------------------------------------------------------


def _active_run(spec_id: int, phase: str) -> AgentRun | None:
    return (
        AgentRun.objects.filter(spec_id=spec_id, kind=AgentRunKind.PLANNING, phase=phase, status=AgentRunStatus.RUNNING)
        .order_by("-id")
        .first()
    )


def planning_accounts(spec: Spec) -> list:
    """The accounts planning's model calls are charged to: the spec and its project's day."""
    from decimal import Decimal

    from omoi.budgets import Account, project_day_key
    from tickets.services.execution.runs import spec_budget_usd

    return [
        Account(key=f"spec:{spec.pk}", limit_usd=spec_budget_usd(spec), label="the spec"),
        Account(
            key=project_day_key(spec.project_id),
            limit_usd=Decimal(str(settings.OMOI_PROJECT_DAILY_BUDGET_USD)),
            label="the project today",
        ),
    ]


def planning_workspace(*, spec: Spec):
    """The spec's planning sandbox (one for all of planning): the project's default branch,
    detached, made once from this worker's mirror of the repository."""
    from tickets.services.repository import planning_start_point

    def start() -> tuple[str, str]:
        mirror, sha = planning_start_point(spec=spec)
        return str(mirror), sha

    return sandbox_acquire(
        spec_id=spec.pk, ticket_id=None, source=start, branch=None, network_allowed=spec.project.network_allowed
    )


def _release_planning_sandbox_on_commit(spec_id: int) -> None:
    sandbox = sandbox_live(spec_id=spec_id)
    if sandbox is not None:
        sandbox_id = sandbox.pk
        transaction.on_commit(lambda: sandbox_release(sandbox_id=sandbox_id), robust=True)


def planning_step(*, spec: Spec, held: Held) -> str:
    """One step of planning: SYNC, or one model turn of the current phase with its submit handled.
    Returns what happened: "turn", "completed" (the phase), "retry" (invalid output sent back),
    "failed", "stale"."""
    phase = spec.current_phase
    if phase == SpecPhase.SYNC:
        return _sync_phase(spec_id=spec.pk, held=held)
    if phase not in CONVERSATION_PHASES:
        return "stale"
    try:
        _sandbox, workspace = planning_workspace(spec=spec)
    except Exception as exc:  # noqa: BLE001 — classified: transient ones are retried by the lease
        from omoi.retry import is_transient

        if is_transient(exc):
            raise
        project = spec.project
        _phase_fail(
            spec_id=spec.pk,
            phase=phase,
            held=held,
            error=f"the repository {project.repository} ({project.default_branch}) could not be checked out: {exc}",
        )
        return "failed"
    submit_name = SUBMIT_TOOL_NAMES[phase]
    run = _active_run(spec.pk, phase)
    if run is None:
        run = agent_run_start(
            kind=AgentRunKind.PLANNING,
            spec_id=spec.pk,
            phase=phase,
            system_prompt=prompts.system_prompt(phase),
            first_message=prompts.first_message(spec, phase),
            sandbox_id=_sandbox.pk,
        )
    call = pending_terminal_call(run, {submit_name})
    if call is None:
        if run.turns >= _max_turns():
            agent_run_finish(run_id=run.pk, status=AgentRunStatus.FAILED, stop_reason="turn limit reached")
            _phase_fail(
                spec_id=spec.pk,
                phase=phase,
                held=held,
                error=f"the model did not call {submit_name} within {_max_turns()} turns",
            )
            return "failed"
        review = guardian_review(run=run, changes_files=False)
        if review.step == STOP:
            agent_run_finish(run_id=run.pk, status=AgentRunStatus.FAILED, stop_reason="stopped by the guardian")
            _phase_fail(spec_id=spec.pk, phase=phase, held=held, error=review.message)
            return "stuck"
        try:
            outcome = agent_turn_run(
                run=run,
                workspace=workspace,
                tools=[*READ_ONLY_TOOLS, submit_tool(phase)],
                terminal_tools={submit_name},
                conversation_key=phase,
                before_tools=held.check,
                accounts=planning_accounts(spec),
            )
        except BudgetExceeded as exc:
            agent_run_finish(run_id=run.pk, status=AgentRunStatus.FAILED, stop_reason=exc.refusal.message[:250])
            _phase_fail(spec_id=spec.pk, phase=phase, held=held, error=exc.refusal.message)
            return "budget"
        except LLMError as exc:
            if exc.transient:
                raise
            _phase_fail(spec_id=spec.pk, phase=phase, held=held, error=f"the model could not be used: {exc}")
            return "failed"
        if outcome.kind != "terminal":
            with transaction.atomic():
                held.finish(more=True)
            return "turn"
        call = {"id": outcome.tool_use_id, "name": outcome.name, "input": outcome.input}
    return _submit_handle(spec_id=spec.pk, phase=phase, held=held, run=run, call=call)


def _problems_message(problems: list[str], attempt: int, max_attempts: int) -> str:
    left = max_attempts - attempt
    lines = "\n".join(f"- {problem}" for problem in problems)
    tail = (
        f"Fix every problem and call the tool again ({left} attempt{'s' if left != 1 else ''} left)."
        if left > 0
        else "No attempts are left; planning of this phase has failed."
    )
    return f"The submission was rejected ({len(problems)} problem{'s' if len(problems) != 1 else ''}):\n{lines}\n{tail}"


def _locked_if_planning(spec_id: int, phase: str) -> Spec | None:
    spec = Spec.objects.select_for_update(no_key=True).get(pk=spec_id)
    if spec.status != S.PLANNING or spec.current_phase != phase:
        return None
    return spec


def _submit_handle(*, spec_id: int, phase: str, held: Held, run: AgentRun, call: dict[str, Any]) -> str:
    requirement_keys: list[str] = []
    if phase == SpecPhase.TASKS:
        requirement_keys = list(
            SpecRequirement.objects.filter(spec_id=spec_id).order_by("position", "id").values_list("key", flat=True)
        )
    output, problems = phase_output_validate(phase=phase, data=call.get("input"), requirement_keys=requirement_keys)
    max_attempts = settings.OMOI_PHASE_MAX_ATTEMPTS
    with events_batch():
        held.finish(more=True)
        spec = _locked_if_planning(spec_id, phase)
        if spec is None:
            return "stale"
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
                held=None,
                error=f"the {phase} output was still invalid after {attempt} attempts:\n{listing}",
                problems=problems,
            )
            return "failed"

        data = storable_json(output.model_dump(mode="json"))  # type: ignore[union-attr]
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


def _sync_phase(*, spec_id: int, held: Held) -> str:
    """SYNC: reconcile the rows with the saved phase output (normally already equal: a no-op),
    then planning is complete (and, without approval required, the bridge runs next)."""
    with events_batch():
        held.finish(more=True)
        spec = _locked_if_planning(spec_id, SpecPhase.SYNC)
        if spec is None:
            return "stale"
        requirements = (spec.phase_data.get(SpecPhase.REQUIREMENTS) or {}).get("requirements")
        tasks = (spec.phase_data.get(SpecPhase.TASKS) or {}).get("tasks")
        if not tasks:
            _phase_fail(spec_id=spec.pk, phase=SpecPhase.SYNC, held=None, error="there is no tasks output to sync")
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
        _release_planning_sandbox_on_commit(spec.pk)
    return "completed"


def _phase_fail(*, spec_id: int, phase: str, held: Held | None, error: str, problems: list[str] | None = None) -> bool:
    """The phase failed: the spec becomes failed at this phase, with a readable last_error (inside
    the step's transaction when `held` is given, which then ends the step)."""
    error = storable(error, 4000)
    with events_batch():
        if held is not None:
            held.finish()
        spec = _locked_if_planning(spec_id, phase)
        if spec is None:
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
        _release_planning_sandbox_on_commit(spec.pk)
    return True


def spec_message_send(*, spec_id: int, text: str, author: str, idempotency_key: str = ""):
    """Queue `text` for the spec's planning agent, delivered exactly once at the next turn of the
    running phase. Returns (message, created); a repeated idempotency_key answers the first message.
    SpecConflict unless a planning phase with a conversation runs."""
    from django.db import IntegrityError

    from sandboxes.models import QueuedMessage

    text = storable(text.strip(), 10_000)
    if not text:
        raise ValueError("the message is empty")
    key = storable(idempotency_key.strip(), 200)
    with transaction.atomic():
        spec = Spec.objects.select_for_update(no_key=True).get(pk=spec_id)
        if key:
            existing = QueuedMessage.objects.filter(spec_id=spec.pk, task__isnull=True, idempotency_key=key).first()
            if existing is not None:
                return existing, False
        if spec.status != S.PLANNING or spec.current_phase not in CONVERSATION_PHASES:
            raise SpecConflict(
                f"only a spec in a planning conversation takes messages; this spec is {spec.status} "
                f"({spec.current_phase})"
            )
        try:
            with transaction.atomic():
                message = QueuedMessage.objects.create(
                    spec_id=spec.pk, source="operator", author=author, text=text, idempotency_key=key
                )
        except IntegrityError:
            return QueuedMessage.objects.get(spec_id=spec.pk, task__isnull=True, idempotency_key=key), False
        event_record(
            type="agent.message_queued",
            payload={"message": message.pk, "author": author, "text": truncate_text(text, 2000)},
            spec_id=spec.pk,
        )
    return message, True


def spec_budget_set(*, spec_id: int, budget_usd, user) -> Spec:
    """Set the spec's budget (raising it and retrying resumes work a budget stopped)."""
    from decimal import Decimal

    from omoi.models import BudgetAccount
    from tickets.services.execution.runs import spec_budget_usd

    with transaction.atomic():
        spec = Spec.objects.select_for_update(no_key=True).get(pk=spec_id)
        spec.budget_usd = Decimal(budget_usd) if budget_usd is not None else None
        spec.save(update_fields=["budget_usd", "updated_at"])
        BudgetAccount.objects.filter(key=f"spec:{spec.pk}").update(limit_usd=spec_budget_usd(spec))
        event_record(
            type="spec.budget_changed",
            payload={"budget_usd": str(spec_budget_usd(spec)), "actor": _actor(user)},
            spec_id=spec.pk,
        )
    return spec
