"""The authorization matrix, built from the URL configuration: every route and method has an entry
below, or this test fails (a new route cannot be forgotten). For each one:

- anonymous requests get 401 (public routes say so in their entry); a web page sends them to the
  login page instead;
- another user's objects are a 404 on every method and action, answered exactly as for an id that
  does not exist; lists and filters show nothing of theirs and answer for their project exactly
  as for a project that does not exist;
- a member of the project (not its owner) gets what the route promises.

API routes are called with a token, web pages (`page=True`) with a logged-in session and form data,
as a browser sends them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from django.urls import URLResolver, get_resolver
from rest_framework.test import APIClient

from sandboxes.models import AgentRun
from tests.conftest import client_for, make_git_repository
from tests.factories import (
    ProjectFactory,
    SpecAcceptanceCriterionFactory,
    SpecFactory,
    SpecRequirementFactory,
    TaskFactory,
    UserFactory,
)
from tests.tickets.conftest import make_ticket
from tickets.models import Phase

pytestmark = pytest.mark.django_db

MISSING = 999_999_999


@dataclass(frozen=True)
class Entry:
    path: str  # with {project} {spec} {failed_spec} {ticket} {blocked} {task} {failed_task} placeholders
    member: int  # the status a member of the project gets
    body: dict = field(default_factory=dict)
    # How another user's objects are kept from a stranger:
    #   "object": the path names the owner's object: 404, as for an object that does not exist;
    #   "list": a list: none of the owner's rows, ?project=<theirs> answered as ?project=<missing>;
    #   "body": the body names the owner's project: answered as for a project that does not exist;
    #   "own": the route acts only on the requester's own account or data.
    foreign: str = "object"
    public: bool = False  # anonymous requests are served (no 401)
    anonymous: int = 401
    page: bool = False  # a web page: session login, form data; anonymous requests go to the login page


def page(path: str, member: int, body: dict | None = None, foreign: str = "object", **options) -> Entry:
    return Entry(path, member, body or {}, foreign, page=True, **options)


MATRIX: dict[tuple[str, str], Entry] = {
    ("healthz", "get"): Entry("/healthz", 200, foreign="own", public=True, anonymous=200),
    ("schema", "get"): Entry("/api/schema/", 200, foreign="own", public=True, anonymous=200),
    ("swagger-ui", "get"): Entry("/api/docs/", 200, foreign="own", public=True, anonymous=200),
    ("auth-token", "post"): Entry(
        "/api/v1/auth/token", 200, {"username": "bob", "password": "secret-pass-123"}, "own", True, 200
    ),
    ("auth-logout", "post"): Entry("/api/v1/auth/logout", 204, foreign="own"),
    ("auth-logout-all", "post"): Entry("/api/v1/auth/logout-all", 204, foreign="own"),
    ("project-list", "get"): Entry("/api/v1/projects", 200, foreign="list"),
    ("project-list", "post"): Entry("/api/v1/projects", 201, {"name": "new", "repository": "{repository}"}, "own"),
    ("project-detail", "get"): Entry("/api/v1/projects/{project}", 200),
    ("board-view", "get"): Entry("/api/v1/board/view?project={project}", 200),
    ("ticket-list", "get"): Entry("/api/v1/tickets?project={project}", 200, foreign="list"),
    ("ticket-list", "post"): Entry("/api/v1/tickets", 201, {"project": "{project}", "title": "More"}, "body"),
    ("ticket-detail", "get"): Entry("/api/v1/tickets/{ticket}", 200),
    ("ticket-transition", "post"): Entry(
        "/api/v1/tickets/{ticket}/transition", 200, {"to_phase": "BLOCKED", "reason": "waiting"}
    ),
    ("ticket-block", "post"): Entry("/api/v1/tickets/{ticket}/block", 200, {"reason": "other", "message": "wait"}),
    ("ticket-unblock", "post"): Entry("/api/v1/tickets/{blocked}/unblock", 200),
    ("ticket-history", "get"): Entry("/api/v1/tickets/{ticket}/history", 200),
    ("ticket-artifacts", "get"): Entry("/api/v1/tickets/{ticket}/artifacts", 200),
    ("ticket-artifacts", "post"): Entry(
        "/api/v1/tickets/{ticket}/artifacts", 201, {"artifact_type": "notes", "content": {"text": "x"}}
    ),
    ("ticket-validate-gate", "post"): Entry("/api/v1/tickets/{ticket}/validate-gate", 200),
    ("ticket-generate-tasks", "post"): Entry("/api/v1/tickets/{ticket}/generate-tasks", 200),
    ("ticket-context", "get"): Entry("/api/v1/tickets/{ticket}/context", 200),
    ("task-list", "get"): Entry("/api/v1/tasks?ticket={ticket}", 200, foreign="list"),
    ("task-detail", "get"): Entry("/api/v1/tasks/{task}", 200),
    ("task-retry", "post"): Entry("/api/v1/tasks/{failed_task}/retry", 200),
    ("task-messages", "get"): Entry("/api/v1/tasks/{task}/messages", 200),
    ("task-messages", "post"): Entry("/api/v1/tasks/{task}/messages", 201, {"text": "Use the helper in utils."}),
    ("spec-list", "get"): Entry("/api/v1/specs?project={project}", 200, foreign="list"),
    ("spec-launch", "post"): Entry("/api/v1/specs/launch", 201, {"project": "{project}", "idea": "Add tags"}, "body"),
    ("spec-detail", "get"): Entry("/api/v1/specs/{spec}", 200),
    ("spec-approve", "post"): Entry("/api/v1/specs/{spec}/approve", 200),
    ("spec-retry", "post"): Entry("/api/v1/specs/{failed_spec}/retry", 200),
    ("spec-cancel", "post"): Entry("/api/v1/specs/{spec}/cancel", 200),
    ("spec-replan", "post"): Entry("/api/v1/specs/{spec}/replan", 200),
    # Not approved: the bridge refuses with the reason (what the route promises for this state).
    ("spec-execute-tasks", "post"): Entry("/api/v1/specs/{spec}/execute-tasks", 409),
    ("spec-create-pr", "post"): Entry("/api/v1/specs/{spec}/create-pr", 409),
    ("spec-events", "get"): Entry("/api/v1/specs/{spec}/events?after=0", 200),
    ("spec-transcripts", "get"): Entry("/api/v1/specs/{spec}/transcripts", 200),
    ("spec-requirements", "get"): Entry("/api/v1/specs/{spec}/requirements", 200),
    ("spec-messages", "get"): Entry("/api/v1/specs/{spec}/messages", 200),
    # Not planning: no planning conversation to take it (what the route promises for this state).
    ("spec-messages", "post"): Entry("/api/v1/specs/{spec}/messages", 409, {"text": "Keep it small."}),
    ("spec-budget", "post"): Entry("/api/v1/specs/{spec}/budget", 200, {"budget_usd": "12.50"}),
    ("spec-tasks", "get"): Entry("/api/v1/specs/{spec}/tasks", 200),
    ("spec-requirement", "patch"): Entry("/api/v1/specs/{spec}/requirements/REQ-001", 200, {"title": "Renamed"}),
    # Under the test client (WSGI) the stream sends the events there are and ends.
    ("spec-stream", "get"): Entry("/api/v1/specs/{spec}/stream", 200),
    # Paths under /api/ that name no endpoint: a JSON 404 for everyone, whatever the method.
    **{
        ("api-not-found", method): Entry("/api/v1/nothing-here", 404, foreign="own", public=True, anonymous=404)
        for method in ("get", "post", "put", "patch", "delete")
    },
    # The web application. Forms answer with a redirect (and a message on the next page), also when
    # the service refuses: the spec is planned, not planning, so a message to it is refused.
    ("web:login", "get"): page("/login/", 302, foreign="own", public=True, anonymous=200),
    ("web:login", "post"): page("/login/", 302, {"username": "x", "password": "y"}, "own", public=True, anonymous=200),
    ("web:login", "put"): page("/login/", 302, foreign="own", public=True, anonymous=200),
    ("web:logout", "post"): page("/logout/", 302, foreign="own", public=True, anonymous=302),
    ("web:projects", "get"): page("/", 200, foreign="own"),
    ("web:projects", "post"): page("/", 302, {"name": "new", "repository": "{repository}"}, "own"),
    ("web:project", "get"): page("/projects/{project}/", 200),
    ("web:project", "post"): page("/projects/{project}/", 302, {"idea": "Add tags"}),
    ("web:project-board", "get"): page("/projects/{project}/board/", 200),
    ("web:project-board-cards", "get"): page("/projects/{project}/board/cards", 200),
    ("web:spec", "get"): page("/specs/{spec}/", 200),
    ("web:spec-body", "get"): page("/specs/{spec}/body", 200),
    ("web:spec-board", "get"): page("/specs/{spec}/board/", 200),
    ("web:spec-board-cards", "get"): page("/specs/{spec}/board/cards", 200),
    ("web:spec-control", "post"): page("/specs/{spec}/cancel", 302),
    ("web:spec-message", "post"): page("/specs/{spec}/message", 302, {"text": "Keep it small."}),
    ("web:spec-budget", "post"): page("/specs/{spec}/budget", 302, {"budget_usd": "12.50"}),
    ("web:run", "get"): page("/runs/{run}/", 200),
    ("web:run-messages", "get"): page("/runs/{run}/messages", 200),
    ("web:run-steering", "get"): page("/runs/{run}/steering", 200),
    ("web:run-message", "post"): page("/runs/{run}/message", 302, {"text": "Use the helper in utils."}),
}

HTTP_METHODS = ("get", "post", "put", "patch", "delete")


def _walk(patterns, namespace=None):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, pattern.namespace or namespace)
        else:
            yield namespace, pattern


def routes() -> set[tuple[str, str]]:
    """Every (route name, method) the URL configuration serves, the admin apart."""
    found = set()
    for namespace, pattern in _walk(get_resolver().url_patterns):
        if namespace == "admin":
            continue
        callback = pattern.callback
        actions = getattr(callback, "actions", None)
        view_class = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
        if actions:
            # DRF adds "head" (served as GET) to the mapping once a route has been called.
            methods = set(actions) & set(HTTP_METHODS)
        elif view_class is not None:
            methods = {
                method
                for method in HTTP_METHODS
                if hasattr(view_class, method) and method in view_class.http_method_names
            }
        else:
            # A function view names its methods (web.views.allow); one that does not serves GET.
            methods = set(getattr(callback, "http_methods", ["get"])) & set(HTTP_METHODS)
        assert pattern.name, f"the route {pattern.pattern} has no name: name it and add it to MATRIX"
        name = f"{namespace}:{pattern.name}" if namespace else pattern.name
        found |= {(name, method) for method in methods}
    return found


def test_every_route_and_method_has_an_entry():
    served = routes()
    assert sorted(served - set(MATRIX)) == [], "routes without an entry in MATRIX"
    assert sorted(set(MATRIX) - served) == [], "entries for routes that no longer exist"


@pytest.fixture
def world(user, repository_root, settings):
    """alice's project with bob as a member; carol is a stranger."""
    settings.OMOI_REPOSITORY_CHECK_TIMEOUT_S = 10
    member = UserFactory(username="bob")
    stranger = UserFactory(username="carol")
    repository = make_git_repository(repository_root / "app")
    project = ProjectFactory(owner=user, name="app", repository=str(repository))
    project.members.add(member)
    spec = SpecFactory(project=project, user=user, status="planning_complete", current_phase="sync")
    SpecAcceptanceCriterionFactory(requirement=SpecRequirementFactory(spec=spec, key="REQ-001"))
    failed_spec = SpecFactory(project=project, user=user, status="failed", current_phase="design")
    ticket = make_ticket(project=project, phase=Phase.DESIGN, spec=spec)
    blocked = make_ticket(project=project, phase=Phase.BLOCKED, previous_phase=Phase.DESIGN)
    task = TaskFactory(ticket=ticket, phase=Phase.DESIGN)
    failed_task = TaskFactory(ticket=ticket, phase=Phase.DESIGN, status="failed")
    run = AgentRun.objects.create(kind="task", spec=spec, task=task, phase=task.phase, status="running")
    ids = {
        "project": project.pk,
        "spec": spec.pk,
        "failed_spec": failed_spec.pk,
        "ticket": ticket.pk,
        "blocked": blocked.pk,
        "task": task.pk,
        "failed_task": failed_task.pk,
        "run": run.pk,
        "repository": str(repository),
    }
    return {"ids": ids, "member": member, "stranger": stranger}


def _fill(value, ids: dict):
    if isinstance(value, str):
        filled = value.format(**ids)
        return int(filled) if value.startswith("{") and filled.isdigit() else filled
    if isinstance(value, dict):
        return {key: _fill(item, ids) for key, item in value.items()}
    return value


def _call(client: APIClient, method: str, entry: Entry, ids: dict):
    return getattr(client, method)(
        _fill(entry.path, ids), _fill(entry.body, ids) or None, format="multipart" if entry.page else "json"
    )


def _client(entry: Entry, user) -> APIClient:
    """A client of `user`: a token for the API, a session for the web pages."""
    if not entry.page:
        return client_for(user)
    client = APIClient()
    client.force_login(user)
    return client


ENTRIES = sorted(MATRIX.items())


@pytest.mark.parametrize(("route", "entry"), ENTRIES, ids=[f"{name} {method}" for (name, method), _ in ENTRIES])
def test_anonymous_requests_are_refused(route, entry, world):
    response = _call(APIClient(), route[1], entry, world["ids"])
    if entry.page and not entry.public:
        path = _fill(entry.path, world["ids"])
        assert (response.status_code, response["Location"]) == (302, f"/login/?next={path}")
        return
    assert response.status_code == entry.anonymous
    if not entry.public:
        assert response.json()["detail"] == "Authentication credentials were not provided."


@pytest.mark.parametrize(("route", "entry"), ENTRIES, ids=[f"{name} {method}" for (name, method), _ in ENTRIES])
def test_another_users_objects_are_not_found(route, entry, world):
    method, ids = route[1], world["ids"]
    stranger = _client(entry, world["stranger"])
    missing = {key: (MISSING if isinstance(value, int) else value) for key, value in ids.items()}
    if entry.foreign == "own":
        return  # nothing of another user is named: the member case below covers the route
    theirs = _call(stranger, method, entry, ids)
    nothing = _call(stranger, method, entry, missing)
    assert theirs.status_code == nothing.status_code
    if entry.page:
        # The same page as for an object that does not exist, and nothing of theirs done.
        assert theirs.status_code == 404 and theirs.content == nothing.content
        return
    # The same answer, but for the id it names.
    named = json.dumps(theirs.json()).replace(f"project {ids['project']} ", "project ID ")
    assert named == json.dumps(nothing.json()).replace(f"project {MISSING} ", "project ID ")
    if entry.foreign == "object":
        assert theirs.status_code == 404
    elif entry.foreign == "list":
        assert theirs.status_code == 200 and theirs.json()["results"] == []
        unfiltered = stranger.get(_fill(entry.path, ids).split("?")[0]).json()
        assert unfiltered["results"] == []
    else:
        assert theirs.status_code in (400, 404)
        assert "not" in theirs.json()["detail"]


@pytest.mark.parametrize(("route", "entry"), ENTRIES, ids=[f"{name} {method}" for (name, method), _ in ENTRIES])
def test_a_member_gets_what_the_route_promises(route, entry, world):
    client = APIClient() if entry.public and not entry.page else _client(entry, world["member"])
    response = _call(client, route[1], entry, world["ids"])
    assert response.status_code == entry.member, (response.status_code, response.content[:500])


def test_the_admin_needs_a_staff_login(client, world):
    response = client.get("/admin/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    client.force_login(world["member"])
    assert client.get("/admin/tickets/project/").status_code == 302
