"""Large fixtures made with bulk statements, for the size tests and bench/endpoints.py."""

from __future__ import annotations

from specs.models import Spec, SpecRequirement, SpecTask, SpecTaskDependency, SpecTaskRequirement
from tickets.models import Phase, Task, Ticket

PHASES = list(Phase)


def _phase_fields(n: int) -> dict:
    phase = PHASES[n % len(PHASES)]
    return {"phase": phase, "blocked_reason": "other" if phase == Phase.BLOCKED else ""}


def spec_with_tickets(*, project, user, rows: int) -> Spec:
    """A spec with `rows` requirements and `rows` tasks (each depending on the one before and
    covering one requirement), and a ticket with one task per planned task, the tickets spread
    over every board column."""
    spec = Spec.objects.create(project=project, user=user, title=f"{rows} tasks", idea="bench", status="executing")
    requirements = SpecRequirement.objects.bulk_create(
        SpecRequirement(spec=spec, key=f"REQ-{n:05d}", title="R", ears_type="ubiquitous", action="a",
                        text="The system shall a.", position=n)
        for n in range(rows)
    )  # fmt: skip
    tasks = SpecTask.objects.bulk_create(
        SpecTask(spec=spec, key=f"TSK-{n:05d}", title=f"Task {n}", position=n) for n in range(rows)
    )
    SpecTaskDependency.objects.bulk_create(
        SpecTaskDependency(task=tasks[n], depends_on=tasks[n - 1]) for n in range(1, rows)
    )
    SpecTaskRequirement.objects.bulk_create(
        SpecTaskRequirement(task=t, requirement=r) for t, r in zip(tasks, requirements, strict=True)
    )
    tickets = Ticket.objects.bulk_create(
        Ticket(project=project, user=user, spec=spec, spec_task=t, title=t.title, **_phase_fields(n))
        for n, t in enumerate(tasks)
    )
    Task.objects.bulk_create(Task(ticket=t, phase=t.phase, task_type="work", title="w") for t in tickets)
    return spec


def tickets_of(*, project, rows: int) -> None:
    """`rows` tickets without a spec, spread over every board column, each with one task."""
    tickets = Ticket.objects.bulk_create(
        Ticket(project=project, user=project.owner, title=f"T{n}", **_phase_fields(n)) for n in range(rows)
    )
    Task.objects.bulk_create(Task(ticket=t, phase=t.phase, task_type="work", title="w") for t in tickets)
