from decimal import Decimal

import pytest

from omoi.llm import LLMError, UsageContext, get_provider, usage_record
from omoi.models import LLMUsage
from tests.factories import SpecFactory

READ_FILE = {
    "name": "read_file",
    "description": "Read a file",
    "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
}
USAGE = {"input_tokens": 100, "output_tokens": 20, "cache_creation_input_tokens": 10, "cache_read_input_tokens": 40}


@pytest.fixture
def claude(settings, messages_api):
    settings.ANTHROPIC_API_KEY = "sk-test-key"
    settings.ANTHROPIC_BASE_URL = messages_api.url
    settings.OMOI_MODEL = "claude-sonnet-4-6"
    settings.OMOI_LLM_TIMEOUT_S = 5.0
    settings.OMOI_LLM_MAX_RETRIES = 2
    settings.OMOI_LLM_MAX_TOKENS = 1024
    return get_provider("anthropic")


def ask(provider, spec_id=None):
    return provider.complete(
        system="You explore repositories.",
        messages=[{"role": "user", "content": "Look at README.md"}],
        tools=[READ_FILE],
        context=UsageContext(conversation_key="explore", spec_id=spec_id, phase="explore"),
    )


def test_a_tool_use_turn_is_returned_as_plain_blocks_with_its_usage_and_cost(db, claude, messages_api):
    spec = SpecFactory()
    messages_api.reply_message(
        [
            {"type": "text", "text": "Reading the README."},
            {"type": "tool_use", "id": "toolu_01", "name": "read_file", "input": {"path": "README.md"}},
        ],
        stop_reason="tool_use",
        usage=USAGE,
    )

    response = ask(claude, spec_id=spec.id)

    assert response.content == [
        {"type": "text", "text": "Reading the README."},
        {"type": "tool_use", "id": "toolu_01", "name": "read_file", "input": {"path": "README.md"}},
    ]
    assert response.stop_reason == "tool_use"
    assert response.model == "claude-sonnet-4-6-20260101"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (100, 20)
    [request] = messages_api.requests
    assert request["path"] == "/v1/messages"
    assert request["headers"]["Authorization"] == "Bearer sk-test-key"
    assert request["headers"]["x-stainless-timeout"] == "5.0"  # OMOI_LLM_TIMEOUT_S reaches the SDK
    assert request["body"] == {
        "model": "claude-sonnet-4-6",
        "max_tokens": 1024,
        # The system prompt, the tools and the newest block carry cache breakpoints.
        "system": [{"type": "text", "text": "You explore repositories.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "Look at README.md", "cache_control": {"type": "ephemeral"}}],
            }
        ],
        "tools": [{**READ_FILE, "cache_control": {"type": "ephemeral"}}],
    }
    # The provider records nothing itself: the turn that keeps this answer records its usage, once.
    assert not LLMUsage.objects.exists()
    assert response.provider == "anthropic"
    context = UsageContext(conversation_key="explore", spec_id=spec.id, phase="explore")
    usage_record(provider=response.provider, model=response.model, usage=response.usage, context=context, turn=1)
    [usage] = LLMUsage.objects.all()
    assert (usage.provider, usage.model, usage.spec_id, usage.phase, usage.turn) == (
        "anthropic",
        "claude-sonnet-4-6-20260101",
        spec.id,
        "explore",
        1,
    )
    assert (
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_creation_input_tokens,
        usage.cache_read_input_tokens,
    ) == (100, 20, 10, 40)
    # (100 x 3 + 10 x 3 x 1.25 + 40 x 3 x 0.1 + 20 x 15) / 1,000,000 USD
    assert response.usage.cost_usd == usage.cost_usd == Decimal("0.000650")


def test_an_end_turn_answer_is_text(db, claude, messages_api):
    messages_api.reply_message(
        [{"type": "text", "text": "All done."}],
        stop_reason="end_turn",
        usage={"input_tokens": 7, "output_tokens": 3},
    )

    response = claude.complete(
        system="",
        messages=[{"role": "user", "content": "Say done"}],
        tools=[],
        context=UsageContext(conversation_key="explore"),
        max_tokens=50,
    )

    assert response.content == [{"type": "text", "text": "All done."}]
    assert response.stop_reason == "end_turn"
    assert messages_api.requests[0]["body"] == {
        "model": "claude-sonnet-4-6",
        "max_tokens": 50,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Say done", "cache_control": {"type": "ephemeral"}}]}
        ],
    }
    usage = response.usage
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens) == (7, 3, 0)
    assert usage.cost_usd == Decimal("0.000066")  # (7 x 3 + 3 x 15) / 1,000,000 USD


def test_a_rate_limit_is_retried_after_the_time_the_api_asks_for(db, claude, messages_api):
    messages_api.reply_error(429, "rate_limit_error", "Slow down", headers={"retry-after": "0"})
    messages_api.reply_message([{"type": "text", "text": "ok"}], stop_reason="end_turn", usage=USAGE)

    response = ask(claude)

    assert response.content == [{"type": "text", "text": "ok"}]
    assert len(messages_api.requests) == 2
    assert messages_api.requests[0]["body"] == messages_api.requests[1]["body"]
    assert [r["headers"]["x-stainless-retry-count"] for r in messages_api.requests] == ["0", "1"]
    assert (response.usage.input_tokens, response.usage.output_tokens) == (100, 20)  # the answer's usage alone


def test_an_overloaded_api_is_retried(db, claude, messages_api):
    messages_api.reply_error(529, "overloaded_error", "Overloaded", headers={"retry-after-ms": "10"})
    messages_api.reply_message([{"type": "text", "text": "ok"}], stop_reason="end_turn", usage=USAGE)

    response = ask(claude)

    assert response.stop_reason == "end_turn"
    assert len(messages_api.requests) == 2
    assert (response.usage.input_tokens, response.usage.output_tokens) == (100, 20)


def test_a_server_error_is_retried(db, claude, messages_api):
    messages_api.reply_error(500, "api_error", "Internal", headers={"retry-after-ms": "10"})
    messages_api.reply_error(503, "api_error", "Unavailable", headers={"retry-after-ms": "10"})
    messages_api.reply_message([{"type": "text", "text": "ok"}], stop_reason="end_turn", usage=USAGE)

    assert ask(claude).content == [{"type": "text", "text": "ok"}]
    assert len(messages_api.requests) == 3


def test_overload_past_the_retries_is_a_readable_error_and_records_nothing(db, claude, messages_api):
    for _ in range(3):
        messages_api.reply_error(529, "overloaded_error", "Overloaded", headers={"retry-after-ms": "10"})

    with pytest.raises(LLMError) as error:
        ask(claude)

    assert str(error.value) == "Anthropic API is overloaded (HTTP 529): Overloaded"
    assert len(messages_api.requests) == 3  # the first attempt and OMOI_LLM_MAX_RETRIES=2 retries
    assert LLMUsage.objects.count() == 0


def test_a_bad_request_is_not_retried(db, claude, messages_api):
    messages_api.reply_error(400, "invalid_request_error", "tools.0.name: String should match pattern")

    with pytest.raises(LLMError) as error:
        ask(claude)

    assert str(error.value) == (
        "Anthropic API rejected the request (HTTP 400): tools.0.name: String should match pattern"
    )
    assert len(messages_api.requests) == 1


def test_a_slow_answer_times_out(db, settings, claude, messages_api):
    settings.OMOI_LLM_TIMEOUT_S = 0.3
    settings.OMOI_LLM_MAX_RETRIES = 0
    messages_api.delay_s = 1.0
    messages_api.reply_message([{"type": "text", "text": "late"}], stop_reason="end_turn", usage=USAGE)

    with pytest.raises(LLMError) as error:
        ask(get_provider("anthropic"))

    assert str(error.value) == "Anthropic API timed out after 0.3s"
    assert LLMUsage.objects.count() == 0


def test_without_an_api_key_the_provider_says_how_to_configure_one(settings):
    settings.ANTHROPIC_API_KEY = ""

    with pytest.raises(LLMError) as error:
        get_provider("anthropic")

    assert str(error.value) == "ANTHROPIC_API_KEY is not set: set it to use Claude, or set OMOI_LLM_PROVIDER=replay"


def test_requests_mark_the_system_prompt_the_tools_and_the_transcript_for_caching_and_usage_keeps_cache_fields(
    db, claude, messages_api
):
    from omoi.llm import UsageContext

    messages_api.reply_message(
        [{"type": "text", "text": "ok"}],
        stop_reason="end_turn",
        usage={
            "input_tokens": 12,
            "output_tokens": 3,
            "cache_creation_input_tokens": 2048,
            "cache_read_input_tokens": 4096,
        },
    )
    transcript = [
        {"role": "user", "content": "Read the file."},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "read_file", "input": {"path": "a"}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "hello"}]},
    ]
    tools = [
        {"name": "read_file", "description": "read", "input_schema": {"type": "object"}},
        {"name": "finish", "description": "end", "input_schema": {"type": "object"}},
    ]

    response = claude.complete(
        system="You are an engineer.", messages=transcript, tools=tools, context=UsageContext(conversation_key="x")
    )

    body = messages_api.requests[0]["body"]
    assert body["system"] == [{"type": "text", "text": "You are an engineer.", "cache_control": {"type": "ephemeral"}}]
    assert "cache_control" not in body["tools"][0] and body["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert body["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert all("cache_control" not in str(message) for message in body["messages"][:-1])
    assert transcript[-1]["content"][-1] == {"type": "tool_result", "tool_use_id": "t1", "content": "hello"}
    usage = response.usage
    assert (usage.cache_creation_input_tokens, usage.cache_read_input_tokens) == (2048, 4096)
    # Cache writes cost 1.25 times input, reads a tenth: both count in the call's cost.
    from decimal import Decimal

    from omoi.llm.base import Usage, estimate_cost

    assert usage.cost_usd == estimate_cost(response.model, Usage(12, 3, 2048, 4096))
    assert usage.cost_usd > estimate_cost(response.model, Usage(12, 3)) + Decimal("0.001")
