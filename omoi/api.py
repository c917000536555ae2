"""Shared REST plumbing: the router every app uses and the JSON error format.

Every error answers as JSON with a human-readable `detail`; validation errors also carry the
per-field `errors` DRF produced. Domain errors (a move the state machine forbids, a gate that
blocks) raise `Conflict`, which answers 409 with its reason.
"""

from typing import Any

from rest_framework import status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import DefaultRouter, SimpleRouter
from rest_framework.views import exception_handler as drf_exception_handler


class OptionalSlashRouter(SimpleRouter):
    """Every path answers with and without a trailing slash."""

    def __init__(self) -> None:
        super().__init__()
        # SimpleRouter turns any truthy trailing_slash argument into "/", so set the pattern here.
        self.trailing_slash = "/?"


class OptionalSlashDefaultRouter(DefaultRouter):
    def __init__(self) -> None:
        super().__init__()
        self.trailing_slash = "/?"


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"

    def __init__(self, detail: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.extra = extra or {}


class UpstreamError(APIException):
    """An outside service the request depends on (GitHub, a git remote) refused or failed."""

    status_code = status.HTTP_502_BAD_GATEWAY
    default_detail = "An upstream service failed."
    default_code = "upstream_error"


class QuotaExceeded(APIException):
    """A per-user quota is used up: 429 with the limit, the window and what counts against it."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "quota_exceeded"

    def __init__(self, detail: str, *, quota: str, limit: int, window_s: int | None = None) -> None:
        super().__init__(detail)
        self.extra = {"quota": quota, "limit": limit, "window_s": window_s}


def query_int(request: Request, name: str, *, required: bool = False, minimum: int = 0) -> int | None:
    """An integer query parameter, or a 400 that says what was wrong with it. Only ASCII digits
    count ("¹" is a digit to str.isdigit, not to int())."""
    raw = request.query_params.get(name)
    if raw is None:
        if required:
            raise ValidationError({name: [f"?{name}= is required"]})
        return None
    if not (raw.isascii() and raw.lstrip("-").isdigit()):
        raise ValidationError({name: [f"{name} must be a whole number, not {raw!r}"]})
    value = int(raw)
    if value < minimum:
        raise ValidationError({name: [f"{name} must be {minimum} or more"]})
    return value


def _first_message(errors: Any) -> str:
    if isinstance(errors, dict):
        for field, value in errors.items():
            message = _first_message(value)
            return message if field in ("non_field_errors", "detail") else f"{field}: {message}"
    if isinstance(errors, list) and errors:
        return _first_message(errors[0])
    return str(errors)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, ValidationError):
        response.data = {"detail": _first_message(exc.detail), "errors": exc.detail}
    elif isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"detail": str(response.data["detail"]), **getattr(exc, "extra", {})}
    else:
        response.data = {"detail": _first_message(response.data), "errors": response.data}
    return response
