"""The ticket phases' rules, defined once: the normal sequence, the allowed moves (seed 003's
table), and which moves must pass a gate. Everything that asks "may this ticket move?" reads
these; only `tickets.services.transitions.ticket_transition` acts on them."""

from tickets.models import Phase

PHASE_SEQUENCE: tuple[Phase, ...] = (
    Phase.BACKLOG,
    Phase.REQUIREMENTS,
    Phase.DESIGN,
    Phase.IMPLEMENTATION,
    Phase.TESTING,
    Phase.DEPLOYMENT,
    Phase.DONE,
)

# The phases in which work happens: each has task templates and an exit gate.
WORKING_PHASES: tuple[Phase, ...] = (
    Phase.REQUIREMENTS,
    Phase.DESIGN,
    Phase.IMPLEMENTATION,
    Phase.TESTING,
    Phase.DEPLOYMENT,
)

# The board shows the sequence, then BLOCKED.
BOARD_COLUMNS: tuple[Phase, ...] = (*PHASE_SEQUENCE, Phase.BLOCKED)

TRANSITIONS: dict[Phase, tuple[Phase, ...]] = {
    Phase.BACKLOG: (Phase.REQUIREMENTS,),
    Phase.REQUIREMENTS: (Phase.DESIGN, Phase.BLOCKED),
    Phase.DESIGN: (Phase.IMPLEMENTATION, Phase.BLOCKED),
    Phase.IMPLEMENTATION: (Phase.TESTING, Phase.BLOCKED),
    Phase.TESTING: (Phase.DEPLOYMENT, Phase.IMPLEMENTATION, Phase.BLOCKED),  # may regress
    Phase.DEPLOYMENT: (Phase.DONE, Phase.BLOCKED),
    Phase.BLOCKED: (Phase.REQUIREMENTS, Phase.DESIGN, Phase.IMPLEMENTATION, Phase.TESTING),
    Phase.DONE: (),  # terminal
}


def can_transition(from_phase: str, to_phase: str) -> bool:
    return Phase(to_phase) in TRANSITIONS[Phase(from_phase)]


def allowed_transitions(from_phase: str) -> tuple[Phase, ...]:
    return TRANSITIONS[Phase(from_phase)]


def next_phase(phase: str) -> Phase | None:
    """The phase after `phase` in the normal flow; None for DONE and BLOCKED."""
    phase = Phase(phase)
    if phase not in PHASE_SEQUENCE or phase == Phase.DONE:
        return None
    return PHASE_SEQUENCE[PHASE_SEQUENCE.index(phase) + 1]


def gated_phases(*, from_phase: str, to_phase: str, previous_phase: str = "") -> list[Phase]:
    """The working phases whose exit gate a move must pass: the phases it leaves going forward.

    A forward move (DESIGN → IMPLEMENTATION) leaves one phase. Unblocking returns to the phase the
    ticket was blocked in without a gate, but unblocking further ahead (blocked in DESIGN, unblocked
    to TESTING) leaves every phase in between, so each of their gates applies. Regression
    (TESTING → IMPLEMENTATION) and moves into BLOCKED leave nothing finished and pass no gate.
    """
    from_phase, to_phase = Phase(from_phase), Phase(to_phase)
    if to_phase == Phase.BLOCKED or to_phase not in PHASE_SEQUENCE:
        return []
    start = from_phase
    if from_phase == Phase.BLOCKED:
        if not previous_phase or Phase(previous_phase) not in PHASE_SEQUENCE:
            return []
        start = Phase(previous_phase)
    if start not in PHASE_SEQUENCE:
        return []
    first, last = PHASE_SEQUENCE.index(start), PHASE_SEQUENCE.index(to_phase)
    return [phase for phase in PHASE_SEQUENCE[first:last] if phase in WORKING_PHASES]
