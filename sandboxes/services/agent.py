"""Agent runs: a model conversation that proceeds one turn per call, its transcript in the database.

`agent_turn_run` is the primitive the planning and execution drivers call from their steps: one
model call (outside any transaction), the turn's tool calls executed in the workspace, then one
short transaction that appends the turn to the transcript (AgentMessage rows: nothing is rewritten),
counts it, records its usage once, and records its events in bulk. The caller holds the lease of
the step (omoi/leases.py), so no second delivery runs the same turn while it lives; should one run
it anyway after the lease expired, the transcript's unique (run, position) and the usage's unique
(run, turn) let only the first commit count. The module knows nothing of tickets or specs'
workflow: the caller says which tools are offered and which of them end the turn ("terminal"
tools such as `finish` or `submit_requirements`), and decides what a terminal call means.

Transcript invariant (the Messages API requires it): every assistant message that calls tools is
followed by one user message answering every call. A terminal call is answered later, by
`agent_run_reply`, together with the other calls of that turn, whose results wait in
`AgentRun.pending_tool_results` meanwhile.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from omoi.budgets import budget_reserve, budget_settle
from omoi.faults import fault_point
from omoi.llm import LLMProvider, UsageContext, get_provider, text_of, tool_uses_of, usage_record
from omoi.llm.base import Usage, estimate_cost
from omoi.nodes import current_node
from omoi.text import storable, storable_json
from sandboxes.models import AgentMessage, AgentRun, AgentRunStatus, QueuedMessage, QueuedMessageStatus
from sandboxes.selectors import run_transcript
from sandboxes.services.events import event_record, events_batch, truncate_text
from sandboxes.tools import FILE_CHANGING_TOOLS, ToolResult, tool_execute
from sandboxes.workspace import Workspace

EVENT_TEXT_LIMIT = 2000
EVENT_INPUT_LIMIT = 2000
ACTIVE_RUN_STATUSES = (AgentRunStatus.RUNNING, AgentRunStatus.VERIFYING)


class AgentRunError(Exception):
    """The run cannot take this step (for example, it waits for a reply to a terminal call)."""


class BudgetExceeded(Exception):
    """The turn's model call would take an account past its budget: no call was made."""

    def __init__(self, refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


def _pending_messages(run: AgentRun) -> list[QueuedMessage]:
    """Messages waiting for this run's next turn: the guardian's to this run, an operator's to the
    run's task (or, for a planning run, to its spec)."""
    audience = Q(run_id=run.pk)
    if run.task_id is not None:
        audience |= Q(run__isnull=True, task_id=run.task_id)
    elif run.spec_id is not None:
        audience |= Q(run__isnull=True, task__isnull=True, spec_id=run.spec_id)
    return list(QueuedMessage.objects.filter(audience, status=QueuedMessageStatus.PENDING).order_by("id"))


def _injected_text(message: QueuedMessage) -> str:
    if message.source == "guardian":
        return message.text
    who = f" from {message.author}" if message.author else ""
    return f"[Message{who}, an operator of this run] {message.text}"


def _with_injected(last: dict[str, Any], queued: list[QueuedMessage]) -> dict[str, Any]:
    """The last user message with the queued messages appended as text blocks."""
    content = last["content"]
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
    return {"role": "user", "content": [*blocks, *({"type": "text", "text": _injected_text(m)} for m in queued)]}


def call_estimate_usd(
    *, system: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]], model: str
) -> Decimal:
    """A call's worst-case cost: the input so far (over-counted at 3 characters a token) plus the
    whole output allowance, at the model's prices."""
    characters = len(system) + transcript_characters(messages) + len(json.dumps(tools, default=str))
    usage = Usage(input_tokens=characters // 3 + 1, output_tokens=int(settings.OMOI_LLM_MAX_TOKENS))
    return estimate_cost(model, usage)


@dataclass
class TurnInput:
    """What a turn sends the model, read (and its call's worst case reserved) before the call: the
    transcript with the queued messages joined to its last user message, those messages (marked
    delivered in the turn's commit), and the budgets' refusal when an account is spent."""

    messages: list[dict[str, Any]]
    queued: list[QueuedMessage]
    refusal: Any = None


def agent_turn_prepare(
    *,
    run: AgentRun,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    accounts: list | None = None,
    provider: LLMProvider | None = None,
    fresh: bool = False,
) -> TurnInput:
    """Read the run's queued messages and reserve the call's worst-case cost on `accounts`. A
    caller that begins a run calls it in the same transaction (`fresh`: the run holds no
    reservation yet) and hands the result to agent_turn_run, so the first call costs one commit
    fewer; agent_turn_run calls it itself otherwise (the reservation must commit before the call)."""
    queued = _pending_messages(run) if messages else []
    if queued:
        messages = [*messages[:-1], _with_injected(messages[-1], queued)]
    refusal = None
    if accounts:
        model = getattr(provider, "model", "") or settings.OMOI_MODEL
        estimate = call_estimate_usd(system=run.system_prompt, messages=messages, tools=tools, model=model)
        refusal = budget_reserve(run_id=run.pk, accounts=accounts, amount_usd=estimate, fresh=fresh)
    return TurnInput(messages=messages, queued=queued, refusal=refusal)


@dataclass
class TurnOutcome:
    """What a turn came to. kind: "continue" (tool results appended; run the next turn), "terminal"
    (the model called a terminal tool: `name`, `input`, `tool_use_id`; answer it with
    agent_run_reply or end the run), or "stale" (the run is not running; nothing was done)."""

    kind: str
    name: str = ""
    input: dict[str, Any] = field(default_factory=dict)
    tool_use_id: str = ""
    text: str = ""
    stop_reason: str = ""
    turns: int = 0
    executed: list[tuple[dict[str, Any], ToolResult]] = field(default_factory=list)


def _truncated_input(tool_input: Any) -> Any:
    if not isinstance(tool_input, dict):
        return truncate_text(str(tool_input), EVENT_INPUT_LIMIT)
    truncated = {}
    for key, value in tool_input.items():
        if isinstance(value, str):
            truncated[key] = truncate_text(value, EVENT_INPUT_LIMIT)
        else:
            text = json.dumps(value, default=str)
            truncated[key] = value if len(text) <= EVENT_INPUT_LIMIT else truncate_text(text, EVENT_INPUT_LIMIT)
    return truncated


def _tool_result_block(tool_use_id: str, result: ToolResult) -> dict[str, Any]:
    return {
        "type": "tool_result",
        "tool_use_id": tool_use_id,
        "content": storable(result.content),
        "is_error": result.is_error,
    }


def terminal_nudge(terminal_tools: set[str]) -> str:
    names = " or ".join(sorted(terminal_tools)) or "the finishing tool"
    return f"Continue with the tools; call {names} when you are done."


# --- the transcript ---------------------------------------------------------------------------


# A worker takes turn after turn of the same runs: the transcripts it read last are kept (a few
# per process), keyed by the run and its start, and only their last rows are read again; with each
# message, the length of its JSON (what a call's estimate counts), measured once.
_transcripts: OrderedDict[tuple[int, Any], tuple[list[dict[str, Any]], list[int]]] = OrderedDict()
TRANSCRIPTS_KEPT = 16


def _json_length(message: dict[str, Any]) -> int:
    return len(json.dumps(message, default=str))


def transcript_characters(messages: list[dict[str, Any]]) -> int:
    """len(json.dumps(messages)) without serializing again the messages whose length this process
    measured when it read them (every message but the last is the object it cached; the last may
    carry injected messages)."""
    if not messages:
        return 2
    lengths: dict[int, int] = {}
    for known, sizes in _transcripts.values():
        if known and known[0] is messages[0]:
            lengths = {id(message): size for message, size in zip(known, sizes, strict=True)}
            break
    total = 2 + 2 * (len(messages) - 1)  # the brackets and ", " between messages
    for message in messages[:-1]:
        total += lengths.get(id(message)) or _json_length(message)
    return total + _json_length(messages[-1])


def run_messages(run: AgentRun) -> list[dict[str, Any]]:
    """The run's transcript, oldest first, in one query whose size does not grow with it: the
    messages this process read before are reused, and the rows from the last one it knew are read
    (that one may have been rewritten since: queued messages join the last user message; the
    later ones are new, whoever wrote them)."""
    key = (run.pk, run.started_at)
    known, sizes = _transcripts.pop(key, None) or ([], [])
    start = max(len(known) - 1, 0)
    rows = list(
        AgentMessage.objects.filter(run_id=run.pk, position__gte=start)
        .order_by("position")
        .values_list("position", "role", "content")
    )
    if [position for position, _role, _content in rows] != list(range(start, start + len(rows))) or (
        start and not rows
    ):
        messages = run_transcript(run=run)  # not what this process knew: read it whole
        sizes = [_json_length(message) for message in messages]
    else:
        messages = [*known[:start], *({"role": role, "content": content} for _position, role, content in rows)]
        sizes = [*sizes[:start], *(_json_length(message) for message in messages[start:])]
    _transcripts[key] = (messages, sizes)
    while len(_transcripts) > TRANSCRIPTS_KEPT:
        _transcripts.popitem(last=False)
    return list(messages)


def run_last_message(run: AgentRun) -> dict[str, Any] | None:
    row = AgentMessage.objects.filter(run_id=run.pk).order_by("-position").values_list("role", "content").first()
    return {"role": row[0], "content": row[1]} if row else None


def _append(run: AgentRun, messages: list[dict[str, Any]]) -> None:
    """Append messages at the end of the transcript (inside the caller's transaction, the run row
    locked). A concurrent writer of the same positions fails on the unique constraint."""
    AgentMessage.objects.bulk_create(
        [
            AgentMessage(run_id=run.pk, position=run.message_count + offset, role=m["role"], content=m["content"])
            for offset, m in enumerate(messages)
        ]
    )
    run.message_count += len(messages)


def pending_terminal_call(
    run: AgentRun, names: set[str], messages: list[dict[str, Any]] | None = None
) -> dict[str, Any] | None:
    """The terminal call (one of `names`) of the last assistant message, when it still waits for
    its answer (a crash between the model's call and the host's reply). `messages`: the run's
    transcript when the caller has just read it."""
    if messages is None:
        last = run_last_message(run)
    else:
        last = messages[-1] if messages else None
    if not last or last["role"] != "assistant":
        return None
    for block in tool_uses_of(last.get("content") or []):
        if block.get("name") in names:
            return block
    return None


# --- runs -------------------------------------------------------------------------------------


def agent_run_start(
    *,
    kind: str,
    spec_id: int | None = None,
    task_id: int | None = None,
    phase: str = "",
    system_prompt: str,
    first_message: str,
    sandbox_id: int | None = None,
    base_sha: str = "",
    ticket_id: int | None = None,
) -> AgentRun:
    """A new run whose transcript is the first user message. Records `agent.started`. Inside a
    caller's transaction it takes no savepoint of its own: a failure rolls the caller back."""
    with transaction.atomic(savepoint=False):
        run = AgentRun.objects.create(
            kind=kind,
            spec_id=spec_id,
            task_id=task_id,
            phase=phase,
            sandbox_id=sandbox_id,
            system_prompt=system_prompt,
            base_sha=base_sha,
            message_count=1,
        )
        AgentMessage.objects.create(run_id=run.pk, position=0, role="user", content=storable(first_message))
        event_record(
            type="agent.started",
            payload={"run": run.pk, "kind": kind, "phase": phase},
            spec_id=spec_id,
            ticket_id=ticket_id,
            task_id=task_id,
            sandbox_id=sandbox_id,
        )
    return run


def _execute_tool_uses(
    *,
    workspace: Workspace,
    tool_uses: list[dict[str, Any]],
    offered: set[str],
    terminal_tools: set[str],
) -> tuple[list[tuple[dict[str, Any], ToolResult]], dict[str, Any] | None]:
    """Run every non-terminal call; return (call, result) pairs in call order and the first
    terminal call (whose result is left to the caller)."""
    executed: list[tuple[dict[str, Any], ToolResult]] = []
    terminal: dict[str, Any] | None = None
    for call in tool_uses:
        name = call.get("name", "")
        if name in terminal_tools and name in offered:
            if terminal is None:
                terminal = call
                continue
            result = ToolResult(
                content=f"only one call of {name} is taken per turn; this one was ignored", is_error=True
            )
        elif name not in offered:
            result = ToolResult(
                content=f"tool {name!r} is not available here; the available tools are: {', '.join(sorted(offered))}",
                is_error=True,
            )
        else:
            result = tool_execute(workspace=workspace, name=name, tool_input=call.get("input"))
        executed.append((call, result))
    return executed, terminal


def _record_tool_events(
    *, run: AgentRun, executed: list[tuple[dict[str, Any], ToolResult]], ticket_id: int | None
) -> None:
    common = {"spec_id": run.spec_id, "ticket_id": ticket_id, "task_id": run.task_id, "sandbox_id": run.sandbox_id}
    for call, result in executed:
        name = call.get("name", "")
        tool_input = _truncated_input(call.get("input"))
        event_record(type="agent.tool_call", payload={"run": run.pk, "name": name, "input": tool_input}, **common)
        if result.refused:
            event_record(
                type="sandbox.refused",
                payload={"run": run.pk, "tool": name, "input": tool_input, "reason": result.meta.get("reason", "")},
                **common,
            )
        elif name in FILE_CHANGING_TOOLS and not result.is_error:
            event_record(type="sandbox.file_changed", payload={"run": run.pk, "path": result.meta["path"]}, **common)
        elif name == "run_command" and "exit_code" in result.meta:
            event_record(
                type="sandbox.command",
                payload={
                    "run": run.pk,
                    "command": truncate_text(result.meta["command"], EVENT_INPUT_LIMIT),
                    "exit_code": result.meta["exit_code"],
                    "duration_s": result.meta["duration_s"],
                    "timed_out": result.meta["timed_out"],
                },
                **common,
            )
        event_record(
            type="agent.tool_result",
            payload={
                "run": run.pk,
                "name": name,
                "is_error": result.is_error,
                "content": truncate_text(result.content, EVENT_TEXT_LIMIT),
            },
            **common,
        )


def agent_turn_run(
    *,
    run: AgentRun,
    workspace: Workspace | Callable[[], tuple[Workspace, int]],
    tools: list[dict[str, Any]],
    terminal_tools: set[str],
    conversation_key: str,
    ticket_id: int | None = None,
    provider: LLMProvider | None = None,
    before_tools: Callable[[], None] | None = None,
    accounts: list | None = None,
    messages: list[dict[str, Any]] | None = None,
    prepared: TurnInput | None = None,
) -> TurnOutcome:
    """Run the next turn of `run` (loaded by the caller, which holds its step's lease): one model
    call, its tool calls, one commit. Messages queued for the run join the last user message, where
    the model sees them, and are marked delivered in the turn's commit (exactly once). With
    `accounts` (omoi.budgets), the call's worst-case cost is reserved first (BudgetExceeded, no
    call, when an account is spent) and settled to its real cost in the commit. `before_tools`
    runs between the model call and the tools (the caller's check that its lease still lives: it
    raises to stop). An LLMError from the provider propagates with nothing changed. `messages`: the
    run's transcript (run_messages) when the caller has just read it; `prepared`: the turn's input
    when the caller read it and reserved its cost in the transaction that began the run."""
    if run.status != AgentRunStatus.RUNNING:
        return TurnOutcome(kind="stale", turns=run.turns)
    provider = provider or get_provider()
    if prepared is None:
        messages = run_messages(run) if messages is None else list(messages)
        if len(messages) != run.message_count:
            # `run` was loaded before another delivery committed a turn: this copy is late, and must
            # neither call the model nor run tools for a turn it would not be allowed to commit.
            return TurnOutcome(kind="stale", turns=run.turns)
        if messages and messages[-1].get("role") == "assistant":
            raise AgentRunError(f"agent run {run.pk} waits for agent_run_reply to its terminal tool call")
        prepared = agent_turn_prepare(run=run, messages=messages, tools=tools, accounts=accounts, provider=provider)
    messages, queued = prepared.messages, prepared.queued
    if prepared.refusal is not None:
        raise BudgetExceeded(prepared.refusal)
    context = UsageContext(
        conversation_key=conversation_key,
        spec_id=run.spec_id,
        task_id=run.task_id,
        agent_run_id=run.pk,
        phase=run.phase,
    )
    response = provider.complete(system=run.system_prompt, messages=messages, tools=tools, context=context)
    content = storable_json(response.content or [{"type": "text", "text": "(no output)"}])
    tool_uses = tool_uses_of(content)
    text = text_of(content)
    offered = {tool["name"] for tool in tools}
    if before_tools is not None:
        before_tools()
    sandbox_id = run.sandbox_id
    if callable(workspace):
        # The sandbox is made (or reopened) only now that a tool needs it, so the model's first
        # call does not wait for a checkout.
        if any(call.get("name") not in terminal_tools for call in tool_uses):
            workspace, sandbox_id = workspace()
        else:
            workspace = None
    executed, terminal = _execute_tool_uses(
        workspace=workspace, tool_uses=tool_uses, offered=offered, terminal_tools=terminal_tools
    )
    fault_point(f"{run.kind}.turn")

    with events_batch():
        locked = AgentRun.objects.select_for_update(no_key=True).get(pk=run.pk)
        if locked.status != AgentRunStatus.RUNNING or locked.message_count != run.message_count:
            return TurnOutcome(kind="stale", turns=locked.turns)
        turn = locked.turns + 1
        new_messages: list[dict[str, Any]] = [{"role": "assistant", "content": content}]
        results = [_tool_result_block(call["id"], result) for call, result in executed]
        pending: list[dict[str, Any]] = []
        if terminal is None:
            if tool_uses:
                new_messages.append({"role": "user", "content": results})
            else:
                new_messages.append({"role": "user", "content": terminal_nudge(terminal_tools)})
        else:
            pending = results
        if queued:
            delivered = set(
                QueuedMessage.objects.select_for_update()
                .filter(pk__in=[m.pk for m in queued], status=QueuedMessageStatus.PENDING)
                .values_list("pk", flat=True)
            )
            AgentMessage.objects.filter(run_id=run.pk, position=locked.message_count - 1).update(
                content=messages[-1]["content"]
            )
            QueuedMessage.objects.filter(pk__in=delivered).update(
                status=QueuedMessageStatus.DELIVERED, run_id=run.pk, delivered_turn=turn, delivered_at=timezone.now()
            )
            for message in queued:
                if message.pk in delivered:
                    event_record(
                        type="agent.message_injected",
                        payload={
                            "run": run.pk,
                            "turn": turn,
                            "message": message.pk,
                            "source": message.source,
                            "author": message.author,
                            "text": truncate_text(message.text, EVENT_TEXT_LIMIT),
                        },
                        spec_id=run.spec_id,
                        ticket_id=ticket_id,
                        task_id=run.task_id,
                        sandbox_id=run.sandbox_id,
                    )
        _append(locked, new_messages)
        if accounts:
            budget_settle(run_id=run.pk, cost_usd=response.usage.cost_usd)
        if sandbox_id != run.sandbox_id:
            run.sandbox_id = sandbox_id
        AgentRun.objects.filter(pk=run.pk).update(
            sandbox_id=sandbox_id,
            message_count=locked.message_count,
            turns=turn,
            input_tokens=F("input_tokens") + response.usage.input_tokens,
            output_tokens=F("output_tokens") + response.usage.output_tokens,
            cost_usd=F("cost_usd") + response.usage.cost_usd,
            stop_reason=storable(response.stop_reason or "", 255),
            pending_tool_results=pending,
            updated_at=timezone.now(),
        )
        usage_record(
            provider=response.provider or getattr(provider, "name", ""),
            model=response.model,
            usage=response.usage,
            context=context,
            turn=turn,
        )
        event_record(
            type="agent.turn",
            payload={
                "run": run.pk,
                "turn": turn,
                "text": truncate_text(text, EVENT_TEXT_LIMIT),
                "stop_reason": response.stop_reason,
                "input_tokens": response.usage.input_tokens,
                "output_tokens": response.usage.output_tokens,
                "node": current_node(),
            },
            spec_id=run.spec_id,
            ticket_id=ticket_id,
            task_id=run.task_id,
            sandbox_id=run.sandbox_id,
        )
        _record_tool_events(run=run, executed=executed, ticket_id=ticket_id)
        if terminal is not None:
            event_record(
                type="agent.tool_call",
                payload={"run": run.pk, "name": terminal["name"], "input": _truncated_input(terminal.get("input"))},
                spec_id=run.spec_id,
                ticket_id=ticket_id,
                task_id=run.task_id,
                sandbox_id=run.sandbox_id,
            )
    run.turns, run.message_count = turn, locked.message_count
    if terminal is None:
        return TurnOutcome(kind="continue", text=text, stop_reason=response.stop_reason, turns=turn, executed=executed)
    terminal_input = terminal.get("input")
    return TurnOutcome(
        kind="terminal",
        name=terminal["name"],
        input=terminal_input if isinstance(terminal_input, dict) else {},
        tool_use_id=terminal["id"],
        text=text,
        stop_reason=response.stop_reason,
        turns=turn,
        executed=executed,
    )


def agent_run_reply(
    *, run_id: int, tool_use_id: str, content: str, is_error: bool, ticket_id: int | None = None
) -> AgentRun:
    """Answer the terminal call `tool_use_id` of the last turn: one user message with the turn's
    pending results and this one, in call order. A repeated reply changes nothing."""
    with transaction.atomic():
        run = AgentRun.objects.select_for_update(no_key=True).get(pk=run_id)
        last = run_last_message(run) or {}
        if last.get("role") != "assistant":
            return run
        calls = tool_uses_of(last.get("content") or [])
        if tool_use_id not in {call["id"] for call in calls}:
            raise AgentRunError(f"the last turn of agent run {run_id} has no tool call {tool_use_id!r}")
        content = storable(content)
        answered = {block["tool_use_id"]: block for block in run.pending_tool_results}
        answered[tool_use_id] = {
            "type": "tool_result",
            "tool_use_id": tool_use_id,
            "content": content,
            "is_error": is_error,
        }
        results = [
            answered.get(call["id"])
            or {"type": "tool_result", "tool_use_id": call["id"], "content": "not executed", "is_error": True}
            for call in calls
        ]
        _append(run, [{"role": "user", "content": results}])
        run.pending_tool_results = []
        run.save(update_fields=["message_count", "pending_tool_results", "updated_at"])
        name = next(call["name"] for call in calls if call["id"] == tool_use_id)
        event_record(
            type="agent.tool_result",
            payload={
                "run": run.pk,
                "name": name,
                "is_error": is_error,
                "content": truncate_text(content, EVENT_TEXT_LIMIT),
            },
            spec_id=run.spec_id,
            ticket_id=ticket_id,
            task_id=run.task_id,
            sandbox_id=run.sandbox_id,
        )
    return run


def agent_run_inject_message(*, run_id: int, text: str, ticket_id: int | None = None) -> AgentRun:
    """Add guidance (from an operator or a guardian) for the model's next turn: appended to the
    last user message, or as a new user message when the transcript ends with the model's turn
    and no call waits for an answer."""
    with transaction.atomic():
        run = AgentRun.objects.select_for_update(no_key=True).get(pk=run_id)
        text = storable(text)
        last_row = AgentMessage.objects.filter(run_id=run.pk).order_by("-position").first()
        if last_row is not None and last_row.role == "user":
            content = last_row.content
            blocks = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
            last_row.content = [*blocks, {"type": "text", "text": text}]
            last_row.save(update_fields=["content"])
        elif last_row is not None and tool_uses_of(last_row.content or []):
            raise AgentRunError(f"agent run {run_id} waits for agent_run_reply; inject after the reply")
        else:
            _append(run, [{"role": "user", "content": text}])
            run.save(update_fields=["message_count", "updated_at"])
        event_record(
            type="agent.message_injected",
            payload={"run": run.pk, "text": truncate_text(text, EVENT_TEXT_LIMIT)},
            spec_id=run.spec_id,
            ticket_id=ticket_id,
            task_id=run.task_id,
            sandbox_id=run.sandbox_id,
        )
    return run


def agent_run_finish(
    *,
    run_id: int,
    status: str,
    stop_reason: str,
    result: dict[str, Any] | None = None,
    ticket_id: int | None = None,
) -> AgentRun:
    """End the run with `status` (finished, failed or cancelled) and a readable stop reason.
    A run already ended is left as it is. Records `agent.finished`."""
    if status not in {AgentRunStatus.FINISHED, AgentRunStatus.FAILED, AgentRunStatus.CANCELLED}:
        raise ValueError(f"an agent run ends as finished, failed or cancelled, not {status!r}")
    stop_reason = storable(stop_reason)
    with transaction.atomic():
        run = AgentRun.objects.select_for_update(no_key=True).get(pk=run_id)
        if run.status not in ACTIVE_RUN_STATUSES:
            return run
        run.status = status
        run.stop_reason = stop_reason[:255]
        if result is not None:
            run.result = storable_json(result)
        if status == AgentRunStatus.FAILED:
            run.error = stop_reason
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "stop_reason", "result", "error", "finished_at", "updated_at"])
        event_record(
            type="agent.finished",
            payload={
                "run": run.pk,
                "status": status,
                "stop_reason": stop_reason,
                "turns": run.turns,
                "cost_usd": str(run.cost_usd),
            },
            spec_id=run.spec_id,
            ticket_id=ticket_id,
            task_id=run.task_id,
            sandbox_id=run.sandbox_id,
        )
    return run


def agent_run_limit_reason(
    run: AgentRun,
    *,
    max_turns: int | None = None,
    max_cost_usd: float | Decimal | None = None,
    max_seconds: float | None = None,
) -> str | None:
    """A readable reason when the run has reached one of its limits, else None."""
    if max_turns is not None and run.turns >= max_turns:
        return f"turn limit reached ({max_turns} turns)"
    if max_cost_usd is not None and Decimal(run.cost_usd) >= Decimal(str(max_cost_usd)):
        return f"budget reached (${Decimal(run.cost_usd):.2f} spent, limit ${Decimal(str(max_cost_usd)):.2f})"
    if max_seconds is not None and run.started_at is not None:
        elapsed = timezone.now() - run.started_at
        if elapsed >= timedelta(seconds=max_seconds):
            return f"time limit reached ({int(max_seconds)} s)"
    return None
