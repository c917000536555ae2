"""Gate evidence and gate evaluation: collecting artifacts and storing gate results."""

from typing import Any

from django.db import transaction

from omoi.text import storable, storable_json
from tickets.errors import InvalidArtifact
from tickets.gates import GateOutcome, gate_check
from tickets.models import GateStatus, Phase, PhaseGateArtifact, PhaseGateResult, Ticket

ARTIFACT_TYPE_MAX_LENGTH = PhaseGateArtifact._meta.get_field("artifact_type").max_length
ARTIFACT_PATH_MAX_LENGTH = PhaseGateArtifact._meta.get_field("path").max_length


def artifact_phase_default(ticket: Ticket) -> str:
    """The phase an artifact belongs to when none is named: the ticket's current phase, or for a
    blocked ticket the phase it was blocked in (whose gate the evidence is for)."""
    if ticket.phase == Phase.BLOCKED and ticket.previous_phase:
        return ticket.previous_phase
    return ticket.phase


def artifact_validate(*, artifact_type: Any, content: Any, path: Any = "", phase: Any = None) -> None:
    if not isinstance(artifact_type, str) or not artifact_type.strip():
        raise InvalidArtifact("an artifact needs a non-empty type")
    if len(artifact_type) > ARTIFACT_TYPE_MAX_LENGTH:
        raise InvalidArtifact(f"artifact type is longer than {ARTIFACT_TYPE_MAX_LENGTH} characters")
    if not isinstance(content, dict):
        raise InvalidArtifact(f"the content of artifact {artifact_type!r} must be a JSON object")
    if not isinstance(path, str) or len(path) > ARTIFACT_PATH_MAX_LENGTH:
        raise InvalidArtifact(f"the path of artifact {artifact_type!r} must be text of at most 1000 characters")
    if phase is not None and (phase not in Phase.values or phase == Phase.BLOCKED):
        raise InvalidArtifact(f"artifacts belong to a working phase, not {phase!r}")


@transaction.atomic
def artifact_collect(
    *,
    ticket_id: int,
    artifact_type: str,
    content: dict[str, Any],
    collected_by: str,
    phase: str | None = None,
    path: str = "",
) -> PhaseGateArtifact:
    """Record one piece of gate evidence for a phase of a ticket (default: its current phase).
    Its text is made storable here: evidence from a command may hold NUL bytes, and a failure to
    record it must not strand the task it proves."""
    ticket = Ticket.objects.get(pk=ticket_id)
    phase = phase or artifact_phase_default(ticket)
    artifact_validate(artifact_type=artifact_type, content=content, path=path, phase=phase)
    return PhaseGateArtifact.objects.create(
        ticket=ticket,
        phase=phase,
        artifact_type=storable(artifact_type.strip()),
        path=storable(path),
        content=storable_json(content),
        collected_by=collected_by,
    )


def gate_result_store(*, ticket_id: int, outcome: GateOutcome, actor: str) -> PhaseGateResult:
    return PhaseGateResult.objects.create(
        ticket_id=ticket_id,
        phase=outcome.phase,
        status=GateStatus.PASSED if outcome.passed else GateStatus.FAILED,
        blocking_reasons=storable_json(outcome.reasons),
        details=storable_json(outcome.details),
        validated_by=actor,
    )


@transaction.atomic
def gate_evaluate(*, ticket_id: int, actor: str, phase: str | None = None) -> PhaseGateResult:
    """Evaluate the exit gate of `phase` (default: the ticket's current phase, or the phase it was
    blocked in) and store the result, passed or failed. Moves nothing."""
    ticket = Ticket.objects.get(pk=ticket_id)
    phase = phase or artifact_phase_default(ticket)
    outcome = gate_check(ticket=ticket, phase=phase)
    return gate_result_store(ticket_id=ticket.pk, outcome=outcome, actor=actor)
