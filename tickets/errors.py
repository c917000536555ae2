"""The ways a workflow request can be refused. Views turn them into 4xx answers: a move the table
or a gate forbids is a 409 Conflict, bad input a 400."""

from collections.abc import Sequence


class TicketError(Exception):
    """Base of every refusal by the tickets services; `str(error)` is a readable reason."""


class InvalidTransition(TicketError):
    """The transition table does not allow this move (or the move's arguments are incomplete)."""

    def __init__(self, from_phase: str, to_phase: str, reason: str = "") -> None:
        self.from_phase = from_phase
        self.to_phase = to_phase
        self.reason = reason or f"a ticket cannot move from {from_phase} to {to_phase}"
        super().__init__(self.reason)


class GateBlocked(TicketError):
    """The exit gate of a phase the move would leave does not pass. `reasons` lists every failing
    check; `gate_result` is the stored failed PhaseGateResult (set once it has been stored)."""

    def __init__(self, phase: str, reasons: Sequence[str], details: dict | None = None) -> None:
        self.phase = phase
        self.reasons = list(reasons)
        self.details = details or {}
        self.gate_result = None
        super().__init__(f"the {phase} gate does not pass: " + "; ".join(self.reasons))


class InvalidTaskState(TicketError):
    """A task operation that the task's current status (or its ticket) does not allow."""


class InvalidArtifact(TicketError):
    """An artifact without a type or whose content is not a JSON object."""


class InvalidDependency(TicketError):
    """A dependency across projects, on itself, or one that would make a cycle."""


class ProjectNameTaken(TicketError):
    """The owner already has a project with this name."""
