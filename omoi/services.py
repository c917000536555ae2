"""State changes that belong to no app: API tokens."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone
from knox.models import AuthToken
from knox.settings import knox_settings


def token_issue(*, user) -> tuple[AuthToken, str]:
    """A new API token for `user`. Its expired tokens are purged, and past
    REST_KNOX["TOKEN_LIMIT_PER_USER"] the oldest live ones are revoked, so logging in again
    always works and never piles tokens up."""
    with transaction.atomic():
        AuthToken.objects.filter(user=user, expiry__lt=timezone.now()).delete()
        limit = knox_settings.TOKEN_LIMIT_PER_USER
        if limit:
            keep = (
                AuthToken.objects.filter(user=user)
                .order_by("-created")
                .values_list("digest", flat=True)[: max(limit - 1, 0)]
            )
            AuthToken.objects.filter(user=user).exclude(digest__in=list(keep)).delete()
        return AuthToken.objects.create(user=user)
