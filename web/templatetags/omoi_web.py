"""Filters of the web pages. Each one escapes what it is given before marking anything safe:
model output, repository contents and command output are hostile text."""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from django import template
from django.urls import reverse
from django.utils.html import conditional_escape, format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

register = template.Library()

# CommonMark with tables and strikethrough; "html": False escapes raw HTML instead of passing it
# through, and markdown-it refuses javascript:, vbscript:, file: and data: links by itself.
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
    ["table", "strikethrough"]
)
SHA = re.compile(r"^[0-9a-f]{40}$")


@register.filter
def markdown(text: Any) -> SafeString:
    if not text:
        return mark_safe("")
    return mark_safe(_markdown.render(str(text)))  # noqa: S308 - raw HTML is escaped by the renderer


@register.filter
def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


@register.filter
def label(key: Any) -> str:
    return str(key).replace("_", " ")


@register.filter
def short_sha(value: Any) -> str:
    text = str(value or "")
    return text[:10] if SHA.match(text) else text


def _scalar(value: Any) -> SafeString:
    if isinstance(value, bool):
        return format_html('<span class="flag flag-{}">{}</span>', "yes" if value else "no", "yes" if value else "no")
    if isinstance(value, str) and SHA.match(value):
        return format_html('<code title="{}">{}</code>', value, value[:10])
    if value is None or value == "":
        return mark_safe('<span class="muted">-</span>')
    return conditional_escape(value)


def _label(key: Any) -> str:
    return str(key).replace("_", " ")


def _render(value: Any, depth: int) -> SafeString:
    if depth > 6:
        return format_html("<code>{}</code>", json.dumps(value, ensure_ascii=False, default=str)[:500])
    if isinstance(value, dict):
        if not value:
            return mark_safe('<span class="muted">-</span>')
        if "passed" in value and "failed" in value and all(not isinstance(v, dict | list) for v in value.values()):
            counts = format_html(
                '<span class="tests">{} passed, {} failed</span>', value.get("passed"), value.get("failed")
            )
            rest = {k: v for k, v in value.items() if k not in ("passed", "failed")}
            return counts + (format_html(" {}", _render(rest, depth + 1)) if rest else "")
        rows = []
        for key, item in value.items():
            if key == "ticket" and isinstance(item, int):
                rendered = format_html('<a href="#ticket-{}">#{}</a>', item, item)
            else:
                rendered = _render(item, depth + 1)
            rows.append((_label(key), rendered))
        return format_html('<dl class="kv">{}</dl>', format_html_join("", "<dt>{}</dt><dd>{}</dd>", rows))
    if isinstance(value, list):
        if not value:
            return mark_safe('<span class="muted">none</span>')
        if all(not isinstance(item, dict | list) for item in value):
            return format_html_join(", ", "{}", ((_scalar(item),) for item in value))
        return format_html(
            '<ul class="evidence-list">{}</ul>',
            format_html_join("", "<li>{}</li>", ((_render(item, depth + 1),) for item in value)),
        )
    return _scalar(value)


@register.filter
def evidence(value: Any) -> SafeString:
    """Whatever a criterion's evidence holds, readable: objects as labelled rows, lists as
    lists, commits shortened, test counts as "4 passed, 0 failed"."""
    return _render(value, 0)


@register.filter
def content_blocks(content: Any) -> list[dict[str, Any]]:
    """A message's content as a list of blocks (a plain string is one text block)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [block if isinstance(block, dict) else {"type": "text", "text": str(block)} for block in content]
    return [{"type": "text", "text": json.dumps(content, ensure_ascii=False, default=str)}]


@register.filter
def tool_input(value: Any) -> list[tuple[str, str, bool]]:
    """A tool call's input as (name, text, is_long) rows: a file's content or a command reads as
    itself, not as a JSON string full of \\n escapes."""
    if not isinstance(value, dict):
        return [("input", json.dumps(value, indent=2, ensure_ascii=False, default=str), True)]
    rows = []
    for key, item in value.items():
        text = item if isinstance(item, str) else json.dumps(item, indent=2, ensure_ascii=False, default=str)
        rows.append((str(key), text, "\n" in text or len(text) > 100))
    return rows


@register.filter
def result_text(content: Any) -> str:
    """A tool result's content as text (it may be a string or a list of blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, dict) and block.get("type") == "text":
                parts.append(str(block.get("text", "")))
            else:
                parts.append(json.dumps(block, ensure_ascii=False, default=str))
        return "\n".join(parts)
    return json.dumps(content, ensure_ascii=False, default=str)


def _phase(payload: dict[str, Any]) -> str:
    return str(payload.get("phase", "")).upper()


GUARDIAN_STEPS = {
    "guardian.nudged": "nudged",
    "guardian.escalated": "warned again (escalated)",
    "guardian.stopped": "stopped",
}


def _findings(findings: Any) -> str:
    """A guardian's findings in words: each rule with what it saw."""
    if not isinstance(findings, list) or not findings:
        return ""
    described = (f"{item.get('rule', '?')}: {item.get('evidence', '')}" for item in findings if isinstance(item, dict))
    return "; ".join(described)


def _guardian(event: Any, payload: dict[str, Any], kind: str) -> str:
    line = f"Guardian {GUARDIAN_STEPS[kind]} run {payload.get('run', '?')} at turn {payload.get('turn', '?')}"
    if kind == "guardian.stopped":
        line += " as stuck; " + ("its ticket is blocked" if getattr(event, "task_id", None) else "its phase fails")
    seen = _findings(payload.get("findings"))
    return f"{line}: {seen}" if seen else line


def _quoted(text: Any, limit: int = 200) -> str:
    text = " ".join(str(text or "").split())
    return f"“{text if len(text) <= limit else text[: limit - 1] + '…'}”"


@register.filter
def event_text(event: Any) -> str:
    """One readable line for an event (the spec timeline, the verifications)."""
    payload = event.payload if isinstance(event.payload, dict) else {}
    kind = event.type
    lines = {
        "spec.launched": lambda: (
            f"Launched by {payload.get('actor', '?')}"
            + (" (waits for approval when planned)" if payload.get("require_approval") else " (no approval needed)")
        ),
        "spec.status_changed": lambda: (
            f"Status {payload.get('from')} → {payload.get('to')}"
            + (f" ({payload['reason']})" if payload.get("reason") else "")
        ),
        "spec.phase_started": lambda: f"{_phase(payload)} started",
        "spec.phase_completed": lambda: (
            f"{_phase(payload)} done" + (f": {payload['summary']}" if payload.get("summary") else "")
        ),
        "spec.phase_retry": lambda: (
            f"{_phase(payload)}: output rejected (attempt {payload.get('attempt')}), sent back to the model"
        ),
        "spec.phase_failed": lambda: (
            f"{_phase(payload)} failed after {payload.get('attempts')} attempts: {payload.get('error', '')}"
        ),
        "spec.phase_requeued": lambda: (
            f"{_phase(payload)} showed no sign of life for {payload.get('idle_s')} s; re-enqueued"
        ),
        "spec.planning_complete": lambda: (
            "Planning complete: "
            + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in payload.items() if isinstance(v, int))
        ),
        "spec.approved": lambda: (
            "Approved implicitly (no approval needed)"
            if payload.get("implicit")
            else f"Approved by {payload.get('actor', '?')}"
        ),
        "spec.replan_requested": lambda: f"Re-plan requested by {payload.get('actor', '?')}",
        "spec.requirement_updated": lambda: f"{payload.get('key')} edited by {payload.get('actor', '?')}",
        "spec.executing": lambda: f"Executing: {payload.get('tickets')} tickets on branch {payload.get('branch')}",
        "spec.execution_resumed": lambda: f"Execution resumed ({payload.get('tickets_unblocked')} tickets unblocked)",
        "spec.execution_stopped": lambda: f"Execution stopped ({payload.get('tasks_cancelled')} tasks cancelled)",
        "spec.completed": lambda: (
            f"Completed: {payload.get('tickets')} tickets, "
            f"{payload.get('criteria_verified')} acceptance criteria verified"
        ),
        "spec.failed": lambda: f"Failed: {payload.get('error') or payload.get('reason', '')}",
        "spec.branch_pushed": lambda: f"Branch {payload.get('branch')} pushed to {payload.get('repository')}",
        "spec.pull_request_opened": lambda: f"Pull request #{payload.get('number')} opened",
        "spec.pull_request_failed": lambda: f"The pull request step kept failing: {payload.get('error', '')}",
        "spec.budget_changed": lambda: f"Budget set to ${payload.get('budget_usd')} by {payload.get('actor', '?')}",
        "agent.message_queued": lambda: (
            f"Message from {payload.get('author') or '?'}"
            + (f" to task #{event.task_id}" if getattr(event, "task_id", None) else " to the planning agent")
            + f" queued: {_quoted(payload.get('text'))}"
        ),
        "agent.message_injected": lambda: (
            ("The guardian's message" if payload.get("source") == "guardian" else "A message")
            + f" delivered to run {payload.get('run', '?')}"
            + (f" at turn {payload['turn']}" if "turn" in payload else "")
            + f": {_quoted(payload.get('text'))}"
        ),
        "guardian.nudged": lambda: _guardian(event, payload, kind),
        "guardian.escalated": lambda: _guardian(event, payload, kind),
        "guardian.stopped": lambda: _guardian(event, payload, kind),
        "guardian.flagged": lambda: (
            f"Guardian flag on run {payload.get('run', '?')} ({payload.get('rule', '?')}, a warning only): "
            f"{payload.get('evidence', '')}"
        ),
        "ticket.transitioned": lambda: (
            f"Ticket #{getattr(event, 'ticket_id', '?')} {payload.get('from_phase')} → {payload.get('to_phase')}"
            + (
                f", blocked ({payload['blocked_reason']}): {payload.get('blocked_message', '')}"
                if payload.get("blocked_reason")
                else ""
            )
        ),
        "task.verification": lambda: (
            f"The host ran `{payload.get('command', '')}`: "
            + ("passed" if payload.get("passed") else "failed")
            + (f" ({payload['tests_passed']} tests passed)" if "tests_passed" in payload else "")
        ),
        "task.verification_failed": lambda: "The host's checks failed; the output went back to the agent",
        "task.verified": lambda: (
            "Verified by the host" + (f" ({payload['tests_passed']} tests passed)" if "tests_passed" in payload else "")
        ),
        "task.failed": lambda: f"Task failed: {payload.get('reason', '')}",
    }
    describe = lines.get(kind)
    if describe is None:
        return kind
    try:
        return describe()
    except (KeyError, TypeError, ValueError):
        return kind


@register.filter
def guardian_step(entry: Any) -> str:
    """One step of a run's guardian log (AgentRun.guardian_log) in words."""
    if not isinstance(entry, dict):
        return str(entry)
    step, turn = entry.get("step"), entry.get("turn", "?")
    if step == "flag":
        return f"Turn {turn}: flagged ({entry.get('rule', '?')}, a warning only): {entry.get('evidence', '')}"
    verb = {"nudge": "nudged the agent", "escalate": "warned again (escalated)", "stop": "stopped the run as stuck"}
    seen = _findings(entry.get("findings"))
    line = f"Turn {turn}: {verb.get(step, str(step))}"
    return f"{line}: {seen}" if seen else line


@register.filter
def usd(value: Any) -> str:
    """An amount of US dollars as people read it: cents always, more digits only where they count
    ("0.04", "10.00", "0.001234")."""
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    text = f"{amount:.6f}".rstrip("0")
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.ljust(2, '0')}"


@register.simple_tag
def stream_url(spec_id: int) -> str:
    return reverse("spec-stream", args=[spec_id])
