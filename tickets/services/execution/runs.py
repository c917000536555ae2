"""Agent runs of a ticket's tasks: what the model is told, the ticket's sandbox, and one turn.

A ticket has one sandbox for all its tasks (its branch checked out from the ticket branch); each
agent task has a run (a conversation) in it. One turn is one model call plus its tool calls; when
the model calls `finish`, the host verifies in the same step (verification.py).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction

from omoi.budgets import Account, project_day_key
from omoi.leases import Held
from omoi.text import storable
from sandboxes.models import AgentRun, AgentRunKind, AgentRunStatus
from sandboxes.services.agent import (
    TurnInput,
    agent_run_finish,
    agent_run_limit_reason,
    agent_run_start,
    agent_turn_prepare,
    agent_turn_run,
    pending_terminal_call,
)
from sandboxes.services.sandbox import sandbox_acquire, sandbox_live, sandbox_touch
from sandboxes.services.setup import SetupFailed, sandbox_setup_ensure
from sandboxes.tools import EXECUTION_TOOLS
from sandboxes.workspace import CommandRefused, Workspace
from tickets.models import BlockedReason, Task, Ticket
from tickets.services import repository

SYSTEM_PROMPT = """You are an Omoi engineering agent. You work in a git checkout of the project, on a \
branch made for your task, through the tools you are given: list_files, read_file, search, \
write_file, edit_file, run_command and finish. Paths are relative to the repository root; you cannot \
leave it. Your commands run in a sandbox without the server's credentials.

Make the change the task asks for, with tests, following the repository's conventions. Run the \
tests yourself with run_command. When the work is done, call finish with a short summary. The host \
then runs the project's test command itself: your task is complete only when those tests pass. If \
they fail you will see the output and can fix the problem."""


def conversation_key(task: Task) -> str:
    """Names the conversation for replay scripts and usage records: "TSK-001:implement_feature"."""
    owner = task.ticket.spec_task.key if task.ticket.spec_task_id else f"ticket-{task.ticket_id}"
    return f"{owner}:{task.task_type}"


def test_command_for(ticket: Ticket) -> str:
    """The project's test command, else the one planning found while exploring the repository."""
    if ticket.project.test_command:
        return ticket.project.test_command
    if ticket.spec_id:
        return str((ticket.spec.phase_data or {}).get("explore", {}).get("test_command") or "")
    return ""


def first_message(task: Task) -> str:
    ticket = task.ticket
    parts = []
    if ticket.spec_task_id:
        spec_task = ticket.spec_task
        parts.append(f"# {spec_task.key}: {spec_task.title}")
    else:
        parts.append(f"# Ticket #{ticket.pk}: {ticket.title}")
    parts.append(f"## Your task ({task.task_type})\n\n{task.title}\n\n{task.description}".rstrip())
    if ticket.spec_task_id:
        # The requirements with their acceptance criteria, in one query (a row per criterion).
        rows = ticket.spec_task.requirements.order_by("position", "id", "criteria__position", "criteria__id")
        lines, seen = ["## Requirements this task covers"], set()
        for pk, key, title, text, criterion in rows.values_list("pk", "key", "title", "text", "criteria__text"):
            if pk not in seen:
                seen.add(pk)
                lines.append(f"- {key} {title}: {text}")
            if criterion is not None:
                lines.append(f"  - acceptance: {criterion}")
        if seen:
            parts.append("\n".join(lines))
        design = ticket.spec.design or {}
        if design.get("architecture"):
            components = "\n".join(
                f"- {c.get('name')}: {c.get('responsibility')} ({', '.join(c.get('files', []))})"
                for c in design.get("components", [])
            )
            parts.append(f"## Design\n\n{design['architecture']}\n\n{components}".rstrip())
    if ticket.context_summary:
        parts.append(f"## Context from earlier phases\n\n{ticket.context_summary}")
    command = test_command_for(ticket)
    if command:
        parts.append(f"## Checks\n\nThe host verifies your work by running `{command}`.")
    parts.append("Call finish(summary) when the work is done and the tests pass.")
    return "\n\n".join(parts)


def active_run(task: Task) -> AgentRun | None:
    return (
        AgentRun.objects.filter(task=task, status__in=[AgentRunStatus.RUNNING, AgentRunStatus.VERIFYING])
        .order_by("-id")
        .first()
    )


class EnvironmentProblem(Exception):
    """The ticket's sandbox cannot be made ready (its setup failed, commands may not run on this
    worker): the task fails and the ticket is BLOCKED with reason `environment` and this message."""


def ticket_workspace(*, ticket: Ticket, task: Task | None = None):
    """The ticket's sandbox, reopened, or made from the ticket branch (on this worker's disk for the
    local provider), with the project's setup step done. Returns (sandbox, workspace)."""

    def start() -> tuple[str, str]:
        point = repository.ticket_start_point(ticket=ticket)
        return str(point.mirror), point.sha

    sandbox, workspace = sandbox_acquire(
        spec_id=ticket.spec_id,
        ticket_id=ticket.pk,
        task_id=task.pk if task else None,
        source=start,
        branch=repository.ticket_branch_name(ticket),
        network_allowed=ticket.project.network_allowed,
    )
    command = ticket.project.setup_command.strip()
    if command:
        try:
            sandbox_setup_ensure(sandbox_id=sandbox.pk, command=command, cache_key=f"spec-{ticket.spec_id or 0}")
        except SetupFailed as exc:
            raise EnvironmentProblem(exc.message) from exc
        except CommandRefused as exc:
            raise EnvironmentProblem(str(exc)) from exc
    return sandbox, workspace


def run_base_point(task: Task) -> repository.BranchPoint:
    """Where a new run of the task starts: where the ticket's branch is (what the ticket's sandbox
    holds), the work this task's changes are measured from. Found outside any transaction: it may
    need this worker's mirror."""
    return repository.ticket_branch_point(ticket=task.ticket)


def run_begin(*, task: Task, point: repository.BranchPoint | None = None) -> AgentRun:
    """A new conversation for a running agent task, from `point` (run_base_point when not given),
    the ticket's branch recorded there in the same transaction. The sandbox itself is reached when
    the first tool needs it (lazy_workspace), so the model's first call does not wait for a
    checkout."""
    return _begin(task=task, point=point or run_base_point(task), text=first_message(task))


def _begin(*, task: Task, point: repository.BranchPoint, text: str) -> AgentRun:
    with transaction.atomic(savepoint=False):
        return agent_run_start(
            kind=AgentRunKind.TASK,
            spec_id=task.ticket.spec_id,
            task_id=task.pk,
            ticket_id=task.ticket_id,
            phase=task.phase,
            system_prompt=SYSTEM_PROMPT,
            first_message=text,
            base_sha=repository.ticket_branch_record(ticket=task.ticket, point=point),
        )


def run_begin_with_first_turn(*, task: Task, point: repository.BranchPoint) -> tuple[AgentRun, TurnInput]:
    """`run_begin`, and in the same transaction its first turn's input, the call's cost reserved
    on the task's accounts: run_turn then makes the call without a commit of its own first."""
    text = first_message(task)
    run = _begin(task=task, point=point, text=text)
    prepared = agent_turn_prepare(
        run=run,
        messages=[{"role": "user", "content": storable(text)}],
        tools=EXECUTION_TOOLS,
        accounts=task_accounts(task),
        fresh=True,
    )
    return run, prepared


class SandboxReplaced(Exception):
    """The run's sandbox is gone (lost with its worker, released): its uncommitted work with it."""


def lazy_workspace(*, run: AgentRun, task: Task):
    """The run's sandbox when a tool first needs it: (workspace, sandbox id)."""

    def reach() -> tuple[Workspace, int]:
        sandbox, workspace = ticket_workspace(ticket=task.ticket, task=task)
        if run.sandbox_id and sandbox.pk != run.sandbox_id:
            raise SandboxReplaced(f"sandbox {run.sandbox_id} of run {run.pk} was replaced by {sandbox.pk}")
        return workspace, sandbox.pk

    return reach


def sandbox_still_there(run: AgentRun) -> bool:
    """False when the run worked in a sandbox that is no longer the ticket's live one."""
    if not run.sandbox_id:
        return True
    live = sandbox_live(ticket_id=run.task.ticket_id) if run.task_id else None
    return live is not None and live.pk == run.sandbox_id


def run_limit(run: AgentRun) -> tuple[str, str] | None:
    """(blocked reason, readable reason) when the run may not take another turn: too many turns or
    too long is `turn_limit` (what it costs is the budgets' business: `budget`)."""
    if run.turns >= settings.OMOI_TASK_MAX_TURNS:
        return BlockedReason.TURN_LIMIT, f"turn limit reached ({settings.OMOI_TASK_MAX_TURNS} turns)"
    reason = agent_run_limit_reason(run, max_seconds=settings.OMOI_TASK_MAX_SECONDS)
    if reason:
        return BlockedReason.TURN_LIMIT, reason
    return None


def spec_budget_usd(spec) -> Decimal:
    return Decimal(str(spec.budget_usd if spec.budget_usd is not None else settings.OMOI_SPEC_BUDGET_USD))


def task_accounts(task: Task) -> list[Account]:
    """The accounts a task's model calls are charged to: the task (across its runs and retries),
    its spec, its project's day."""
    ticket = task.ticket
    accounts = [
        Account(key=f"task:{task.pk}", limit_usd=Decimal(str(settings.OMOI_TASK_BUDGET_USD)), label="the task"),
        Account(
            key=project_day_key(ticket.project_id),
            limit_usd=Decimal(str(settings.OMOI_PROJECT_DAILY_BUDGET_USD)),
            label="the project today",
        ),
    ]
    if ticket.spec_id:
        accounts.append(Account(key=f"spec:{ticket.spec_id}", limit_usd=spec_budget_usd(ticket.spec), label="the spec"))
    return accounts


def pending_finish(run: AgentRun, messages: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
    return pending_terminal_call(run, {"finish"}, messages)


def run_turn(
    *,
    run: AgentRun,
    task: Task,
    workspace,
    held: Held,
    messages: list[dict[str, Any]] | None = None,
    prepared: TurnInput | None = None,
):
    """One model turn of the task's run (the caller holds the ticket's lease), charged to the task's
    accounts. The sandbox is touched first, so a provider's auto-stop (Daytona's) counts from this
    turn."""
    if run.sandbox_id:
        sandbox_touch(sandbox_id=run.sandbox_id)
    return agent_turn_run(
        accounts=task_accounts(task),
        run=run,
        workspace=workspace,
        tools=EXECUTION_TOOLS,
        terminal_tools={"finish"},
        conversation_key=conversation_key(task),
        ticket_id=task.ticket_id,
        before_tools=held.check,
        messages=messages,
        prepared=prepared,
    )


def run_end(*, run: AgentRun, status: str, reason: str, result: dict[str, Any] | None = None) -> None:
    agent_run_finish(run_id=run.pk, status=status, stop_reason=reason, result=result, ticket_id=run_ticket_id(run))


def run_ticket_id(run: AgentRun) -> int | None:
    return Task.objects.filter(pk=run.task_id).values_list("ticket_id", flat=True).first()
