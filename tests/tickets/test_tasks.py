"""Tasks from templates, the task lifecycle, automatic progression and dependencies."""

import pytest
from django.db import IntegrityError

from omoi.models import Lease
from tests.factories import ProjectFactory, SpecRequirementFactory, SpecTaskFactory, TaskFactory
from tests.support.steps import drain, run_step, waiting_steps
from tests.tickets.conftest import (
    DESIGN_TEXT,
    FAILING_TESTS,
    PASSING_ARTIFACTS,
    PASSING_TESTS,
    make_ticket,
    row_counts,
    satisfy_gate,
)
from tickets.errors import InvalidArtifact, InvalidDependency, InvalidTaskState
from tickets.models import (
    BlockedReason,
    Phase,
    PhaseGateArtifact,
    PhaseGateResult,
    PhaseHistory,
    Task,
    TaskStatus,
)
from tickets.selectors import runnable_tasks, task_blockers, task_is_runnable
from tickets.services import (
    task_complete,
    task_fail,
    task_retry,
    task_start,
    tasks_generate,
    ticket_create,
    ticket_dependency_add,
    ticket_progress,
    ticket_start,
    ticket_transition,
)
from tickets.services.execution import next_action
from tickets.templates import TEMPLATES

pytestmark = pytest.mark.django_db


def artifacts_for(phase: str) -> list[dict]:
    return [{"type": t, "content": c} for t, c in PASSING_ARTIFACTS[phase]]


def test_the_templates_are_one_table():
    assert [(t.key, t.phase.value, t.executor.value) for t in TEMPLATES] == [
        ("analyze_requirements", "REQUIREMENTS", "agent"),
        ("create_design", "DESIGN", "agent"),
        ("implement_feature", "IMPLEMENTATION", "agent"),
        ("write_tests", "IMPLEMENTATION", "agent"),
        ("run_tests", "TESTING", "host"),
        ("deploy", "DEPLOYMENT", "host"),
    ]


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        (Phase.REQUIREMENTS, [("analyze_requirements", "agent")]),
        (Phase.DESIGN, [("create_design", "agent")]),
        (Phase.IMPLEMENTATION, [("implement_feature", "agent"), ("write_tests", "agent")]),
        (Phase.TESTING, [("run_tests", "host")]),
        (Phase.DEPLOYMENT, [("deploy", "host")]),
        (Phase.DONE, []),
    ],
)
def test_generating_a_phase_creates_each_template_once(ticket_in, phase, expected):
    ticket = ticket_in(phase, priority="high", title="CSV export")

    created = tasks_generate(ticket_id=ticket.pk)
    again = tasks_generate(ticket_id=ticket.pk)

    assert [(t.task_type, t.executor) for t in created] == expected
    assert again == []
    tasks = Task.objects.filter(ticket=ticket)
    assert [(t.task_type, t.executor, t.phase, t.priority, t.status) for t in tasks] == [
        (key, executor, phase, "high", "pending") for key, executor in expected
    ]
    assert all("CSV export" in t.title for t in tasks)


def test_a_planned_ticket_gets_its_implementation_from_the_spec_task(project):
    requirement = SpecRequirementFactory(spec__project=project, key="REQ-001", text="The system shall export CSV.")
    spec_task = SpecTaskFactory(
        spec=requirement.spec,
        key="TSK-007",
        title="CSV export endpoint",
        description="Add GET /export.csv streaming every ticket.",
        files=["app/export.py", "tests/test_export.py"],
        acceptance_criteria=["answers text/csv", {"text": "one row per ticket"}],
    )
    spec_task.requirements.add(requirement)
    ticket = make_ticket(
        project=project, phase=Phase.IMPLEMENTATION, spec=requirement.spec, spec_task=spec_task, title="Export"
    )

    tasks_generate(ticket_id=ticket.pk)

    implement = Task.objects.get(ticket=ticket, task_type="implement_feature")
    assert implement.title == "Implement TSK-007: CSV export endpoint"
    assert implement.description.startswith(
        "Planned task TSK-007: CSV export endpoint\n\nAdd GET /export.csv streaming every ticket.\n\n"
        "Files:\n- app/export.py\n- tests/test_export.py\n\n"
        "Acceptance criteria:\n- answers text/csv\n- one row per ticket\n\n"
        "Requirements covered:\n- REQ-001: The system shall export CSV."
    )
    write_tests = Task.objects.get(ticket=ticket, task_type="write_tests")
    assert write_tests.title == "Write tests for TSK-007: CSV export endpoint"
    assert "Write automated tests for TSK-007" in write_tests.description
    assert "- one row per ticket" in write_tests.description


def test_a_hand_made_ticket_gets_a_generic_implementation(ticket_in):
    ticket = ticket_in(Phase.IMPLEMENTATION, title="Fix login", description="Users cannot log in with SSO.")
    tasks_generate(ticket_id=ticket.pk)
    implement = Task.objects.get(ticket=ticket, task_type="implement_feature")
    assert implement.title == "Implement: Fix login"
    assert implement.description.startswith(f"Ticket #{ticket.pk}: Fix login\n\nUsers cannot log in with SSO.")


def test_generate_tasks_endpoint(api, ticket_in):
    ticket = ticket_in(Phase.IMPLEMENTATION)

    first = api.post(f"/api/v1/tickets/{ticket.pk}/generate-tasks", {}, format="json")
    repeat = api.post(f"/api/v1/tickets/{ticket.pk}/generate-tasks", {}, format="json")
    other = api.post(f"/api/v1/tickets/{ticket.pk}/generate-tasks", {"phase": "TESTING"}, format="json")

    assert first.status_code == 200
    assert (first.json()["ticket_id"], first.json()["phase"]) == (ticket.pk, "IMPLEMENTATION")
    assert [t["task_type"] for t in first.json()["generated_tasks"]] == ["implement_feature", "write_tests"]
    assert repeat.json()["generated_tasks"] == []
    assert [t["task_type"] for t in repeat.json()["tasks"]] == ["implement_feature", "write_tests"]
    assert [t["task_type"] for t in other.json()["generated_tasks"]] == ["run_tests"]
    assert Task.objects.filter(ticket=ticket).count() == 3


def test_task_start_counts_attempts_and_refuses_what_may_not_run(ticket_in):
    ticket = ticket_in(Phase.DESIGN)
    (task,) = tasks_generate(ticket_id=ticket.pk)
    later = Task.objects.create(ticket=ticket, phase=Phase.TESTING, task_type="run_tests")

    started = task_start(task_id=task.pk)
    again = task_start(task_id=task.pk)

    assert (started.status, started.attempts) == (TaskStatus.RUNNING, 1)
    assert started.started_at is not None
    assert (again.status, again.attempts) == (TaskStatus.RUNNING, 1)
    with pytest.raises(InvalidTaskState, match=f"ticket #{ticket.pk} is in DESIGN; the task belongs to TESTING"):
        task_start(task_id=later.pk)


def test_task_complete_merges_results_and_collects_artifacts(ticket_in):
    ticket = ticket_in(Phase.DESIGN)
    task = TaskFactory(ticket=ticket, task_type="create_design", result={"notes": {"a": 1}, "summary": "draft"})
    task_start(task_id=task.pk)

    task_complete(
        task_id=task.pk,
        result={
            "summary": "final",
            "notes": {"b": 2},
            "artifacts": [{"type": "design_doc", "path": "docs/design.md", "content": {"text": DESIGN_TEXT}}],
        },
        actor="agent:run-7",
    )

    task.refresh_from_db()
    assert task.status == TaskStatus.COMPLETED
    assert task.completed_at is not None
    assert task.result["notes"] == {"a": 1, "b": 2}
    assert task.result["summary"] == "final"
    artifact = PhaseGateArtifact.objects.get()
    assert (artifact.ticket_id, artifact.phase, artifact.artifact_type, artifact.path, artifact.collected_by) == (
        ticket.pk,
        "DESIGN",
        "design_doc",
        "docs/design.md",
        "agent:run-7",
    )
    before = row_counts()
    task_complete(task_id=task.pk, result={"artifacts": artifacts_for(Phase.DESIGN)}, actor="agent:run-7")
    assert row_counts() == before


@pytest.mark.parametrize(
    ("artifacts", "message"),
    [
        ([{"content": {}}], "an artifact needs a non-empty type"),
        ([{"type": "design_doc", "content": "text"}], "the content of artifact 'design_doc' must be a JSON object"),
        ("design_doc", r"result\['artifacts'\] must be a list"),
        (["design_doc"], r"each entry of result\['artifacts'\] must be an object"),
    ],
)
def test_task_complete_with_bad_artifacts_writes_nothing(ticket_in, artifacts, message):
    ticket = ticket_in(Phase.DESIGN)
    task = TaskFactory(ticket=ticket, task_type="create_design")
    before = row_counts()

    with pytest.raises(InvalidArtifact, match=message):
        task_complete(task_id=task.pk, result={"summary": "x", "artifacts": artifacts}, actor="agent")

    task.refresh_from_db()
    assert (task.status, task.result) == (TaskStatus.PENDING, {})
    assert row_counts() == before


def test_only_open_tasks_complete_or_fail(ticket_in):
    ticket = ticket_in(Phase.DESIGN)
    failed = TaskFactory(ticket=ticket, status=TaskStatus.FAILED)
    cancelled = TaskFactory(ticket=ticket, status=TaskStatus.CANCELLED)
    with pytest.raises(InvalidTaskState, match="is failed; only a pending or running task can complete"):
        task_complete(task_id=failed.pk, result={}, actor="agent")
    with pytest.raises(InvalidTaskState, match="is cancelled; only a pending or running task can fail"):
        task_fail(task_id=cancelled.pk, error="x", actor="agent")


def test_three_implementation_tasks_advance_only_when_all_complete_and_the_gate_passes(ticket_in, capture_sends):
    ticket = ticket_in(Phase.IMPLEMENTATION)
    tasks_generate(ticket_id=ticket.pk)
    docs = Task.objects.create(ticket=ticket, phase=Phase.IMPLEMENTATION, task_type="update_docs", title="Docs")
    implement, write_tests = Task.objects.filter(ticket=ticket).exclude(pk=docs.pk)
    code_changes, test_results = artifacts_for(Phase.IMPLEMENTATION)
    Lease.objects.all().delete()  # the ticket's step ran and found the tasks running elsewhere

    with capture_sends() as sent:
        task_complete(task_id=implement.pk, result={"summary": "done", "artifacts": [code_changes]}, actor="a")
        task_complete(task_id=write_tests.pk, result={"artifacts": [test_results]}, actor="a")
    assert (sent, waiting_steps()) == ([], [])  # a task is still open: nothing for the ticket's step to judge
    ticket_progress(ticket_id=ticket.pk, phase="IMPLEMENTATION")  # early or stray: changes nothing
    ticket.refresh_from_db()
    assert ticket.phase == Phase.IMPLEMENTATION
    assert PhaseGateResult.objects.count() == 0

    with capture_sends() as sent:
        task_complete(task_id=docs.pk, result={"summary": "README updated"}, actor="a")
    assert sent == [("tickets.tasks.ticket_step_task", (ticket.pk,), "execution")]
    assert waiting_steps() == [("ticket", ticket.pk)]
    assert next_action(ticket).kind == "progress"

    ticket_progress(ticket_id=ticket.pk, phase="IMPLEMENTATION")
    ticket_progress(ticket_id=ticket.pk, phase="IMPLEMENTATION")

    ticket.refresh_from_db()
    assert ticket.phase == Phase.TESTING
    assert list(Task.objects.filter(ticket=ticket, phase=Phase.TESTING).values_list("task_type", flat=True)) == [
        "run_tests"
    ]
    assert list(PhaseHistory.objects.filter(ticket=ticket).values_list("from_phase", "to_phase", "actor")) == [
        ("IMPLEMENTATION", "TESTING", "system")
    ]
    assert list(PhaseGateResult.objects.values_list("phase", "status")) == [("IMPLEMENTATION", "passed")]
    assert ticket.context["IMPLEMENTATION"]["summary"] == "implement_feature: done\nupdate_docs: README updated"


def test_a_finished_phase_whose_gate_fails_is_blocked_with_the_reasons(ticket_in):
    ticket = ticket_in(Phase.TESTING)
    (run_tests,) = tasks_generate(ticket_id=ticket.pk)
    task_complete(
        task_id=run_tests.pk, result={"artifacts": [{"type": "test_results", "content": FAILING_TESTS}]}, actor="host"
    )

    assert drain() == [("ticket", ticket.pk, "idle")]  # the ticket's step judges the gate, then rests

    ticket.refresh_from_db()
    assert (ticket.phase, ticket.previous_phase, ticket.blocked_reason) == ("BLOCKED", "TESTING", "failing_checks")
    assert ticket.blocked_message == "test_results: exit_code must be 0 (is 1); test_results: failed must be 0 (is 2)"
    result = PhaseGateResult.objects.get()
    assert (result.phase, result.status) == ("TESTING", "failed")
    assert PhaseHistory.objects.get().reason == "TESTING gate failed"


def test_the_last_task_failing_blocks_the_ticket_and_retry_runs_it_again(ticket_in):
    ticket = ticket_in(Phase.DESIGN)
    (design,) = tasks_generate(ticket_id=ticket.pk)
    task_start(task_id=design.pk)
    task_fail(task_id=design.pk, error="the model gave up", actor="agent", result={"partial": True})
    assert drain() == [("ticket", ticket.pk, "idle")]

    ticket.refresh_from_db()
    design.refresh_from_db()
    assert (design.status, design.error, design.result) == (TaskStatus.FAILED, "the model gave up", {"partial": True})
    assert ticket.phase == Phase.BLOCKED
    assert ticket.blocked_message.startswith(f"task create_design (#{design.pk}) failed: the model gave up")

    task_retry(task_id=design.pk, actor="alice")
    design.refresh_from_db()
    assert (design.status, design.error) == (TaskStatus.PENDING, "")
    assert task_is_runnable(design) is False  # the ticket is still BLOCKED
    ticket_transition(ticket_id=ticket.pk, to=Phase.DESIGN, actor="alice")
    assert task_is_runnable(design) is True


def test_a_dependent_tickets_tasks_run_only_once_its_dependency_is_done(project):
    first = make_ticket(project=project, phase=Phase.DEPLOYMENT)
    other = make_ticket(project=project, phase=Phase.DONE)
    dependent = ticket_create(
        project_id=project.pk,
        user=project.owner,
        title="Second",
        actor="alice",
        dependency_ids=[first.pk, other.pk],
    )
    ticket_start(ticket_id=dependent.pk, actor="alice")
    waiting = Task.objects.get(ticket=dependent)

    assert task_is_runnable(waiting) is False
    assert task_blockers(waiting) == [
        f"ticket #{dependent.pk} waits for dependencies that are not DONE: #{first.pk} (DEPLOYMENT)"
    ]
    assert list(runnable_tasks(ticket_ids=[dependent.pk])) == []
    with pytest.raises(InvalidTaskState, match="waits for dependencies"):
        task_start(task_id=waiting.pk)
    dependent.refresh_from_db()
    assert next_action(dependent).reason == "waiting for dependencies"
    assert run_step("ticket", dependent.pk) == "idle"

    (deploy,) = tasks_generate(ticket_id=first.pk)
    task_complete(task_id=deploy.pk, result={"artifacts": artifacts_for(Phase.DEPLOYMENT)}, actor="host")
    assert ("ticket", dependent.pk) not in waiting_steps()
    assert run_step("ticket", first.pk) == "idle"

    first.refresh_from_db()
    assert first.phase == Phase.DONE
    assert ("ticket", dependent.pk) in waiting_steps()  # its dependency is DONE: its step is due
    assert task_is_runnable(waiting) is True
    assert list(runnable_tasks(ticket_ids=[dependent.pk])) == [waiting]
    assert task_start(task_id=waiting.pk).status == TaskStatus.RUNNING


def test_runnable_tasks_is_one_query_whatever_the_tickets(project, django_assert_num_queries):
    for _ in range(5):
        ticket = make_ticket(project=project, phase=Phase.DESIGN)
        TaskFactory(ticket=ticket, task_type="create_design")
        blocked = make_ticket(project=project, phase=Phase.BLOCKED)
        TaskFactory(ticket=blocked, phase=Phase.DESIGN, task_type="create_design")
        ticket_dependency_add(ticket_id=blocked.pk, depends_on_id=ticket.pk)
    with django_assert_num_queries(1):
        assert len(list(runnable_tasks())) == 5


def test_dependencies_stay_inside_a_project_and_never_cycle(project):
    a = make_ticket(project=project)
    b = make_ticket(project=project)
    c = make_ticket(project=project)
    elsewhere = make_ticket(project=ProjectFactory(owner=project.owner))
    ticket_dependency_add(ticket_id=b.pk, depends_on_id=a.pk)
    ticket_dependency_add(ticket_id=c.pk, depends_on_id=b.pk)
    ticket_dependency_add(ticket_id=c.pk, depends_on_id=b.pk)  # again: nothing new

    with pytest.raises(InvalidDependency, match="that would be a cycle"):
        ticket_dependency_add(ticket_id=a.pk, depends_on_id=c.pk)
    with pytest.raises(InvalidDependency, match="cannot depend on itself"):
        ticket_dependency_add(ticket_id=a.pk, depends_on_id=a.pk)
    with pytest.raises(InvalidDependency, match="belongs to another project"):
        ticket_dependency_add(ticket_id=a.pk, depends_on_id=elsewhere.pk)
    assert list(c.dependencies.values_list("pk", flat=True)) == [b.pk]


def test_one_task_per_ticket_phase_and_template_is_a_database_rule(ticket_in):
    ticket = ticket_in(Phase.DESIGN)
    TaskFactory(ticket=ticket, task_type="create_design")
    with pytest.raises(IntegrityError):
        TaskFactory(ticket=ticket, task_type="create_design")


def test_a_blocked_ticket_keeps_its_tasks_from_running(ticket_in):
    ticket = ticket_in(Phase.DESIGN)
    (design,) = tasks_generate(ticket_id=ticket.pk)
    ticket_transition(ticket_id=ticket.pk, to=Phase.BLOCKED, actor="a", blocked_reason=BlockedReason.BUDGET)
    design.refresh_from_db()
    assert task_blockers(design) == [f"ticket #{ticket.pk} is BLOCKED (budget)"]


def test_passing_tests_fixture_is_what_the_gate_wants(ticket_in):
    ticket = ticket_in(Phase.TESTING)
    satisfy_gate(ticket, Phase.TESTING)
    assert PhaseGateArtifact.objects.get().content == PASSING_TESTS


TASK_MOVE_PAIRS = [(a, b) for a in TaskStatus.values for b in TaskStatus.values if a != b]


@pytest.mark.parametrize(("from_status", "to_status"), TASK_MOVE_PAIRS)
def test_task_status_changes_only_along_the_table(ticket_in, from_status, to_status):
    from django.db import transaction

    from tickets.services.task_transitions import TASK_MOVES, task_transition

    ticket = ticket_in(Phase.DESIGN)
    task = TaskFactory(ticket=ticket, task_type="create_design", status=from_status, attempts=1, error="earlier")
    before = Task.objects.filter(pk=task.pk).values().get()

    if to_status not in TASK_MOVES[from_status]:
        with pytest.raises(InvalidTaskState, match=f"task #{task.pk} is {from_status}; it cannot become {to_status}"):
            with transaction.atomic():
                task_transition(task=task, to=to_status, error="why")
        assert Task.objects.filter(pk=task.pk).values().get() == before
        return

    with transaction.atomic():
        task_transition(task=task, to=to_status, error="why")

    task.refresh_from_db()
    assert task.status == to_status
    if to_status == TaskStatus.RUNNING:
        assert (task.attempts, task.error, task.completed_at) == (2, "", None)
        assert task.started_at is not None
    elif to_status == TaskStatus.PENDING:
        assert (task.attempts, task.error, task.started_at, task.completed_at) == (1, "", None, None)
    else:
        assert task.completed_at is not None
        assert task.error == ("" if to_status == TaskStatus.COMPLETED else "why")


def test_the_task_table_has_no_way_out_of_a_final_status_but_a_new_pass():
    from tickets.services.task_transitions import TASK_MOVES

    assert {status: sorted(moves) for status, moves in TASK_MOVES.items()} == {
        "pending": ["cancelled", "completed", "failed", "running"],
        "running": ["cancelled", "completed", "failed"],
        "completed": ["pending"],
        "failed": ["pending"],
        "cancelled": ["pending"],
    }
