"""The tickets services: the only code that changes tickets, tasks and their records.

Each is a keyword-only function in its own transaction. `execution` (the seam to agent runs) is
owned by the execution work and is not re-exported here.
"""

from tickets.errors import (
    GateBlocked,
    InvalidArtifact,
    InvalidDependency,
    InvalidTaskState,
    InvalidTransition,
    ProjectNameTaken,
    TicketError,
)
from tickets.services.context import ticket_context_for, ticket_context_summarize
from tickets.services.gates import artifact_collect, gate_evaluate
from tickets.services.tasks import (
    task_complete,
    task_fail,
    task_retry,
    task_start,
    tasks_dispatch_runnable,
    tasks_generate,
)
from tickets.services.tickets import project_create, ticket_create, ticket_dependency_add
from tickets.services.transitions import (
    ticket_block,
    ticket_progress,
    ticket_start,
    ticket_transition,
    ticket_unblock,
)

__all__ = [
    "GateBlocked",
    "InvalidArtifact",
    "InvalidDependency",
    "InvalidTaskState",
    "InvalidTransition",
    "ProjectNameTaken",
    "TicketError",
    "artifact_collect",
    "gate_evaluate",
    "project_create",
    "task_complete",
    "task_fail",
    "task_retry",
    "task_start",
    "tasks_dispatch_runnable",
    "tasks_generate",
    "ticket_block",
    "ticket_context_for",
    "ticket_context_summarize",
    "ticket_create",
    "ticket_dependency_add",
    "ticket_progress",
    "ticket_start",
    "ticket_transition",
    "ticket_unblock",
]
