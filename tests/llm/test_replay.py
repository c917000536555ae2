import json
import re
from pathlib import Path

import pytest

from omoi.llm import LLMError, ReplayExhausted, UsageContext, get_provider
from omoi.models import LLMUsage

READ_FILE = {"name": "read_file", "description": "Read a file", "input_schema": {"type": "object"}}
SUBMIT = {"name": "submit_exploration", "description": "Submit", "input_schema": {"type": "object"}}


@pytest.fixture
def script(settings, tmp_path):
    def write(data) -> None:
        path = tmp_path / "script.json"
        path.write_text(data if isinstance(data, str) else json.dumps(data))
        settings.OMOI_REPLAY_SCRIPT = str(path)

    return write


def call(messages, *, key="explore", tools=(READ_FILE, SUBMIT)):
    return get_provider("replay").complete(
        system="Explore.", messages=messages, tools=list(tools), context=UsageContext(conversation_key=key)
    )


def test_turns_are_played_by_the_number_of_assistant_messages(db, script):
    script(
        {
            "model": "replay-model",
            "conversations": {
                "explore": [
                    {
                        "text": "Looking",
                        "tool": "read_file",
                        "input": {"path": "README.md"},
                        "usage": {"input_tokens": 9},
                    },
                    {"tool": "submit_exploration", "input": {"project_type": "cli"}},
                ]
            },
        }
    )
    first = call([{"role": "user", "content": "Go"}])
    again = call([{"role": "user", "content": "Go"}])
    second = call(
        [
            {"role": "user", "content": "Go"},
            first.as_message(),
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x", "content": "# Demo"}]},
        ]
    )

    assert first.content == [
        {"type": "text", "text": "Looking"},
        {"type": "tool_use", "id": "toolu_explore_0_0", "name": "read_file", "input": {"path": "README.md"}},
    ]
    assert again.content == first.content
    assert second.content == [
        {"type": "tool_use", "id": "toolu_explore_1_0", "name": "submit_exploration", "input": {"project_type": "cli"}}
    ]
    assert (first.stop_reason, second.stop_reason, second.model) == ("tool_use", "tool_use", "replay-model")
    assert [(r.provider, r.model, r.usage.input_tokens) for r in (first, again, second)] == [
        ("replay", "replay-model", 9),
        ("replay", "replay-model", 9),
        ("replay", "replay-model", second.usage.input_tokens),
    ]
    assert second.usage.input_tokens > 9  # estimated from the request when the script names none
    assert not LLMUsage.objects.exists()  # the turn records usage, not the provider


def test_a_text_turn_ends_the_turn(db, script):
    script({"conversations": {"TSK-001": [{"text": "All done."}]}})

    response = call([{"role": "user", "content": "Go"}], key="TSK-001:implement_feature")

    assert response.content == [{"type": "text", "text": "All done."}]
    assert response.stop_reason == "end_turn"


def test_running_out_of_turns_says_which_conversation_and_turn(db, script):
    script({"conversations": {"explore": [{"text": "Only turn"}]}})

    with pytest.raises(ReplayExhausted) as error:
        call([{"role": "user", "content": "Go"}, {"role": "assistant", "content": [{"type": "text", "text": "x"}]}])

    assert str(error.value) == "replay script has 1 turns for 'explore'; turn 2 was asked for"
    assert LLMUsage.objects.count() == 0


def test_a_missing_conversation_is_named(db, script, settings):
    script({"conversations": {"explore": [{"text": "x"}]}})

    with pytest.raises(ReplayExhausted) as error:
        call([{"role": "user", "content": "Go"}], key="design")

    assert str(error.value) == f"replay script {settings.OMOI_REPLAY_SCRIPT} has no conversation 'design'"


def test_a_tool_the_request_does_not_offer_is_refused(db, script):
    script({"conversations": {"explore": [{"tool": "submit_design", "input": {}}]}})

    with pytest.raises(LLMError) as error:
        call([{"role": "user", "content": "Go"}])

    assert str(error.value) == (
        "replay turn 1 of 'explore' calls 'submit_design', which this request does not offer "
        "(read_file, submit_exploration)"
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("{not json", "cannot read replay script {path}: Expecting property name enclosed in double quotes"),
        ({"turns": []}, "replay script {path} must be an object with a 'conversations' object"),
        ({"conversations": {"explore": {"tool": "x"}}}, "replay script {path}: conversation 'explore' must be a list"),
        (
            {"conversations": {"explore": ["read README"]}},
            "replay script {path}: turn 1 of conversation 'explore' must be an object, not str",
        ),
        (
            {"conversations": {"explore": [{"text": "ok"}, {"tool_name": "read_file"}]}},
            "replay script {path}: turn 2 of conversation 'explore' has unknown keys ['tool_name']",
        ),
        (
            {"conversations": {"explore": [{"tools": [{"input": {}}]}]}},
            "replay script {path}: turn 1 of conversation 'explore' each tool call needs a 'tool' name",
        ),
        (
            {"conversations": {"explore": [{"tool": "read_file", "input": "README.md"}]}},
            "replay script {path}: turn 1 of conversation 'explore' the input of tool call 'read_file' must be an "
            "object",
        ),
        (
            {"conversations": {"explore": [{"usage": {"input_tokens": 1}}]}},
            "replay script {path}: turn 1 of conversation 'explore' needs 'tool', 'tools', 'text' or 'content'",
        ),
        (
            {"conversations": {"explore": [{"content": [{"text": "no type"}]}]}},
            "replay script {path}: turn 1 of conversation 'explore' 'content' must be a list of content blocks",
        ),
    ],
)
def test_a_malformed_script_is_reported_clearly(db, script, settings, data, message):
    script(data)

    with pytest.raises(LLMError) as error:
        call([{"role": "user", "content": "Go"}])

    assert str(error.value).startswith(message.format(path=settings.OMOI_REPLAY_SCRIPT))
    assert LLMUsage.objects.count() == 0


def test_a_missing_script_file_is_named(db, settings, tmp_path):
    settings.OMOI_REPLAY_SCRIPT = str(tmp_path / "nope.json")

    with pytest.raises(LLMError) as error:
        call([{"role": "user", "content": "Go"}])

    assert str(error.value) == f"replay script {tmp_path / 'nope.json'} does not exist"


def test_without_a_script_the_replay_provider_says_how_to_configure_a_model(settings):
    settings.OMOI_REPLAY_SCRIPT = ""

    with pytest.raises(LLMError) as error:
        get_provider("replay")

    assert "set ANTHROPIC_API_KEY to use Claude, or OMOI_REPLAY_SCRIPT" in str(error.value)


def test_an_unknown_provider_is_refused():
    with pytest.raises(LLMError) as error:
        get_provider("openai")

    assert str(error.value) == "unknown OMOI_LLM_PROVIDER 'openai': use 'anthropic' or 'replay'"


EXPECTING = {
    "recorded_for": "the notes sample and the idea 'tag notes'",
    "expect": {"*": ["Project: notes"], "explore": ["tag notes"], "TSK-001": ["TSK-001: Tag a note"]},
    "conversations": {
        "explore": [{"text": "Looking."}],
        "TSK-001": [{"text": "Done."}],
    },
}


def test_a_conversation_that_fits_the_script_is_played(db, script):
    script(EXPECTING)

    planned = call([{"role": "user", "content": "Project: notes\n\nIdea:\nLet users tag notes."}])
    task = call(
        [{"role": "user", "content": [{"type": "text", "text": "Project: notes\n# TSK-001: Tag a note"}]}],
        key="TSK-001:implement_feature",
    )

    assert planned.content == [{"type": "text", "text": "Looking."}]
    assert task.content == [{"type": "text", "text": "Done."}]


@pytest.mark.parametrize(
    "key, first_message, missing",
    [
        ("explore", "Project: notes\n\nIdea:\nAdd CSV export.", "tag notes"),
        ("explore", "Project: shop\n\nIdea:\nLet users tag notes.", "Project: notes"),
        ("TSK-001:write_tests", "Project: notes\n# TSK-001: Export as CSV", "TSK-001: Tag a note"),
    ],
)
def test_a_conversation_the_script_was_not_recorded_for_is_refused(db, script, key, first_message, missing):
    from omoi.llm.replay import ReplayMismatch

    script(EXPECTING)

    with pytest.raises(ReplayMismatch) as refused:
        call([{"role": "user", "content": first_message}], key=key)

    message = str(refused.value)
    assert f"does not fit conversation {key!r}" in message
    assert f"does not contain {missing!r}" in message
    assert "recorded for: the notes sample and the idea 'tag notes'" in message
    assert not LLMUsage.objects.exists()


@pytest.mark.parametrize(
    "bad, problem",
    [
        ({"expect": {"explore": "tag"}}, "'expect' must map conversation keys to lists of non-empty strings"),
        ({"expect": {"explore": [""]}}, "'expect' must map conversation keys to lists of non-empty strings"),
        ({"recorded_for": 3}, "'recorded_for' must be a string"),
        ({"expected": {}}, "unknown keys ['expected']"),
    ],
)
def test_a_malformed_expectation_is_refused_when_the_script_loads(db, script, bad, problem):
    script({"conversations": {"explore": [{"text": "Looking."}]}, **bad})

    with pytest.raises(LLMError, match=re.escape(problem)):
        call([{"role": "user", "content": "Go"}])


def test_the_demo_script_plays_its_own_idea_and_refuses_another(db, settings):
    settings.OMOI_REPLAY_SCRIPT = str(Path(settings.BASE_DIR) / "samples" / "textkit.replay.json")
    from omoi.llm.replay import ReplayMismatch

    fits = call(
        [{"role": "user", "content": "Project: textkit-demo\n\nIdea:\nAdd word statistics to textkit: count ..."}],
        tools=[{"name": "list_files", "description": "", "input_schema": {"type": "object"}}],
    )
    assert fits.content[-1]["name"] == "list_files"
    with pytest.raises(ReplayMismatch, match="does not contain 'Add word statistics'"):
        call([{"role": "user", "content": "Project: textkit-demo\n\nIdea:\nAdd CSV export"}])
