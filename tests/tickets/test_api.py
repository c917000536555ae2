"""The tickets REST API: projects, tickets, tasks, the board; visibility, auth, query counts."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.pagination import PageNumberPagination

from tests.factories import ProjectFactory, SpecFactory, TaskFactory, TicketFactory
from tests.tickets.conftest import make_ticket, row_counts
from tickets.models import Phase, PhaseHistory, Project, Task, TaskStatus, Ticket, TicketDependency
from tickets.services import task_complete, ticket_transition

pytestmark = pytest.mark.django_db


# --- projects --------------------------------------------------------------------------------


def test_create_a_project(api, user, local_repository):
    response = api.post(
        "/api/v1/projects",
        {
            "name": "widgets",
            "repository": str(local_repository),
            "github_repo": "octo/widgets",
            "test_command": "pytest -q",
            "setup_command": "  pip install -e '.[test]'  ",
            "network_allowed": True,
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    project = Project.objects.get(name="widgets")
    assert response.json() == {
        "id": project.pk,
        "name": "widgets",
        "owner": "alice",
        "repository": str(local_repository),
        "default_branch": "main",
        "github_repo": "octo/widgets",
        "test_command": "pytest -q",
        "setup_command": "pip install -e '.[test]'",
        "network_allowed": True,
        "has_github_token": False,
        "created_at": response.json()["created_at"],
        "updated_at": response.json()["updated_at"],
    }
    assert project.owner == user
    assert (project.setup_command, project.network_allowed) == ("pip install -e '.[test]'", True)
    assert api.get(f"/api/v1/projects/{project.pk}").json()["name"] == "widgets"


def test_a_project_without_the_sandbox_fields_gets_no_setup_and_no_network(api, local_repository):
    response = api.post("/api/v1/projects", {"name": "plain", "repository": str(local_repository)}, format="json")

    assert response.status_code == 201
    assert (response.json()["setup_command"], response.json()["network_allowed"]) == ("", False)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"name": "demo", "repository": "R"}, "name: you already have a project named 'demo'"),
        (
            {"name": "x", "repository": "R", "github_repo": "octo"},
            'github_repo: github_repo must look like "owner/name"',
        ),
        (
            {"name": "x", "repository": "R", "github_repo": "a/b/c"},
            'github_repo: github_repo must look like "owner/name"',
        ),
        ({"name": "x", "repository": "R", "github_repo": "a/.."}, "github_repo: github_repo must look like"),
        ({"name": "   ", "repository": "R"}, "name: This field may not be blank."),
        ({"name": "x"}, "repository: This field is required."),
        (
            {"name": "x", "repository": "R", "setup_command": "npm ci\x00"},
            "JSON body: setup_command contains a NUL character (\\u0000), which cannot be stored",
        ),
        (
            {"name": "x", "repository": "R", "setup_command": "npm ci\x1b[2J"},
            "setup_command: a command must not contain control characters (found '\\x1b' at position 6)",
        ),
        (
            {"name": "x", "repository": "R", "test_command": "pytest\x07"},
            "test_command: a command must not contain control characters",
        ),
        (
            {"name": "x", "repository": "R", "setup_command": "x" * 1001},
            "setup_command: a command is at most 1000 characters (this one has 1001)",
        ),
        ({"name": "x", "repository": "R", "network_allowed": "sometimes"}, "network_allowed: Must be a valid"),
        ({"name": "x", "repository": "R", "default_branch": "-x"}, "default_branch: '-x' is not a usable branch"),
        ({"name": "x", "repository": "R", "default_branch": "a..b"}, "default_branch: 'a..b' is not a usable"),
        ({"name": "x", "repository": "R", "default_branch": "nope"}, "repository: the repository has no branch"),
    ],
)
def test_a_bad_project_is_a_400_that_writes_nothing(api, project, local_repository, body, detail):
    body = {k: (str(local_repository) if v == "R" else v) for k, v in body.items()}
    before = Project.objects.count()
    response = api.post("/api/v1/projects", body, format="json")
    assert response.status_code == 400
    assert response.json()["detail"].startswith(detail)
    assert Project.objects.count() == before


def test_the_same_project_name_is_fine_for_another_owner(other_api, project, local_repository):
    response = other_api.post("/api/v1/projects", {"name": "demo", "repository": str(local_repository)}, format="json")
    assert response.status_code == 201


def test_projects_list_shows_owned_and_member_projects_only(api, user, other_user, project):
    shared = ProjectFactory(owner=other_user, name="shared")
    shared.members.add(user)
    ProjectFactory(owner=other_user, name="private")

    names = [p["name"] for p in api.get("/api/v1/projects").json()["results"]]

    assert names == ["demo", "shared"]


# --- tickets ---------------------------------------------------------------------------------


def test_create_a_ticket_into_backlog_with_a_creation_row(api, project):
    dependency = make_ticket(project=project, title="First")

    response = api.post(
        "/api/v1/tickets",
        {"project": project.pk, "title": "Second", "priority": "high", "dependencies": [dependency.pk]},
        format="json",
    )

    assert response.status_code == 201
    ticket = Ticket.objects.get(title="Second")
    body = response.json()
    assert (body["id"], body["phase"], body["priority"], body["dependencies"], body["user"]) == (
        ticket.pk,
        "BACKLOG",
        "high",
        [dependency.pk],
        "alice",
    )
    assert list(PhaseHistory.objects.filter(ticket=ticket).values_list("from_phase", "to_phase", "actor")) == [
        ("", "BACKLOG", "user:alice")
    ]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"title": "x"}, "project: This field is required."),
        ({"project": 999999, "title": "x"}, "project: project 999999 does not exist or is not yours"),
        ({"project": "abc", "title": "x"}, "project: project must be a project id (a number), not str"),
        ({"project": "P", "title": " "}, "title: This field may not be blank."),
        ({"project": "P", "title": "x", "priority": "urgent"}, 'priority: "urgent" is not a valid choice.'),
        ({"project": "P", "title": "x", "dependencies": [999999]}, "dependencies: ticket #999999 does not exist"),
    ],
)
def test_a_bad_ticket_is_a_400_that_writes_nothing(api, project, body, detail):
    body = {k: (project.pk if v == "P" else v) for k, v in body.items()}
    before = row_counts()
    response = api.post("/api/v1/tickets", body, format="json")
    assert response.status_code == 400
    assert response.json()["detail"] == detail
    assert row_counts() == before


def test_a_ticket_in_another_users_project_cannot_be_created(api, other_user):
    foreign = ProjectFactory(owner=other_user)
    response = api.post("/api/v1/tickets", {"project": foreign.pk, "title": "sneaky"}, format="json")
    assert response.status_code == 400
    assert response.json()["detail"] == f"project: project {foreign.pk} does not exist or is not yours"
    assert Ticket.objects.count() == 0


def test_a_dependency_on_another_projects_ticket_is_refused(api, project, other_user):
    foreign = TicketFactory(project=ProjectFactory(owner=other_user))
    response = api.post(
        "/api/v1/tickets", {"project": project.pk, "title": "x", "dependencies": [foreign.pk]}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["detail"] == f"dependencies: ticket #{foreign.pk} belongs to another project"
    assert (Ticket.objects.count(), TicketDependency.objects.count(), PhaseHistory.objects.count()) == (1, 0, 0)


def test_tickets_filter_by_project_spec_and_phase(api, user, project):
    other_project = ProjectFactory(owner=user)
    spec = SpecFactory(project=project)
    a = make_ticket(project=project, phase=Phase.DESIGN, spec=spec)
    b = make_ticket(project=project, phase=Phase.DESIGN)
    c = make_ticket(project=other_project, phase=Phase.TESTING)

    def ids(query: str) -> list[int]:
        return [t["id"] for t in api.get(f"/api/v1/tickets{query}").json()["results"]]

    assert ids("") == [a.pk, b.pk, c.pk]
    assert ids(f"?project={project.pk}") == [a.pk, b.pk]
    assert ids(f"?spec={spec.pk}") == [a.pk]
    assert ids("?phase=TESTING") == [c.pk]
    assert ids(f"/?phase=DESIGN&project={other_project.pk}") == []
    bad = api.get("/api/v1/tickets?phase=LIMBO")
    assert bad.status_code == 400
    assert bad.json()["detail"].startswith("phase: Select a valid choice.")


def test_ticket_detail_counts_its_tasks(api, project):
    ticket = make_ticket(project=project, phase=Phase.IMPLEMENTATION)
    TaskFactory(ticket=ticket, status=TaskStatus.COMPLETED)
    TaskFactory(ticket=ticket)
    body = api.get(f"/api/v1/tickets/{ticket.pk}/").json()
    assert (body["tasks_done"], body["tasks_total"]) == (1, 2)


def test_context_endpoint_returns_full_context_and_summary(api, project):
    ticket = make_ticket(project=project, phase=Phase.DESIGN)
    task = TaskFactory(ticket=ticket, task_type="create_design")
    task_complete(
        task_id=task.pk,
        result={"summary": "CSV via a streaming view", "decisions": ["stream rows"], "risks": ["large projects"]},
        actor="agent",
    )
    empty = api.get(f"/api/v1/tickets/{ticket.pk}/context").json()
    assert empty == {"ticket_id": ticket.pk, "full_context": {}, "summary": "", "last_updated": None}

    ticket_transition(ticket_id=ticket.pk, to=Phase.BLOCKED, actor="a", blocked_reason="clarification_needed")

    body = api.get(f"/api/v1/tickets/{ticket.pk}/context").json()
    design = body["full_context"]["DESIGN"]
    assert design["summary"] == "create_design: CSV via a streaming view"
    assert (design["decisions"], design["risks"]) == (["stream rows"], ["large projects"])
    assert design["blocked"] == {"reason": "clarification_needed", "message": ""}
    assert body["summary"] == (
        "DESIGN:\ncreate_design: CSV via a streaming view\nDecisions: stream rows\nRisks: large projects\n"
        "Blocked (clarification_needed): "
    )
    assert body["last_updated"] is not None


# --- tasks -----------------------------------------------------------------------------------


def test_tasks_filter_by_ticket_status_and_phase(api, project):
    ticket = make_ticket(project=project, phase=Phase.IMPLEMENTATION)
    a = TaskFactory(ticket=ticket, status=TaskStatus.COMPLETED)
    b = TaskFactory(ticket=ticket, phase=Phase.TESTING)
    c = TaskFactory(ticket=make_ticket(project=project))

    def ids(query: str) -> list[int]:
        return [t["id"] for t in api.get(f"/api/v1/tasks{query}").json()["results"]]

    assert ids("") == [a.pk, b.pk, c.pk]
    assert ids(f"?ticket={ticket.pk}") == [a.pk, b.pk]
    assert ids("?status=completed") == [a.pk]
    assert ids("?phase=TESTING") == [b.pk]
    detail = api.get(f"/api/v1/tasks/{a.pk}").json()
    assert (detail["id"], detail["ticket"], detail["status"], detail["executor"]) == (
        a.pk,
        ticket.pk,
        "completed",
        "agent",
    )


def test_retry_a_failed_task_through_the_api(api, project):
    task = TaskFactory(ticket=make_ticket(project=project, phase=Phase.DESIGN), status=TaskStatus.FAILED, error="x")
    response = api.post(f"/api/v1/tasks/{task.pk}/retry")
    assert (response.status_code, response.json()["status"], response.json()["error"]) == (200, "pending", "")
    completed = TaskFactory(ticket=task.ticket, status=TaskStatus.COMPLETED)
    refused = api.post(f"/api/v1/tasks/{completed.pk}/retry")
    assert refused.status_code == 409
    assert (
        refused.json()["detail"] == f"task #{completed.pk} is completed; only a failed or cancelled task can be retried"
    )


# --- the board -------------------------------------------------------------------------------


def test_the_board_has_every_phase_in_order_with_its_tickets(api, project):
    spec = SpecFactory(project=project)
    design = make_ticket(project=project, phase=Phase.DESIGN, title="Design me", spec=spec, priority="high")
    TaskFactory(ticket=design, status=TaskStatus.COMPLETED)
    TaskFactory(ticket=design)
    blocked = make_ticket(project=project, phase=Phase.BLOCKED, blocked_reason="budget", title="Stuck")
    make_ticket(project=ProjectFactory(owner=project.owner), phase=Phase.DESIGN)  # another project

    response = api.get(f"/api/v1/board/view?project={project.pk}")

    assert response.status_code == 200
    body = response.json()
    assert [c["phase"] for c in body["columns"]] == [
        "BACKLOG",
        "REQUIREMENTS",
        "DESIGN",
        "IMPLEMENTATION",
        "TESTING",
        "DEPLOYMENT",
        "DONE",
        "BLOCKED",
    ]
    columns = {c["phase"]: c for c in body["columns"]}
    assert columns["DESIGN"]["tickets"] == [
        {
            "id": design.pk,
            "title": "Design me",
            "priority": "high",
            "spec": spec.pk,
            "blocked_reason": "",
            "tasks_done": 1,
            "tasks_total": 2,
        }
    ]
    assert columns["BLOCKED"]["tickets"][0]["id"] == blocked.pk
    assert columns["BLOCKED"]["tickets"][0]["blocked_reason"] == "budget"
    assert body["counts"] == {
        "BACKLOG": 0,
        "REQUIREMENTS": 0,
        "DESIGN": 1,
        "IMPLEMENTATION": 0,
        "TESTING": 0,
        "DEPLOYMENT": 0,
        "DONE": 0,
        "BLOCKED": 1,
    }
    assert (body["project"], body["total"]) == (project.pk, 2)


@pytest.mark.parametrize(
    ("query", "status", "detail"),
    [
        ("", 400, "project: the board needs ?project=<id>"),
        ("?project=abc", 400, "project: project must be a project id (a number), not 'abc'"),
        ("?project=999999", 404, "No Project matches the given query."),
    ],
)
def test_the_board_needs_a_visible_project(api, query, status, detail):
    response = api.get(f"/api/v1/board/view{query}")
    assert (response.status_code, response.json()["detail"]) == (status, detail)


def _bulk_tickets(project, count: int) -> None:
    phases = list(Phase)
    Ticket.objects.bulk_create(
        [
            Ticket(
                project=project,
                user=project.owner,
                title=f"T{n}",
                phase=phases[n % len(phases)],
                blocked_reason="other" if phases[n % len(phases)] == Phase.BLOCKED else "",
            )
            for n in range(count)
        ]
    )
    Task.objects.bulk_create(
        [Task(ticket=t, phase=t.phase, task_type="work", title="w") for t in Ticket.objects.filter(project=project)]
    )


def _queries(api, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert api.get(url).status_code == 200
    return len(captured)


def test_the_board_runs_the_same_queries_for_10_and_1000_tickets(api, user, django_assert_num_queries):
    small, large = ProjectFactory(owner=user), ProjectFactory(owner=user)
    _bulk_tickets(small, 10)
    _bulk_tickets(large, 1000)

    queries = _queries(api, f"/api/v1/board/view?project={small.pk}")
    with django_assert_num_queries(queries):
        body = api.get(f"/api/v1/board/view?project={large.pk}").json()
    assert body["total"] == 1000
    assert queries == 4  # the token, the project, the totals per phase, the shown tickets with their counts


@pytest.mark.parametrize(
    ("url", "build"),
    [
        ("/api/v1/projects", lambda user, n: [ProjectFactory(owner=user) for _ in range(n)]),
        ("/api/v1/tickets", lambda user, n: _many_tickets(user, n)),
        ("/api/v1/tasks", lambda user, n: _many_tasks(user, n)),
    ],
)
def test_list_endpoints_run_the_same_queries_for_3_and_300_rows(api, user, url, build):
    build(user, 3)
    few = _queries(api, url)
    build(user, 297)
    body = api.get(url).json()
    assert (body["count"], len(body["results"])) == (300, min(300, PageNumberPagination.page_size))
    assert _queries(api, url) == few


def _many_tickets(user, count: int) -> None:
    project = ProjectFactory(owner=user)
    tickets = Ticket.objects.bulk_create([Ticket(project=project, user=user, title=f"T{n}") for n in range(count)])
    if len(tickets) > 1:
        TicketDependency.objects.create(ticket=tickets[1], depends_on=tickets[0])
    Task.objects.bulk_create([Task(ticket=t, phase=t.phase, task_type="w", title="w") for t in tickets])


def _many_tasks(user, count: int) -> None:
    ticket = TicketFactory(project=ProjectFactory(owner=user))
    Task.objects.bulk_create(
        [Task(ticket=ticket, phase=ticket.phase, task_type=f"w{n}", title="w") for n in range(count)]
    )


# --- who may see what ------------------------------------------------------------------------


def test_another_users_objects_are_404(other_api, project):
    ticket = make_ticket(project=project, phase=Phase.DESIGN)
    task = TaskFactory(ticket=ticket)
    before = row_counts()
    urls = [
        ("get", f"/api/v1/projects/{project.pk}"),
        ("get", f"/api/v1/tickets/{ticket.pk}"),
        ("get", f"/api/v1/tasks/{task.pk}"),
        ("get", f"/api/v1/tickets/{ticket.pk}/history"),
        ("get", f"/api/v1/tickets/{ticket.pk}/artifacts"),
        ("get", f"/api/v1/tickets/{ticket.pk}/context"),
        ("get", f"/api/v1/board/view?project={project.pk}"),
        ("post", f"/api/v1/tickets/{ticket.pk}/transition"),
        ("post", f"/api/v1/tickets/{ticket.pk}/block"),
        ("post", f"/api/v1/tickets/{ticket.pk}/unblock"),
        ("post", f"/api/v1/tickets/{ticket.pk}/artifacts"),
        ("post", f"/api/v1/tickets/{ticket.pk}/validate-gate"),
        ("post", f"/api/v1/tickets/{ticket.pk}/generate-tasks"),
        ("post", f"/api/v1/tasks/{task.pk}/retry"),
    ]
    for method, url in urls:
        if method == "get":
            response = other_api.get(url)
        else:
            response = other_api.post(url, {"to_phase": "BLOCKED", "reason": "other"}, format="json")
        assert response.status_code == 404, url
        assert response.json()["detail"].startswith("No "), url
    assert other_api.get("/api/v1/tickets").json()["results"] == []
    assert other_api.get("/api/v1/tasks").json()["results"] == []
    assert other_api.get("/api/v1/projects").json()["results"] == []
    assert row_counts() == before


def test_a_member_sees_the_project_and_its_tickets(other_api, other_user, project):
    project.members.add(other_user)
    ticket = make_ticket(project=project)
    assert other_api.get(f"/api/v1/tickets/{ticket.pk}").status_code == 200


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/api/v1/projects"),
        ("post", "/api/v1/projects"),
        ("get", "/api/v1/projects/1"),
        ("get", "/api/v1/tickets"),
        ("post", "/api/v1/tickets"),
        ("get", "/api/v1/tickets/1"),
        ("post", "/api/v1/tickets/1/transition"),
        ("post", "/api/v1/tickets/1/block"),
        ("post", "/api/v1/tickets/1/unblock"),
        ("get", "/api/v1/tickets/1/history"),
        ("get", "/api/v1/tickets/1/artifacts"),
        ("post", "/api/v1/tickets/1/artifacts"),
        ("post", "/api/v1/tickets/1/validate-gate"),
        ("post", "/api/v1/tickets/1/generate-tasks"),
        ("get", "/api/v1/tickets/1/context"),
        ("get", "/api/v1/tasks"),
        ("get", "/api/v1/tasks/1"),
        ("post", "/api/v1/tasks/1/retry"),
        ("get", "/api/v1/board/view?project=1"),
    ],
)
def test_unauthenticated_requests_are_401(anonymous_api, project, method, url):
    make_ticket(project=project)
    response = getattr(anonymous_api, method)(url, {}, format="json")
    assert response.status_code == 401
    assert response.json()["detail"] == "Authentication credentials were not provided."
