"""Reads, with their joins built in, so an endpoint's query count does not grow with its rows."""

from typing import Any

from django.db.models import Count, Exists, F, IntegerField, OuterRef, Prefetch, Q, QuerySet, Subquery, Value, Window
from django.db.models.functions import Coalesce, RowNumber

from tickets.models import (
    Phase,
    PhaseGateArtifact,
    PhaseGateResult,
    PhaseHistory,
    Project,
    Task,
    TaskStatus,
    Ticket,
    TicketDependency,
)
from tickets.workflow import BOARD_COLUMNS

OPEN_TASK_STATUSES = (TaskStatus.PENDING, TaskStatus.RUNNING)


def count_of(queryset: QuerySet) -> Coalesce:
    """COUNT(*) of a correlated queryset (one filtered by OuterRef) as an annotation: a subquery
    per row, not a join and a COUNT DISTINCT over the product of two child tables."""
    counted = queryset.order_by().annotate(_one=Value(1)).values("_one").annotate(n=Count("*")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def task_counts() -> dict:
    ticket = OuterRef("pk")
    return {
        "tasks_total": count_of(Task.objects.filter(ticket=ticket)),
        "tasks_done": count_of(Task.objects.filter(ticket=ticket, status=TaskStatus.COMPLETED)),
    }


def projects_visible_to(user) -> QuerySet[Project]:
    """Projects the user owns or is a member of; staff users (operators, and the superuser
    `createsuperuser` makes) see every project. Everything inside a visible project is visible;
    nothing else is."""
    if not user.is_authenticated:
        return Project.objects.none()
    if user.is_staff:
        return Project.objects.all()
    memberships = Project.members.through.objects.filter(user_id=user.pk).values("project_id")
    return Project.objects.filter(Q(owner=user) | Q(pk__in=memberships))


def project_ids_visible_to(user) -> QuerySet:
    return projects_visible_to(user).values("pk")


def project_list(*, user) -> QuerySet[Project]:
    return projects_visible_to(user).select_related("owner").order_by("name", "id")


def tickets_visible_to(user) -> QuerySet[Ticket]:
    return Ticket.objects.filter(project_id__in=project_ids_visible_to(user))


def ticket_list(*, user) -> QuerySet[Ticket]:
    """Tickets the user may see, with what the ticket serializer shows loaded in a fixed number of
    queries: dependency ids prefetched, task counts annotated."""
    return (
        tickets_visible_to(user)
        .select_related("user")
        .prefetch_related(
            Prefetch("dependency_links", queryset=TicketDependency.objects.only("ticket_id", "depends_on_id"))
        )
        .defer("context")
        .annotate(**task_counts())
        .order_by("id")
    )


def tasks_visible_to(user) -> QuerySet[Task]:
    return Task.objects.filter(ticket__project_id__in=project_ids_visible_to(user))


def _unfinished_dependency_exists() -> Exists:
    return Exists(
        TicketDependency.objects.filter(ticket_id=OuterRef("ticket_id")).exclude(depends_on__phase=Phase.DONE)
    )


def task_list(*, user) -> QuerySet[Task]:
    return tasks_visible_to(user).select_related("ticket").order_by("id")


def runnable_tasks(*, ticket_ids=None) -> QuerySet[Task]:
    """Tasks that may run now: pending, in the phase their ticket is in, the ticket not BLOCKED, and
    every ticket it depends on DONE. One query, whatever the number of tickets."""
    queryset = (
        Task.objects.filter(status=TaskStatus.PENDING, phase=F("ticket__phase"))
        .exclude(ticket__phase=Phase.BLOCKED)
        .exclude(_unfinished_dependency_exists())
    )
    if ticket_ids is not None:
        queryset = queryset.filter(ticket_id__in=ticket_ids)
    return queryset.order_by("id")


def unfinished_dependencies(ticket: Ticket) -> list[Ticket]:
    return list(ticket.dependencies.exclude(phase=Phase.DONE).order_by("id"))


def task_blockers(task: Task) -> list[str]:
    """Why `task` may not run now (empty when it may): the readable counterpart of runnable_tasks.
    The ticket is read afresh, so a task instance loaded before its ticket moved is judged rightly."""
    ticket = Ticket.objects.get(pk=task.ticket_id)
    reasons: list[str] = []
    if task.status != TaskStatus.PENDING:
        reasons.append(f"task #{task.pk} is {task.status}, not pending")
    if ticket.phase == Phase.BLOCKED:
        reasons.append(f"ticket #{ticket.pk} is BLOCKED ({ticket.blocked_reason})")
    elif ticket.phase != task.phase:
        reasons.append(f"ticket #{ticket.pk} is in {ticket.phase}; the task belongs to {task.phase}")
    waiting = unfinished_dependencies(ticket)
    if waiting:
        names = ", ".join(f"#{t.pk} ({t.phase})" for t in waiting)
        reasons.append(f"ticket #{ticket.pk} waits for dependencies that are not DONE: {names}")
    return reasons


def task_is_runnable(task: Task) -> bool:
    return not task_blockers(task)


def dependencies_done(ticket: Ticket) -> bool:
    return not ticket.dependencies.exclude(phase=Phase.DONE).exists()


def open_tasks_exist(*, ticket_id: int, phase: str) -> bool:
    return Task.objects.filter(ticket_id=ticket_id, phase=phase, status__in=OPEN_TASK_STATUSES).exists()


def ticket_history(ticket: Ticket) -> QuerySet[PhaseHistory]:
    return PhaseHistory.objects.filter(ticket=ticket).order_by("id")


def ticket_artifacts(ticket: Ticket, *, phase: str | None = None) -> QuerySet[PhaseGateArtifact]:
    queryset = PhaseGateArtifact.objects.filter(ticket=ticket)
    if phase:
        queryset = queryset.filter(phase=phase)
    return queryset.order_by("id")


def ticket_gate_results(ticket: Ticket) -> QuerySet[PhaseGateResult]:
    return PhaseGateResult.objects.filter(ticket=ticket).order_by("id")


def board_view(*, project: Project, limit: int) -> dict[str, Any]:
    """The kanban board of a project: one column per phase, in phase order, then BLOCKED, each
    with its total and at most `limit` tickets (the oldest first; GET /tickets?project=&phase=
    pages through a whole column). Two queries however many tickets: the totals per phase, and
    the first `limit` tickets of every column (a window over the phase) with their task counts."""
    totals = dict(Ticket.objects.filter(project=project).order_by().values_list("phase").annotate(n=Count("pk")))
    shown = (
        Ticket.objects.filter(project=project)
        .annotate(rank=Window(RowNumber(), partition_by=[F("phase")], order_by=F("id").asc()))
        .filter(rank__lte=limit)
        .values("id")
    )
    rows = (
        Ticket.objects.filter(pk__in=shown)
        .annotate(**task_counts())
        .order_by("id")
        .values("id", "title", "phase", "priority", "spec_id", "blocked_reason", "tasks_done", "tasks_total")
    )
    columns: dict[str, list[dict[str, Any]]] = {phase.value: [] for phase in BOARD_COLUMNS}
    for row in rows:
        columns[row["phase"]].append(
            {
                "id": row["id"],
                "title": row["title"],
                "priority": row["priority"],
                "spec": row["spec_id"],
                "blocked_reason": row["blocked_reason"],
                "tasks_done": row["tasks_done"],
                "tasks_total": row["tasks_total"],
            }
        )
    counts = {phase.value: totals.get(phase.value, 0) for phase in BOARD_COLUMNS}
    return {
        "project": project.pk,
        "limit": limit,
        "columns": [
            {
                "phase": phase.value,
                "label": phase.label,
                "count": counts[phase.value],
                "more": counts[phase.value] > len(columns[phase.value]),
                "tickets": columns[phase.value],
            }
            for phase in BOARD_COLUMNS
        ],
        "counts": counts,
        "total": sum(counts.values()),
    }


def _task_count(**filters) -> Subquery:
    counted = (
        Task.objects.filter(ticket_id=OuterRef("pk"), **filters)
        .order_by()
        .values("ticket_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def board_cards(*, project_id: int, spec_id: int | None = None) -> list[dict[str, Any]]:
    """The cards of a board (the web application's): every ticket of the project, or of one of
    its specs, with its SpecTask key, why it is blocked, and its tasks' progress (done, running,
    total), in one query. Counts are subqueries per ticket, so they do not multiply joins."""
    tickets = Ticket.objects.filter(project_id=project_id)
    if spec_id is not None:
        tickets = tickets.filter(spec_id=spec_id)
    rows = (
        tickets.annotate(
            tasks_total=_task_count(),
            tasks_done=_task_count(status=TaskStatus.COMPLETED),
            tasks_running=_task_count(status=TaskStatus.RUNNING),
        )
        .order_by("id")
        .values(
            "id",
            "title",
            "phase",
            "priority",
            "spec_id",
            "spec_task__key",
            "blocked_reason",
            "blocked_message",
            "tasks_done",
            "tasks_running",
            "tasks_total",
            "updated_at",
        )
    )
    return [{**row, "key": row.pop("spec_task__key") or ""} for row in rows]


def board_columns(cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cards grouped into the board's columns: the phases in order, then BLOCKED."""
    columns = {phase.value: [] for phase in BOARD_COLUMNS}
    for card in cards:
        columns[card["phase"]].append(card)
    return [{"phase": phase.value, "label": phase.label, "cards": columns[phase.value]} for phase in BOARD_COLUMNS]
