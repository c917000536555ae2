"""The language-model layer. Every caller goes through `get_provider()` and the `LLMProvider`
interface; production uses the `anthropic` SDK, tests and the offline demo replay a script.
"""

from omoi.llm.base import (
    LLMError,
    LLMProvider,
    LLMResponse,
    ReplayExhausted,
    Usage,
    UsageContext,
    get_provider,
    text_of,
    tool_uses_of,
    usage_record,
)

__all__ = [
    "LLMError",
    "LLMProvider",
    "LLMResponse",
    "ReplayExhausted",
    "Usage",
    "UsageContext",
    "get_provider",
    "text_of",
    "tool_uses_of",
    "usage_record",
]
