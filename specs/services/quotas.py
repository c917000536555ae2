"""Per-user quotas on planning work: how many specs a user may launch within a window, and how
many of their specs may be unfinished at once. Each launch clones a repository and spends model
calls on a worker, so one user must not be able to queue hundreds.

The checks and the launch (or retry) run in one transaction holding the user's row, so two
requests at the same moment cannot both take the last place.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from specs.models import Spec, SpecStatus
from specs.services.planning import spec_launch, spec_retry

OPEN_STATUSES = (SpecStatus.DRAFT, SpecStatus.PLANNING, SpecStatus.PLANNING_COMPLETE, SpecStatus.EXECUTING)


@dataclass
class QuotaUsedUp(Exception):
    """A quota is used up: `quota` names it, `limit` and `window_s` say how large it is."""

    quota: str
    limit: int
    window_s: int | None
    message: str

    def __str__(self) -> str:
        return self.message


def _check_open(*, user) -> None:
    limit = settings.OMOI_QUOTA_OPEN_SPECS
    if limit and Spec.objects.filter(user=user, status__in=OPEN_STATUSES).count() >= limit:
        raise QuotaUsedUp(
            quota="open_specs",
            limit=limit,
            window_s=None,
            message=f"you have {limit} specs that are not finished, the most allowed; "
            "cancel one or wait for one to complete (OMOI_QUOTA_OPEN_SPECS)",
        )


def _check_launches(*, user) -> None:
    limit, window = settings.OMOI_QUOTA_LAUNCHES, settings.OMOI_QUOTA_LAUNCH_WINDOW_S
    since = timezone.now() - timedelta(seconds=window)
    if limit and Spec.objects.filter(user=user, created_at__gte=since).count() >= limit:
        raise QuotaUsedUp(
            quota="launches",
            limit=limit,
            window_s=window,
            message=f"you launched {limit} specs in the last {window} seconds, the most allowed; "
            "try again later (OMOI_QUOTA_LAUNCHES)",
        )


def _lock_user(user) -> None:
    get_user_model().objects.select_for_update().filter(pk=user.pk).exists()


@transaction.atomic
def spec_launch_within_quota(
    *, project_id: int, user, idea: str, title: str = "", require_approval: bool = True
) -> Spec:
    """spec_launch, refused with QuotaUsedUp when the user's launches or open specs are used up."""
    _lock_user(user)
    _check_launches(user=user)
    _check_open(user=user)
    return spec_launch(project_id=project_id, user=user, idea=idea, title=title, require_approval=require_approval)


@transaction.atomic
def spec_retry_within_quota(*, spec_id: int, user) -> Spec:
    """spec_retry; a failed spec comes back to work only while the user has room for it."""
    _lock_user(user)
    if Spec.objects.filter(pk=spec_id, status=SpecStatus.FAILED).exists():
        _check_open(user=user)
    return spec_retry(spec_id=spec_id, user=user)
