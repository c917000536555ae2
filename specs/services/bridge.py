"""EXECUTE: the bridge from a planned spec to tickets on the board.

In one transaction every SpecTask becomes exactly one Ticket (the OneToOne Ticket.spec_task makes
a second run create nothing), SpecTask dependencies become ticket dependencies, and the spec
becomes `executing`. Each new ticket then moves BACKLOG → REQUIREMENTS through the ticket
workflow, which generates its tasks and dispatches those whose dependencies are done; the others
wait until their dependencies reach DONE.
"""

from __future__ import annotations

from django.db import transaction

from sandboxes.services.events import event_record
from specs.models import Spec, SpecPhase, SpecStatus, SpecTaskDependency
from tickets.models import Phase, PhaseHistory, Ticket, TicketDependency
from tickets.services import repository
from tickets.services.transitions import ticket_transition


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

    with transaction.atomic():
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
        tickets = {t.spec_task_id: t for t in Ticket.objects.filter(spec=spec)}
        links = SpecTaskDependency.objects.filter(task__spec=spec).values_list("task_id", "depends_on_id")
        TicketDependency.objects.bulk_create(
            [TicketDependency(ticket=tickets[task], depends_on=tickets[dependency]) for task, dependency in links],
            ignore_conflicts=True,
        )
        spec.status = SpecStatus.EXECUTING
        spec.current_phase = SpecPhase.EXECUTE
        spec.branch_name = branch
        spec.progress = 0
        spec.last_error = ""
        spec.save(update_fields=["status", "current_phase", "branch_name", "progress", "last_error", "updated_at"])
        event_record(
            type="spec.executing",
            payload={"tickets": len(tickets), "branch": branch, "actor": actor},
            spec_id=spec.pk,
        )
        for spec_task in spec_tasks:
            ticket = tickets[spec_task.pk]
            if ticket.phase == Phase.BACKLOG:
                ticket_transition(
                    ticket_id=ticket.pk, to=Phase.REQUIREMENTS, actor=actor, reason=f"planned in spec {spec.pk}"
                )
    return spec


def spec_execution_resume(*, spec_id: int, actor: str) -> Spec:
    """Retry a spec whose execution failed: its blocked tickets are unblocked (their failed tasks
    reopen and are dispatched) and the spec is `executing` again."""
    from tickets.services.transitions import ticket_unblock

    with transaction.atomic():
        spec = Spec.objects.select_for_update(no_key=True).get(pk=spec_id)
        if spec.status != SpecStatus.FAILED or spec.current_phase != SpecPhase.EXECUTE:
            raise SpecNotExecutable(f"spec {spec.pk} is {spec.status} at {spec.current_phase}: nothing to resume")
        spec.status = SpecStatus.EXECUTING
        spec.last_error = ""
        spec.save(update_fields=["status", "last_error", "updated_at"])
        blocked = list(Ticket.objects.filter(spec=spec, phase=Phase.BLOCKED).values_list("pk", flat=True))
        for ticket_id in blocked:
            ticket_unblock(ticket_id=ticket_id, actor=actor, reason="spec retried")
        event_record(
            type="spec.execution_resumed", payload={"tickets_unblocked": blocked, "actor": actor}, spec_id=spec.pk
        )
    return spec


def spec_execution_stop(*, spec_id: int, actor: str) -> list[int]:
    """Stop the work of a cancelled spec: its open tasks are cancelled, its agent runs end and
    their sandboxes are released. Returns the cancelled task ids."""
    from sandboxes.models import AgentRun, AgentRunKind, AgentRunStatus, Sandbox, SandboxStatus
    from sandboxes.services.agent import agent_run_finish
    from sandboxes.services.sandbox import sandbox_release
    from tickets.services.tasks import tasks_cancel

    cancelled = tasks_cancel(spec_id=spec_id, actor=actor, reason="the spec was cancelled")
    runs = AgentRun.objects.filter(
        spec_id=spec_id, kind=AgentRunKind.TASK, status__in=[AgentRunStatus.RUNNING, AgentRunStatus.VERIFYING]
    )
    for run_id in runs.values_list("pk", flat=True):
        agent_run_finish(run_id=run_id, status=AgentRunStatus.CANCELLED, stop_reason="the spec was cancelled")
    live = Sandbox.objects.filter(spec_id=spec_id, status__in=[SandboxStatus.CREATING, SandboxStatus.READY])
    for sandbox_id in live.values_list("pk", flat=True):
        transaction.on_commit(lambda sandbox_id=sandbox_id: sandbox_release(sandbox_id=sandbox_id))
    event_record(type="spec.execution_stopped", payload={"tasks_cancelled": cancelled, "actor": actor}, spec_id=spec_id)
    return cancelled
