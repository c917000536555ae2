"""The provider interface and the shapes that cross it.

Messages and content blocks use the Anthropic Messages API's JSON shape throughout (plain dicts:
{"type": "text", "text": ...}, {"type": "tool_use", "id", "name", "input"},
{"type": "tool_result", "tool_use_id", "content", "is_error"}), so a transcript stored in the
database can be sent back to the API unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from django.conf import settings


class LLMError(Exception):
    """The model could not be reached or answered unusably, after the provider's own retries.
    `transient` says whether trying again later may help (a timeout, a connection, a rate limit,
    a server error) or not (a rejected key or request, a replay script that does not fit)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class ReplayExhausted(LLMError):
    """A replay script has no turn left for a conversation."""


@dataclass(frozen=True)
class UsageContext:
    """What a call is for: recorded with its usage, and (for replay) which scripted conversation
    answers it. `conversation_key` names the conversation: a planning phase ("explore",
    "requirements", "design", "tasks") or a task ("TSK-001:implement_feature")."""

    conversation_key: str
    spec_id: int | None = None
    task_id: int | None = None
    agent_run_id: int | None = None
    phase: str = ""


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cost_usd: Decimal = Decimal("0")


@dataclass
class LLMResponse:
    content: list[dict[str, Any]]
    stop_reason: str
    model: str
    usage: Usage = field(default_factory=Usage)
    provider: str = ""

    def as_message(self) -> dict[str, Any]:
        return {"role": "assistant", "content": self.content}


class LLMProvider(Protocol):
    name: str

    def complete(
        self,
        *,
        system: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        context: UsageContext,
        max_tokens: int | None = None,
    ) -> LLMResponse:
        """One model call. The caller records its usage (usage_record), with the turn it made, in the
        transaction that keeps the turn, so a repeated delivery never counts a call twice."""
        ...


def text_of(content: list[dict[str, Any]]) -> str:
    return "\n".join(block.get("text", "") for block in content if block.get("type") == "text").strip()


def tool_uses_of(content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [block for block in content if block.get("type") == "tool_use"]


# USD per million tokens: (input, output). Cache writes cost 1.25x input, cache reads 0.1x input.
PRICES_PER_MTOK: dict[str, tuple[Decimal, Decimal]] = {
    "claude-opus-4-0": (Decimal("15"), Decimal("75")),
    "claude-opus-4-1": (Decimal("15"), Decimal("75")),
    "claude-opus": (Decimal("5"), Decimal("25")),
    "claude-sonnet": (Decimal("3"), Decimal("15")),
    "claude-haiku": (Decimal("1"), Decimal("5")),
    "claude-3-5-haiku": (Decimal("0.8"), Decimal("4")),
}
DEFAULT_PRICE = (Decimal("3"), Decimal("15"))


def estimate_cost(model: str, usage: Usage) -> Decimal:
    price_in, price_out = next(
        (price for prefix, price in PRICES_PER_MTOK.items() if model.startswith(prefix)), DEFAULT_PRICE
    )
    million = Decimal(1_000_000)
    cost = (
        Decimal(usage.input_tokens) * price_in
        + Decimal(usage.cache_creation_input_tokens) * price_in * Decimal("1.25")
        + Decimal(usage.cache_read_input_tokens) * price_in * Decimal("0.1")
        + Decimal(usage.output_tokens) * price_out
    ) / million
    return cost.quantize(Decimal("0.000001"))


def usage_record(*, provider: str, model: str, usage: Usage, context: UsageContext, turn: int | None = None) -> None:
    from omoi.models import LLMUsage

    LLMUsage.objects.create(
        turn=turn,
        provider=provider,
        model=model,
        spec_id=context.spec_id,
        task_id=context.task_id,
        agent_run_id=context.agent_run_id,
        phase=context.phase,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_creation_input_tokens=usage.cache_creation_input_tokens,
        cache_read_input_tokens=usage.cache_read_input_tokens,
        cost_usd=usage.cost_usd,
    )


def get_provider(name: str | None = None) -> LLMProvider:
    """The configured provider: OMOI_LLM_PROVIDER, by default `anthropic` when ANTHROPIC_API_KEY is
    set, otherwise `replay`."""
    name = name or settings.OMOI_LLM_PROVIDER
    if name == "replay":
        from omoi.llm.replay import ReplayProvider

        return ReplayProvider.from_settings()
    if name == "anthropic":
        from omoi.llm.anthropic import AnthropicProvider

        return AnthropicProvider.from_settings()
    if ":" in name:
        # "package.module:Class", a provider of one's own (a benchmark's instrumented replay).
        import importlib

        module, _, attribute = name.partition(":")
        try:
            return getattr(importlib.import_module(module), attribute).from_settings()
        except (ImportError, AttributeError) as exc:
            raise LLMError(f"OMOI_LLM_PROVIDER {name!r} cannot be loaded: {exc}") from exc
    raise LLMError(f"unknown OMOI_LLM_PROVIDER {name!r}: use 'anthropic' or 'replay'")
