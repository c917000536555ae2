import django_filters

from specs.models import Spec, SpecStatus
from tickets.filters import ChoiceFilter, IdFilter


class SpecFilter(django_filters.FilterSet):
    # A number, not a choice of projects: another user's project must filter to nothing, exactly
    # like a project that does not exist, instead of answering differently.
    project = IdFilter(field_name="project_id")
    status = ChoiceFilter(choices=SpecStatus.choices)

    class Meta:
        model = Spec
        fields = ["project", "status"]
