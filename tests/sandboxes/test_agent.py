import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from omoi.llm import ReplayExhausted
from omoi.llm.replay import ReplayProvider
from omoi.models import LLMUsage
from sandboxes.models import AgentRun, AgentRunStatus, SandboxEvent
from sandboxes.selectors import run_transcript
from sandboxes.services.agent import (
    AgentRunError,
    agent_run_finish,
    agent_run_inject_message,
    agent_run_limit_reason,
    agent_run_reply,
    agent_run_start,
    agent_turn_run,
)
from sandboxes.tools import EXECUTION_TOOLS, READ_ONLY_TOOLS
from tests.factories import SpecFactory

KEY = "TSK-001:implement_feature"
FINISH = {"finish"}


def assert_transcript_valid(messages: list[dict]) -> None:
    """Roles alternate from a user message, and every assistant message that calls tools is
    followed by one user message answering exactly those calls, in order."""
    assert messages[0]["role"] == "user"
    for index, message in enumerate(messages):
        assert message["role"] == ("user" if index % 2 == 0 else "assistant")
        if message["role"] != "assistant":
            continue
        call_ids = [block["id"] for block in message["content"] if block["type"] == "tool_use"]
        if not call_ids or index + 1 == len(messages):
            continue
        answer = messages[index + 1]["content"]
        assert [block["tool_use_id"] for block in answer if block["type"] == "tool_result"] == call_ids


def start_run(spec=None, **kwargs) -> AgentRun:
    return agent_run_start(
        kind="task",
        spec_id=spec.pk if spec else None,
        phase="IMPLEMENTATION",
        system_prompt="You are a careful engineer.",
        first_message="TSK-001: make add() handle None.",
        **kwargs,
    )


def run_turn(run: AgentRun, workspace, tools=EXECUTION_TOOLS, terminal=FINISH, provider=None):
    return agent_turn_run(
        run=run,
        workspace=workspace,
        provider=provider,
        tools=tools,
        terminal_tools=terminal,
        conversation_key=KEY,
    )


@pytest.mark.django_db
def test_a_run_edits_the_workspace_turn_by_turn_and_finishes(workspace, replay_script):
    replay_script(
        {
            KEY: [
                {
                    "text": "Looking around.",
                    "tools": [
                        {"tool": "list_files", "input": {"path": "."}},
                        {"tool": "read_file", "input": {"path": "calc/ops.py"}},
                    ],
                    "usage": {"input_tokens": 100, "output_tokens": 10},
                },
                {
                    "tool": "edit_file",
                    "input": {"path": "calc/ops.py", "old": "return a + b", "new": "return (a or 0) + (b or 0)"},
                    "usage": {"input_tokens": 200, "output_tokens": 20},
                },
                {"tool": "run_command", "input": {"command": "python -m pytest -q"}},
                {"tool": "finish", "input": {"summary": "add() treats None as 0."}},
            ]
        }
    )
    spec = SpecFactory()
    run = start_run(spec)

    outcomes = [run_turn(run, workspace) for _turn in range(4)]

    assert [outcome.kind for outcome in outcomes] == ["continue", "continue", "continue", "terminal"]
    assert outcomes[0].text == "Looking around."
    assert (outcomes[3].name, outcomes[3].input) == ("finish", {"summary": "add() treats None as 0."})
    assert (workspace.root / "calc" / "ops.py").read_text() == "def add(a, b):\n    return (a or 0) + (b or 0)\n"
    run.refresh_from_db()
    assert run.turns == 4
    usages = list(LLMUsage.objects.filter(agent_run=run).order_by("id"))
    assert [(u.input_tokens, u.output_tokens) for u in usages[:2]] == [(100, 10), (200, 20)]
    assert (run.input_tokens, run.output_tokens) == (
        sum(u.input_tokens for u in usages),
        sum(u.output_tokens for u in usages),
    )
    assert run.cost_usd == sum(usage.cost_usd for usage in LLMUsage.objects.filter(agent_run=run))
    assert LLMUsage.objects.filter(agent_run=run, spec=spec, phase="IMPLEMENTATION").count() == 4
    first_results = run_transcript(run=run)[2]["content"]
    assert "calc/ops.py" in first_results[0]["content"]
    assert first_results[1]["content"] == "     1\tdef add(a, b):\n     2\t    return a + b"
    command_result = run_transcript(run=run)[6]["content"][0]
    assert command_result["is_error"] is False
    assert command_result["content"].startswith("exit code 0")
    assert "1 passed" in command_result["content"]
    assert run_transcript(run=run)[-1]["role"] == "assistant"

    agent_run_reply(run_id=run.pk, tool_use_id=outcomes[3].tool_use_id, content="Checks passed.", is_error=False)

    run.refresh_from_db()
    assert_transcript_valid(run_transcript(run=run))
    assert run_transcript(run=run)[-1] == {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": outcomes[3].tool_use_id,
                "content": "Checks passed.",
                "is_error": False,
            }
        ],
    }
    events = list(SandboxEvent.objects.filter(spec=spec).order_by("sequence"))
    assert [event.type for event in events] == [
        "agent.started",
        "agent.turn",
        "agent.tool_call",
        "agent.tool_result",
        "agent.tool_call",
        "agent.tool_result",
        "agent.turn",
        "agent.tool_call",
        "sandbox.file_changed",
        "agent.tool_result",
        "agent.turn",
        "agent.tool_call",
        "sandbox.command",
        "agent.tool_result",
        "agent.turn",
        "agent.tool_call",
        "agent.tool_result",
    ]
    assert [event.sequence for event in events] == list(range(1, 18))
    assert events[1].payload == {
        "run": run.pk,
        "turn": 1,
        "text": "Looking around.",
        "stop_reason": "tool_use",
        "input_tokens": 100,
        "output_tokens": 10,
        "node": "",
    }
    assert events[8].payload == {"run": run.pk, "path": "calc/ops.py"}
    assert events[12].payload["command"] == "python -m pytest -q"
    assert events[12].payload["exit_code"] == 0
    assert events[15].payload == {"run": run.pk, "name": "finish", "input": {"summary": "add() treats None as 0."}}
    assert events[16].payload == {"run": run.pk, "name": "finish", "is_error": False, "content": "Checks passed."}


class CountingReplay(ReplayProvider):
    def __init__(self, script_path):
        super().__init__(str(script_path))
        self.calls = 0

    def complete(self, **kwargs):
        self.calls += 1
        return super().complete(**kwargs)


@pytest.mark.django_db
def test_a_late_copy_of_a_turn_makes_no_model_call_and_changes_nothing(workspace, replay_script):
    """A delivery that loaded the run before another one committed its turn (a step re-run after
    its lease expired) is stale: no model call, no tool, no usage."""
    model = CountingReplay(
        replay_script(
            {
                KEY: [
                    {"tool": "list_files", "input": {"path": "."}},
                    {"tool": "write_file", "input": {"path": "LATE.md", "content": "late\n"}},
                ]
            }
        )
    )
    run = start_run()
    late = AgentRun.objects.get(pk=run.pk)
    assert run_turn(run, workspace, provider=model).kind == "continue"
    transcript_after_first = run_transcript(run=run)

    duplicate = run_turn(late, workspace, provider=model)

    run.refresh_from_db()
    assert (duplicate.kind, model.calls) == ("stale", 1)
    assert LLMUsage.objects.filter(agent_run=run).count() == 1
    assert run.turns == 1
    assert run_transcript(run=run) == transcript_after_first
    assert not (workspace.root / "LATE.md").exists()


@pytest.mark.django_db
def test_a_turn_of_an_ended_run_is_stale(workspace, replay_script):
    replay_script({KEY: [{"tool": "list_files", "input": {"path": "."}}]})
    run = start_run()
    agent_run_finish(run_id=run.pk, status=AgentRunStatus.CANCELLED, stop_reason="cancelled by the user")

    run.refresh_from_db()
    outcome = run_turn(run, workspace)

    assert outcome.kind == "stale"
    assert LLMUsage.objects.count() == 0


@pytest.mark.django_db
def test_paths_outside_the_workspace_and_environment_probes_are_refused_and_recorded(
    workspace, replay_script, tmp_path
):
    replay_script(
        {
            KEY: [
                {
                    "tools": [
                        {"tool": "read_file", "input": {"path": "../../origin/README.md"}},
                        {"tool": "read_file", "input": {"path": "/etc/passwd"}},
                        {"tool": "write_file", "input": {"path": "../escape.txt", "content": "out"}},
                        {"tool": "run_command", "input": {"command": "printenv"}},
                    ]
                }
            ]
        }
    )
    spec = SpecFactory()
    run = start_run(spec)

    outcome = run_turn(run, workspace)

    run.refresh_from_db()
    assert outcome.kind == "continue"
    results = run_transcript(run=run)[2]["content"]
    assert [result["is_error"] for result in results] == [True, True, True, True]
    assert all(result["content"].startswith("refused:") for result in results)
    assert "outside the workspace" in results[0]["content"]
    assert "print the server's environment" in results[3]["content"]
    assert not (workspace.root.parent / "escape.txt").exists()
    refusals = SandboxEvent.objects.filter(spec=spec, type="sandbox.refused").order_by("sequence")
    assert [(event.payload["tool"], event.payload["input"]) for event in refusals] == [
        ("read_file", {"path": "../../origin/README.md"}),
        ("read_file", {"path": "/etc/passwd"}),
        ("write_file", {"path": "../escape.txt", "content": "out"}),
        ("run_command", {"command": "printenv"}),
    ]
    assert all(event.payload["reason"].startswith("refused:") for event in refusals)
    assert not SandboxEvent.objects.filter(type__in=["sandbox.file_changed", "sandbox.command"]).exists()


@pytest.mark.django_db
def test_a_turn_without_tool_calls_gets_a_nudge_naming_the_terminal_tool(workspace, replay_script):
    replay_script({"explore": [{"text": "The repository is a calculator."}]})
    run = agent_run_start(kind="planning", phase="explore", system_prompt="Explore.", first_message="Go.")

    outcome = agent_turn_run(
        run=run,
        workspace=workspace,
        tools=[
            *READ_ONLY_TOOLS,
            {"name": "submit_exploration", "description": "d", "input_schema": {"type": "object"}},
        ],
        terminal_tools={"submit_exploration"},
        conversation_key="explore",
    )

    run.refresh_from_db()
    assert outcome.kind == "continue"
    assert run_transcript(run=run)[-1] == {
        "role": "user",
        "content": "Continue with the tools; call submit_exploration when you are done.",
    }
    assert_transcript_valid(run_transcript(run=run))


@pytest.mark.django_db
def test_a_terminal_call_beside_other_calls_is_answered_with_them_in_one_message(workspace, replay_script):
    replay_script(
        {
            KEY: [
                {
                    "tools": [
                        {"tool": "read_file", "input": {"path": "README.md"}},
                        {"tool": "finish", "input": {"summary": "done"}},
                        {"tool": "write_file", "input": {"path": "NOTES.md", "content": "notes\n"}},
                    ]
                },
                {"tool": "finish", "input": {"summary": "done, really"}},
            ]
        }
    )
    run = start_run()

    outcome = run_turn(run, workspace)

    run.refresh_from_db()
    assert outcome.kind == "terminal"
    assert outcome.tool_use_id == "toolu_TSK_001_implement_feature_0_1"
    assert [result["tool_use_id"] for result in run.pending_tool_results] == [
        "toolu_TSK_001_implement_feature_0_0",
        "toolu_TSK_001_implement_feature_0_2",
    ]
    assert (workspace.root / "NOTES.md").read_text() == "notes\n"
    with pytest.raises(AgentRunError):
        run_turn(run, workspace)

    agent_run_reply(run_id=run.pk, tool_use_id=outcome.tool_use_id, content="2 tests fail", is_error=True)
    agent_run_reply(run_id=run.pk, tool_use_id=outcome.tool_use_id, content="2 tests fail", is_error=True)

    run.refresh_from_db()
    assert len(run_transcript(run=run)) == 3
    assert run.pending_tool_results == []
    assert [(r["tool_use_id"], r["is_error"]) for r in run_transcript(run=run)[2]["content"]] == [
        ("toolu_TSK_001_implement_feature_0_0", False),
        ("toolu_TSK_001_implement_feature_0_1", True),
        ("toolu_TSK_001_implement_feature_0_2", False),
    ]
    assert run_transcript(run=run)[2]["content"][1]["content"] == "2 tests fail"
    assert_transcript_valid(run_transcript(run=run))
    assert run_turn(run, workspace).kind == "terminal"


@pytest.mark.django_db
def test_bad_tool_input_and_unoffered_tools_are_errors_the_model_reads(workspace, replay_script):
    replay_script(
        {
            KEY: [
                {
                    "content": [
                        {"type": "tool_use", "id": "t1", "name": "read_file", "input": {}},
                        {"type": "tool_use", "id": "t2", "name": "edit_file", "input": {"path": "README.md"}},
                        {"type": "tool_use", "id": "t3", "name": "read_file", "input": {"path": 7}},
                        {
                            "type": "tool_use",
                            "id": "t4",
                            "name": "edit_file",
                            "input": {"path": "README.md", "old": "Adds", "new": "Sums"},
                        },
                    ]
                }
            ]
        }
    )
    run = start_run()

    outcome = agent_turn_run(
        run=run,
        workspace=workspace,
        tools=[*READ_ONLY_TOOLS, {"name": "edit_file", "description": "d", "input_schema": {"type": "object"}}],
        terminal_tools=FINISH,
        conversation_key=KEY,
    )

    run.refresh_from_db()
    assert outcome.kind == "continue"
    assert [(r["content"], r["is_error"]) for r in run_transcript(run=run)[2]["content"]] == [
        ("read_file: missing required argument(s): path", True),
        ("edit_file: missing required argument(s): old, new", True),
        ("read_file: argument 'path' must be a string", True),
        ("edited README.md: replaced 1 occurrence (1 lines → 1 lines)", False),
    ]


@pytest.mark.django_db
def test_a_model_error_propagates_and_changes_nothing(workspace, replay_script):
    replay_script({KEY: []})
    run = start_run()

    with pytest.raises(ReplayExhausted):
        run_turn(run, workspace)

    run.refresh_from_db()
    assert (run.turns, len(run_transcript(run=run)), run.status) == (0, 1, AgentRunStatus.RUNNING)


@pytest.mark.django_db
def test_finishing_a_run_is_recorded_once():
    spec = SpecFactory()
    run = start_run(spec)

    agent_run_finish(run_id=run.pk, status=AgentRunStatus.FINISHED, stop_reason="verified", result={"summary": "ok"})
    agent_run_finish(run_id=run.pk, status=AgentRunStatus.FAILED, stop_reason="late duplicate")

    run.refresh_from_db()
    assert (run.status, run.stop_reason, run.result) == (AgentRunStatus.FINISHED, "verified", {"summary": "ok"})
    assert run.finished_at is not None
    finished = SandboxEvent.objects.filter(spec=spec, type="agent.finished")
    assert [event.payload["status"] for event in finished] == ["finished"]


@pytest.mark.django_db
def test_an_injected_message_joins_the_next_user_message():
    run = start_run()

    agent_run_inject_message(run_id=run.pk, text="Prefer small commits.")

    run.refresh_from_db()
    assert run_transcript(run=run) == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "TSK-001: make add() handle None."},
                {"type": "text", "text": "Prefer small commits."},
            ],
        }
    ]


@pytest.mark.django_db
def test_limit_reasons_name_the_limit_reached():
    run = start_run()
    assert agent_run_limit_reason(run, max_turns=40, max_cost_usd=5, max_seconds=3600) is None

    run.turns = 40
    assert (
        agent_run_limit_reason(run, max_turns=40, max_cost_usd=5, max_seconds=3600) == "turn limit reached (40 turns)"
    )

    run.turns = 3
    run.cost_usd = Decimal("5.20")
    assert agent_run_limit_reason(run, max_turns=40, max_cost_usd=5, max_seconds=3600) == (
        "budget reached ($5.20 spent, limit $5.00)"
    )

    run.cost_usd = Decimal("0.10")
    run.started_at = timezone.now() - timedelta(seconds=3601)
    assert agent_run_limit_reason(run, max_turns=40, max_cost_usd=5, max_seconds=3600) == "time limit reached (3600 s)"


@pytest.mark.django_db
def test_the_transcript_a_worker_keeps_sees_what_others_wrote_since():
    """run_messages reuses what this process read, yet a message rewritten by another process (a
    queued message joining the last user message) and messages it appended are read."""
    from sandboxes.models import AgentMessage
    from sandboxes.services.agent import run_messages

    run = start_run()
    first = run_messages(run)
    assert [m["content"] for m in first] == ["TSK-001: make add() handle None."]
    # Another process rewrites the last message and appends two more.
    AgentMessage.objects.filter(run=run, position=0).update(content="TSK-001: make add() handle None. (and sub)")
    AgentMessage.objects.bulk_create(
        [
            AgentMessage(run=run, position=1, role="assistant", content=[{"type": "text", "text": "On it."}]),
            AgentMessage(run=run, position=2, role="user", content="Go on."),
        ]
    )
    again = run_messages(run)
    assert again == run_transcript(run=run)
    assert [m["role"] for m in again] == ["user", "assistant", "user"]
    assert again[0]["content"].endswith("(and sub)")
    again.append({"role": "assistant", "content": "not stored"})  # a caller's list is its own
    assert run_messages(run) == run_transcript(run=run)


@pytest.mark.django_db
def test_a_calls_estimate_counts_the_transcript_exactly_without_serializing_it_again():
    """The worst-case estimate counts len(json.dumps(transcript)); the lengths of the messages a
    worker cached are reused, and the last message (which may carry injected messages) and any
    message not cached are measured."""
    from sandboxes.models import AgentMessage
    from sandboxes.services.agent import run_messages, transcript_characters

    run = start_run()
    AgentMessage.objects.bulk_create(
        [
            AgentMessage(run=run, position=1, role="assistant", content=[{"type": "text", "text": "Ünïcode ✓"}]),
            AgentMessage(run=run, position=2, role="user", content=[{"type": "tool_result", "content": "x" * 500}]),
        ]
    )
    messages = run_messages(run)
    assert transcript_characters(messages) == len(json.dumps(messages, default=str))
    injected = [*messages[:-1], {"role": "user", "content": "a longer last message, with an injection"}]
    assert transcript_characters(injected) == len(json.dumps(injected, default=str))
    elsewhere = [{"role": "user", "content": "not cached"}, *messages]
    assert transcript_characters(elsewhere) == len(json.dumps(elsewhere, default=str))
    assert transcript_characters([]) == len(json.dumps([]))
