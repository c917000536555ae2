"""Database helpers every app uses (the lowest layer: no app imports upward to reach them)."""

from django.db import models
from django.db.models import Q


def choices_check(field: str, choices: type[models.TextChoices], *, blank: bool = False) -> models.CheckConstraint:
    """A CheckConstraint that keeps `field` inside `choices` (and optionally empty)."""
    condition = Q(**{f"{field}__in": choices.values})
    if blank:
        condition |= Q(**{field: ""})
    return models.CheckConstraint(condition=condition, name=f"%(app_label)s_%(class)s_{field}_valid")
