"""The replay provider: plays back a script file, so tests and the offline demo need no network.

Script format (JSON):

    {
      "model": "replay",                              # optional, recorded in LLMUsage
      "recorded_for": "the textkit sample, idea ...", # optional, quoted when a request does not fit
      "expect": {                                     # optional: what each conversation must be about
        "explore": ["Add word statistics"],           #   fragments its first user message contains
        "TSK-001": ["TSK-001: Add word_count"],       #   (by full key, SpecTask key, or "*" for all)
      },
      "conversations": {
        "explore": [TURN, TURN, ...],                 # planning phases by name
        "requirements": [...], "design": [...], "tasks": [...],
        "TSK-001:implement_feature": [...],           # a task: "<SpecTask key>:<task type>"
        "TSK-001": [...]                              # or just the SpecTask key
      }
    }

A TURN is one assistant message, in any of these forms:

    {"tool": "read_file", "input": {"path": "README.md"}}          # one tool call
    {"text": "Looking around", "tools": [{"tool": ..., "input": ...}, ...]}
    {"text": "All done."}                                           # end_turn, no tool
    {"content": [...Messages API content blocks...], "stop_reason": "tool_use"}
    {"usage": {"input_tokens": 100, "output_tokens": 20}}           # optional on any turn

The turn played is chosen by the number of assistant messages already in the transcript, so
replaying a conversation is deterministic and a repeated turn (after a crash) gets the same
answer. Tool-use ids are derived from the conversation key and turn number.

The whole script is checked when it is loaded: a malformed turn raises LLMError naming the
conversation and the turn number, and asking for a turn past the end raises ReplayExhausted
naming the conversation and how many turns it has.

A replay must never "pass" work it was not recorded for (a CSV-export idea answered with a
word-count plan). So a script may say what it expects: every call checks the conversation's
first user message (the idea for a planning phase, "TSK-001: title" for a task) against the
`expect` fragments, and a request that does not fit raises ReplayMismatch, which names the
conversation, the missing fragment and what the script was recorded for; the planning phase or
the task fails with that message.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.conf import settings

from omoi.llm.base import LLMError, LLMResponse, ReplayExhausted, Usage, UsageContext, estimate_cost

TURN_KEYS = {"tool", "input", "text", "tools", "content", "stop_reason", "usage"}
SCRIPT_KEYS = {"model", "conversations", "recorded_for", "expect"}


class ReplayMismatch(LLMError):
    """The request is not the conversation the replay script was recorded for."""


def _turn_problem(turn: Any) -> str:
    """What is wrong with one scripted turn, or "" when it is well formed."""
    if not isinstance(turn, dict):
        return f"must be an object, not {type(turn).__name__}"
    unknown = sorted(set(turn) - TURN_KEYS)
    if unknown:
        return f"has unknown keys {unknown} (allowed: {sorted(TURN_KEYS)})"
    if "content" in turn:
        if not isinstance(turn["content"], list) or not all(
            isinstance(b, dict) and "type" in b for b in turn["content"]
        ):
            return "'content' must be a list of content blocks, each an object with a 'type'"
        return ""
    if "text" in turn and not isinstance(turn["text"], str):
        return "'text' must be a string"
    calls = turn.get("tools") if "tools" in turn else ([turn] if "tool" in turn else [])
    if not isinstance(calls, list):
        return "'tools' must be a list of {tool, input} objects"
    for call in calls:
        if not isinstance(call, dict) or not isinstance(call.get("tool"), str) or not call["tool"]:
            return "each tool call needs a 'tool' name (a string)"
        if not isinstance(call.get("input", {}), dict):
            return f"the input of tool call {call['tool']!r} must be an object"
    if not calls and "text" not in turn:
        return "needs 'tool', 'tools', 'text' or 'content'"
    if "usage" in turn and not isinstance(turn["usage"], dict):
        return "'usage' must be an object"
    return ""


@lru_cache(maxsize=16)
def _load(path: str, mtime: float) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise LLMError(f"cannot read replay script {path}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("conversations"), dict):
        raise LLMError(f"replay script {path} must be an object with a 'conversations' object")
    unknown = sorted(set(data) - SCRIPT_KEYS)
    if unknown:
        raise LLMError(f"replay script {path} has unknown keys {unknown} (allowed: {sorted(SCRIPT_KEYS)})")
    if not isinstance(data.get("recorded_for", ""), str):
        raise LLMError(f"replay script {path}: 'recorded_for' must be a string")
    expect = data.get("expect", {})
    if not isinstance(expect, dict) or not all(
        isinstance(fragments, list) and all(isinstance(f, str) and f for f in fragments)
        for fragments in expect.values()
    ):
        raise LLMError(f"replay script {path}: 'expect' must map conversation keys to lists of non-empty strings")
    for key, turns in data["conversations"].items():
        if not isinstance(turns, list):
            raise LLMError(f"replay script {path}: conversation {key!r} must be a list of turns")
        for number, turn in enumerate(turns, start=1):
            problem = _turn_problem(turn)
            if problem:
                raise LLMError(f"replay script {path}: turn {number} of conversation {key!r} {problem}")
    return data


def _first_user_text(messages: list[dict[str, Any]]) -> str:
    for message in messages:
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        return "\n".join(
            str(block.get("text", ""))
            for block in content or []
            if isinstance(block, dict) and block.get("type") == "text"
        )
    return ""


def _tool_block(spec: dict[str, Any], tool_id: str) -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_id, "name": spec["tool"], "input": spec.get("input", {})}


class ReplayProvider:
    name = "replay"

    def __init__(self, script_path: str) -> None:
        self.script_path = script_path

    @classmethod
    def from_settings(cls) -> ReplayProvider:
        if not settings.OMOI_REPLAY_SCRIPT:
            raise LLMError(
                "no model is configured: set ANTHROPIC_API_KEY to use Claude, or OMOI_REPLAY_SCRIPT "
                "to a replay script file"
            )
        return cls(settings.OMOI_REPLAY_SCRIPT)

    def script(self) -> dict[str, Any]:
        path = Path(self.script_path)
        if not path.exists():
            raise LLMError(f"replay script {path} does not exist")
        return _load(str(path), path.stat().st_mtime)

    def turns_for(self, key: str) -> list[dict[str, Any]]:
        conversations = self.script()["conversations"]
        if key in conversations:
            return conversations[key]
        base = key.split(":", 1)[0]
        if base in conversations:
            return conversations[base]
        raise ReplayExhausted(f"replay script {self.script_path} has no conversation {key!r}")

    def check_fits(self, key: str, messages: list[dict[str, Any]]) -> None:
        """Refuse a conversation the script was not recorded for (see the module docstring)."""
        script = self.script()
        expect = script.get("expect") or {}
        base = key.split(":", 1)[0]
        fragments = [*expect.get("*", []), *expect.get(base, []), *(expect.get(key, []) if key != base else [])]
        if not fragments:
            return
        first = _first_user_text(messages)
        missing = [fragment for fragment in fragments if fragment not in first]
        if missing:
            recorded = script.get("recorded_for") or "(the script does not say)"
            raise ReplayMismatch(
                f"replay script {self.script_path} does not fit conversation {key!r}: its first message does not "
                f"contain {missing[0]!r}. The script was recorded for: {recorded}. Use a script recorded for this "
                "work, or a real model (ANTHROPIC_API_KEY)"
            )

    def complete(
        self,
        *,
        system: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        context: UsageContext,
        max_tokens: int | None = None,
    ) -> LLMResponse:
        turns = self.turns_for(context.conversation_key)
        self.check_fits(context.conversation_key, messages)
        index = sum(1 for message in messages if message.get("role") == "assistant")
        if index >= len(turns):
            raise ReplayExhausted(
                f"replay script has {len(turns)} turns for {context.conversation_key!r}; turn {index + 1} was asked for"
            )
        turn = turns[index]
        prefix = "toolu_" + re.sub(r"[^A-Za-z0-9]", "_", context.conversation_key) + f"_{index}"
        if "content" in turn:
            content = turn["content"]
            stop_reason = turn.get("stop_reason") or (
                "tool_use" if any(b.get("type") == "tool_use" for b in content) else "end_turn"
            )
        else:
            content = [{"type": "text", "text": turn["text"]}] if turn.get("text") else []
            calls = turn.get("tools") or ([turn] if "tool" in turn else [])
            content += [_tool_block(call, f"{prefix}_{n}") for n, call in enumerate(calls)]
            stop_reason = "tool_use" if calls else "end_turn"
        offered = {tool["name"] for tool in tools}
        for block in content:
            if block.get("type") == "tool_use" and offered and block["name"] not in offered:
                raise LLMError(
                    f"replay turn {index + 1} of {context.conversation_key!r} calls {block['name']!r}, "
                    f"which this request does not offer ({', '.join(sorted(offered))})"
                )
        raw_usage = turn.get("usage", {})
        usage = Usage(
            input_tokens=int(raw_usage.get("input_tokens", (len(system) + len(json.dumps(messages))) // 4)),
            output_tokens=int(raw_usage.get("output_tokens", len(json.dumps(content)) // 4)),
        )
        model = self.script().get("model", "replay")
        usage.cost_usd = estimate_cost(model, usage)
        return LLMResponse(content=content, stop_reason=stop_reason, model=model, usage=usage, provider=self.name)
