import copy

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from sandboxes.models import AgentRun, SandboxEvent
from sandboxes.selectors import run_transcript
from specs.models import (
    Spec,
    SpecAcceptanceCriterion,
    SpecRequirement,
    SpecTask,
    SpecTaskDependency,
    SpecTaskRequirement,
)
from tests.factories import ProjectFactory, SpecFactory, SpecRequirementFactory, TicketFactory
from tests.specs.conftest import run_planning
from tests.specs.scripts import IDEA, TASKS, planning_script, submit
from tests.support.steps import drain, waiting_steps
from tickets.models import Ticket

# --- Launch ---------------------------------------------------------------------------------------


def test_launch_answers_201_with_the_spec_and_starts_planning(api, notes_project, capture_sends):
    with capture_sends() as sent:
        response = api.post(
            "/api/v1/specs/launch",
            {"project": notes_project.pk, "idea": IDEA, "title": "Tags", "require_approval": False},
            format="json",
        )

    assert response.status_code == 201, response.json()
    body = response.json()
    spec = Spec.objects.get()
    assert (body["id"], body["title"], body["status"], body["current_phase"], body["require_approval"]) == (
        spec.pk,
        "Tags",
        "planning",
        "explore",
        False,
    )
    assert (body["user"], body["project"]) == ("alice", notes_project.pk)
    assert (body["counts"]["requirements"], body["counts"]["tasks"], body["counts"]["tickets"]) == (0, 0, 0)
    assert waiting_steps() == [("spec", spec.pk)]
    assert sent == [("specs.tasks.spec_step_task", (spec.pk,), "planning")]


def test_launch_works_with_a_trailing_slash_and_defaults_to_approval(api, notes_project):
    response = api.post("/api/v1/specs/launch/", {"project": notes_project.pk, "idea": "Add tags"}, format="json")

    assert response.status_code == 201
    assert (response.json()["require_approval"], response.json()["title"]) == (True, "Add tags")


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"idea": "x"}, "project: This field is required."),
        ({"project": "abc", "idea": "x"}, "project: A valid integer is required."),
        ({"project": 1}, "idea: This field is required."),
        ({"project": 1, "idea": "   "}, "idea: This field may not be blank."),
    ],
)
def test_launch_refuses_bad_input_and_writes_nothing(api, notes_project, body, detail):
    body = {**body, "project": notes_project.pk} if body.get("project") == 1 else body

    response = api.post("/api/v1/specs/launch", body, format="json")

    assert response.status_code == 400
    assert response.json()["detail"] == detail
    assert not Spec.objects.exists()


def test_another_users_project_cannot_be_launched_on(other_api, notes_project):
    response = other_api.post("/api/v1/specs/launch", {"project": notes_project.pk, "idea": IDEA}, format="json")

    assert response.status_code == 404
    assert response.json() == {"detail": f"project {notes_project.pk} not found"}
    assert not Spec.objects.exists()


def test_a_member_may_launch_on_the_project(other_api, other_user, notes_project):
    notes_project.members.add(other_user)

    response = other_api.post("/api/v1/specs/launch", {"project": notes_project.pk, "idea": IDEA}, format="json")

    assert response.status_code == 201
    assert Spec.objects.get().user == other_user


def test_anonymous_requests_are_refused(anonymous_api, notes_project):
    assert anonymous_api.get("/api/v1/specs").status_code == 401
    assert anonymous_api.post("/api/v1/specs/launch", {"project": notes_project.pk, "idea": IDEA}).status_code == 401


# --- Reading ---------------------------------------------------------------------------------------


def test_the_detail_holds_counts_and_links_and_the_rows_are_paged_at_them(api, planned):
    response = api.get(f"/api/v1/specs/{planned.pk}")

    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["current_phase"]) == ("planning_complete", "sync")
    assert "requirements" not in body and "tasks" not in body
    assert body["counts"] == {
        "requirements": 3,
        "criteria": 5,
        "criteria_verified": 0,
        "tasks": 3,
        "tickets": 0,
        "tickets_done": 0,
        "events": body["counts"]["events"],
    }
    assert body["counts"]["events"] > 0
    base = f"http://testserver/api/v1/specs/{planned.pk}"
    assert body["links"] == {
        "requirements": f"{base}/requirements",
        "tasks": f"{base}/tasks",
        "events": f"{base}/events?after=0",
        "transcripts": f"{base}/transcripts",
        "tickets": f"http://testserver/api/v1/tickets?spec={planned.pk}",
    }
    assert body["approved_by"] is None
    assert body["phase_data"]["explore"]["test_command"] == "python -m unittest discover -s tests"
    assert set(body["phase_data"]) == {"explore"}
    assert body["design"]["components"][0]["name"] == "notes.store"
    assert body["usage"]["calls"] == 7 and body["usage"]["input_tokens"] > 0

    requirements = api.get(body["links"]["requirements"]).json()
    tasks = api.get(body["links"]["tasks"]).json()
    assert requirements["count"] == 3 and tasks["count"] == 3
    assert [(r["key"], r["ears_type"], [c["text"] for c in r["criteria"]]) for r in requirements["results"]] == [
        ("REQ-001", "event", ["tag_note(1, 'home') stores the tag 'home' on note 1", "A note can carry many tags"]),
        ("REQ-002", "ubiquitous", ["notes_tagged('home') lists exactly the notes tagged 'home'"]),
        ("REQ-003", "unwanted", ["tag_note(99, 'x') raises KeyError", "No tag is stored for a missing note"]),
    ]
    assert [
        (t["key"], t["depends_on"], t["requirements"], t["estimate_hours"], t["ticket"]) for t in tasks["results"]
    ] == [
        ("TSK-001", [], ["REQ-001"], "1.50", None),
        ("TSK-002", ["TSK-001"], ["REQ-002"], "1.00", None),
        ("TSK-003", ["TSK-001", "TSK-002"], ["REQ-001", "REQ-003"], "0.50", None),
    ]


def test_the_list_filters_by_project_and_status(api, user, other_user):
    mine, other_project = ProjectFactory(owner=user), ProjectFactory(owner=user)
    planning = SpecFactory(project=mine, status="planning")
    SpecFactory(project=mine, status="failed")
    in_other = SpecFactory(project=other_project, status="planning")
    SpecFactory(project=ProjectFactory(owner=other_user), status="planning")

    everything = api.get("/api/v1/specs").json()
    by_project = api.get(f"/api/v1/specs?project={mine.pk}&status=planning").json()
    by_status = api.get("/api/v1/specs/?status=planning").json()

    assert everything["count"] == 3
    assert [s["id"] for s in by_project["results"]] == [planning.pk]
    assert [s["id"] for s in by_status["results"]] == [in_other.pk, planning.pk]


def _queries(client, url):
    with CaptureQueriesContext(connection) as context:
        assert client.get(url).status_code == 200
    return len(context.captured_queries)


def spec_with_rows(project, rows):
    """A spec with `rows` requirements (two criteria each) and tasks, each task depending on the
    one before it and covering one requirement."""
    spec = SpecFactory(project=project)
    requirements = SpecRequirement.objects.bulk_create(
        SpecRequirement(spec=spec, key=f"REQ-{n:03d}", title="R", ears_type="ubiquitous", action="a",
                        text="The system shall a.", position=n)
        for n in range(rows)
    )  # fmt: skip
    SpecAcceptanceCriterion.objects.bulk_create(
        SpecAcceptanceCriterion(requirement=r, position=p, text="ok") for r in requirements for p in range(2)
    )
    tasks = SpecTask.objects.bulk_create(
        SpecTask(spec=spec, key=f"TSK-{n:03d}", title="T", position=n) for n in range(rows)
    )
    SpecTaskDependency.objects.bulk_create(
        SpecTaskDependency(task=tasks[n], depends_on=tasks[n - 1]) for n in range(1, rows)
    )
    SpecTaskRequirement.objects.bulk_create(
        SpecTaskRequirement(task=t, requirement=r) for t, r in zip(tasks, requirements, strict=True)
    )
    TicketFactory(project=project, spec=spec, spec_task=tasks[0])
    return spec


def test_detail_queries_do_not_grow_with_rows(api, user):
    project = ProjectFactory(owner=user)
    small, large = spec_with_rows(project, 3), spec_with_rows(project, 300)

    for path in ("", "/tasks", "/requirements"):
        assert _queries(api, f"/api/v1/specs/{small.pk}{path}") == _queries(api, f"/api/v1/specs/{large.pk}{path}")
    assert api.get(f"/api/v1/specs/{large.pk}").json()["counts"]["tasks"] == 300
    assert api.get(f"/api/v1/specs/{large.pk}/tasks").json()["count"] == 300


def test_list_queries_do_not_grow_with_rows(api, user, settings):
    few, many = ProjectFactory(owner=user), ProjectFactory(owner=user)
    for _ in range(3):
        spec_with_rows(few, 2)
    Spec.objects.bulk_create(Spec(project=many, user=user, title=f"Spec {n}", idea="x") for n in range(300))
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "PAGE_SIZE": 500}

    assert _queries(api, f"/api/v1/specs?project={few.pk}") == _queries(api, f"/api/v1/specs?project={many.pk}")
    assert api.get(f"/api/v1/specs?project={many.pk}").json()["count"] == 300


def test_another_users_spec_is_not_found_anywhere(other_api, planned):
    paths = ["", "/events", "/transcripts"]
    for path in paths:
        assert other_api.get(f"/api/v1/specs/{planned.pk}{path}").status_code == 404, path
    for control in ("approve", "retry", "cancel", "replan"):
        assert other_api.post(f"/api/v1/specs/{planned.pk}/{control}").status_code == 404, control
    patch = other_api.patch(f"/api/v1/specs/{planned.pk}/requirements/REQ-001", {"title": "x"}, format="json")
    assert patch.status_code == 404
    assert other_api.get("/api/v1/specs").json()["count"] == 0
    planned.refresh_from_db()
    assert (planned.status, planned.approved_at) == ("planning_complete", None)


# --- Controls ---------------------------------------------------------------------------------------


def test_approve_from_planning_complete_schedules_the_bridge(api, user, planned, capture_sends, settings, tmp_path):
    settings.OMOI_REPOS_DIR = tmp_path / "repos"
    with capture_sends() as sent:
        response = api.post(f"/api/v1/specs/{planned.pk}/approve")

    assert response.status_code == 200
    planned.refresh_from_db()
    assert planned.approved_by == user and planned.approved_at is not None
    assert response.json()["approved_by"] == "alice"
    assert waiting_steps() == [("spec", planned.pk)]
    assert sent == [("specs.tasks.spec_step_task", (planned.pk,), "default")]

    assert drain(kinds=("spec",))[0] == ("spec", planned.pk, "bridged")
    planned.refresh_from_db()
    assert planned.status == "executing"
    assert sorted(Ticket.objects.filter(spec=planned).values_list("spec_task__key", flat=True)) == [
        "TSK-001",
        "TSK-002",
        "TSK-003",
    ]


@pytest.mark.parametrize(
    ("status", "control", "reason"),
    [
        ("planning", "approve", "only a spec whose planning is complete can be approved; this spec is planning"),
        ("failed", "approve", "only a spec whose planning is complete can be approved; this spec is failed"),
        ("planning", "retry", "only a failed spec can be retried; this spec is planning"),
        ("planning_complete", "retry", "only a failed spec can be retried; this spec is planning_complete"),
        ("cancelled", "cancel", "a cancelled spec cannot be cancelled"),
        ("completed", "cancel", "a completed spec cannot be cancelled"),
        ("planning", "replan", "only a planned or failed spec can be re-planned; this spec is planning"),
        ("executing", "replan", "only a planned or failed spec can be re-planned; this spec is executing"),
    ],
)
def test_a_control_that_makes_no_sense_now_is_409_with_the_reason(api, user, status, control, reason):
    spec = SpecFactory(project=ProjectFactory(owner=user), status=status, current_phase="design")

    response = api.post(f"/api/v1/specs/{spec.pk}/{control}")

    assert response.status_code == 409
    assert response.json() == {"detail": reason, "status": status, "current_phase": "design"}
    spec.refresh_from_db()
    assert (spec.status, spec.approved_at) == (status, None)
    assert not SandboxEvent.objects.filter(spec=spec).exists()


def test_retry_of_a_spec_that_failed_after_planning_and_execution_is_409(api, user):
    spec = SpecFactory(project=ProjectFactory(owner=user), status="failed", current_phase="complete")

    response = api.post(f"/api/v1/specs/{spec.pk}/retry")

    assert response.status_code == 409
    assert response.json()["detail"] == "this spec failed during complete, which cannot be retried"


def test_retry_resumes_a_failed_spec_at_its_phase(api, user, capture_sends):
    spec = SpecFactory(
        project=ProjectFactory(owner=user),
        status="failed",
        current_phase="design",
        phase_attempts={"explore": 1, "requirements": 1, "design": 3},
        last_error="the design output was still invalid",
    )

    with capture_sends() as sent:
        response = api.post(f"/api/v1/specs/{spec.pk}/retry/")

    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["current_phase"], body["last_error"]) == ("planning", "design", "")
    assert body["phase_attempts"] == {"explore": 1, "requirements": 1, "design": 0}
    assert waiting_steps() == [("spec", spec.pk)]
    assert sent == [("specs.tasks.spec_step_task", (spec.pk,), "planning")]


def test_cancel_stops_planning(api, user):
    spec = SpecFactory(project=ProjectFactory(owner=user), status="planning", current_phase="tasks")
    run = AgentRun.objects.create(kind="planning", spec=spec, phase="tasks")

    response = api.post(f"/api/v1/specs/{spec.pk}/cancel")

    assert response.status_code == 200
    assert (response.json()["status"], response.json()["current_phase"]) == ("cancelled", "tasks")
    run.refresh_from_db()
    assert (run.status, run.stop_reason) == ("cancelled", "the spec was cancelled")


# --- Events and transcripts ---------------------------------------------------------------------


def test_events_resume_after_a_sequence(api, planned):
    everything = api.get(f"/api/v1/specs/{planned.pk}/events").json()
    sequences = [event["sequence"] for event in everything["results"]]
    assert sequences == list(range(1, len(sequences) + 1))
    assert everything["last_sequence"] == sequences[-1]

    tail = api.get(f"/api/v1/specs/{planned.pk}/events?after={sequences[-4]}").json()

    assert [(e["sequence"], e["type"]) for e in tail["results"]] == [
        (sequences[-3], "spec.planning_complete"),
        (sequences[-2], "spec.status_changed"),
        (sequences[-1], "sandbox.released"),
    ]
    assert tail["results"][0]["payload"]["tasks"] == 3
    assert set(tail["results"][0]) == {"sequence", "type", "payload", "created_at", "ticket", "task"}
    assert api.get(f"/api/v1/specs/{planned.pk}/events?after={sequences[-1]}").json() == {
        "results": [],
        "last_sequence": sequences[-1],
    }
    limited = api.get(f"/api/v1/specs/{planned.pk}/events?after=0&limit=2").json()
    assert ([e["sequence"] for e in limited["results"]], limited["last_sequence"]) == ([1, 2], 2)


@pytest.mark.parametrize("after", ["abc", "-1", "", "%C2%B9", "1.5"])
def test_events_refuse_a_bad_after(api, planned, after):
    response = api.get(f"/api/v1/specs/{planned.pk}/events?after={after}")

    assert response.status_code == 400
    assert response.json()["detail"].startswith("after: must be")


def test_transcripts_hold_every_phase_conversation(api, planned):
    response = api.get(f"/api/v1/specs/{planned.pk}/transcripts")

    assert response.status_code == 200
    runs = response.json()["results"]
    assert [(r["phase"], r["status"], r["turns"]) for r in runs] == [
        ("explore", "finished", 3),
        ("requirements", "finished", 1),
        ("design", "finished", 2),
        ("tasks", "finished", 1),
    ]
    requirements = runs[1]
    assert "Phase: REQUIREMENTS" in requirements["system_prompt"]
    assert requirements["messages"][0]["content"].startswith("Project: notes")
    assert requirements["messages"][1]["content"][0]["name"] == "submit_requirements"


# --- Editing requirements and re-planning -----------------------------------------------------------


def test_a_requirement_edit_is_validated_and_written(api, planned):
    response = api.patch(
        f"/api/v1/specs/{planned.pk}/requirements/REQ-002",
        {
            "text": "While a tag filter is active, the notes library shall list only the notes with that tag.",
            "ears_type": "state",
            "condition": "a tag filter is active",
            "acceptance_criteria": ["Only tagged notes are listed", "Order is oldest first"],
        },
        format="json",
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["key"], body["ears_type"], [c["text"] for c in body["criteria"]]) == (
        "REQ-002",
        "state",
        ["Only tagged notes are listed", "Order is oldest first"],
    )
    requirement = SpecRequirement.objects.get(spec=planned, key="REQ-002")
    assert requirement.condition == "a tag filter is active"
    planned.refresh_from_db()
    mirrored = planned.phase_data["requirements"]["requirements"][1]
    assert (mirrored["key"], mirrored["ears_type"]) == ("REQ-002", "state")
    event = SandboxEvent.objects.get(spec=planned, type="spec.requirement_updated")
    assert event.payload == {
        "key": "REQ-002",
        "fields": ["ears_type", "text", "condition", "acceptance_criteria"],
        "actor": "alice",
    }


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (
            {"text": "Notes are listed by tag."},
            'requirement: REQ-002: a ubiquitous requirement must read "The <system> shall <response>."; '
            'got "Notes are listed by tag."',
        ),
        ({"priority": "urgent"}, 'priority: "urgent" is not a valid choice.'),
        ({"acceptance_criteria": []}, "acceptance_criteria: Ensure this field has at least 1 elements."),
        ({"key": "REQ-009"}, "unknown or read-only fields: key"),
        ({}, "nothing to change: send one or more of title, ears_type, text, condition, action, priority, "
             "acceptance_criteria"),
    ],
)  # fmt: skip
def test_a_bad_requirement_edit_is_400_and_changes_nothing(api, planned, body, detail):
    before = list(SpecRequirement.objects.filter(spec=planned).values())

    response = api.patch(f"/api/v1/specs/{planned.pk}/requirements/REQ-002", body, format="json")

    assert response.status_code == 400
    assert response.json()["detail"] == detail
    assert list(SpecRequirement.objects.filter(spec=planned).values()) == before


def test_editing_an_unknown_requirement_is_404_and_while_planning_409(api, user, planned):
    assert api.patch(f"/api/v1/specs/{planned.pk}/requirements/REQ-404", {"title": "x"}, format="json").status_code == (
        404
    )
    spec = SpecFactory(project=planned.project, status="planning")
    SpecRequirementFactory(spec=spec, key="REQ-001")

    response = api.patch(f"/api/v1/specs/{spec.pk}/requirements/REQ-001", {"title": "x"}, format="json")

    assert response.status_code == 409
    assert response.json()["detail"] == (
        "requirements can be edited when planning is complete or has failed; this spec is planning"
    )


def test_replan_reruns_design_and_tasks_with_the_edit_and_keeps_unchanged_tasks(api, planned, use_script):
    edited_text = "The notes library shall list the notes that carry a given tag, newest first."
    assert (
        api.patch(
            f"/api/v1/specs/{planned.pk}/requirements/REQ-002",
            {"text": edited_text, "action": "list the notes that carry a given tag, newest first"},
            format="json",
        ).status_code
        == 200
    )
    before = {t.key: (t.pk, t.updated_at) for t in SpecTask.objects.filter(spec=planned)}
    ticket = TicketFactory(project=planned.project, spec=planned, spec_task=SpecTask.objects.get(key="TSK-003"))
    new_tasks = copy.deepcopy(TASKS)
    new_tasks["tasks"][1]["title"] = "Add notes_tagged, newest first"
    new_tasks["tasks"].pop(2)  # TSK-003 is dropped, but it has a ticket: it stays
    new_tasks["tasks"][0]["requirements"] = ["REQ-001", "REQ-003"]
    new_tasks["tasks"].append(
        {"key": "TSK-004", "title": "Document tags", "description": "Describe tags in README.md.",
         "depends_on": ["TSK-002"], "requirements": ["REQ-002"], "phase": "DEPLOYMENT"}
    )  # fmt: skip
    use_script(planning_script(tasks=[submit("submit_tasks", new_tasks)]))

    response = api.post(f"/api/v1/specs/{planned.pk}/replan")

    assert response.status_code == 200
    assert (response.json()["status"], response.json()["current_phase"]) == ("planning", "design")
    assert run_planning(planned.pk) == [("design", "completed"), ("tasks", "completed"), ("sync", "completed")]
    planned.refresh_from_db()
    assert (planned.status, planned.approved_at) == ("planning_complete", None)
    design_run, tasks_run = AgentRun.objects.filter(spec=planned, phase__in=["design", "tasks"]).order_by("-id")[:2][
        ::-1
    ]
    assert edited_text in run_transcript(run=design_run)[0]["content"]
    assert edited_text in run_transcript(run=tasks_run)[0]["content"]
    after = {t.key: (t.pk, t.updated_at) for t in SpecTask.objects.filter(spec=planned)}
    assert after["TSK-001"] == before["TSK-001"]  # only its requirement links changed
    assert after["TSK-002"][0] == before["TSK-002"][0] and after["TSK-002"][1] > before["TSK-002"][1]
    assert after["TSK-003"] == before["TSK-003"]  # kept for its ticket, untouched
    assert set(after) == {"TSK-001", "TSK-002", "TSK-003", "TSK-004"}
    ticket.refresh_from_db()
    assert ticket.spec_task.key == "TSK-003"
    tasks = {t["key"]: t for t in api.get(f"/api/v1/specs/{planned.pk}/tasks").json()["results"]}
    assert (tasks["TSK-002"]["title"], tasks["TSK-004"]["depends_on"], tasks["TSK-001"]["requirements"]) == (
        "Add notes_tagged, newest first",
        ["TSK-002"],
        ["REQ-001", "REQ-003"],
    )
    tasks_completed = SandboxEvent.objects.filter(spec=planned, type="spec.phase_completed", payload__phase="tasks")
    assert tasks_completed.order_by("-sequence").first().payload["summary"] == (
        "3 tasks, 2 dependencies (1 new, 1 changed, 1 unchanged, 0 removed, 1 kept for their tickets)"
    )


def test_replan_with_unchanged_tasks_keeps_every_row_as_it_was(api, planned, use_script):
    before = list(SpecTask.objects.filter(spec=planned).values_list("pk", "key", "updated_at"))
    links = sorted(planned.tasks.values_list("dependency_links__pk", flat=True), key=lambda pk: pk or 0)

    assert api.post(f"/api/v1/specs/{planned.pk}/replan").status_code == 200
    run_planning(planned.pk)

    assert list(SpecTask.objects.filter(spec=planned).values_list("pk", "key", "updated_at")) == before
    assert sorted(planned.tasks.values_list("dependency_links__pk", flat=True), key=lambda pk: pk or 0) == links
    planned.refresh_from_db()
    assert planned.status == "planning_complete"
