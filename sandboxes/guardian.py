"""The guardian: a pure assessment of an agent run's recent turns, before each turn, that notices
when the agent is stuck, and the steps it takes about it.

What it detects (thresholds are settings, OMOI_GUARDIAN_*):
- repeat        the same tool call with the same result, several turns in a row;
- error_loop    the same call failing again and again;
- alternation   A-B-A-B: two calls alternating with identical results;
- idle          turns with no tool call at all;
- no_change     many turns without any file written or edited (runs that may change files);
- same_failure  the host's verification failing twice with the same failing tests;
- cost_spike    a turn costing several times the run's median (a flag: it only warns);
- outside_plan  files changed far outside the task's planned files (a flag: it only warns).

It intervenes in steps: a specific message that quotes what it saw (nudge), then a stronger one and
a `guardian.escalated` event (escalate), then it stops the run (stop) and the caller blocks the work
with reason `stuck` and the evidence. Its own messages are text in the transcript, which no rule
counts, so they do not reset what it counts. This module only reads: `assess` takes the transcript
and the run's figures and answers findings and the next step; the drivers act on it.
"""

from __future__ import annotations

import hashlib
import json
import re
import statistics
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings

NUDGE, ESCALATE, STOP = 1, 2, 3
FLAG_RULES = {"cost_spike", "outside_plan"}


@dataclass(frozen=True)
class Thresholds:
    repeats: int = 3
    error_repeats: int = 3
    alternations: int = 2
    idle_turns: int = 3
    no_change_turns: int = 12
    same_failures: int = 2
    cost_factor: float = 5.0
    patience: int = 2

    @classmethod
    def from_settings(cls) -> Thresholds:
        return cls(
            repeats=settings.OMOI_GUARDIAN_REPEATS,
            error_repeats=settings.OMOI_GUARDIAN_ERROR_REPEATS,
            alternations=settings.OMOI_GUARDIAN_ALTERNATIONS,
            idle_turns=settings.OMOI_GUARDIAN_IDLE_TURNS,
            no_change_turns=settings.OMOI_GUARDIAN_NO_CHANGE_TURNS,
            same_failures=settings.OMOI_GUARDIAN_SAME_FAILURES,
            cost_factor=settings.OMOI_GUARDIAN_COST_FACTOR,
            patience=settings.OMOI_GUARDIAN_PATIENCE,
        )


@dataclass
class Finding:
    rule: str
    evidence: str
    turns: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Call:
    name: str
    input: str
    result: str
    is_error: bool

    @property
    def key(self) -> tuple[str, str]:
        return self.name, self.input

    def shown(self) -> str:
        text = f"{self.name}({self.input})"
        return text if len(text) <= 160 else text[:157] + "…"


@dataclass
class Turn:
    number: int
    calls: list[Call]

    @property
    def signature(self) -> tuple:
        return tuple((c.name, c.input, _digest(c.result), c.is_error) for c in self.calls)


@dataclass
class Assessment:
    findings: list[Finding]
    step: int  # 0 nothing, NUDGE, ESCALATE or STOP
    message: str = ""

    @property
    def flags(self) -> list[Finding]:
        return [f for f in self.findings if f.rule in FLAG_RULES]


def _digest(text: str) -> str:
    normalised = re.sub(r"\d+\.\d+\s*s\b|\d+(\.\d+)? seconds|in [\d.]+s", "", text)
    return hashlib.sha256(normalised.encode("utf-8", "replace")).hexdigest()[:16]


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(block.get("text", "")) for block in content if isinstance(block, dict))
    return str(content)


def turns_of(messages: list[dict[str, Any]]) -> list[Turn]:
    """The run's turns (one per assistant message), each call with the result that answered it."""
    results: dict[str, tuple[str, bool]] = {}
    for message in messages:
        if message.get("role") == "user" and isinstance(message.get("content"), list):
            for block in message["content"]:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    results[block.get("tool_use_id", "")] = (
                        _content_text(block.get("content", "")),
                        bool(block.get("is_error")),
                    )
    turns = []
    for message in messages:
        if message.get("role") != "assistant":
            continue
        calls = []
        for block in message.get("content") or []:
            if isinstance(block, dict) and block.get("type") == "tool_use":
                result, is_error = results.get(block.get("id", ""), ("", False))
                calls.append(
                    Call(
                        name=str(block.get("name", "")),
                        input=json.dumps(block.get("input"), sort_keys=True, default=str),
                        result=result,
                        is_error=is_error,
                    )
                )
        turns.append(Turn(number=len(turns) + 1, calls=calls))
    return turns


def _repeat(turns: list[Turn], limit: int) -> Finding | None:
    run = 1
    for index in range(len(turns) - 1, 0, -1):
        if turns[index].calls and turns[index].signature == turns[index - 1].signature:
            run += 1
        else:
            break
    if run >= limit and turns[-1].calls:
        call = turns[-1].calls[0]
        numbers = [t.number for t in turns[-run:]]
        return Finding(
            "repeat",
            f"the same call {call.shown()} returned the same result {run} turns in a row (turns "
            f"{numbers[0]}–{numbers[-1]}): {call.result[:200]!r}",
            numbers,
        )
    return None


def _error_loop(turns: list[Turn], limit: int, window: int = 8) -> Finding | None:
    failures: dict[tuple[str, str], list[int]] = {}
    last: dict[tuple[str, str], Call] = {}
    for turn in turns[-window:]:
        for call in turn.calls:
            if call.is_error:
                failures.setdefault(call.key, []).append(turn.number)
                last[call.key] = call
    for key, numbers in failures.items():
        if len(numbers) >= limit and numbers[-1] == turns[-1].number:
            call = last[key]
            return Finding(
                "error_loop",
                f"{call.shown()} failed {len(numbers)} times (turns {', '.join(map(str, numbers))}); the last "
                f"error: {call.result[:200]!r}",
                numbers,
            )
    return None


def _alternation(turns: list[Turn], cycles: int) -> Finding | None:
    span = 2 * cycles
    if len(turns) < span:
        return None
    tail = turns[-span:]
    if not all(t.calls for t in tail):
        return None
    even, odd = tail[0].signature, tail[1].signature
    if even == odd:
        return None
    if all(t.signature == (even if i % 2 == 0 else odd) for i, t in enumerate(tail)):
        numbers = [t.number for t in tail]
        return Finding(
            "alternation",
            f"two calls alternate with identical results ({tail[0].calls[0].shown()} and "
            f"{tail[1].calls[0].shown()}) over turns {numbers[0]}–{numbers[-1]}",
            numbers,
        )
    return None


def _idle(turns: list[Turn], limit: int) -> Finding | None:
    run = 0
    for turn in reversed(turns):
        if turn.calls:
            break
        run += 1
    if run >= limit:
        numbers = [t.number for t in turns[-run:]]
        return Finding("idle", f"{run} turns in a row called no tool (turns {numbers[0]}–{numbers[-1]})", numbers)
    return None


FILE_TOOLS = {"write_file", "edit_file"}


def _no_change(turns: list[Turn], limit: int) -> Finding | None:
    run = 0
    for turn in reversed(turns):
        if any(c.name in FILE_TOOLS and not c.is_error for c in turn.calls):
            break
        run += 1
    if run >= limit:
        return Finding("no_change", f"no file was written or edited for {run} turns", [t.number for t in turns[-run:]])
    return None


_FAILED_TEST = re.compile(r"^(?:FAIL|ERROR): (\S+ \([^)]*\))|^FAILED (\S+)", re.M)


def _same_failure(turns: list[Turn], limit: int) -> Finding | None:
    verdicts: list[tuple[int, str, str]] = []
    for turn in turns:
        for call in turn.calls:
            if call.name == "finish" and call.is_error and call.result.startswith("The host ran"):
                names = sorted({a or b for a, b in _FAILED_TEST.findall(call.result)})
                verdicts.append((turn.number, ",".join(names) or _digest(call.result), call.result))
    if len(verdicts) >= limit:
        tail = verdicts[-limit:]
        if len({key for _, key, _ in tail}) == 1 and tail[-1][0] == turns[-1].number:
            failing = tail[-1][1] if "," in tail[-1][1] or "(" in tail[-1][1] else "the same output"
            return Finding(
                "same_failure",
                f"the host's verification failed {limit} times in a row with the same failing tests ({failing})",
                [number for number, _, _ in tail],
            )
    return None


def _cost_spike(costs: list[Decimal], factor: float) -> Finding | None:
    if len(costs) < 4:
        return None
    earlier, last = costs[:-1], costs[-1]
    median = statistics.median(earlier)
    if median > 0 and last > median * Decimal(str(factor)):
        return Finding(
            "cost_spike",
            f"the last turn cost ${last:.4f}, {last / median:.1f} times the run's median (${median:.4f})",
            [len(costs)],
        )
    return None


def _outside_plan(changed: list[str], planned: list[str]) -> Finding | None:
    if not planned or not changed:
        return None
    roots = {path.strip("/").split("/")[0] for path in planned if path.strip("/")}
    outside = sorted(path for path in changed if path.split("/")[0] not in roots)
    if outside:
        return Finding(
            "outside_plan",
            f"files changed outside the planned ones ({', '.join(planned[:5])}): {', '.join(outside[:10])}",
            [],
        )
    return None


def assess(
    *,
    messages: list[dict[str, Any]],
    level: int,
    last_step_turn: int,
    turn_costs: list[Decimal] | None = None,
    planned_files: list[str] | None = None,
    changed_files: list[str] | None = None,
    changes_files: bool = True,
    thresholds: Thresholds | None = None,
) -> Assessment:
    """What the guardian sees in the run now, and its next step: nothing, a nudge, an escalation or
    a stop. `level` is the last step it took and `last_step_turn` the turn count then; a step
    follows the previous one only after `patience` more turns, and only while a finding lasts."""
    thresholds = thresholds or Thresholds.from_settings()
    turns = turns_of(messages)
    if not turns:
        return Assessment(findings=[], step=0)
    findings = [
        finding
        for finding in (
            _repeat(turns, thresholds.repeats),
            _error_loop(turns, thresholds.error_repeats),
            _alternation(turns, thresholds.alternations),
            _idle(turns, thresholds.idle_turns),
            _no_change(turns, thresholds.no_change_turns) if changes_files else None,
            _same_failure(turns, thresholds.same_failures),
            _cost_spike(turn_costs or [], thresholds.cost_factor),
            _outside_plan(changed_files or [], planned_files or []),
        )
        if finding is not None
    ]
    stuck = [f for f in findings if f.rule not in FLAG_RULES]
    if not stuck or level >= STOP:
        return Assessment(findings=findings, step=0)
    if level > 0 and len(turns) - last_step_turn < thresholds.patience:
        return Assessment(findings=findings, step=0)
    step = level + 1
    seen = "; ".join(f.evidence for f in stuck)
    if step == NUDGE:
        message = (
            f"[Guardian] You seem to be going in circles: {seen}. Doing the same thing again will give the "
            "same result. Step back, say what you have learned, and try a different approach."
        )
    elif step == ESCALATE:
        message = (
            f"[Guardian — second warning] The loop continues: {seen}. Change your approach now (read the error, "
            "look at a different file, or call finish with what you have and why). If this goes on, the run "
            "will be stopped and the ticket blocked as stuck."
        )
    else:
        message = f"[Guardian] The run was stopped: {seen}."
    return Assessment(findings=findings, step=step, message=message)
