"""EXECUTE: the bridge from a planned spec to tickets (owned by the execution work, issue 5)."""


def spec_execute(*, spec_id: int, actor: str) -> None:
    """Turn every SpecTask of a planning-complete, approved spec into exactly one Ticket with its
    tasks, and make the spec `executing`. Filled in by the execution work."""
    raise NotImplementedError("the bridge lands with the execution work")
