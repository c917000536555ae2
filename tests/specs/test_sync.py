"""SYNC: reconciling rows by key, idempotently, in a number of queries that does not grow with the
number of tasks."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from specs.models import SpecRequirement, SpecTask, SpecTaskDependency, SpecTaskRequirement
from specs.services import sync
from tests.factories import ProjectFactory, SpecFactory, TicketFactory
from tests.specs import plans

REQUIREMENT_COUNT = 5


def requirements_plan():
    return plans.requirements_plan(REQUIREMENT_COUNT, criteria=2)


def tasks_plan(count):
    return plans.tasks_plan(count, requirement_count=REQUIREMENT_COUNT)


def changed_plan(count):
    return plans.changed_plan(count, requirement_count=REQUIREMENT_COUNT)


edges = plans.edges


def reconcile(spec, tasks):
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        counts = sync.tasks_reconcile(spec=spec, tasks=tasks)
    return counts, len(queries.captured_queries)


def run_scenarios(count):
    spec = SpecFactory(project=ProjectFactory())
    sync.requirements_reconcile(spec=spec, requirements=requirements_plan())
    first, first_queries = reconcile(spec, tasks_plan(count))
    assert (len(first.created), first.links_created) == (count, edges(tasks_plan(count)) + count)
    assert SpecTask.objects.filter(spec=spec).count() == count
    assert SpecTaskDependency.objects.filter(task__spec=spec).count() == edges(tasks_plan(count))
    assert SpecTaskRequirement.objects.filter(task__spec=spec).count() == count

    again, again_queries = reconcile(spec, tasks_plan(count))
    assert (again.changed, again.unchanged) == (False, count)

    changes, changes_queries = reconcile(spec, changed_plan(count))
    assert (len(changes.created), len(changes.updated), len(changes.deleted)) == (5, (count - 5 + 9) // 10, 5)
    assert SpecTask.objects.filter(spec=spec).count() == count
    assert SpecTaskDependency.objects.filter(task__spec=spec).count() == edges(changed_plan(count))
    return first_queries, again_queries, changes_queries


def allowed_growth(count):
    """PostgreSQL: none. SQLite: Django splits each bulk statement into batches of at most 999
    variables (about 76 task rows), so a few extra statements per 76 rows; a query per task would
    be hundreds more."""
    return 0 if connection.vendor == "postgresql" else count // 20


@pytest.mark.django_db
def test_sync_of_500_tasks_takes_no_more_queries_than_50():
    small = run_scenarios(50)
    large = run_scenarios(500)

    for name, few, many in zip(("first sync", "repeat", "changes"), small, large, strict=True):
        assert few <= many <= few + allowed_growth(500), (name, few, many)
    if connection.vendor == "postgresql":
        assert small == large


@pytest.mark.django_db
def test_a_repeated_sync_writes_nothing():
    spec = SpecFactory(project=ProjectFactory())
    sync.requirements_reconcile(spec=spec, requirements=requirements_plan())
    sync.tasks_reconcile(spec=spec, tasks=tasks_plan(5))
    rows = list(SpecTask.objects.filter(spec=spec).values_list("pk", "updated_at"))

    with CaptureQueriesContext(connection) as queries:
        counts = sync.tasks_reconcile(spec=spec, tasks=tasks_plan(5))
        requirement_counts = sync.requirements_reconcile(spec=spec, requirements=requirements_plan())

    writes = [q["sql"] for q in queries.captured_queries if not q["sql"].lstrip().upper().startswith("SELECT")]
    assert writes == []
    assert (counts.changed, requirement_counts.changed) == (False, False)
    assert list(SpecTask.objects.filter(spec=spec).values_list("pk", "updated_at")) == rows


@pytest.mark.django_db
def test_a_dropped_task_with_a_ticket_is_kept_and_one_without_is_removed():
    spec = SpecFactory(project=ProjectFactory())
    sync.requirements_reconcile(spec=spec, requirements=requirements_plan())
    sync.tasks_reconcile(spec=spec, tasks=tasks_plan(4))
    started = SpecTask.objects.get(spec=spec, key="TSK-0003")
    TicketFactory(project=spec.project, spec=spec, spec_task=started)
    plan = tasks_plan(2)

    counts = sync.tasks_reconcile(spec=spec, tasks=plan)

    assert (counts.deleted, counts.kept_with_ticket) == (["TSK-0004"], ["TSK-0003"])
    assert list(SpecTask.objects.filter(spec=spec).order_by("key").values_list("key", flat=True)) == [
        "TSK-0001",
        "TSK-0002",
        "TSK-0003",
    ]
    # The kept task's own links stay as they were; the removed task's links went with it.
    assert set(SpecTaskDependency.objects.filter(task__spec=spec).values_list("task__key", "depends_on__key")) == {
        ("TSK-0002", "TSK-0001"),
        ("TSK-0003", "TSK-0002"),
        ("TSK-0003", "TSK-0001"),
    }


@pytest.mark.django_db
def test_reworded_criteria_lose_their_verification_and_extra_ones_go():
    spec = SpecFactory(project=ProjectFactory())
    plan = requirements_plan()
    sync.requirements_reconcile(spec=spec, requirements=plan)
    requirement = SpecRequirement.objects.get(spec=spec, key="REQ-001")
    requirement.criteria.update(verified=True, evidence={"tests": "passed"})
    plan[0]["acceptance_criteria"] = ["thing 1 is done", "thing 1 is logged with its time", "thing 1 is audited"]
    plan[1]["acceptance_criteria"] = ["thing 2 is done"]

    counts = sync.requirements_reconcile(spec=spec, requirements=plan)

    assert counts.updated == ["REQ-001", "REQ-002"]
    assert list(requirement.criteria.order_by("position").values_list("text", "verified")) == [
        ("thing 1 is done", True),
        ("thing 1 is logged with its time", False),
        ("thing 1 is audited", False),
    ]
    assert list(SpecRequirement.objects.get(spec=spec, key="REQ-002").criteria.values_list("text", flat=True)) == [
        "thing 2 is done"
    ]
