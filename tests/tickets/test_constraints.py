"""The database keeps the vocabularies and the once-only rules, whatever the code does."""

import pytest
from django.db import IntegrityError, transaction

from tests.factories import TaskFactory, TicketFactory
from tickets.models import PhaseGateArtifact, PhaseGateResult, PhaseHistory, Task, Ticket, TicketDependency

pytestmark = pytest.mark.django_db


def rejected(write) -> bool:
    try:
        with transaction.atomic():
            write()
    except IntegrityError:
        return True
    return False


def test_unknown_vocabulary_values_are_rejected(project):
    ticket = TicketFactory(project=project)
    task = TaskFactory(ticket=ticket)

    assert rejected(lambda: Ticket.objects.filter(pk=ticket.pk).update(phase="LIMBO"))
    assert rejected(lambda: Ticket.objects.filter(pk=ticket.pk).update(priority="urgent"))
    assert rejected(lambda: Ticket.objects.filter(pk=ticket.pk).update(previous_phase="LIMBO"))
    assert rejected(lambda: Task.objects.filter(pk=task.pk).update(status="paused"))
    assert rejected(lambda: Task.objects.filter(pk=task.pk).update(phase="LIMBO"))
    assert rejected(lambda: Task.objects.filter(pk=task.pk).update(executor="robot"))
    assert rejected(lambda: PhaseHistory.objects.create(ticket=ticket, to_phase="LIMBO", actor="a"))
    assert rejected(
        lambda: PhaseGateArtifact.objects.create(ticket=ticket, phase="X", artifact_type="t", collected_by="a")
    )
    assert rejected(
        lambda: PhaseGateResult.objects.create(ticket=ticket, phase="DESIGN", status="maybe", validated_by="a")
    )
    assert not rejected(lambda: Task.objects.filter(pk=task.pk).update(status="running", executor="host"))


def test_blocked_and_its_reason_go_together(project):
    ticket = TicketFactory(project=project)
    assert rejected(lambda: Ticket.objects.filter(pk=ticket.pk).update(phase="BLOCKED"))
    assert rejected(lambda: Ticket.objects.filter(pk=ticket.pk).update(blocked_reason="budget"))
    assert rejected(lambda: Ticket.objects.filter(pk=ticket.pk).update(phase="BLOCKED", blocked_reason="bored"))
    assert not rejected(lambda: Ticket.objects.filter(pk=ticket.pk).update(phase="BLOCKED", blocked_reason="budget"))


def test_one_task_per_ticket_phase_and_template(project):
    task = TaskFactory(ticket=TicketFactory(project=project), phase="DESIGN", task_type="create_design")
    assert rejected(lambda: Task.objects.create(ticket=task.ticket, phase="DESIGN", task_type="create_design"))
    assert not rejected(lambda: Task.objects.create(ticket=task.ticket, phase="TESTING", task_type="create_design"))


def test_dependencies_are_unique_and_never_on_oneself(project):
    a, b = TicketFactory(project=project), TicketFactory(project=project)
    TicketDependency.objects.create(ticket=a, depends_on=b)
    assert rejected(lambda: TicketDependency.objects.create(ticket=a, depends_on=b))
    assert rejected(lambda: TicketDependency.objects.create(ticket=a, depends_on=a))
