"""The tickets' reconciler rules: tickets that should be moving and have no step, and sandboxes
that no work holds any more. Registered with omoi.reconcile in TicketsConfig.ready()."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Exists, OuterRef, Q

from omoi.models import Lease
from sandboxes.models import LIVE_SANDBOX_STATUSES, Sandbox
from sandboxes.services.sandbox import sandbox_release
from tickets.models import Phase, Task, TaskStatus, Ticket, TicketDependency
from tickets.services.execution.dispatch import KIND
from tickets.workflow import WORKING_PHASES

BATCH = 500
OPEN = [TaskStatus.PENDING, TaskStatus.RUNNING]


def tickets_without_step() -> Iterable[tuple[str, int]]:
    """Working tickets (of an executing spec, or made by hand) with something to do now — a running
    task, a pending task whose dependencies are done, or a phase whose work is over (progression) —
    and no lease: their message was lost before any worker took it."""
    phase_tasks = Task.objects.filter(ticket_id=OuterRef("pk"), phase=OuterRef("phase"))
    unfinished_dependency = TicketDependency.objects.filter(ticket_id=OuterRef("pk")).exclude(
        depends_on__phase=Phase.DONE
    )
    due = (
        Exists(phase_tasks.filter(status=TaskStatus.RUNNING))
        | (Exists(phase_tasks.filter(status=TaskStatus.PENDING)) & ~Exists(unfinished_dependency))
        | ~Exists(phase_tasks.filter(status__in=OPEN))
    )
    rows = (
        Ticket.objects.filter(phase__in=WORKING_PHASES)
        .filter(Q(spec__isnull=True) | Q(spec__status="executing"))
        .exclude(Exists(Lease.objects.filter(kind=KIND, object_id=OuterRef("pk"))))
        .filter(due)
        .order_by("id")
        .values_list("pk", flat=True)[:BATCH]
    )
    return [(KIND, ticket_id) for ticket_id in rows]


def sandboxes_unheld() -> int:
    """Release live sandboxes whose work is over: a ticket DONE, a spec completed or cancelled, a
    planning sandbox whose spec is no longer planning. (A ticket BLOCKED by hand keeps its sandbox:
    its running task resumes there when it is unblocked.)"""
    unheld = Sandbox.objects.filter(status__in=LIVE_SANDBOX_STATUSES).filter(
        Q(ticket__phase=Phase.DONE)
        | Q(spec__status__in=["completed", "cancelled"])
        | Q(ticket__isnull=True, spec__isnull=False) & ~Q(spec__status="planning")
    )
    released = 0
    for sandbox_id in unheld.values_list("pk", flat=True)[:BATCH]:
        sandbox_release(sandbox_id=sandbox_id)
        released += 1
    return released


def register() -> None:
    from omoi.reconcile import REPAIRS, RULES, Rule

    RULES.append(Rule(name="tickets_without_step", find=tickets_without_step))
    REPAIRS.append(("sandboxes_unheld", sandboxes_unheld))
