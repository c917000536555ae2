import django_filters
from django import forms

from tickets.models import Executor, Phase, Priority, Task, TaskStatus, Ticket

ID_MAX = 2**63 - 1


class IdFilter(django_filters.NumberFilter):
    """An id: a whole number within the database's range (a decimal, a float or a number too large
    for a bigint is a 400, never a lookup that fails in the database)."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", ID_MAX)
        super().__init__(*args, **kwargs)


class TicketFilter(django_filters.FilterSet):
    project = IdFilter(field_name="project_id")
    spec = IdFilter(field_name="spec_id")
    phase = django_filters.ChoiceFilter(choices=Phase.choices)
    priority = django_filters.ChoiceFilter(choices=Priority.choices)

    class Meta:
        model = Ticket
        fields = ["project", "spec", "phase", "priority"]


class TaskFilter(django_filters.FilterSet):
    ticket = IdFilter(field_name="ticket_id")
    status = django_filters.ChoiceFilter(choices=TaskStatus.choices)
    phase = django_filters.ChoiceFilter(choices=Phase.choices)
    executor = django_filters.ChoiceFilter(choices=Executor.choices)

    class Meta:
        model = Task
        fields = ["ticket", "status", "phase", "executor"]
