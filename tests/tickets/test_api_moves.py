"""The moves through the REST API: the whole table, 409s that write nothing, block and unblock."""

import pytest

from tests.tickets.conftest import allowed_pairs, disallowed_pairs, row_counts, ticket_ready_to_move
from tickets.models import Phase, PhaseGateResult, PhaseHistory, Task

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("from_phase", "to_phase"), allowed_pairs())
def test_every_allowed_move_through_the_api(api, project, from_phase, to_phase):
    ticket = ticket_ready_to_move(project=project, from_phase=from_phase, to_phase=to_phase)

    response = api.post(
        f"/api/v1/tickets/{ticket.pk}/transition",
        {"to_phase": to_phase, "reason": "moving on", "blocked_reason": "dependency"},
        format="json",
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["ticket_id"], body["previous_phase"], body["current_phase"], body["transitioned"]) == (
        ticket.pk,
        from_phase,
        to_phase,
        True,
    )
    assert body["transitioned_by"] == "user:alice"
    assert body["ticket"]["phase"] == to_phase
    assert body["ticket"]["blocked_reason"] == ("dependency" if to_phase == Phase.BLOCKED else "")
    assert list(PhaseHistory.objects.filter(ticket=ticket).values_list("from_phase", "to_phase", "actor")) == [
        (from_phase, to_phase, "user:alice")
    ]


@pytest.mark.parametrize(("from_phase", "to_phase"), disallowed_pairs())
def test_every_disallowed_move_through_the_api_is_a_409_that_writes_nothing(api, project, from_phase, to_phase):
    ticket = ticket_ready_to_move(project=project, from_phase=from_phase, to_phase=to_phase)
    before = row_counts()

    response = api.post(f"/api/v1/tickets/{ticket.pk}/transition/", {"to_phase": to_phase}, format="json")

    assert response.status_code == 409
    body = response.json()
    assert f"cannot move from {from_phase} to {to_phase}" in body["detail"]
    assert (body["from_phase"], body["to_phase"]) == (from_phase, to_phase)
    ticket.refresh_from_db()
    assert ticket.phase == from_phase
    assert row_counts() == before


def test_a_gate_refusal_is_a_409_with_the_blocking_reasons(api, ticket_in):
    ticket = ticket_in(Phase.REQUIREMENTS)
    Task.objects.create(ticket=ticket, phase=Phase.REQUIREMENTS, task_type="analyze_requirements", title="t")
    api.post(
        f"/api/v1/tickets/{ticket.pk}/artifacts",
        {"artifact_type": "requirements_doc", "content": {"text": "## Requirements\nshort"}},
        format="json",
    )
    before = row_counts()

    response = api.post(f"/api/v1/tickets/{ticket.pk}/transition", {"to_phase": "DESIGN"}, format="json")

    assert response.status_code == 409
    body = response.json()
    task = Task.objects.get()
    assert body["phase"] == "REQUIREMENTS"
    assert body["blocking_reasons"] == [
        f"task analyze_requirements (#{task.pk}) is pending, not completed",
        "requirements_doc: text has 21 characters, at least 200 are required",
        "requirements_doc: text has no section '## Acceptance Criteria'",
    ]
    assert body["gate_result"] == PhaseGateResult.objects.get().pk
    assert body["detail"].startswith("the REQUIREMENTS gate does not pass: ")
    ticket.refresh_from_db()
    assert ticket.phase == Phase.REQUIREMENTS
    assert row_counts() == {**before, "gate_results": before["gate_results"] + 1}


def test_a_repeated_move_answers_200_without_a_new_history_row(api, ticket_in):
    ticket = ticket_in(Phase.DESIGN)

    response = api.post(f"/api/v1/tickets/{ticket.pk}/transition", {"to_phase": "DESIGN"}, format="json")

    assert response.status_code == 200
    assert (response.json()["transitioned"], response.json()["current_phase"]) == (False, "DESIGN")
    assert PhaseHistory.objects.count() == 0


def test_an_unknown_phase_is_a_400(api, ticket_in):
    ticket = ticket_in(Phase.DESIGN)
    response = api.post(f"/api/v1/tickets/{ticket.pk}/transition", {"to_phase": "LIMBO"}, format="json")
    assert response.status_code == 400
    assert response.json()["detail"] == 'to_phase: "LIMBO" is not a valid choice.'


def test_block_and_unblock_through_the_api(api, ticket_in):
    ticket = ticket_in(Phase.TESTING)

    blocked = api.post(
        f"/api/v1/tickets/{ticket.pk}/block", {"reason": "merge_conflict", "message": "README.md"}, format="json"
    )
    assert blocked.status_code == 200
    assert blocked.json()["ticket"]["phase"] == "BLOCKED"
    assert blocked.json()["ticket"]["previous_phase"] == "TESTING"
    assert blocked.json()["ticket"]["blocked_reason"] == "merge_conflict"
    assert blocked.json()["ticket"]["blocked_message"] == "README.md"

    unblocked = api.post(f"/api/v1/tickets/{ticket.pk}/unblock", {}, format="json")
    assert unblocked.status_code == 200
    assert (unblocked.json()["previous_phase"], unblocked.json()["current_phase"]) == ("BLOCKED", "TESTING")

    again = api.post(f"/api/v1/tickets/{ticket.pk}/unblock", {}, format="json")
    assert again.status_code == 409
    assert again.json()["detail"] == f"ticket #{ticket.pk} is not blocked (it is in TESTING)"

    history = api.get(f"/api/v1/tickets/{ticket.pk}/history").json()
    assert [(h["from_phase"], h["to_phase"], h["actor"]) for h in history] == [
        ("TESTING", "BLOCKED", "user:alice"),
        ("BLOCKED", "TESTING", "user:alice"),
    ]


def test_block_needs_a_known_reason(api, ticket_in):
    ticket = ticket_in(Phase.TESTING)
    response = api.post(f"/api/v1/tickets/{ticket.pk}/block", {"reason": "tired"}, format="json")
    assert response.status_code == 400
    assert response.json()["detail"] == 'reason: "tired" is not a valid choice.'
    ticket.refresh_from_db()
    assert ticket.phase == Phase.TESTING


def test_unblock_to_a_phase_the_table_forbids_is_a_409(api, ticket_in):
    ticket = ticket_in(Phase.BLOCKED, previous_phase=Phase.DESIGN)
    response = api.post(f"/api/v1/tickets/{ticket.pk}/unblock", {"to_phase": "DONE"}, format="json")
    assert response.status_code == 409
    assert response.json()["detail"] == (
        "a blocked ticket cannot return to DONE; it may return to: REQUIREMENTS, DESIGN, IMPLEMENTATION, TESTING"
    )
