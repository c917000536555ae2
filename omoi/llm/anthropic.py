"""The `anthropic` provider: Claude through the official SDK's Messages API, with tool use.

Configuration comes from settings (which read the environment): ANTHROPIC_API_KEY,
ANTHROPIC_BASE_URL (empty = the SDK's default endpoint), OMOI_MODEL, OMOI_LLM_TIMEOUT_S (the
timeout of each HTTP attempt) and OMOI_LLM_MAX_RETRIES.

Retries: the SDK itself retries 408, 409, 429 and every 5xx (including 529 "overloaded") and
connection errors, honouring `retry-after`/`retry-after-ms` and otherwise backing off
exponentially (0.5 s doubling to 8 s, with jitter); see `_should_retry` and
`_calculate_retry_timeout` in the SDK's `_base_client.py`. We hand it `max_retries` and an explicit
timeout and do not add a second loop, so the number of attempts is exactly what is configured.
A failure left after the retries is raised as `LLMError` with a readable message.
"""

from __future__ import annotations

from typing import Any

import anthropic
from django.conf import settings

from omoi.llm.base import LLMError, LLMResponse, Usage, UsageContext, estimate_cost


def _block_dict(block: Any) -> dict[str, Any]:
    """A content block as the plain dict the Messages API accepts back in a later request."""
    data = block.model_dump(mode="json", exclude_none=True)
    if data.get("type") == "text":
        return {"type": "text", "text": data.get("text", "")}
    if data.get("type") == "tool_use":
        return {"type": "tool_use", "id": data["id"], "name": data["name"], "input": data.get("input") or {}}
    if data.get("type") == "thinking":
        return {"type": "thinking", "thinking": data.get("thinking", ""), "signature": data.get("signature", "")}
    return data


EPHEMERAL = {"type": "ephemeral"}


def cached_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The transcript with a cache breakpoint on its last block: a turn's prefix (everything up to
    the newest message) is written to the prompt cache and the next turn reads it back instead of
    paying for it again (the tools and the system prompt carry breakpoints of their own). The
    stored transcript is not changed."""
    if not messages:
        return messages
    last = messages[-1]
    content = last.get("content")
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else [dict(b) for b in content or []]
    if not blocks:
        return messages
    blocks[-1] = {**blocks[-1], "cache_control": EPHEMERAL}
    return [*messages[:-1], {**last, "content": blocks}]


def _transient(exc: Exception) -> bool:
    """Whether trying again later may help: timeouts, connections, 408/409/429 and 5xx (529 too)."""
    if isinstance(exc, anthropic.APIConnectionError | anthropic.APITimeoutError):
        return True
    if isinstance(exc, anthropic.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return False


def _error_message(exc: Exception) -> str:
    if isinstance(exc, anthropic.APIStatusError):
        detail = ""
        body = exc.body
        if isinstance(body, dict):
            error = body.get("error") if isinstance(body.get("error"), dict) else body
            detail = str(error.get("message") or "") if isinstance(error, dict) else ""
        detail = detail or str(exc.message)
        kind = {
            400: "rejected the request",
            401: "rejected the API key",
            403: "refused access",
            404: "has no such model or endpoint",
            413: "rejected the request as too large",
            429: "is rate limiting this key",
            529: "is overloaded",
        }.get(exc.status_code, "had a server error" if exc.status_code >= 500 else "rejected the request")
        return f"Anthropic API {kind} (HTTP {exc.status_code}): {detail}"
    if isinstance(exc, anthropic.APITimeoutError):
        return f"Anthropic API timed out after {settings.OMOI_LLM_TIMEOUT_S:g}s"
    if isinstance(exc, anthropic.APIConnectionError):
        return f"cannot reach the Anthropic API: {exc}"
    return f"Anthropic API call failed: {exc}"


class AnthropicProvider:
    name = "anthropic"

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        base_url: str = "",
        timeout_s: float = 120.0,
        max_retries: int = 4,
        max_tokens: int = 8192,
    ) -> None:
        if not api_key:
            raise LLMError("ANTHROPIC_API_KEY is not set: set it to use Claude, or set OMOI_LLM_PROVIDER=replay")
        self.model = model
        self.max_tokens = max_tokens
        self.max_retries = max_retries
        self.timeout_s = timeout_s
        self.client = anthropic.Anthropic(
            api_key=api_key,
            base_url=base_url or None,
            timeout=timeout_s,
            max_retries=max_retries,
        )

    @classmethod
    def from_settings(cls) -> AnthropicProvider:
        return cls(
            api_key=settings.ANTHROPIC_API_KEY,
            model=settings.OMOI_MODEL,
            base_url=settings.ANTHROPIC_BASE_URL,
            timeout_s=settings.OMOI_LLM_TIMEOUT_S,
            max_retries=settings.OMOI_LLM_MAX_RETRIES,
            max_tokens=settings.OMOI_LLM_MAX_TOKENS,
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
        request: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens or self.max_tokens,
            "messages": cached_messages(messages),
        }
        if system:
            request["system"] = [{"type": "text", "text": system, "cache_control": EPHEMERAL}]
        if tools:
            request["tools"] = [*tools[:-1], {**tools[-1], "cache_control": EPHEMERAL}]
        try:
            message = self.client.messages.create(**request, timeout=self.timeout_s)
        except anthropic.AnthropicError as exc:
            raise LLMError(_error_message(exc), transient=_transient(exc)) from exc
        raw = message.usage
        usage = Usage(
            input_tokens=raw.input_tokens or 0,
            output_tokens=raw.output_tokens or 0,
            cache_creation_input_tokens=raw.cache_creation_input_tokens or 0,
            cache_read_input_tokens=raw.cache_read_input_tokens or 0,
        )
        model = str(message.model or self.model)
        usage.cost_usd = estimate_cost(model, usage)
        return LLMResponse(
            content=[_block_dict(block) for block in message.content],
            stop_reason=str(message.stop_reason or "end_turn"),
            model=model,
            usage=usage,
            provider=self.name,
        )
