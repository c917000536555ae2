"""EXECUTE: the bridge from a planned spec to tickets on the board.

The spec branch is made in the git store first (outside any transaction: it may clone the
repository). Then, in one transaction of bulk statements, every SpecTask becomes exactly one Ticket
(the OneToOne Ticket.spec_task makes a second run create nothing), with its creation history, its
dependencies, its move BACKLOG → REQUIREMENTS and that phase's tasks, and the spec becomes
`executing`; tickets whose dependencies are done get their step, the others wait until their
dependencies reach DONE.
"""

from __future__ import annotations

from django.db import transaction

from omoi.faults import fault_point
from sandboxes.services.events import event_record, events_batch
from specs.models import Spec, SpecPhase, SpecStatus, SpecTaskDependency
from specs.services.planning import spec_transition
from tickets.models import Phase, PhaseHistory, Ticket, TicketDependency
from tickets.services import repository
from tickets.services.transitions import FastForwardRefused, tickets_fast_forward_planned, tickets_start


class SpecNotExecutable(Exception):
    """The spec is not in a state the bridge can run from."""


def _check_executable(spec: Spec) -> None:
    if spec.status != SpecStatus.PLANNING_COMPLETE:
        raise SpecNotExecutable(f"spec {spec.pk} is {spec.status}: tickets are made only once planning is complete")
    if spec.require_approval and spec.approved_at is None:
        raise SpecNotExecutable(f"spec {spec.pk} waits for approval: POST /api/v1/specs/{spec.pk}/approve first")


def spec_execute(*, spec_id: int, actor: str) -> Spec:
    """Turn every SpecTask into one Ticket and start the work. Idempotent: a spec already
    executing (or done) is returned unchanged."""
    spec = Spec.objects.select_related("project").get(pk=spec_id)
    if spec.status in (SpecStatus.EXECUTING, SpecStatus.COMPLETED):
        return spec
    _check_executable(spec)
    branch = spec.branch_name or repository.spec_branch_name(spec_id=spec.pk, title=spec.title)
    repository.spec_repo_prepare(spec=spec, branch=branch)
    fault_point("bridge.prepared")

    with events_batch():
        spec = Spec.objects.select_for_update(no_key=True, of=("self",)).select_related("project").get(pk=spec_id)
        if spec.status in (SpecStatus.EXECUTING, SpecStatus.COMPLETED):
            return spec
        _check_executable(spec)
        spec_tasks = list(spec.tasks.order_by("position", "id"))
        existing = set(Ticket.objects.filter(spec=spec).values_list("spec_task_id", flat=True))
        created = Ticket.objects.bulk_create(
            [
                Ticket(
                    project=spec.project,
                    user=spec.user,
                    spec=spec,
                    spec_task=spec_task,
                    title=f"{spec_task.key}: {spec_task.title}",
                    description=spec_task.description,
                    priority=spec_task.priority,
                    phase=Phase.BACKLOG,
                )
                for spec_task in spec_tasks
                if spec_task.pk not in existing
            ]
        )
        PhaseHistory.objects.bulk_create(
            [
                PhaseHistory(ticket=ticket, from_phase="", to_phase=Phase.BACKLOG, actor=actor, reason=ticket.title)
                for ticket in created
            ]
        )
        tickets = dict(Ticket.objects.filter(spec=spec).values_list("spec_task_id", "pk"))
        links = SpecTaskDependency.objects.filter(task__spec=spec).values_list("task_id", "depends_on_id")
        TicketDependency.objects.bulk_create(
            [
                TicketDependency(ticket_id=tickets[task], depends_on_id=tickets[dependency])
                for task, dependency in links
            ],
            ignore_conflicts=True,
        )
        spec = spec_transition(
            spec_id=spec.pk,
            status=SpecStatus.EXECUTING,
            phase=SpecPhase.EXECUTE,
            actor=actor,
            reason="approved: the planned tasks became tickets",
            changes={"branch_name": branch, "progress": 0},
        )
        event_record(
            type="spec.executing",
            payload={"tickets": len(tickets), "branch": branch, "actor": actor},
            spec_id=spec.pk,
        )
        ids = [tickets[spec_task.pk] for spec_task in spec_tasks]
        waiting = {tickets[task] for task, _dependency in links}
        first = [ticket_id for ticket_id in ids if ticket_id not in waiting]
        reason = f"planned in spec {spec.pk}"
        try:
            # The tickets that can start now have their REQUIREMENTS and DESIGN documents taken from
            # the spec here, in bulk, so each one's first step starts its first agent task at once.
            # The others enter REQUIREMENTS and wait for their dependencies.
            with transaction.atomic():
                tickets_fast_forward_planned(ticket_ids=first, actor=actor, reason=reason)
        except FastForwardRefused:
            pass  # a planned document did not pass its gate: these tickets go step by step
        tickets_start(ticket_ids=ids, actor=actor, reason=reason)
    return spec


def spec_execution_resume(*, spec_id: int, actor: str) -> Spec:
    """Retry a spec whose execution failed: it is `executing` again and its blocked tickets are
    unblocked (their failed tasks reopen and their steps run)."""
    from tickets.services.transitions import ticket_unblock

    with events_batch():
        spec = Spec.objects.select_for_update(no_key=True).get(pk=spec_id)
        if spec.status != SpecStatus.FAILED or spec.current_phase != SpecPhase.EXECUTE:
            raise SpecNotExecutable(f"spec {spec.pk} is {spec.status} at {spec.current_phase}: nothing to resume")
        spec = spec_transition(spec_id=spec.pk, status=SpecStatus.EXECUTING, actor=actor, reason="retry")
        blocked = list(Ticket.objects.filter(spec=spec, phase=Phase.BLOCKED).values_list("pk", flat=True))
        for ticket_id in blocked:
            ticket_unblock(ticket_id=ticket_id, actor=actor, reason="spec retried")
        event_record(
            type="spec.execution_resumed", payload={"tickets_unblocked": blocked, "actor": actor}, spec_id=spec.pk
        )
    return spec


def spec_execution_stop(*, spec_id: int, actor: str) -> list[int]:
    """Stop the work of a cancelled spec: its open tasks are cancelled, its agent runs end and
    their sandboxes are released (after commit; a local one on another worker by that worker's
    reaper). Returns the cancelled task ids."""
    from sandboxes.models import LIVE_SANDBOX_STATUSES, AgentRun, AgentRunKind, AgentRunStatus, Sandbox
    from sandboxes.services.agent import agent_run_finish
    from sandboxes.services.sandbox import sandboxes_release
    from tickets.services.tasks import tasks_cancel

    cancelled = tasks_cancel(spec_id=spec_id, actor=actor, reason="the spec was cancelled")
    runs = AgentRun.objects.filter(
        spec_id=spec_id, kind=AgentRunKind.TASK, status__in=[AgentRunStatus.RUNNING, AgentRunStatus.VERIFYING]
    )
    for run_id in runs.values_list("pk", flat=True):
        agent_run_finish(run_id=run_id, status=AgentRunStatus.CANCELLED, stop_reason="the spec was cancelled")
    live = list(Sandbox.objects.filter(spec_id=spec_id, status__in=LIVE_SANDBOX_STATUSES).values_list("pk", flat=True))
    transaction.on_commit(lambda: sandboxes_release(sandbox_ids=live), robust=True)
    event_record(type="spec.execution_stopped", payload={"tasks_cancelled": cancelled, "actor": actor}, spec_id=spec_id)
    return cancelled
