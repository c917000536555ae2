"""Moving tickets between phases: the one service that changes Ticket.phase, and the services
built on it (block, unblock, start, automatic progression).

How a move that a gate refuses stays clean: the move runs in its own transaction (a savepoint
when the caller already has one). The gate is evaluated under the ticket lock before anything is
written; when it fails, the transaction is rolled back whole and only then is the failed
PhaseGateResult stored, in a transaction of its own, so the refusal is on record and nothing else
of the move is. A passing gate's result is stored inside the move's transaction.
"""

from django.db import transaction
from django.utils import timezone

from sandboxes.services.events import event_record
from tickets.errors import GateBlocked, InvalidTransition
from tickets.gates import GateOutcome, gate_check
from tickets.models import BlockedReason, Phase, PhaseGateArtifact, PhaseHistory, Task, TaskStatus, Ticket
from tickets.selectors import open_tasks_exist
from tickets.services.context import context_aggregate
from tickets.services.gates import gate_result_store
from tickets.services.tasks import _tasks_create, tasks_dispatch_runnable, tasks_reopen
from tickets.signals import ticket_blocked, ticket_completed
from tickets.workflow import WORKING_PHASES, allowed_transitions, can_transition, gated_phases, next_phase

SYSTEM_ACTOR = "system"


def _refusal(from_phase: str, to_phase: str) -> InvalidTransition:
    allowed = ", ".join(allowed_transitions(from_phase))
    if not allowed:
        return InvalidTransition(
            from_phase, to_phase, f"a ticket cannot move from {from_phase} to {to_phase}: {from_phase} is final"
        )
    return InvalidTransition(
        from_phase,
        to_phase,
        f"a ticket cannot move from {from_phase} to {to_phase}; from {from_phase} it may move to: {allowed}",
    )


def ticket_transition(
    *,
    ticket_id: int,
    to: Phase | str,
    actor: str,
    reason: str = "",
    blocked_reason: str = "",
    blocked_message: str = "",
) -> Ticket:
    """Move a ticket to `to`: the only code that changes Ticket.phase.

    Locks the ticket; a move to the phase it is already in returns it unchanged (a repeated
    delivery). Checks the transition table (InvalidTransition) and the exit gate of every phase the
    move leaves going forward (GateBlocked, with the failed PhaseGateResult stored and on
    `error.gate_result`). Then, in one transaction: the passed gate results, PhaseHistory (from, to,
    reason, actor, the left phase's artifacts), the left phase's context, the ticket itself (BLOCKED
    keeps the phase it came from, a typed reason and a message), the entered phase's tasks from
    templates, a `ticket.transitioned` event; and it dispatches the tasks that may run now. On DONE
    the dependents' newly runnable tasks are dispatched and `ticket_completed` is sent on commit.
    """
    try:
        return _ticket_transition(
            ticket_id=ticket_id,
            to=to,
            actor=actor,
            reason=reason,
            blocked_reason=blocked_reason,
            blocked_message=blocked_message,
        )
    except GateBlocked as blocked:
        outcome = GateOutcome(phase=blocked.phase, passed=False, reasons=blocked.reasons, details=blocked.details)
        with transaction.atomic():
            blocked.gate_result = gate_result_store(ticket_id=ticket_id, outcome=outcome, actor=actor)
        raise


@transaction.atomic
def _ticket_transition(
    *, ticket_id: int, to: Phase | str, actor: str, reason: str, blocked_reason: str, blocked_message: str
) -> Ticket:
    ticket = Ticket.objects.select_for_update(no_key=True).get(pk=ticket_id)
    from_phase = Phase(ticket.phase)
    if to not in Phase.values:
        raise InvalidTransition(from_phase, str(to), f"{to!r} is not a phase; phases are {', '.join(Phase.values)}")
    to = Phase(to)
    if from_phase == to:
        return ticket
    if not can_transition(from_phase, to):
        raise _refusal(from_phase, to)
    if to == Phase.BLOCKED and blocked_reason not in BlockedReason.values:
        raise InvalidTransition(from_phase, to, f"blocking needs a reason, one of: {', '.join(BlockedReason.values)}")

    passed = []
    for phase in gated_phases(from_phase=from_phase, to_phase=to, previous_phase=ticket.previous_phase):
        outcome = gate_check(ticket=ticket, phase=phase)
        if not outcome.passed:
            raise GateBlocked(phase, outcome.reasons, outcome.details)
        passed.append(outcome)
    for outcome in passed:
        gate_result_store(ticket_id=ticket.pk, outcome=outcome, actor=actor)

    left_phase = ticket.previous_phase if from_phase == Phase.BLOCKED else from_phase
    artifacts = [
        {
            "id": artifact.pk,
            "phase": artifact.phase,
            "type": artifact.artifact_type,
            "path": artifact.path,
            "collected_by": artifact.collected_by,
            "collected_at": artifact.collected_at.isoformat(),
        }
        for artifact in PhaseGateArtifact.objects.filter(ticket=ticket, phase=left_phase).order_by("id")
    ]
    PhaseHistory.objects.create(
        ticket=ticket, from_phase=from_phase, to_phase=to, reason=reason, actor=actor, artifacts=artifacts
    )

    fields = ["phase", "previous_phase", "blocked_reason", "blocked_message", "updated_at"]
    if from_phase in WORKING_PHASES:
        blocked = {"reason": blocked_reason, "message": blocked_message} if to == Phase.BLOCKED else None
        context_aggregate(ticket=ticket, phase=from_phase, blocked=blocked)
        fields += ["context", "context_summary", "context_updated_at"]
    ticket.previous_phase = from_phase
    ticket.phase = to
    if to == Phase.BLOCKED:
        ticket.blocked_reason = blocked_reason
        ticket.blocked_message = blocked_message or reason
    else:
        ticket.blocked_reason = ""
        ticket.blocked_message = ""
    ticket.save(update_fields=fields)

    if to in WORKING_PHASES:
        _tasks_create(ticket=ticket, phase=to)
        if from_phase == Phase.BLOCKED and left_phase == to:
            # Resuming the phase it was blocked in: what failed runs again, finished work stands.
            tasks_reopen(ticket=ticket, phase=to, statuses=[TaskStatus.FAILED])
        else:
            # A fresh pass through a phase it has been in before (after a regression, or sent back
            # from BLOCKED): its work is done again, with the context gathered since.
            tasks_reopen(ticket=ticket, phase=to, statuses=[TaskStatus.COMPLETED, TaskStatus.FAILED])
        # The ticket's step starts the phase's tasks, or, when its work is all over already (back in
        # a phase it finished), judges its gate again.
        from tickets.services.execution.dispatch import ticket_work_enqueue

        ticket_work_enqueue(ticket_id=ticket.pk)

    _transitioned_event(
        ticket, from_phase, to, reason=reason, actor=actor, blocked=(ticket.blocked_reason, ticket.blocked_message)
    )

    if to == Phase.BLOCKED:
        ticket_id, spec_id = ticket.pk, ticket.spec_id
        blocked_as, message = ticket.blocked_reason, ticket.blocked_message
        transaction.on_commit(
            lambda: ticket_blocked.send(
                sender=Ticket, ticket_id=ticket_id, spec_id=spec_id, reason=blocked_as, message=message
            ),
            robust=True,
        )
    if to == Phase.DONE:
        dependent_ids = list(ticket.dependents.values_list("pk", flat=True))
        if dependent_ids:
            tasks_dispatch_runnable(ticket_ids=dependent_ids)
        ticket_id, spec_id = ticket.pk, ticket.spec_id
        transaction.on_commit(
            lambda: ticket_completed.send(sender=Ticket, ticket_id=ticket_id, spec_id=spec_id), robust=True
        )
    return ticket


def ticket_block(*, ticket_id: int, reason: BlockedReason | str, actor: str, message: str = "") -> Ticket:
    """Move a ticket to BLOCKED with a typed reason and a message."""
    return ticket_transition(
        ticket_id=ticket_id,
        to=Phase.BLOCKED,
        actor=actor,
        reason=f"blocked: {reason}",
        blocked_reason=reason,
        blocked_message=message,
    )


def ticket_unblock(*, ticket_id: int, actor: str, to: Phase | str | None = None, reason: str = "") -> Ticket:
    """Move a BLOCKED ticket back to `to` (default: the phase it was blocked in), where the table
    allows. Unblocking past that phase must pass the gates of the phases it skips."""
    ticket = Ticket.objects.get(pk=ticket_id)
    if ticket.phase != Phase.BLOCKED:
        raise InvalidTransition(
            ticket.phase, str(to or ""), f"ticket #{ticket.pk} is not blocked (it is in {ticket.phase})"
        )
    target = to or ticket.previous_phase
    if not target:
        raise InvalidTransition(Phase.BLOCKED, "", "the ticket does not record the phase it was blocked in; name one")
    if not can_transition(Phase.BLOCKED, target):
        allowed = ", ".join(allowed_transitions(Phase.BLOCKED))
        raise InvalidTransition(
            Phase.BLOCKED, target, f"a blocked ticket cannot return to {target}; it may return to: {allowed}"
        )
    return ticket_transition(ticket_id=ticket_id, to=target, actor=actor, reason=reason or "unblocked")


def ticket_start(*, ticket_id: int, actor: str) -> Ticket:
    """Start a BACKLOG ticket: move it to REQUIREMENTS, which creates its first tasks. Its tasks run
    once every ticket it depends on is DONE. A ticket already started is returned unchanged."""
    ticket = Ticket.objects.get(pk=ticket_id)
    if ticket.phase != Phase.BACKLOG:
        return ticket
    return ticket_transition(ticket_id=ticket_id, to=Phase.REQUIREMENTS, actor=actor, reason="started")


@transaction.atomic
def ticket_progress(*, ticket_id: int, phase: Phase | str, actor: str = SYSTEM_ACTOR) -> Ticket:
    """Automatic progression once a phase's work is over. A no-op unless the ticket is still in
    `phase` with no open task (so running it twice, or late, changes nothing). Evaluates the gate:
    passed → the next phase; failed → BLOCKED (failing_checks) with the gate's reasons, the failed
    PhaseGateResult kept."""
    ticket = Ticket.objects.select_for_update(no_key=True).get(pk=ticket_id)
    if ticket.phase != phase or phase not in WORKING_PHASES:
        return ticket
    if open_tasks_exist(ticket_id=ticket.pk, phase=phase):
        return ticket
    outcome = gate_check(ticket=ticket, phase=phase)
    if outcome.passed:
        return ticket_transition(ticket_id=ticket.pk, to=next_phase(phase), actor=actor, reason=f"{phase} gate passed")
    gate_result_store(ticket_id=ticket.pk, outcome=outcome, actor=actor)
    return ticket_transition(
        ticket_id=ticket.pk,
        to=Phase.BLOCKED,
        actor=actor,
        reason=f"{phase} gate failed",
        blocked_reason=BlockedReason.FAILING_CHECKS,
        blocked_message="; ".join(outcome.reasons),
    )


def tickets_start(*, ticket_ids: list[int], actor: str, reason: str = "started") -> list[int]:
    """BACKLOG → REQUIREMENTS for many new tickets at once (the bridge), in a fixed number of
    statements: the same move as `ticket_transition` (BACKLOG has no gate and no context to keep),
    with its history, its tasks from templates and its events, and a step for every ticket whose
    dependencies are done. Returns the tickets moved."""
    from tickets.services.tasks import _task_fields
    from tickets.templates import templates_for

    to = Phase.REQUIREMENTS
    if not can_transition(Phase.BACKLOG, to):
        raise _refusal(Phase.BACKLOG, to)
    tickets = list(
        Ticket.objects.select_for_update(no_key=True, of=("self",))
        .select_related("spec_task", "project")
        .prefetch_related("spec_task__requirements")
        .filter(pk__in=ticket_ids, phase=Phase.BACKLOG)
        .order_by("id")
    )
    if not tickets:
        return []
    now = timezone.now()
    ids = [ticket.pk for ticket in tickets]
    PhaseHistory.objects.bulk_create(
        [PhaseHistory(ticket=t, from_phase=Phase.BACKLOG, to_phase=to, reason=reason, actor=actor) for t in tickets]
    )
    Ticket.objects.filter(pk__in=ids).update(phase=to, previous_phase=Phase.BACKLOG, updated_at=now)
    for ticket in tickets:
        ticket.phase, ticket.previous_phase = to, Phase.BACKLOG
    Task.objects.bulk_create(
        [
            Task(ticket=ticket, phase=to, task_type=template.key, **_task_fields(template, ticket))
            for ticket in tickets
            for template in templates_for(to)
        ],
        ignore_conflicts=True,
    )
    for ticket in tickets:
        _transitioned_event(ticket, Phase.BACKLOG, to, reason=reason, actor=actor)
    _enqueue_unblocked(ids)
    return ids


def _transitioned_event(
    ticket: Ticket, from_phase: str, to_phase: str, *, reason: str, actor: str, blocked: tuple[str, str] = ("", "")
) -> None:
    event_record(
        type="ticket.transitioned",
        payload={
            "from_phase": Phase(from_phase).value,
            "to_phase": Phase(to_phase).value,
            "reason": reason,
            "actor": actor,
            "blocked_reason": blocked[0],
            "blocked_message": blocked[1],
        },
        spec_id=ticket.spec_id,
        ticket_id=ticket.pk,
    )


def _enqueue_unblocked(ticket_ids: list[int]) -> None:
    """A step for each of these tickets whose dependencies are all DONE (the others wait for them)."""
    from omoi.leases import work_enqueue_many
    from tickets.models import TicketDependency
    from tickets.services.execution.dispatch import KIND

    waiting = set(
        TicketDependency.objects.filter(ticket_id__in=ticket_ids)
        .exclude(depends_on__phase=Phase.DONE)
        .values_list("ticket_id", flat=True)
    )
    work_enqueue_many(kind=KIND, object_ids=[i for i in ticket_ids if i not in waiting], queue="execution")


def tickets_fast_forward_planned(*, ticket_ids: list[int], actor: str, reason: str = "planned") -> list[int]:
    """New spec tickets straight to IMPLEMENTATION, in a fixed number of statements: the bridge's
    fast path. Their REQUIREMENTS and DESIGN work is only documents copied from the spec's plan,
    so each such task is created completed with its document (the planner did that work), and each
    move BACKLOG → REQUIREMENTS → DESIGN → IMPLEMENTATION is the one ticket_transition makes —
    the table checked, each left phase's gate judged by the same rule (gate_judge) and stored, its
    context aggregated, its history written, the entered phase's tasks made from templates, its
    events recorded — done for all tickets at once. A ticket whose gate would not pass is left in
    BACKLOG for the step-by-step path (tickets_start). Returns the tickets moved."""
    from tickets.gates import gate_judge
    from tickets.models import GateStatus, PhaseGateResult
    from tickets.services.context import phase_context_of
    from tickets.services.execution.host_steps import PLANNED_TASK_TYPES, planned_document
    from tickets.services.tasks import _task_fields
    from tickets.templates import templates_for

    path = [Phase.BACKLOG, Phase.REQUIREMENTS, Phase.DESIGN, Phase.IMPLEMENTATION]
    for left, entered in zip(path, path[1:], strict=False):
        if not can_transition(left, entered):
            raise _refusal(left, entered)
    tickets = list(
        Ticket.objects.select_for_update(no_key=True, of=("self",))
        .select_related("spec_task", "spec", "project")
        .prefetch_related("spec_task__requirements__criteria", "spec__requirements__criteria")
        .filter(pk__in=ticket_ids, phase=Phase.BACKLOG, spec_task__isnull=False)
        .order_by("id")
    )
    if not tickets:
        return []
    now = timezone.now()
    moved = {ticket.pk: ticket for ticket in tickets}
    history: list[PhaseHistory] = []
    results: list[PhaseGateResult] = []
    left_artifacts: dict[tuple[int, str], list] = {}
    for phase in (Phase.REQUIREMENTS, Phase.DESIGN):
        tasks: list[Task] = []
        for ticket in moved.values():
            for template in templates_for(phase):
                task = Task(ticket=ticket, phase=phase, task_type=template.key, **_task_fields(template, ticket))
                if template.key in PLANNED_TASK_TYPES:
                    document = planned_document(task)
                    task.status, task.attempts, task.started_at, task.completed_at = (
                        TaskStatus.COMPLETED, 1, now, now,
                    )  # fmt: skip
                    task.result = {"summary": f"{document['type']} taken from the spec's plan", "artifacts": [document]}
                tasks.append(task)
        Task.objects.bulk_create(tasks)
        artifacts = PhaseGateArtifact.objects.bulk_create(
            [
                PhaseGateArtifact(
                    ticket=task.ticket,
                    phase=phase,
                    artifact_type=artifact["type"],
                    content=artifact["content"],
                    collected_by="planner",
                )  # fmt: skip
                for task in tasks
                for artifact in task.result.get("artifacts", [])
            ]
        )
        for ticket in list(moved.values()):
            own_tasks = [task for task in tasks if task.ticket_id == ticket.pk]
            own_artifacts = [artifact for artifact in artifacts if artifact.ticket_id == ticket.pk]
            outcome = gate_judge(phase=phase, tasks=own_tasks, artifacts=own_artifacts)
            if not outcome.passed:
                raise FastForwardRefused(ticket.pk)
            results.append(
                PhaseGateResult(
                    ticket=ticket,
                    phase=phase,
                    status=GateStatus.PASSED,
                    blocking_reasons=[],
                    details=outcome.details,
                    validated_by=actor,
                )  # fmt: skip
            )
            context_aggregate(
                ticket=ticket, phase=phase, entry=phase_context_of(tasks=own_tasks, artifacts=own_artifacts)
            )
            left_artifacts[(ticket.pk, phase)] = [
                {
                    "id": artifact.pk,
                    "phase": artifact.phase,
                    "type": artifact.artifact_type,
                    "path": artifact.path,
                    "collected_by": artifact.collected_by,
                    "collected_at": now.isoformat(),
                }
                for artifact in own_artifacts
            ]
    for ticket in moved.values():
        for left, entered in zip(path, path[1:], strict=False):
            history.append(
                PhaseHistory(
                    ticket=ticket,
                    from_phase=left,
                    to_phase=entered,
                    reason=reason,
                    actor=actor,
                    artifacts=left_artifacts.get((ticket.pk, left), []),
                )  # fmt: skip
            )
        ticket.phase, ticket.previous_phase = Phase.IMPLEMENTATION, Phase.DESIGN
    PhaseGateResult.objects.bulk_create(results)
    PhaseHistory.objects.bulk_create(history)
    Ticket.objects.bulk_update(
        list(moved.values()), ["phase", "previous_phase", "context", "context_summary", "context_updated_at"]
    )
    Ticket.objects.filter(pk__in=list(moved)).update(updated_at=now)
    Task.objects.bulk_create(
        [
            Task(ticket=ticket, phase=Phase.IMPLEMENTATION, task_type=template.key, **_task_fields(template, ticket))
            for ticket in moved.values()
            for template in templates_for(Phase.IMPLEMENTATION)
        ],
        ignore_conflicts=True,
    )
    for ticket in moved.values():
        for left, entered in zip(path, path[1:], strict=False):
            _transitioned_event(ticket, left, entered, reason=reason, actor=actor)
    _enqueue_unblocked(list(moved))
    return list(moved)


class FastForwardRefused(Exception):
    """A planned document did not pass its phase's gate: the tickets take the step-by-step path."""
