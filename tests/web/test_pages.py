"""The web application's pages with Django's test client: what each page answers about a spec, the
forms (validated like the API, CSRF-protected), the controls (the planning services), escaping of
hostile text, and visibility (another user's objects are 404s; staff see everything)."""

import re
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from omoi.models import LLMUsage
from sandboxes.models import AgentRun
from sandboxes.services.events import event_record
from specs.models import Spec, SpecAcceptanceCriterion
from tests.conftest import make_git_repository
from tests.e2e.conftest import planned_spec
from tests.factories import ProjectFactory, UserFactory
from tests.support.steps import waiting_steps
from tests.web.transcripts import run_with_transcript
from tickets.models import Phase, Project, Task, Ticket

HOSTILE = '<script>alert("owned")</script>'
COMMIT = "3f2c9a1e0b" + "4" * 30


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def browser(user) -> Client:
    return logged_in(user)


def story(user, *, project=None) -> Spec:
    """A completed spec with all a page can show: criteria with evidence, a design with hostile
    HTML, tickets with tasks and an agent run, usage per phase, a timeline, a pull request."""
    project = project or ProjectFactory(owner=user, name="textkit", github_repo="acme/textkit")
    spec = planned_spec(project=project, user=user)
    spec.design = {**spec.design, "architecture": f"## Architecture\n\nA `stats` module.\n\n{HOSTILE}\n\n- one\n"}
    spec.status, spec.current_phase, spec.progress = "completed", "complete", 100
    spec.branch_name = "omoi/spec-1-word-statistics"
    spec.pull_request_url, spec.pull_request_number = "https://github.example/acme/textkit/pull/7", 7
    spec.save()
    tickets = {}
    for task in spec.tasks.all():
        tickets[task.key] = Ticket.objects.create(
            project=project, user=user, spec=spec, spec_task=task, title=task.title, phase=Phase.DONE
        )
    work = Task.objects.create(
        ticket=tickets["TSK-001"],
        phase=Phase.IMPLEMENTATION,
        task_type="implement_feature",
        title="Implement",
        status="completed",
    )
    run_with_transcript(
        kind="task",
        spec=spec,
        task=work,
        phase="IMPLEMENTATION",
        status="finished",
        turns=1,
        messages=[
            {"role": "user", "content": "# TSK-001: Add word_count"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": f"Reading {HOSTILE}"},
                    {"type": "tool_use", "id": "t1", "name": "read_file", "input": {"path": "textkit/core.py"}},
                ],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": HOSTILE}]},
        ],
    )
    SpecAcceptanceCriterion.objects.filter(requirement__spec=spec).update(
        verified=True,
        verified_at=timezone.now(),
        evidence={
            "tickets": [
                {
                    "ticket": tickets["TSK-001"].pk,
                    "key": "TSK-001",
                    "commits": [COMMIT],
                    "tests": {"command": "python3 -m unittest", "passed": 4, "failed": 0},
                }
            ]
        },
    )
    for phase, tokens, cost in (("explore", 1000, "0.010000"), ("IMPLEMENTATION", 3000, "0.030000")):
        LLMUsage.objects.create(
            spec=spec, phase=phase, provider="replay", model="replay", input_tokens=tokens, output_tokens=tokens // 10,
            cost_usd=Decimal(cost),
        )  # fmt: skip
    for type_, payload in (
        ("spec.phase_started", {"phase": "explore"}),
        ("spec.phase_completed", {"phase": "explore", "summary": "a python library"}),
        ("spec.completed", {"tickets": 2, "criteria_verified": 5}),
        ("spec.pull_request_opened", {"number": 7}),
    ):
        event_record(type=type_, payload=payload, spec_id=spec.pk)
    return spec


def test_pages_need_a_login(client, user):
    spec = story(user)
    for path in ("/", f"/projects/{spec.project_id}/", f"/specs/{spec.pk}/", f"/specs/{spec.pk}/board/"):
        response = client.get(path)
        assert (response.status_code, response["Location"]) == (302, f"/login/?next={path}")


def test_logging_in_with_the_form(client, user):
    page = client.get("/login/")
    wrong = client.post("/login/", {"username": "alice", "password": "nope"})
    right = client.post("/login/", {"username": "alice", "password": "secret-pass-123"})

    assert page.status_code == 200 and b'name="csrfmiddlewaretoken"' in page.content
    assert b"did not match" in wrong.content
    assert (right.status_code, right["Location"]) == (302, "/")


def test_the_spec_page_answers_what_happened(browser, user):
    spec = story(user)

    html = browser.get(f"/specs/{spec.pk}/").content.decode()

    assert 'id="spec-status">Completed<' in html
    assert 'href="https://github.example/acme/textkit/pull/7"' in html
    assert "omoi/spec-1-word-statistics" in html
    # the timeline, with seconds
    assert "EXPLORE done: a python library" in html
    assert "Completed: 2 tickets, 5 acceptance criteria verified" in html
    assert re.search(r"<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d</time>", html)
    # each criterion with its evidence: ticket, commit, test counts
    assert html.count('class="criterion verified"') == 5
    assert f'<code title="{COMMIT}">3f2c9a1e0b</code>' in html
    assert "4 passed, 0 failed" in html
    # the design as Markdown, raw HTML escaped
    assert "<h2>Architecture</h2>" in html and "<code>stats</code>" in html
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(&quot;owned&quot;)&lt;/script&gt;" in html
    # tasks with dependencies and tickets, their work and runs
    tsk2 = re.search(r'<tr id="task-TSK-002">.*?</tr>', html, re.S).group(0)
    assert "TSK-001" in tsk2 and "REQ-002" in tsk2 and "Done" in tsk2
    run = AgentRun.objects.get(spec=spec, kind="task")
    assert f'href="/runs/{run.pk}/"' in html
    # tokens and cost, total and per phase
    assert "2 calls, 4400 tokens (4000 in, 400 out), $0.0400" in html
    assert re.search(r"<td>explore</td><td>1</td><td>1000</td><td>100</td><td>1100</td><td>\$0\.0100</td>", html)
    assert re.search(r"<td>IMPLEMENTATION</td><td>1</td><td>3000</td><td>300</td><td>3300</td><td>\$0\.0300</td>", html)
    # the board, every card DONE
    done = re.search(r'data-column="DONE">.*?</section>', html, re.S).group(0)
    assert done.count('class="card ') == 2


def test_a_failed_spec_shows_its_error_with_retry_and_why_there_is_no_pull_request(browser, user):
    project = ProjectFactory(owner=user, name="textkit")
    spec = planned_spec(project=project, user=user)
    Spec.objects.filter(pk=spec.pk).update(
        status="failed", current_phase="explore", last_error=f"the model could not be used: {HOSTILE}"
    )

    html = browser.get(f"/specs/{spec.pk}/").content.decode()

    assert 'id="control-retry"' in html and 'id="control-replan"' in html
    assert 'id="control-approve"' not in html and 'id="control-cancel"' not in html
    assert "the model could not be used: &lt;script&gt;" in html
    assert "No pull request: the spec failed before every ticket was done." in html


def test_a_planned_spec_is_approved_from_its_page_through_the_service(
    browser, user, django_capture_on_commit_callbacks
):
    project = ProjectFactory(owner=user, name="textkit")
    spec = planned_spec(project=project, user=user, approved=False)
    assert 'id="control-approve"' in browser.get(f"/specs/{spec.pk}/").content.decode()

    with django_capture_on_commit_callbacks() as callbacks:
        approved = browser.post(f"/specs/{spec.pk}/approve", follow=True)

    spec.refresh_from_db()
    assert (spec.approved_by, approved.status_code) == (user, 200)
    # The service recorded the spec's next step (the bridge) and sends it once, after commit.
    assert waiting_steps() == [("spec", spec.pk)] and len(callbacks) == 1
    assert "Approved: its tasks become tickets." in approved.content.decode()
    again = browser.post(f"/specs/{spec.pk}/retry", follow=True).content.decode()
    assert "Retry refused: only a failed spec can be retried; this spec is planning_complete" in again


def test_forms_and_controls_need_the_csrf_token(user):
    spec = story(user)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)

    assert strict.post(f"/specs/{spec.pk}/cancel").status_code == 403
    assert strict.post("/", {"name": "x", "repository": "/tmp/x"}).status_code == 403
    page = strict.get(f"/projects/{spec.project_id}/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)
    launched = strict.post(f"/projects/{spec.project_id}/", {"idea": "Add CSV export", "csrfmiddlewaretoken": token})
    assert launched.status_code == 302


def test_creating_a_project_validates_like_the_api(browser, user, api, repository_root):
    repository = make_git_repository(repository_root / "textkit")
    bad = browser.post("/", {"name": "  ", "repository": "/tmp/x", "github_repo": "not a repo"})
    api_bad = api.post("/api/v1/projects", {"name": "  ", "repository": "/tmp/x", "github_repo": "not a repo"})

    html = bad.content.decode()
    assert bad.status_code == 400
    for field, messages in api_bad.json()["errors"].items():
        for message in messages:
            assert message.replace('"', "&quot;") in html, (field, message)
    assert not Project.objects.exists()

    created = browser.post(
        "/", {"name": "textkit", "repository": str(repository), "default_branch": "", "github_repo": "acme/textkit"}
    )
    project = Project.objects.get()
    assert (created.status_code, created["Location"]) == (302, f"/projects/{project.pk}/")
    assert (project.owner, project.default_branch, project.github_repo) == (user, "main", "acme/textkit")
    assert project.repository == str(repository)
    taken = browser.post("/", {"name": "textkit", "repository": str(repository)})
    assert "you already have a project named &#x27;textkit&#x27;" in taken.content.decode()


def test_launching_an_idea_with_and_without_approval(browser, user, django_capture_on_commit_callbacks):
    project = ProjectFactory(owner=user, name="textkit")

    empty = browser.post(f"/projects/{project.pk}/", {"idea": "   "})
    with django_capture_on_commit_callbacks():
        with_approval = browser.post(f"/projects/{project.pk}/", {"idea": "Add CSV export", "require_approval": "on"})
        without = browser.post(f"/projects/{project.pk}/", {"idea": "Add JSON export", "title": "JSON"})

    assert empty.status_code == 400 and Spec.objects.filter(idea="").count() == 0
    first, second = Spec.objects.order_by("id")
    assert (first.idea, first.require_approval, first.status) == ("Add CSV export", True, "planning")
    assert (second.title, second.require_approval) == ("JSON", False)
    assert with_approval["Location"] == f"/specs/{first.pk}/" and without["Location"] == f"/specs/{second.pk}/"


def test_another_user_sees_none_of_it_members_and_staff_see_all(user, other_user):
    spec = story(user)
    run = AgentRun.objects.get(spec=spec)
    paths = [
        f"/projects/{spec.project_id}/",
        f"/projects/{spec.project_id}/board/",
        f"/projects/{spec.project_id}/board/cards",
        f"/specs/{spec.pk}/",
        f"/specs/{spec.pk}/body",
        f"/specs/{spec.pk}/board/",
        f"/specs/{spec.pk}/board/cards",
        f"/runs/{run.pk}/",
        f"/runs/{run.pk}/messages",
    ]
    other = logged_in(other_user)
    for path in paths:
        assert other.get(path).status_code == 404, path
    assert other.post(f"/specs/{spec.pk}/cancel").status_code == 404
    assert "textkit" not in other.get("/").content.decode()

    member = UserFactory(username="member")
    spec.project.members.add(member)
    as_member = logged_in(member)
    for path in paths:
        assert as_member.get(path).status_code == 200, path

    staff = logged_in(UserFactory(username="root", is_staff=True, is_superuser=True))
    for path in paths:
        assert staff.get(path).status_code == 200, path
    assert f'href="/projects/{spec.project_id}/"' in staff.get("/").content.decode()


def test_the_run_page_shows_the_transcript_escaped(browser, user):
    spec = story(user)
    run = AgentRun.objects.get(spec=spec)

    html = browser.get(f"/runs/{run.pk}/").content.decode()
    tail = browser.get(f"/runs/{run.pk}/messages?from=2")

    assert "→ read_file" in html and "<dt>path</dt><dd><code>textkit/core.py</code></dd>" in html
    assert HOSTILE not in html and html.count("&lt;script&gt;alert(&quot;owned&quot;)&lt;/script&gt;") == 2
    assert tail["X-Message-Count"] == "3" and tail.content.decode().count('class="message ') == 1


def test_the_board_shows_blocked_cards_with_their_reason(browser, user):
    project = ProjectFactory(owner=user, name="textkit")
    Ticket.objects.create(
        project=project, user=user, title="Stuck", phase=Phase.BLOCKED, previous_phase=Phase.IMPLEMENTATION,
        blocked_reason="failing_checks", blocked_message="2 tests fail",
    )  # fmt: skip
    ticket = Ticket.objects.create(project=project, user=user, title="Going", phase=Phase.IMPLEMENTATION)
    Task.objects.create(ticket=ticket, phase=Phase.IMPLEMENTATION, task_type="a", title="a", status="completed")
    Task.objects.create(ticket=ticket, phase=Phase.IMPLEMENTATION, task_type="b", title="b", status="running")

    html = browser.get(f"/projects/{project.pk}/board/").content.decode()

    blocked = re.search(r'data-column="BLOCKED">.*?</section>', html, re.S).group(0)
    assert "Stuck" in blocked and "<strong>failing_checks</strong>: 2 tests fail" in blocked
    working = re.search(r'data-column="IMPLEMENTATION">.*?</section>', html, re.S).group(0)
    assert "1/2 tasks · 1 running" in working


def test_the_api_answers_json_for_unknown_paths_and_methods(api, anonymous_api):
    for response in (
        api.get("/api/v1/nothing-here"),
        api.post("/api/v1/specs/1/nothing"),
        anonymous_api.get("/api/v2/"),
        anonymous_api.delete("/api"),
    ):
        assert (response.status_code, response["Content-Type"]) == (404, "application/json")
        assert response.json()["detail"].startswith("no API endpoint at /api")
    wrong_method = api.delete("/api/v1/projects")
    assert (wrong_method.status_code, wrong_method.json()) == (405, {"detail": 'Method "DELETE" not allowed.'})
    for path in ("/api/schema", "/api/docs"):
        response = api.post(path)
        assert (response.status_code, response["Content-Type"]) == (405, "application/json"), path
        assert response.json() == {"detail": f"POST {path}: method not allowed"}
        assert "GET" in response["Allow"]


def test_static_files_and_swagger_ui_are_served_without_a_cdn(client):
    css = client.get("/static/admin/css/base.css")
    docs = client.get("/api/docs").content.decode()

    assert css.status_code == 200 and css["Content-Type"].startswith("text/css")
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', docs)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets) and "https://" not in docs.split("<body")[0]
    for asset in assets:
        assert client.get(asset).status_code == 200, asset


def test_the_spec_page_s_queries_do_not_grow_with_its_rows(browser, user):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from specs.models import SpecTask

    small = story(user)
    large = story(user, project=ProjectFactory(owner=user, name="large"))
    for n in range(3, 23):
        task = SpecTask.objects.create(spec=large, key=f"TSK-{n:03d}", title=f"Task {n}", position=n)
        task.dependencies.add(large.tasks.get(key="TSK-001"))
        Ticket.objects.create(project=large.project, user=user, spec=large, spec_task=task, title=task.title)

    counts = []
    for spec in (small, large):
        with CaptureQueriesContext(connection) as queries:
            assert browser.get(f"/specs/{spec.pk}/").status_code == 200
        counts.append(len(queries.captured_queries))

    assert counts[0] == counts[1], counts
