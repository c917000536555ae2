"""EXECUTE: the bridge makes one ticket per planned task, once, in a number of statements that does
not grow with the number of tasks, and starts exactly the tickets whose dependencies are done."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from omoi.models import Lease
from sandboxes.models import SandboxEvent
from specs.models import Spec, SpecTask, SpecTaskDependency, SpecTaskRequirement
from specs.services import sync
from specs.services.bridge import SpecNotExecutable, spec_execute
from tests.factories import ProjectFactory
from tests.specs import plans
from tests.support.steps import waiting_steps
from tickets.models import PhaseHistory, Task, Ticket, TicketDependency

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def git_store(settings, tmp_path):
    settings.OMOI_REPOS_DIR = tmp_path / "repos"


def planned(project, user, count: int) -> Spec:
    spec = Spec.objects.create(
        project=project, user=user, title=f"{count} tasks", idea="x", status="planning_complete",
        current_phase="sync", approved_at=timezone.now(),
    )  # fmt: skip
    sync.requirements_reconcile(spec=spec, requirements=plans.requirements_plan(3))
    sync.tasks_reconcile(spec=spec, tasks=plans.tasks_plan(count, requirement_count=3))
    return spec


def bridge(spec: Spec) -> int:
    with CaptureQueriesContext(connection) as queries:
        spec_execute(spec_id=spec.pk, actor="test")
    return len(queries.captured_queries)


def test_the_bridge_of_60_tasks_takes_no_more_statements_than_of_6(user, repository):
    project = ProjectFactory(owner=user, repository=str(repository))
    bridge(planned(project, user, 2))  # the first one clones the repository's mirror
    few = bridge(planned(project, user, 6))
    large = planned(project, user, 60)
    many = bridge(large)

    growth = 0 if connection.vendor == "postgresql" else 10  # SQLite splits bulk statements in batches
    assert few <= many <= few + growth, (few, many)
    tickets = Ticket.objects.filter(spec=large)
    assert tickets.count() == 60
    assert PhaseHistory.objects.filter(ticket__spec=large).count() == 120  # created, then started
    assert Task.objects.filter(ticket__spec=large, task_type="analyze_requirements").count() == 60
    assert (
        TicketDependency.objects.filter(ticket__spec=large).count()
        == SpecTaskDependency.objects.filter(task__spec=large).count()
    )
    assert SandboxEvent.objects.filter(spec=large, type="ticket.transitioned").count() == 60
    # Only the first task has no dependency: only its ticket's step is due.
    first = tickets.get(spec_task__key="TSK-0001")
    assert [
        step for step in waiting_steps() if step[0] == "ticket" and step[1] in set(tickets.values_list("pk", flat=True))
    ] == [("ticket", first.pk)]


def test_a_second_bridge_makes_nothing_and_an_unapproved_spec_none(user, repository):
    project = ProjectFactory(owner=user, repository=str(repository))
    spec = planned(project, user, 4)
    spec_execute(spec_id=spec.pk, actor="test")
    before = (Ticket.objects.count(), PhaseHistory.objects.count(), Task.objects.count(), Lease.objects.count())

    assert spec_execute(spec_id=spec.pk, actor="again").status == "executing"

    assert (Ticket.objects.count(), PhaseHistory.objects.count(), Task.objects.count(), Lease.objects.count()) == before
    unapproved = planned(project, user, 2)
    Spec.objects.filter(pk=unapproved.pk).update(approved_at=None)
    with pytest.raises(SpecNotExecutable, match="waits for approval"):
        spec_execute(spec_id=unapproved.pk, actor="test")
    assert not Ticket.objects.filter(spec=unapproved).exists()
    assert SpecTaskRequirement.objects.filter(task__spec=unapproved).count() == 2
    assert SpecTask.objects.filter(spec=unapproved).count() == 2
