"""Fixtures and builders for the workflow engine's tests."""

import pytest

from tests.factories import TicketFactory
from tickets.models import BlockedReason, Phase, PhaseGateArtifact, Task, TaskStatus

REQUIREMENTS_TEXT = (
    "# Export\n\n## Requirements\n\n"
    + "- The system shall export every ticket of a project as CSV on request.\n" * 3
    + "\n## Acceptance Criteria\n\n- A GET on the export endpoint answers text/csv with one row per ticket.\n"
)
DESIGN_TEXT = (
    "# Export design\n\n## Architecture\n\n"
    + "A view streams rows from a selector; the serializer writes CSV with the standard library.\n" * 3
)
PASSING_TESTS = {"exit_code": 0, "passed": 12, "failed": 0, "output_tail": "12 passed in 0.4s"}
FAILING_TESTS = {"exit_code": 1, "passed": 10, "failed": 2, "output_tail": "2 failed, 10 passed"}

PASSING_ARTIFACTS: dict[str, list[tuple[str, dict]]] = {
    Phase.REQUIREMENTS: [("requirements_doc", {"text": REQUIREMENTS_TEXT})],
    Phase.DESIGN: [("design_doc", {"text": DESIGN_TEXT})],
    Phase.IMPLEMENTATION: [
        (
            "code_changes",
            {"files": ["app/export.py", "tests/test_export.py"], "diff_stat": "2 files", "tests_touched": True},
        ),
        ("test_results", PASSING_TESTS),
    ],
    Phase.TESTING: [("test_results", PASSING_TESTS)],
    Phase.DEPLOYMENT: [("deployment", {"merged": True, "commit": "0123456789abcdef0123", "branch": "omoi/spec-1"})],
}


def make_ticket(*, project, phase: str = Phase.BACKLOG, previous_phase: str = "", **fields):
    """A ticket placed directly in `phase` (test set-up only; production moves go through the service)."""
    if phase == Phase.BLOCKED:
        fields.setdefault("blocked_reason", BlockedReason.OTHER)
        fields.setdefault("blocked_message", "waiting")
    return TicketFactory(project=project, phase=phase, previous_phase=previous_phase, **fields)


def satisfy_gate(ticket, phase: str) -> None:
    """Give `ticket` what the default gate of `phase` asks for."""
    for artifact_type, content in PASSING_ARTIFACTS.get(phase, []):
        PhaseGateArtifact.objects.create(
            ticket=ticket, phase=phase, artifact_type=artifact_type, content=content, collected_by="test"
        )
    Task.objects.filter(ticket=ticket, phase=phase).update(status=TaskStatus.COMPLETED)


@pytest.fixture
def ticket_in(project):
    def build(phase: str = Phase.BACKLOG, **fields):
        return make_ticket(project=project, phase=phase, **fields)

    return build


def row_counts() -> dict[str, int]:
    """How many rows each workflow record has: compared before and after a refused request."""
    from sandboxes.models import SandboxEvent
    from tickets.models import PhaseGateResult, PhaseHistory, Ticket

    return {
        "history": PhaseHistory.objects.count(),
        "gate_results": PhaseGateResult.objects.count(),
        "tasks": Task.objects.count(),
        "artifacts": PhaseGateArtifact.objects.count(),
        "events": SandboxEvent.objects.count(),
        "tickets": Ticket.objects.count(),
    }


def allowed_pairs() -> list[tuple[str, str]]:
    from tickets.workflow import TRANSITIONS

    return [(a.value, b.value) for a, targets in TRANSITIONS.items() for b in targets]


def disallowed_pairs() -> list[tuple[str, str]]:
    from tickets.workflow import TRANSITIONS

    return [(a.value, b.value) for a in Phase for b in Phase if a != b and b not in TRANSITIONS[a]]


def ticket_ready_to_move(*, project, from_phase: str, to_phase: str):
    """A ticket in `from_phase` for which the move to `to_phase` passes every gate, if the table
    allows it at all: a blocked ticket was blocked in `to_phase` (a plain return), and a ticket in
    a working phase has everything its exit gate asks for."""
    previous = to_phase if from_phase == Phase.BLOCKED and to_phase != Phase.BACKLOG else ""
    ticket = make_ticket(project=project, phase=from_phase, previous_phase=previous)
    if from_phase in PASSING_ARTIFACTS:
        satisfy_gate(ticket, from_phase)
    return ticket


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Users are made by the hundred here; nothing in these tests is about password strength."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
