"""The edge of every request: a URL holding text the database cannot store is refused before any
view runs; failed admin logins are throttled; errors under /api/ are JSON, whatever produced them.

Requests whose URL holds text the database cannot store are refused before any view runs.

A NUL in a path (`/specs/1/requirements/REQ%00`) or a query value reaches a database lookup,
where PostgreSQL raises instead of finding nothing. One check here, at the edge, answers 400 with
the reason for every route instead of a 500 from whichever lookup meets it first.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from omoi.text import unstorable_reason


def refuse_unstorable_urls(get_response: Callable[[HttpRequest], HttpResponse]):
    def middleware(request: HttpRequest) -> HttpResponse:
        reason = unstorable_reason(request.path, "the path")
        if reason is None:
            for name, values in request.GET.lists():
                reason = unstorable_reason(name, "a query parameter name") or unstorable_reason(
                    values, f"query parameter {name!r}"
                )
                if reason:
                    break
        if reason:
            return JsonResponse({"detail": reason}, status=400)
        return get_response(request)

    return middleware


def throttle_admin_login(get_response: Callable[[HttpRequest], HttpResponse]):
    """Failed admin logins are counted per client address; past OMOI_LOGIN_ATTEMPTS within
    OMOI_LOGIN_WINDOW_S seconds the login answers 429 until the window passes. (The API's token
    endpoint has its own DRF throttle; this covers the admin's login form.)"""
    from django.conf import settings
    from django.core.cache import cache
    from django.urls import reverse

    def middleware(request: HttpRequest) -> HttpResponse:
        if request.method != "POST" or request.path != reverse("admin:login"):
            return get_response(request)
        key = f"omoi:login-failures:{request.META.get('REMOTE_ADDR', '')}"
        limit, window = settings.OMOI_LOGIN_ATTEMPTS, settings.OMOI_LOGIN_WINDOW_S
        if cache.get(key, 0) >= limit:
            response = HttpResponse(
                f"Too many failed logins from this address; try again in {window} seconds.",
                status=429,
                content_type="text/plain",
            )
            response["Retry-After"] = str(window)
            return response
        response = get_response(request)
        if response.status_code == 200:  # the form came back: the login failed
            cache.add(key, 0, timeout=window)
            try:
                cache.incr(key)
            except ValueError:
                cache.set(key, 1, timeout=window)
        return response

    return middleware


API_ERRORS = {404: "not found", 405: "method not allowed"}


class ApiJsonErrorsMiddleware:
    """A 404 or 405 under /api/ that some view rendered as HTML or YAML (Swagger UI's page, the
    schema, Django's technical 404 with DEBUG on) becomes a JSON `{"detail": ...}` answer, so an
    API client always gets the format it parses. The `Allow` header of a 405 is kept."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code in API_ERRORS
            and (request.path == "/api" or request.path.startswith("/api/"))
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            detail = f"{request.method} {request.path}: {API_ERRORS[response.status_code]}"
            replaced = JsonResponse({"detail": detail}, status=response.status_code)
            if response.has_header("Allow"):
                replaced["Allow"] = response["Allow"]
            return replaced
        return response
