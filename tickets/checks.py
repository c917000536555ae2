"""Reading what a test run printed: pure functions, no database, no sandbox.

A run's counts come from the runner's own summary: pytest (its closing line, or its progress
characters under `-qq`), unittest (every "Ran N tests" with its verdict, so a command that runs two
suites counts both; Django's and other unittest-based runners print the same), or the plain
closing line any runner can print, `N passed, N failed` (optionally `, N skipped`, and one word
with a colon before it). For anything else only the exit code is known: a non-zero exit counts as
one failure, and a zero exit shows no test that ran. A run that executed no test is never a pass,
whatever its exit code: an agent cannot pass the host's checks with an empty suite.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class TestCounts:
    __test__ = False  # not a pytest test class

    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    runner: str = "unknown"

    @property
    def ran(self) -> int:
        return self.passed + self.failed + self.errors

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def add(self, other: TestCounts) -> TestCounts:
        runners = [r for r in (self.runner, other.runner) if r != "unknown"]
        return TestCounts(
            passed=self.passed + other.passed,
            failed=self.failed + other.failed,
            errors=self.errors + other.errors,
            skipped=self.skipped + other.skipped,
            runner="+".join(dict.fromkeys(runners)) or "unknown",
        )


# pytest: "=== 2 failed, 3 passed, 1 warning in 0.12s ===" (the framed form) or, under -q,
# "2 failed, 3 passed in 0.12s"; the time may be followed by "(0:01:05)".
_PYTEST_TIME = r"in [\d.]+s(?: \([\d:.]+\))?"
_PYTEST_FRAMED = re.compile(rf"^=+ (?P<body>[^=\n]*?) {_PYTEST_TIME} =+[ \t]*$", re.M)
_PYTEST_BARE = re.compile(rf"^(?P<body>(?:\d+ [a-z]+(?: [a-z]+)?(?:, )?)+|no tests ran) {_PYTEST_TIME}[ \t]*$", re.M)
_PYTEST_ITEM = re.compile(r"\b(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected|warnings?)\b")
_PYTEST_SESSION = re.compile(r"^=+ test session starts =+[ \t]*$", re.M)
# Under -qq pytest prints only its progress lines: one character per test, then "[ 40%]".
_PYTEST_PROGRESS = re.compile(r"^(?:\S+ )?(?P<marks>[.FEsxXu]+)\s+\[\s*\d+%\][ \t]*$", re.M)
_PYTEST_KEYS = {
    "passed": "passed",
    "xpassed": "passed",
    "failed": "failed",
    "error": "errors",
    "errors": "errors",
    "skipped": "skipped",
    "xfailed": "skipped",
}

# unittest: "Ran 6 tests in 0.001s", a blank line, then "OK", "OK (skipped=1)", "FAILED (failures=1,
# errors=1, skipped=1, expected failures=1, unexpected successes=1)" or, from Python 3.12, "NO TESTS
# RAN". Twisted's trial prints "PASSED (successes=3)".
_UNITTEST_RAN = re.compile(r"^Ran (\d+) tests? in [\d.]+s[ \t]*$", re.M)
_UNITTEST_VERDICT = re.compile(r"^(OK|FAILED|PASSED|NO TESTS RAN)(?: \((?P<detail>[^)\n]*)\))?[ \t]*$", re.M)
_UNITTEST_DETAIL = re.compile(r"([a-z][a-z ]*?)=(\d+)")

_PLAIN = re.compile(
    r"^(?:[A-Za-z]+: )?(?P<passed>\d+) passed, (?P<failed>\d+) failed(?:, (?P<skipped>\d+) skipped)?[ \t]*$", re.M
)


def _pytest_summary(body: str) -> TestCounts | None:
    items = dict.fromkeys(("passed", "failed", "errors", "skipped"), 0)
    found = False
    for number, word in _PYTEST_ITEM.findall(body):
        found = True
        key = _PYTEST_KEYS.get(word)
        if key:
            items[key] += int(number)
    if not found and body.strip() != "no tests ran":
        return None
    return TestCounts(runner="pytest", **items)


def _pytest_counts(output: str) -> TestCounts | None:
    """The closing summary of each pytest session in the output (a command may run several). Within
    a session only its last summary counts, so a nested run's summary printed inside a failure
    report (pytester) is not added."""
    starts = [m.start() for m in _PYTEST_SESSION.finditer(output)] or [0]
    if starts[0] != 0:
        starts.insert(0, 0)
    total: TestCounts | None = None
    for index, start in enumerate(starts):
        segment = output[start : starts[index + 1] if index + 1 < len(starts) else len(output)]
        summaries = [m for m in _PYTEST_FRAMED.finditer(segment)] or [m for m in _PYTEST_BARE.finditer(segment)]
        counts = None
        for match in reversed(summaries):
            counts = _pytest_summary(match.group("body"))
            if counts is not None:
                break
        if counts is not None:
            total = counts if total is None else total.add(counts)
    if total is None:
        return _pytest_progress(output)
    return total


def _pytest_progress(output: str) -> TestCounts | None:
    lines = _PYTEST_PROGRESS.findall(output)
    if not lines:
        return None
    marks = "".join(lines)
    return TestCounts(
        runner="pytest",
        passed=marks.count(".") + marks.count("X"),
        failed=marks.count("F"),
        errors=marks.count("E"),
        skipped=marks.count("s") + marks.count("x"),
    )


def _unittest_counts(output: str) -> TestCounts | None:
    """Every "Ran N tests" with the verdict that follows it. A run without a verdict was
    interrupted: what it ran cannot be shown as passing, so it counts as one error."""
    rans = list(_UNITTEST_RAN.finditer(output))
    if not rans:
        return None
    total = TestCounts(runner="unittest")
    for index, ran in enumerate(rans):
        end = rans[index + 1].start() if index + 1 < len(rans) else len(output)
        verdict = _UNITTEST_VERDICT.search(output, ran.end(), end)
        count = int(ran.group(1))
        numbers = {
            key.strip(): int(value)
            for key, value in _UNITTEST_DETAIL.findall((verdict.group("detail") or "") if verdict else "")
        }
        failed = numbers.get("failures", 0) + numbers.get("unexpected successes", 0)
        errors = numbers.get("errors", 0)
        skipped = numbers.get("skipped", 0) + numbers.get("expected failures", 0)
        if verdict is None and count:
            errors = max(errors, 1)
        if verdict is not None and verdict.group(1) == "NO TESTS RAN":
            count = 0
        total = total.add(
            TestCounts(
                runner="unittest",
                passed=max(count - failed - errors - skipped, 0),
                failed=failed,
                errors=errors,
                skipped=skipped,
            )
        )
    return total


def _plain_counts(output: str) -> TestCounts | None:
    matches = list(_PLAIN.finditer(output))
    if not matches:
        return None
    last = matches[-1]
    return TestCounts(
        runner="plain",
        passed=int(last.group("passed")),
        failed=int(last.group("failed")),
        skipped=int(last.group("skipped") or 0),
    )


def parse_test_counts(output: str) -> TestCounts:
    """Counts from the runners' summaries found in the output (pytest and unittest both, when a
    command runs both); else the plain `N passed, N failed` line; all zero (runner "unknown") when
    nothing is recognised."""
    found = [counts for counts in (_pytest_counts(output), _unittest_counts(output)) if counts is not None]
    if found:
        total = found[0]
        for counts in found[1:]:
            total = total.add(counts)
        return total
    return _plain_counts(output) or TestCounts()


def is_test_path(path: str) -> bool:
    """A file that belongs to the tests rather than to the code they test (test modules, their
    helpers and fixtures, conftest.py)."""
    name = path.rsplit("/", 1)[-1]
    return (
        path.startswith(("tests/", "test/"))
        or "/tests/" in path
        or "/test/" in path
        or name.startswith("test_")
        or name == "conftest.py"
        or name.endswith(("_test.py", "_tests.py"))
        or ".test." in name
        or ".spec." in name
    )


DOCUMENTATION_SUFFIXES = (".md", ".rst", ".txt", ".adoc")


def is_documentation_path(path: str) -> bool:
    """A file no test can exercise (prose): a change to it alone is no change for a test to catch."""
    return path.startswith(("docs/", "doc/")) or path.lower().endswith(DOCUMENTATION_SUFFIXES)


def test_results_of(*, command: str, exit_code: int, output: str, timed_out: bool, duration_s: float) -> dict:
    """The `test_results` artifact of one run of the checks. When the runner is unknown, a
    non-zero exit counts as one failure and a zero exit as no test run (never a pass)."""
    counts = parse_test_counts(output)
    failed = counts.failed
    said_no_test_ran = counts.runner != "unknown" and counts.ran == 0
    if (exit_code != 0 or timed_out) and counts.failed + counts.errors == 0 and not said_no_test_ran:
        failed = 1  # the command failed without a summary saying why: still a failure
    return {
        "command": command,
        "runner": counts.runner,
        "exit_code": exit_code,
        "passed": counts.passed,
        "failed": failed,
        "errors": counts.errors,
        "skipped": counts.skipped,
        "timed_out": timed_out,
        "duration_s": duration_s,
    }


test_results_of.__test__ = False  # not a pytest test function


def checks_pass(test_results: dict[str, Any]) -> bool:
    """The host accepts a run only when it exited 0, in time, with tests that ran and none failing."""
    return (
        test_results["exit_code"] == 0
        and test_results["failed"] == 0
        and test_results.get("errors", 0) == 0
        and test_results["passed"] > 0
        and not test_results.get("timed_out")
    )


def run_outcome(test_results: dict[str, Any]) -> str:
    """One word for a run: passed, failed (a test failed), error (the run broke: an import,
    collection or setup error, or a non-zero exit without a summary), no_tests or timed_out."""
    if test_results.get("timed_out"):
        return "timed_out"
    if checks_pass(test_results):
        return "passed"
    if test_results.get("errors"):
        return "error"
    if test_results["failed"]:
        return "failed" if test_results.get("runner", "unknown") != "unknown" else "error"
    return "no_tests"


def no_test_explanation(test_results: dict[str, Any]) -> str:
    """Why a run that exited 0 is not a pass, for the model."""
    if test_results.get("runner", "unknown") == "unknown":
        return (
            "no test summary Omoi understands was printed (pytest's, unittest's, or a closing line "
            "'N passed, N failed'), so nothing shows that a test ran, which never counts as a pass"
        )
    return "no test ran, which never counts as a pass"
