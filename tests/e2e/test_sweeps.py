"""The execution sweeper re-enqueues what a lost message left behind, in a bounded number of
queries."""

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.factories import TaskFactory, TicketFactory
from tests.worker import purge_broker
from tickets.models import Task
from tickets.services.execution import execution_sweep

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def empty_queues():
    yield
    purge_broker()


def _stuck(**fields):
    task = TaskFactory(**fields)
    Task.objects.filter(pk=task.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    return task


def test_the_sweeper_finds_each_kind_of_lost_work(django_assert_max_num_queries):
    ticket = TicketFactory(phase="IMPLEMENTATION")
    _stuck(ticket=ticket, phase="IMPLEMENTATION", task_type="implement_feature", executor="agent")
    _stuck(
        ticket=TicketFactory(phase="TESTING"), phase="TESTING", task_type="run_tests", executor="host", status="running"
    )
    _stuck(ticket=TicketFactory(phase="IMPLEMENTATION"), phase="IMPLEMENTATION", task_type="implement_feature",
           executor="agent", status="running")  # fmt: skip
    waiting_on = TicketFactory(phase="IMPLEMENTATION")
    blocked_by_dependency = TicketFactory(phase="IMPLEMENTATION", project=waiting_on.project)
    blocked_by_dependency.dependencies.add(waiting_on)
    _stuck(ticket=blocked_by_dependency, phase="IMPLEMENTATION", task_type="implement_feature", executor="agent")

    with django_assert_max_num_queries(4):
        counts = execution_sweep(stuck_after_s=60)

    assert counts == {"turns": 0, "starts": 1, "host_steps": 1, "dispatches": 1}
