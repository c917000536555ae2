"""Reading test runners' output: counts from real pytest and unittest runs (captured by
runner_outputs/regenerate.py, plus one live run of each), the plain closing line, the exit code of
anything else, and the rule that a run with no test is never a pass."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tickets.checks import checks_pass, is_test_path, parse_test_counts, run_outcome, test_results_of

OUTPUTS = Path(__file__).parent / "runner_outputs"


def captured(name: str) -> tuple[int, str]:
    first, _, output = (OUTPUTS / f"{name}.txt").read_text().partition("\n")
    return int(first.removeprefix("# exit ")), output


def results(name: str) -> dict:
    exit_code, output = captured(name)
    return test_results_of(command="x", exit_code=exit_code, output=output, timed_out=False, duration_s=0.1)


# (scenario, runner, passed, failed, errors, skipped, a pass?)
REAL_RUNS = [
    ("unittest_passing_verbose", "unittest", 2, 0, 0, 1, True),
    ("unittest_passing_quiet", "unittest", 2, 0, 0, 1, True),
    # failures=1 + unexpected successes=1 fail; "expected failures" (with a space) are skipped, not failures
    ("unittest_mixed", "unittest", 1, 2, 1, 2, False),
    ("unittest_import_error", "unittest", 0, 0, 1, 0, False),
    ("unittest_no_tests", "unittest", 0, 0, 0, 0, False),  # "Ran 0 tests ... OK", exit 0: not a pass
    ("unittest_crash", "unknown", 0, 1, 0, 0, False),  # os._exit in a test: no summary, exit 3
    ("unittest_two_suites", "unittest", 3, 2, 1, 3, False),  # both suites of one command count
    ("pytest_passing", "pytest", 2, 0, 0, 1, True),
    ("pytest_passing_quiet", "pytest", 2, 0, 0, 1, True),
    ("pytest_passing_very_quiet", "pytest", 2, 0, 0, 1, True),  # -qq: from the progress characters
    ("pytest_mixed", "pytest", 3, 2, 1, 2, False),  # xpassed counts as passed, xfailed as skipped
    ("pytest_mixed_verbose", "pytest", 3, 2, 1, 2, False),
    ("pytest_unittest_mixed", "pytest", 1, 3, 0, 2, False),
    ("pytest_collection_error", "pytest", 0, 0, 1, 0, False),
    ("pytest_no_tests", "pytest", 0, 0, 0, 0, False),
    ("pytest_no_tests_quiet", "pytest", 0, 0, 0, 0, False),
    ("pytest_deselected", "pytest", 0, 0, 0, 0, False),
    ("pytest_subtests", "pytest", 1, 0, 0, 0, True),  # "1 passed, 3 subtests passed": one test
    ("pytest_crash", "unknown", 0, 1, 0, 0, False),
]


@pytest.mark.parametrize(("name", "runner", "passed", "failed", "errors", "skipped", "is_pass"), REAL_RUNS)
def test_counts_of_real_runs(name, runner, passed, failed, errors, skipped, is_pass):
    found = results(name)
    assert (found["runner"], found["passed"], found["failed"], found["errors"], found["skipped"]) == (
        runner,
        passed,
        failed,
        errors,
        skipped,
    )
    assert checks_pass(found) is is_pass


def test_outcomes_name_what_happened():
    assert run_outcome(results("pytest_passing")) == "passed"
    assert run_outcome(results("pytest_mixed")) == "error"  # a setup error outranks failures
    assert run_outcome(results("unittest_import_error")) == "error"
    assert run_outcome(results("pytest_unittest_mixed")) == "failed"
    assert run_outcome(results("pytest_no_tests")) == "no_tests"
    assert run_outcome(results("unittest_no_tests")) == "no_tests"
    assert run_outcome(results("pytest_crash")) == "error"
    timed_out = test_results_of(command="x", exit_code=0, output="5 passed in 1.0s", timed_out=True, duration_s=9)
    assert run_outcome(timed_out) == "timed_out" and not checks_pass(timed_out)


def test_a_zero_exit_without_any_summary_is_not_a_pass():
    found = test_results_of(command="make check", exit_code=0, output="all good!\n", timed_out=False, duration_s=1)
    assert (found["runner"], found["passed"], found["failed"]) == ("unknown", 0, 0)
    assert not checks_pass(found)


def test_a_non_zero_exit_without_a_summary_is_one_failure():
    found = test_results_of(command="go test ./...", exit_code=2, output="FAIL\tpkg\n", timed_out=False, duration_s=1)
    assert (found["runner"], found["failed"]) == ("unknown", 1)


def test_the_plain_closing_line_counts_for_any_runner():
    counts = parse_test_counts("running...\nresults: 7 passed, 1 failed, 2 skipped\n")
    assert (counts.runner, counts.passed, counts.failed, counts.skipped) == ("plain", 7, 1, 2)
    output = "12 passed, 0 failed\n"
    found = test_results_of(command="./run-tests", exit_code=0, output=output, timed_out=False, duration_s=1)
    assert checks_pass(found)
    # Inside a sentence it is not the closing line.
    assert parse_test_counts("we expect 3 passed, 0 failed soon, said the log").runner == "unknown"


def test_a_lying_exit_code_does_not_hide_failures():
    exit_code, output = captured("unittest_mixed")
    found = test_results_of(command="x", exit_code=0, output=output, timed_out=False, duration_s=1)
    assert found["failed"] == 2 and not checks_pass(found)


def test_a_nested_pytest_summary_inside_a_failure_report_is_not_added():
    output = textwrap.dedent(
        """\
        ============================= test session starts ==============================
        collected 2 items

        tests/test_plugin.py .F                                                  [100%]

        =================================== FAILURES ===================================
        ----------------------------- Captured stdout call -----------------------------
        ============================= test session starts ==============================
        collected 40 items
        ============================== 40 passed in 0.50s ==============================
        =========================== short test summary info ============================
        FAILED tests/test_plugin.py::test_inner - assert 1 == 2
        ========================= 1 failed, 1 passed in 0.90s ==========================
        """
    )
    counts = parse_test_counts(output)
    assert (counts.passed, counts.failed) == (1, 1)


def test_a_time_with_minutes_is_read():
    counts = parse_test_counts("==== 1200 passed, 3 skipped in 65.01s (0:01:05) ====\n")
    assert (counts.passed, counts.skipped) == (1200, 3)


def test_live_runs_of_this_machines_runners(tmp_path):
    """The captured outputs still match what the installed pytest and unittest print."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_live.py").write_text(
        "import unittest\n\nclass Live(unittest.TestCase):\n"
        "    def test_ok(self):\n        self.assertEqual(sum([1, 2]), 3)\n"
        "    def test_bad(self):\n        self.assertTrue(False)\n"
    )
    for command in (
        [sys.executable, "-m", "unittest", "discover", "-s", "tests"],
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:django", "tests"],
    ):
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
        found = test_results_of(
            command=" ".join(command),
            exit_code=done.returncode,
            output="\n".join((done.stdout, done.stderr)),
            timed_out=False,
            duration_s=1,
        )
        assert (found["passed"], found["failed"], found["errors"]) == (1, 1, 0), done.stdout + done.stderr


@pytest.mark.parametrize(
    ("path", "is_test"),
    [
        ("tests/test_stats.py", True),
        ("pkg/tests/helpers.py", True),
        ("test_top.py", True),
        ("conftest.py", True),
        ("src/app/module_test.py", True),
        ("web/app.spec.ts", True),
        ("textkit/stats.py", False),
        ("contest.py", False),
        ("latest/thing.py", False),
    ],
)
def test_test_paths(path, is_test):
    assert is_test_path(path) is is_test
