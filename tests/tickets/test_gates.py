"""The gate table: content checks per artifact type, the settings override, artifacts arriving by
API and from task results, and validate-gate."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.tickets.conftest import DESIGN_TEXT, FAILING_TESTS, PASSING_TESTS, REQUIREMENTS_TEXT, row_counts
from tickets.errors import GateBlocked
from tickets.gates import content_problems, gate_check, gate_for
from tickets.models import GateStatus, Phase, PhaseGateArtifact, PhaseGateResult, Task, TaskStatus
from tickets.services import artifact_collect, gate_evaluate, ticket_transition

pytestmark = pytest.mark.django_db


def problems(phase: str, artifact_type: str, content) -> list[str]:
    return content_problems(artifact_type, content, gate_for(phase)["artifacts"][artifact_type])


def test_a_requirements_document_needs_length_and_both_sections():
    assert problems(Phase.REQUIREMENTS, "requirements_doc", {"text": REQUIREMENTS_TEXT}) == []
    assert problems(Phase.REQUIREMENTS, "requirements_doc", {"text": "## Requirements\n" + "x" * 250}) == [
        "requirements_doc: text has no section '## Acceptance Criteria'"
    ]
    assert problems(Phase.REQUIREMENTS, "requirements_doc", {"text": "## Requirements\n## Acceptance Criteria"}) == [
        "requirements_doc: text has 38 characters, at least 200 are required"
    ]
    assert problems(Phase.REQUIREMENTS, "requirements_doc", {}) == ["requirements_doc: text must be text"]
    assert problems(Phase.REQUIREMENTS, "requirements_doc", ["## Requirements"]) == [
        "requirements_doc: content must be a JSON object"
    ]


def test_a_section_must_start_a_line():
    text = "x" * 200 + " see ## Architecture elsewhere"
    assert problems(Phase.DESIGN, "design_doc", {"text": text}) == ["design_doc: text has no section '## Architecture'"]
    assert problems(Phase.DESIGN, "design_doc", {"text": DESIGN_TEXT}) == []


def test_code_changes_must_name_files_and_touch_tests():
    good = {"files": ["a.py"], "diff_stat": "1 file", "tests_touched": True}
    assert problems(Phase.IMPLEMENTATION, "code_changes", good) == []
    assert problems(Phase.IMPLEMENTATION, "code_changes", {**good, "files": [], "tests_touched": False}) == [
        "code_changes: files is missing or empty",
        "code_changes: tests_touched must be true (is false)",
    ]
    assert problems(Phase.IMPLEMENTATION, "code_changes", {**good, "tests_touched": 1}) == [
        "code_changes: tests_touched must be true (is 1)"
    ]


@pytest.mark.parametrize("phase", [Phase.IMPLEMENTATION, Phase.TESTING])
def test_test_results_must_all_pass(phase):
    assert problems(phase, "test_results", PASSING_TESTS) == []
    assert problems(phase, "test_results", FAILING_TESTS) == [
        "test_results: exit_code must be 0 (is 1)",
        "test_results: failed must be 0 (is 2)",
    ]
    assert problems(phase, "test_results", {**PASSING_TESTS, "passed": 0}) == [
        "test_results: passed must be greater than 0 (is 0)"
    ]
    assert problems(phase, "test_results", {**PASSING_TESTS, "exit_code": "0"}) == [
        'test_results: exit_code must be an integer (is "0")',
        'test_results: exit_code must be 0 (is "0")',
    ]


def test_deployment_evidence_must_be_a_merge_with_a_commit():
    good = {"merged": True, "commit": "9fceb02d0ae598e95dc970b74767f19372d61af8", "branch": "omoi/spec-3"}
    assert problems(Phase.DEPLOYMENT, "deployment", good) == []
    assert problems(Phase.DEPLOYMENT, "deployment", {"merged": False, "commit": "HEAD", "branch": ""}) == [
        "deployment: merged must be true (is false)",
        "deployment: commit must match '[0-9a-f]{7,40}' (is \"HEAD\")",
        "deployment: branch is missing or empty",
    ]


def test_every_task_of_the_phase_must_be_completed_and_a_cancelled_one_does_not_count(ticket_in):
    ticket = ticket_in(Phase.DESIGN)
    artifact_collect(ticket_id=ticket.pk, artifact_type="design_doc", content={"text": DESIGN_TEXT}, collected_by="t")
    statuses = [TaskStatus.COMPLETED, TaskStatus.CANCELLED, TaskStatus.FAILED, TaskStatus.RUNNING, TaskStatus.PENDING]
    tasks = [
        Task.objects.create(ticket=ticket, phase=Phase.DESIGN, task_type=f"t{n}", status=status, error="boom" * 2)
        for n, status in enumerate(statuses)
    ]

    outcome = gate_check(ticket=ticket, phase=Phase.DESIGN)

    assert outcome.passed is False
    assert outcome.reasons == [
        f"task t2 (#{tasks[2].pk}) failed: boomboom",
        f"task t3 (#{tasks[3].pk}) is running, not completed",
        f"task t4 (#{tasks[4].pk}) is pending, not completed",
    ]
    assert outcome.details["tasks_completed"] is False
    assert outcome.details["tasks_total"] == 5


def test_the_latest_artifact_of_a_type_is_the_one_checked(ticket_in):
    ticket = ticket_in(Phase.TESTING)
    artifact_collect(ticket_id=ticket.pk, artifact_type="test_results", content=PASSING_TESTS, collected_by="t")
    artifact_collect(ticket_id=ticket.pk, artifact_type="test_results", content=FAILING_TESTS, collected_by="t")
    assert gate_check(ticket=ticket, phase=Phase.TESTING).passed is False
    artifact_collect(ticket_id=ticket.pk, artifact_type="test_results", content=PASSING_TESTS, collected_by="t")
    assert gate_check(ticket=ticket, phase=Phase.TESTING).passed is True


def test_artifacts_of_another_phase_do_not_count(ticket_in):
    ticket = ticket_in(Phase.TESTING)
    artifact_collect(
        ticket_id=ticket.pk,
        phase=Phase.IMPLEMENTATION,
        artifact_type="test_results",
        content=PASSING_TESTS,
        collected_by="t",
    )
    assert gate_check(ticket=ticket, phase=Phase.TESTING).reasons == ["missing artifact test_results"]


def test_settings_replace_a_phase_gate(ticket_in, settings):
    ticket = ticket_in(Phase.DESIGN)
    with pytest.raises(GateBlocked):
        ticket_transition(ticket_id=ticket.pk, to=Phase.IMPLEMENTATION, actor="alice")

    settings.OMOI_PHASE_GATES = {"DESIGN": {"tasks_completed": True, "artifacts": {"adr": {"non_empty": ["title"]}}}}
    with pytest.raises(GateBlocked) as blocked:
        ticket_transition(ticket_id=ticket.pk, to=Phase.IMPLEMENTATION, actor="alice")
    assert blocked.value.reasons == ["missing artifact adr"]

    artifact_collect(ticket_id=ticket.pk, artifact_type="adr", content={"title": "Use CSV"}, collected_by="t")
    ticket_transition(ticket_id=ticket.pk, to=Phase.IMPLEMENTATION, actor="alice")
    ticket.refresh_from_db()
    assert ticket.phase == Phase.IMPLEMENTATION


def test_settings_naming_an_unknown_phase_or_check_fail_loudly(ticket_in, settings):
    ticket = ticket_in(Phase.DESIGN)
    settings.OMOI_PHASE_GATES = {"DESIGNING": {}}
    with pytest.raises(ImproperlyConfigured, match="unknown phases: DESIGNING"):
        gate_check(ticket=ticket, phase=Phase.DESIGN)
    settings.OMOI_PHASE_GATES = {"DESIGN": {"artifacts": {"adr": {"shiny": True}}}}
    artifact_collect(ticket_id=ticket.pk, artifact_type="adr", content={}, collected_by="t")
    with pytest.raises(ImproperlyConfigured, match="unknown gate check 'shiny'"):
        gate_check(ticket=ticket, phase=Phase.DESIGN)


def test_gate_evaluate_stores_passed_and_failed_results(ticket_in):
    ticket = ticket_in(Phase.REQUIREMENTS)
    failed = gate_evaluate(ticket_id=ticket.pk, actor="alice")
    artifact_collect(
        ticket_id=ticket.pk, artifact_type="requirements_doc", content={"text": REQUIREMENTS_TEXT}, collected_by="t"
    )
    passed = gate_evaluate(ticket_id=ticket.pk, actor="alice")

    assert (failed.phase, failed.status, failed.blocking_reasons) == (
        "REQUIREMENTS",
        GateStatus.FAILED,
        ["missing artifact requirements_doc"],
    )
    assert (passed.status, passed.blocking_reasons) == (GateStatus.PASSED, [])
    ticket.refresh_from_db()
    assert ticket.phase == Phase.REQUIREMENTS


def test_post_artifact_defaults_to_the_current_phase_and_records_who(api, ticket_in):
    ticket = ticket_in(Phase.DESIGN)

    response = api.post(
        f"/api/v1/tickets/{ticket.pk}/artifacts",
        {"artifact_type": "design_doc", "path": "docs/design.md", "content": {"text": DESIGN_TEXT}},
        format="json",
    )

    assert response.status_code == 201
    artifact = PhaseGateArtifact.objects.get()
    assert response.json() == {
        "id": artifact.pk,
        "ticket": ticket.pk,
        "phase": "DESIGN",
        "artifact_type": "design_doc",
        "path": "docs/design.md",
        "content": {"text": DESIGN_TEXT},
        "collected_by": "user:alice",
        "collected_at": response.json()["collected_at"],
    }
    listed = api.get(f"/api/v1/tickets/{ticket.pk}/artifacts?phase=DESIGN").json()
    assert [a["id"] for a in listed] == [artifact.pk]
    assert api.get(f"/api/v1/tickets/{ticket.pk}/artifacts?phase=TESTING").json() == []


def test_an_artifact_of_a_blocked_ticket_belongs_to_the_phase_it_was_blocked_in(api, ticket_in):
    ticket = ticket_in(Phase.BLOCKED, previous_phase=Phase.TESTING)
    response = api.post(
        f"/api/v1/tickets/{ticket.pk}/artifacts", {"artifact_type": "test_results", "content": {}}, format="json"
    )
    assert response.json()["phase"] == "TESTING"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"artifact_type": "", "content": {}}, "artifact_type: artifact_type must not be empty"),
        ({"artifact_type": "   ", "content": {}}, "artifact_type: artifact_type must not be empty"),
        ({"content": {}}, "artifact_type: This field is required."),
        ({"artifact_type": "design_doc", "content": ["x"]}, "content: content must be a JSON object"),
        ({"artifact_type": "design_doc", "content": "text"}, "content: content must be a JSON object"),
        ({"artifact_type": "design_doc"}, "content: This field is required."),
        (
            {"artifact_type": "design_doc", "content": {}, "phase": "BLOCKED"},
            "phase: artifacts belong to a working phase, not BLOCKED",
        ),
    ],
)
def test_a_bad_artifact_is_a_400_that_writes_nothing(api, ticket_in, body, detail):
    ticket = ticket_in(Phase.DESIGN)
    before = row_counts()
    response = api.post(f"/api/v1/tickets/{ticket.pk}/artifacts", body, format="json")
    assert response.status_code == 400
    assert response.json()["detail"] == detail
    assert row_counts() == before


def test_validate_gate_endpoint_stores_and_returns_the_result(api, ticket_in):
    ticket = ticket_in(Phase.IMPLEMENTATION)
    task = Task.objects.create(ticket=ticket, phase=Phase.IMPLEMENTATION, task_type="write_tests")

    response = api.post(f"/api/v1/tickets/{ticket.pk}/validate-gate", {}, format="json")

    assert response.status_code == 200
    result = PhaseGateResult.objects.get()
    body = response.json()
    assert body["id"] == result.pk
    assert (body["ticket_id"], body["phase"], body["gate_status"], body["passed"], body["requirements_met"]) == (
        ticket.pk,
        "IMPLEMENTATION",
        "failed",
        False,
        False,
    )
    assert body["missing_artifacts"] == ["code_changes", "test_results"]
    assert body["blocking_reasons"] == [
        f"task write_tests (#{task.pk}) is pending, not completed",
        "missing artifact code_changes",
        "missing artifact test_results",
    ]
    assert body["validated_by"] == "user:alice"

    other_phase = api.post(f"/api/v1/tickets/{ticket.pk}/validate-gate", {"phase": "BACKLOG"}, format="json")
    assert (other_phase.json()["phase"], other_phase.json()["gate_status"]) == ("BACKLOG", "passed")
    assert PhaseGateResult.objects.count() == 2
