"""The OpenAPI schema says what each operation can answer, errors included.

Every error answers `{"detail": "...", ...}` (omoi.api.exception_handler). Three of them any
operation can give, so they are added here for all, instead of on each view:

- 400: a body or a parameter the API cannot read (a NUL in the path is refused before any view);
- 401: no or a bad token, on every operation that needs one;
- 404: an object that does not exist or is not yours (paths with an id, lookups by ?project=),
  and a page past the end of a paginated list.

The others belong to particular operations and are declared on them with `error_responses`: 409
(the state forbids it), 429 (a throttle or a quota), 502 (GitHub or a git remote failed).
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.permissions import AllowAny

DESCRIPTIONS = {
    400: "The request cannot be accepted; `detail` says why and `errors` holds the fields' messages.",
    401: "No token, or a token that is invalid, expired or revoked.",
    404: "It does not exist or it is not yours (the two are not told apart), or the page is past the end.",
    409: "The object's state forbids it now; `detail` gives the reason.",
    413: "The request body is too large.",
    429: "A throttle or a quota is used up; `detail` gives the limit (quotas add `quota`, `limit`, `window_s`).",
    502: "GitHub or the git remote refused or could not be reached; `detail` gives its reason.",
}


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What went wrong, for a person.")
    errors = serializers.JSONField(required=False, help_text="Validation errors per field (400 only).")


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    """`responses` entries for an operation's own error codes, in the common error shape."""
    return {code: OpenApiResponse(ErrorSerializer, description=DESCRIPTIONS[code]) for code in codes}


class OmoiAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema, adding the errors every operation can answer."""

    def _requires_authentication(self) -> bool:
        permissions = getattr(self.view, "permission_classes", [])
        return not any(permission is AllowAny for permission in permissions)

    def _may_answer_404(self) -> bool:
        if "{" in self.path:
            return True
        if self.method == "GET" and self._is_list_view() and self._get_paginator() is not None:
            return True
        return bool(getattr(self.view, "schema_answers_404", False))

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        codes = [400]
        if self._requires_authentication():
            codes.append(401)
        if self._may_answer_404():
            codes.append(404)
        for code, response in error_responses(*codes).items():
            responses.setdefault(str(code), self._get_response_for_code(response, str(code), direction=direction))
        return dict(sorted(responses.items()))


class TokenScheme(OpenApiAuthenticationExtension):
    """`Authorization: Token <token>` (omoi.auth.TokenAuthentication, a knox token)."""

    target_class = "omoi.auth.TokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return build_bearer_security_scheme_object(header_name="Authorization", token_prefix="Token")
