"""API token authentication: django-rest-knox tokens (hashed at rest, expiring, revocable),
presented as `Authorization: Token <token>` as before.

Knox's own class also deletes the user's other expired tokens on every request (one more query
per request); here only the presented token is checked, and expired tokens are purged when a
user obtains a new one (omoi.views.ObtainTokenView).
"""

from __future__ import annotations

from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from rest_framework import exceptions


class TokenAuthentication(KnoxTokenAuthentication):
    def authenticate_credentials(self, token: bytes):
        try:
            token.decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(_("Invalid token.")) from None
        return super().authenticate_credentials(token)

    def _cleanup_token(self, auth_token) -> bool:
        if auth_token.expiry is not None and auth_token.expiry < timezone.now():
            auth_token.delete()
            return True
        return False
