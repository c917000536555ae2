"""Reading what a test run printed: pure functions, no database, no sandbox.

A run's counts come from the runner's own summary (pytest, unittest); for anything else only the
exit code is known. A run that executed no test is never a pass, whatever its exit code.
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


_PYTEST_SUMMARY = re.compile(r"^=+ (?P<body>.*?) in [\d.]+s(?: \([^)]*\))? =+$", re.M)
_PYTEST_QUIET = re.compile(r"^(?P<body>(?:\d+ \w+(?:, )?)+) in [\d.]+s(?: \([^)]*\))?$", re.M)
_PYTEST_ITEM = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected|warnings?)")
_UNITTEST_RAN = re.compile(r"^Ran (\d+) tests? in [\d.]+s", re.M)
_UNITTEST_RESULT = re.compile(r"^(OK|FAILED)(?: \((?P<detail>[^)]*)\))?\s*$", re.M)


def _pytest_counts(output: str) -> TestCounts | None:
    matches = list(_PYTEST_SUMMARY.finditer(output)) or list(_PYTEST_QUIET.finditer(output))
    if not matches:
        return None
    body = matches[-1].group("body")
    items = dict.fromkeys(("passed", "failed", "errors", "skipped"), 0)
    found = False
    for number, word in _PYTEST_ITEM.findall(body):
        found = True
        key = {"error": "errors", "errors": "errors", "xfailed": "skipped", "xpassed": "passed"}.get(word, word)
        if key in items:
            items[key] += int(number)
    if not found and "no tests ran" not in body:
        return None
    return TestCounts(runner="pytest", **items)


def _unittest_counts(output: str) -> TestCounts | None:
    ran = _UNITTEST_RAN.findall(output)
    results = list(_UNITTEST_RESULT.finditer(output))
    if not ran:
        return None
    total = int(ran[-1])
    detail = results[-1].group("detail") if results else ""
    numbers = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", detail or "")}
    failed = numbers.get("failures", 0) + numbers.get("unexpected_successes", 0)
    errors = numbers.get("errors", 0)
    skipped = numbers.get("skipped", 0) + numbers.get("expected_failures", 0)
    if not results:  # interrupted before its verdict: count what cannot be shown as passing
        errors = max(errors, 1) if total else errors
    return TestCounts(
        runner="unittest",
        passed=max(total - failed - errors - skipped, 0),
        failed=failed,
        errors=errors,
        skipped=skipped,
    )


def parse_test_counts(output: str) -> TestCounts:
    """Counts from pytest's or unittest's summary; all zero (runner "unknown") when neither is found."""
    return _pytest_counts(output) or _unittest_counts(output) or TestCounts()


def is_test_path(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return (
        path.startswith(("tests/", "test/"))
        or "/tests/" in path
        or "/test/" in path
        or name.startswith("test_")
        or name.endswith(("_test.py", "_tests.py"))
        or ".test." in name
        or ".spec." in name
    )


def test_results_of(*, command: str, exit_code: int, output: str, timed_out: bool, duration_s: float) -> dict:
    """The `test_results` artifact of one run of the checks. When the runner is unknown, a
    non-zero exit counts as one failure and a zero exit as no test run (never a pass)."""
    counts = parse_test_counts(output)
    failed = counts.failed
    if exit_code != 0 and counts.failed + counts.errors == 0:
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


def checks_pass(test_results: dict[str, Any]) -> bool:
    """The host accepts a run only when it exited 0, in time, with tests that ran and none failing."""
    return (
        test_results["exit_code"] == 0
        and test_results["failed"] == 0
        and test_results.get("errors", 0) == 0
        and test_results["passed"] > 0
        and not test_results.get("timed_out")
    )
