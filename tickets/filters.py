import django_filters

from tickets.models import Executor, Phase, Priority, Task, TaskStatus, Ticket


class TicketFilter(django_filters.FilterSet):
    project = django_filters.NumberFilter(field_name="project_id")
    spec = django_filters.NumberFilter(field_name="spec_id")
    phase = django_filters.ChoiceFilter(choices=Phase.choices)
    priority = django_filters.ChoiceFilter(choices=Priority.choices)

    class Meta:
        model = Ticket
        fields = ["project", "spec", "phase", "priority"]


class TaskFilter(django_filters.FilterSet):
    ticket = django_filters.NumberFilter(field_name="ticket_id")
    status = django_filters.ChoiceFilter(choices=TaskStatus.choices)
    phase = django_filters.ChoiceFilter(choices=Phase.choices)
    executor = django_filters.ChoiceFilter(choices=Executor.choices)

    class Meta:
        model = Task
        fields = ["ticket", "status", "phase", "executor"]
