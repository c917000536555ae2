"""Evidence that means something, end to end in the test process (tests/support/steps.py drains the
steps as a worker would): a replayed agent whose test already passed before its change is sent back
at its first finish; one whose test really goes from failing to passing completes at once, and its
evidence shows both runs; uncovered changed lines send the task back only when coverage is required.
The sandbox, git, the test runs and coverage.py are real."""

from __future__ import annotations

import json

import pytest

from sandboxes.models import AgentRun, SandboxEvent
from sandboxes.selectors import run_transcript
from specs.services.bridge import spec_execute
from tests.e2e.conftest import planned_spec, write_script
from tests.factories import ProjectFactory
from tests.support.generated import TEST_COMMAND, independent_tasks_script
from tests.support.steps import drain
from tickets.models import Phase, Task, Ticket

MODULE = '"""Feature 1."""\n\n\ndef feature_1() -> int:\n    """Return 1."""\n    return 1\n'
REAL_TEST = (
    "import unittest\n\nfrom textkit.feature_1 import feature_1\n\n\n"
    "class Feature1Tests(unittest.TestCase):\n    def test_returns_1(self):\n        self.assertEqual(feature_1(), 1)\n"
)
# Named for the feature, but it only exercises what was there before: it passes without the change.
VACUOUS_TEST = (
    "import unittest\n\nfrom textkit.core import slugify\n\n\n"
    "class Feature1Tests(unittest.TestCase):\n    def test_feature(self):\n"
    "        self.assertEqual(slugify('A b'), 'a-b')\n"
)
BRANCHY_MODULE = (
    '"""Feature 1."""\n\n\ndef feature_1(strict: bool = False) -> int:\n'
    '    """Return 1."""\n    if strict:\n        raise ValueError("strict")\n    return 1\n'
)
STRICT_TEST = (
    "import unittest\n\nfrom textkit.feature_1 import feature_1\n\n\n"
    "class StrictTests(unittest.TestCase):\n    def test_strict(self):\n"
    "        with self.assertRaises(ValueError):\n            feature_1(strict=True)\n"
)


def write(path: str, content: str) -> dict:
    return {"tool": "write_file", "input": {"path": path, "content": content}}


FINISH = {"tool": "finish", "input": {"summary": "Added feature_1 with its test."}}


def implement(test: str, module: str = MODULE) -> dict:
    return {"tools": [write("textkit/feature_1.py", module), write("tests/test_feature_1.py", test)]}


@pytest.fixture
def run_spec(db, user, sample_repository, execution_env, tmp_path, settings):
    """run_spec(implementation turns) → the spec's one ticket after every step ran in-process."""
    settings.OMOI_LEASE_S = 600  # the steps run in this test's transaction: no heartbeat is needed
    settings.OMOI_LLM_PROVIDER = "replay"

    def run(turns: list[dict]) -> Ticket:
        script = independent_tasks_script(1)
        script["conversations"]["TSK-001:implement_feature"] = turns
        settings.OMOI_REPLAY_SCRIPT = write_script(tmp_path, script)
        project = ProjectFactory(owner=user, repository=str(sample_repository), test_command=TEST_COMMAND)
        spec = planned_spec(project=project, user=user, script=script)
        spec_execute(spec_id=spec.pk, actor="test")
        drain(kinds=("ticket",))
        return Ticket.objects.get(spec=spec)

    return run


def implementation(ticket: Ticket) -> Task:
    return Task.objects.get(ticket=ticket, task_type="implement_feature")


def verification(task: Task) -> dict:
    return next(a["content"] for a in task.result["artifacts"] if a["type"] == "test_results")


def test_a_real_failing_then_passing_test_completes_at_the_first_finish(run_spec):
    ticket = run_spec([implement(REAL_TEST), FINISH])

    assert ticket.phase == Phase.DONE
    task = implementation(ticket)
    assert task.status == "completed"
    assert AgentRun.objects.get(task=task).verifications == 0
    evidence = verification(task)
    red_green = evidence["red_to_green"]
    assert (red_green["status"], red_green["red_to_green"], red_green["passed_before"]) == ("measured", 1, [])
    [item] = red_green["files"]
    assert item["path"] == "tests/test_feature_1.py" and item["verdict"] == "red_to_green"
    assert item["command"] == "python3 -m unittest discover -s tests -t tests -p test_feature_1.py"
    # Both runs are in the evidence: the import fails before the change, the test passes after it.
    assert item["before"]["outcome"] == "error" and item["before"]["errors"] == 1
    assert "No module named 'textkit.feature_1'" in item["before"]["tail"]
    assert (item["after"]["outcome"], item["after"]["passed"]) == ("passed", 1)
    assert red_green["before_commit"] == evidence["base"] and evidence["commit"] == task.result["commits"][0]
    [covered] = evidence["coverage"]["files"]
    assert (covered["path"], covered["changed"], covered["covered"], covered["never_run"]) == (
        "textkit/feature_1.py",
        2,  # the def and the return: docstrings are not statements coverage.py counts
        2,
        "",
    )
    # The test-writing task changed nothing: it has no red-to-green of its own, and says so.
    writing = Task.objects.get(ticket=ticket, task_type="write_tests")
    assert verification(writing)["red_to_green"]["status"] == "not_applicable"


def test_a_test_that_passed_before_the_change_does_not_complete_the_task(run_spec):
    ticket = run_spec(
        [
            implement(VACUOUS_TEST),
            FINISH,
            write("tests/test_feature_1.py", REAL_TEST),
            FINISH,
        ]
    )

    task = implementation(ticket)
    run = AgentRun.objects.get(task=task)
    assert run.verifications == 1  # the first finish was refused
    failed = SandboxEvent.objects.get(task=task, type="task.verification_failed")
    assert failed.payload["reason"] == "evidence" and failed.payload["attempt"] == 1
    [finding] = failed.payload["findings"]
    assert finding.startswith("tests/test_feature_1.py passed against the code before the change")
    # The model was told, in the reply to its finish.
    replies = [
        block
        for message in run_transcript(run=run)
        if message["role"] == "user" and isinstance(message["content"], list)
        for block in message["content"]
        if block.get("type") == "tool_result"
    ]
    refused = next(r for r in replies if "does not test the change" in str(r.get("content")))
    assert refused.get("is_error") is True and "verification(s) left" in str(refused["content"])
    accepted = replies[-1]
    assert not accepted.get("is_error") and "Red to green: tests/test_feature_1.py." in str(accepted["content"])
    # The second finish, with a real test, completed the task with red-to-green evidence.
    assert task.status == "completed" and ticket.phase == Phase.DONE
    [item] = verification(task)["red_to_green"]["files"]
    assert item["verdict"] == "red_to_green"


def test_the_verification_budget_holds_for_evidence_too(run_spec, settings):
    settings.OMOI_TASK_MAX_VERIFICATIONS = 2
    ticket = run_spec([implement(VACUOUS_TEST), FINISH, FINISH])

    assert ticket.phase == Phase.BLOCKED and ticket.blocked_reason == "failing_checks"
    assert "passed against the code before the change" in ticket.blocked_message
    task = implementation(ticket)
    assert task.status == "failed" and "evidence did not hold at the last of 2 verifications" in task.error
    assert not task.result.get("commits")


def test_uncovered_changed_lines_send_the_task_back_only_when_coverage_is_required(run_spec, settings):
    turns = [
        implement(REAL_TEST, BRANCHY_MODULE),
        FINISH,
        write("tests/test_feature_1_strict.py", STRICT_TEST),
        FINISH,
    ]
    shown_only = run_spec(turns[:2])
    [lines] = verification(implementation(shown_only))["coverage"]["files"]
    assert (lines["changed"], lines["covered"], lines["never_run"]) == (4, 3, "7")
    assert implementation(shown_only).status == "completed"

    settings.OMOI_COVERAGE_REQUIRED = True
    required = run_spec(turns)
    task = implementation(required)
    failed = SandboxEvent.objects.get(task=task, type="task.verification_failed")
    assert failed.payload["findings"] == [
        "textkit/feature_1.py: changed lines 7 never ran under the tests (3 of 4 changed lines ran). "
        "Test them, or remove them."
    ]
    assert task.status == "completed"
    [lines] = verification(task)["coverage"]["files"]
    assert (lines["covered"], lines["never_run"]) == (4, "")


def test_hostile_test_output_is_stored_as_the_database_accepts_it(run_spec):
    """A test module that floods its output and ends it with NUL bytes: the evidence is kept (tails
    cut, NUL replaced), and the task completes."""
    noisy = (
        "import atexit, sys\n"
        'sys.stdout.write("flood\\n" * 50000)\n'
        'atexit.register(lambda: sys.stderr.write("\\x00 noise\\n" * 20))\n'
    ) + REAL_TEST
    ticket = run_spec([implement(noisy), FINISH])

    task = implementation(ticket)
    assert task.status == "completed"
    [item] = verification(task)["red_to_green"]["files"]
    assert item["verdict"] == "red_to_green"
    assert "\ufffd noise" in item["after"]["tail"] and len(item["after"]["tail"]) <= 600
    assert "\\u0000" not in json.dumps(task.result)
