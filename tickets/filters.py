import django_filters
from django import forms

from tickets.models import Executor, Phase, Priority, Task, TaskStatus, Ticket

ID_MAX = 2**63 - 1


def _refuse_empty(value) -> None:
    # An absent parameter arrives as None; one sent without a value as "". The second is a
    # mistake the client should hear about, not a filter that silently matches everything.
    if value == "":
        raise forms.ValidationError("must not be empty (leave the parameter out to not filter)")


class NonEmptyIntegerField(forms.IntegerField):
    def clean(self, value):
        _refuse_empty(value)
        return super().clean(value)


class NonEmptyChoiceField(django_filters.fields.ChoiceField):
    def clean(self, value):
        _refuse_empty(value)
        return super().clean(value)


class ChoiceFilter(django_filters.ChoiceFilter):
    field_class = NonEmptyChoiceField


class IdFilter(django_filters.NumberFilter):
    """An id: a whole number within the database's range (a decimal, a float or a number too large
    for a bigint is a 400, never a lookup that fails in the database)."""

    field_class = NonEmptyIntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", ID_MAX)
        super().__init__(*args, **kwargs)


class TicketFilter(django_filters.FilterSet):
    project = IdFilter(field_name="project_id")
    spec = IdFilter(field_name="spec_id")
    phase = ChoiceFilter(choices=Phase.choices)
    priority = ChoiceFilter(choices=Priority.choices)

    class Meta:
        model = Ticket
        fields = ["project", "spec", "phase", "priority"]


class TaskFilter(django_filters.FilterSet):
    ticket = IdFilter(field_name="ticket_id")
    status = ChoiceFilter(choices=TaskStatus.choices)
    phase = ChoiceFilter(choices=Phase.choices)
    executor = ChoiceFilter(choices=Executor.choices)

    class Meta:
        model = Task
        fields = ["ticket", "status", "phase", "executor"]
