"""A ticket's step: the one unit of work that moves a ticket, under the ticket's lease.

Everything on a ticket runs one step at a time (its tasks share one branch and one sandbox), so a
single lease per ticket (kind "ticket") serialises them and a single Celery task carries them:

    ticket_step(ticket_id)
      claim the lease, then repeat until an action that talks to the outside world ends the step:
        progression     no open task in the phase: judge the gate, move on (inline)
        start           the next runnable task: pending → running; a planned document is taken
                        from the spec inline; an agent task gets its run and its first turn; a host
                        task runs
        turn            one model turn of the running task's run (and the host's verification
                        when the model calls finish)
        host            the test run or the merge
      the outcome is committed with the lease's hand-off to the next step, sent on commit

So a ticket costs a handful of hops: one per model turn, one per host step. A lost message or a
killed worker is found by the reconciler (an expired lease, a ticket that should move and has no
lease) and the step runs again: each action re-reads the database, so repeating one is harmless.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Case, Exists, OuterRef, Q, Subquery, When

from omoi.leases import Held, LeaseLost, WorkKind, lease_claim, work_enqueue, work_kind_register
from omoi.nodes import node_queue
from omoi.retry import describe_error, is_transient
from sandboxes.guardian import STOP
from sandboxes.models import LIVE_SANDBOX_STATUSES, AgentRunStatus, Sandbox
from sandboxes.services.agent import AgentRunError, BudgetExceeded
from sandboxes.services.events import events_batch
from sandboxes.services.sandbox import SandboxElsewhere, sandbox_live, sandbox_release
from sandboxes.services.watch import guardian_review
from sandboxes.workspace import CommandRefused
from tickets.models import BlockedReason, Phase, Task, TaskStatus, Ticket, TicketDependency
from tickets.selectors import dependencies_done
from tickets.workflow import WORKING_PHASES

logger = logging.getLogger(__name__)

KIND = "ticket"
MAX_INLINE_ACTIONS = 16
FINAL_SPEC_STATUSES = {"cancelled", "completed"}


def ticket_work_enqueue(*, ticket_id: int) -> None:
    """The ticket may have work: make sure its step runs (after commit)."""
    work_enqueue(kind=KIND, object_id=ticket_id)


def ticket_route(ticket_id: int) -> str:
    """The ticket's steps go to the node holding its local sandbox, else to the execution queue."""
    node = (
        Sandbox.objects.filter(ticket_id=ticket_id, status__in=LIVE_SANDBOX_STATUSES)
        .exclude(node="")
        .values_list("node", flat=True)
        .first()
    )
    return node_queue(node) if node else "execution"


def ticket_labels(ticket_ids: list[int]) -> dict[int, str]:
    """Each ticket's next step in words (Flower shows it as the step's arguments): "ticket 7
    TSK-002 IMPLEMENTATION implement_feature" — its planned task, its phase and the task at work
    there (the running one, else the next pending one). One query."""
    at_work = (
        Task.objects.filter(
            ticket=OuterRef("pk"), phase=OuterRef("phase"), status__in=[TaskStatus.RUNNING, TaskStatus.PENDING]
        )
        .order_by(Case(When(status=TaskStatus.RUNNING, then=0), default=1), "id")
        .values("task_type")[:1]
    )
    rows = (
        Ticket.objects.filter(pk__in=ticket_ids)
        .annotate(at_work=Subquery(at_work))
        .values_list("pk", "spec_task__key", "phase", "at_work")
    )
    return {pk: " ".join(filter(None, [f"ticket {pk}", key, phase, task_type])) for pk, key, phase, task_type in rows}


def ticket_give_up(ticket_id: int, error: str) -> None:
    """The ticket's step failed too often: its running task fails and the ticket is BLOCKED
    (environment) with the error, where people look, and its sandbox is released."""
    from tickets.services.execution.outcomes import task_give_up, ticket_block_for

    running = Task.objects.filter(ticket_id=ticket_id, status=TaskStatus.RUNNING).values_list("pk", flat=True).first()
    reason = f"the ticket's step kept failing: {error}"
    if running is None or not task_give_up(task_id=running, reason=reason, blocked=BlockedReason.ENVIRONMENT):
        ticket_block_for(ticket_id=ticket_id, blocked=BlockedReason.ENVIRONMENT, message=reason)
    # Like every task the host gives up on, the blocked ticket holds no sandbox (after the commit).
    transaction.on_commit(lambda: _release_sandbox(ticket_id), robust=True)


def ticket_lock(ticket_id: int) -> None:
    Ticket.objects.select_for_update(no_key=True).filter(pk=ticket_id).values_list("pk", flat=True).first()


def register() -> None:
    work_kind_register(
        WorkKind(
            name=KIND,
            task_name="tickets.tasks.ticket_step_task",
            route=ticket_route,
            give_up=ticket_give_up,
            lock=ticket_lock,
            describe=ticket_labels,
        )
    )


@dataclass
class Action:
    kind: str  # idle, progress, start, turn, host
    task: Task | None = None
    reason: str = ""


def _load(ticket_id: int) -> Ticket:
    """The ticket with what its step reads, in one query: its project, spec and planned task, the
    node holding its live local sandbox (`sandbox_node`, "" when none) and whether a ticket it
    depends on is not DONE yet (`waiting`)."""
    live = (
        Sandbox.objects.filter(ticket_id=OuterRef("pk"), status__in=LIVE_SANDBOX_STATUSES)
        .exclude(node="")
        .values("node")[:1]
    )
    waiting = TicketDependency.objects.filter(ticket_id=OuterRef("pk")).exclude(depends_on__phase=Phase.DONE)
    return (
        Ticket.objects.select_related("project", "spec", "spec_task")
        .annotate(sandbox_node=Subquery(live), waiting=Exists(waiting))
        .get(pk=ticket_id)
    )


def next_action(ticket: Ticket) -> Action:
    """What the ticket's step does next, read from the database (`ticket` as _load reads it saves a
    query)."""
    if ticket.spec_id and ticket.spec.status in FINAL_SPEC_STATUSES:
        return Action("idle", reason=f"the spec is {ticket.spec.status}")
    if ticket.phase not in WORKING_PHASES:
        return Action("idle", reason=f"the ticket is {ticket.phase}")
    open_tasks = list(
        Task.objects.filter(
            ticket_id=ticket.pk, phase=ticket.phase, status__in=[TaskStatus.PENDING, TaskStatus.RUNNING]
        ).order_by("id")
    )
    for task in open_tasks:
        task.ticket = ticket
    running = next((task for task in open_tasks if task.status == TaskStatus.RUNNING), None)
    if running is not None:
        from tickets.services.execution.host_steps import task_mode

        mode = task_mode(running)
        return Action("turn" if mode == "agent" else "host", running)
    if open_tasks:
        waiting = ticket.waiting if hasattr(ticket, "waiting") else not dependencies_done(ticket)
        if waiting:
            return Action("idle", reason="waiting for dependencies")
        return Action("start", open_tasks[0])
    return Action("progress")


def ticket_step(*, ticket_id: int) -> str:
    """Run the ticket's next step if nobody else runs it. Returns what happened (logs, tests)."""
    held = lease_claim(kind=KIND, object_id=ticket_id)
    if held is None:
        return "held"
    try:
        with held.heartbeat():
            return _advance(ticket_id=ticket_id, held=held)
    except LeaseLost:
        return "lost"
    except SandboxElsewhere:
        # The ticket's sandbox lives on another (living) node: hand the step to that node's queue.
        with transaction.atomic():
            held.finish(more=True)
        return "rerouted"
    except Exception as exc:
        transient = is_transient(exc)
        outcome = held.fail(describe_error(exc), transient=transient)
        log = logger.warning if transient else logger.exception
        log("ticket %s: step failed (%s): %s", ticket_id, outcome, describe_error(exc))
        return f"failed:{outcome}"
    finally:
        held.release_local()


def _sandbox_here_or_nowhere(ticket: Ticket) -> None:
    """A step that landed on a worker other than the living one holding the ticket's local
    sandbox goes there (SandboxElsewhere), before it does anything."""
    from omoi.nodes import current_node, nodes_alive

    node = ticket.sandbox_node
    if node and node != current_node() and node in nodes_alive():
        raise SandboxElsewhere(node)


def _advance(*, ticket_id: int, held: Held) -> str:
    """Take the ticket's cheap actions (progression, planned documents) as they come, and at most
    one action that talks to the outside world (a model turn, a host step); then hand the lease to
    the next step when there is more to do, or end it."""
    from tickets.services.execution import host_steps, runs

    outcome = ""
    for number in range(MAX_INLINE_ACTIONS):
        held.check()
        held.more_work = False
        ticket = _load(ticket_id)
        if number == 0:
            _sandbox_here_or_nowhere(ticket)
        action = next_action(ticket)
        if action.kind == "idle":
            with transaction.atomic():
                held.finish()
            if ticket.phase == Phase.DONE or (ticket.spec_id and ticket.spec.status in FINAL_SPEC_STATUSES):
                _release_sandbox(ticket.pk)
            return outcome or "idle"
        if action.kind == "progress":
            from tickets.services.transitions import ticket_progress

            with events_batch():
                ticket_progress(ticket_id=ticket.pk, phase=ticket.phase, actor="system")
            continue
        task = action.task
        mode = host_steps.task_mode(task)
        if outcome and mode != "planned":
            break  # one outside action per step: the next one is the next step's
        started = None
        if action.kind == "start":
            mode, started = _start(task)
            if mode in ("stale", "planned"):
                continue
        if mode == "planned":
            with events_batch():
                host_steps.planned_complete(task=task)
            continue
        try:
            if mode == "tests":
                outcome = host_steps.host_tests(task=task, held=held)
            elif mode == "merge":
                outcome = host_steps.host_merge(task=task, held=held)
            else:
                run, prepared = started or (None, None)
                outcome = _turn(task=task, held=held, runs=runs, run=run, prepared=prepared)
        except (runs.EnvironmentProblem, CommandRefused) as exc:
            outcome = _environment_problem(task=task, held=held, problem=str(exc))
        _released_if_given_up(task.ticket_id, outcome)
    with transaction.atomic():
        held.finish(more=True)
    return outcome or "continued"


def _start(task: Task):
    """pending → running, when the task may still start, in one transaction with what follows at
    once: a planned document completes; an agent task's run begins (its first turn is the step's
    outside action). Returns (mode or "stale", the run begun and its first turn's input, or None):
    the first turn's call is reserved in this transaction, so it needs no commit of its own."""
    from tickets.services.execution import runs
    from tickets.services.execution.host_steps import planned_complete, task_mode
    from tickets.services.execution.outcomes import task_event
    from tickets.services.task_transitions import task_transition

    mode = task_mode(task)
    # Where the run starts from, found before the locks (it may need this worker's mirror).
    point = runs.run_base_point(task) if mode == "agent" else None
    started = None
    with events_batch():
        # The ticket (still in the phase the step read), then the task and any running task of the
        # ticket, locked in one query.
        ticket = task.ticket
        phase = Ticket.objects.select_for_update(no_key=True).filter(pk=ticket.pk).values_list("phase", flat=True)
        if phase.first() != ticket.phase:
            return "stale", None
        rows = Task.objects.select_for_update(no_key=True).filter(
            Q(pk=task.pk) | Q(ticket_id=ticket.pk, status=TaskStatus.RUNNING)
        )
        locked = next((row for row in rows if row.pk == task.pk), None)
        if locked is None or len(rows) > 1 or locked.status != TaskStatus.PENDING or ticket.phase != locked.phase:
            return "stale", None
        locked.ticket = ticket
        task_transition(task=locked, to=TaskStatus.RUNNING)
        task.status, task.attempts, task.started_at = locked.status, locked.attempts, locked.started_at
        task_event(
            task, "task.started", {"task": task.pk, "task_type": task.task_type, "phase": task.phase, "mode": mode}
        )
        if mode == "planned":
            planned_complete(task=task)
        elif mode == "agent":
            started = runs.run_begin_with_first_turn(task=task, point=point)
    return mode, started


def _environment_problem(*, task: Task, held: Held, problem: str) -> str:
    """The task cannot run here: it fails and the ticket is BLOCKED (environment) with the reason."""
    from tickets.services.execution.outcomes import task_give_up
    from tickets.services.execution.runs import active_run, run_end

    with events_batch():
        held.assert_mine()
        run = active_run(task)
        if run is not None:
            run_end(run=run, status=AgentRunStatus.FAILED, reason=problem[:250])
        task_give_up(task_id=task.pk, reason=problem, blocked=BlockedReason.ENVIRONMENT)
    return "environment"


# Outcomes after which the task failed and the ticket is BLOCKED by its own step.
GIVEN_UP = {"failed", "unverifiable", "conflict", "limit", "model_error", "stuck", "budget", "environment"}


def _released_if_given_up(ticket_id: int, outcome: str) -> str:
    """A task the host gave up on (failing checks, no way to verify, a merge conflict) leaves its
    ticket BLOCKED: like the limit and model-error paths, its sandbox is released (a retry starts a
    new run from the ticket branch's last verified commit), so nothing holds it while it waits."""
    if outcome in GIVEN_UP:
        _release_sandbox(ticket_id)
    return outcome


def _release_sandbox(ticket_id: int) -> None:
    sandbox = sandbox_live(ticket_id=ticket_id)
    if sandbox is not None:
        sandbox_release(sandbox_id=sandbox.pk)


def _turn(*, task: Task, held: Held, runs, run=None, prepared=None) -> str:
    """One model turn of the running agent task (`run` and its first turn's input `prepared`, when
    the step has just begun it; else its active run, begun now when it has none)."""
    from omoi.llm import LLMError
    from sandboxes.services.agent import run_messages
    from tickets.services.execution.outcomes import task_give_up
    from tickets.services.execution.verification import task_verify

    run = run if run is not None else runs.active_run(task)
    if run is not None and not runs.sandbox_still_there(run):
        # The run's sandbox was replaced (lost with its worker): its uncommitted work is gone, so
        # the task starts a new conversation from the ticket's last verified commit.
        runs.run_end(run=run, status=AgentRunStatus.FAILED, reason="its sandbox was lost; a new run starts")
        run = None
    if run is None:
        run = runs.run_begin(task=task)
    # The transcript, read once for the turn: the waiting finish, the guardian and the model's input.
    messages = prepared.messages if prepared is not None else run_messages(run)
    finish = runs.pending_finish(run, messages)
    if finish is not None:
        outcome = task_verify(
            run=run,
            task=task,
            workspace=runs.ticket_workspace(ticket=task.ticket, task=task)[1],
            tool_use_id=finish["id"],
            finish_input=finish.get("input") or {},
            held=held,
        )
        return outcome
    limit = runs.run_limit(run)
    if limit is not None:
        blocked, reason = limit
        with events_batch():
            held.assert_mine()
            runs.run_end(run=run, status=AgentRunStatus.FAILED, reason=reason)
            task_give_up(task_id=task.pk, reason=reason, blocked=blocked)
        return "limit"
    review = guardian_review(
        run=run, ticket_id=task.ticket_id, planned_files=list(task.ticket.spec_task.files or []) if
        task.ticket.spec_task_id else None, messages=messages,
    )  # fmt: skip
    if review.step == STOP:
        evidence = [{"type": "guardian", "content": {"findings": [f.as_dict() for f in review.findings]}}]
        with events_batch():
            held.assert_mine()
            runs.run_end(run=run, status=AgentRunStatus.FAILED, reason="stopped by the guardian: the agent is stuck")
            task_give_up(task_id=task.pk, reason=review.message, blocked=BlockedReason.STUCK, evidence=evidence)
        return "stuck"
    try:
        outcome = runs.run_turn(
            run=run,
            task=task,
            workspace=runs.lazy_workspace(run=run, task=task),
            held=held,
            messages=messages,
            prepared=prepared,
        )
    except runs.SandboxReplaced:
        runs.run_end(run=run, status=AgentRunStatus.FAILED, reason="its sandbox was lost; a new run starts")
        return "restarted"
    except BudgetExceeded as exc:
        with events_batch():
            held.assert_mine()
            runs.run_end(run=run, status=AgentRunStatus.FAILED, reason=exc.refusal.message)
            task_give_up(
                task_id=task.pk,
                reason=exc.refusal.message,
                blocked=BlockedReason.BUDGET,
                evidence=[{"type": "budget", "content": exc.refusal.as_dict()}],
            )
        return "budget"
    except LLMError as exc:
        if exc.transient:
            raise
        with events_batch():
            held.assert_mine()
            runs.run_end(run=run, status=AgentRunStatus.FAILED, reason=f"model error: {exc}")
            task_give_up(
                task_id=task.pk, reason=f"the model could not be used: {exc}", blocked=BlockedReason.ENVIRONMENT
            )
        return "model_error"
    except AgentRunError:
        raise
    if outcome.kind == "terminal":
        return task_verify(
            run=run, task=task, workspace=runs.ticket_workspace(ticket=task.ticket, task=task)[1],
            tool_use_id=outcome.tool_use_id, finish_input=outcome.input, held=held,
        )  # fmt: skip
    return outcome.kind
