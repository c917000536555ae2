"""Regenerate the captured outputs of real test runners that tests/tickets/test_checks.py reads.

    .venv/bin/python tests/tickets/runner_outputs/regenerate.py

Each scenario is a small suite written to a temporary directory and run with the runner named; the
file `<name>.txt` holds the exit code on its first line (`# exit N`) and then what the host's
verification sees: stdout, a newline, stderr (tickets.services.execution.verification.run_checks).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

HERE = Path(__file__).parent
PY = sys.executable

MIXED_UNITTEST = """
import unittest

class Mixed(unittest.TestCase):
    def test_pass(self):
        self.assertEqual(sum([1, 2]), 3)

    def test_fail(self):
        self.assertEqual(1, 2)

    def test_error(self):
        raise RuntimeError("boom")

    @unittest.skip("later")
    def test_skip(self):
        self.fail("a skipped test never runs")

    @unittest.expectedFailure
    def test_xfail(self):
        self.assertEqual(1, 2)

    @unittest.expectedFailure
    def test_xpass(self):
        self.assertEqual(1, 1)
"""

PASSING = """
import unittest

class Passing(unittest.TestCase):
    def test_one(self):
        self.assertEqual(1 + 1, 2)

    def test_two(self):
        self.assertIn("a", "abc")

    @unittest.skip("not today")
    def test_skipped(self):
        self.fail("a skipped test never runs")
"""

PYTEST_MIXED = """
import warnings
import pytest

@pytest.fixture
def broken():
    raise RuntimeError("fixture failed")

def test_pass():
    assert sum([1, 2]) == 3

def test_fail():
    assert 1 == 2

def test_setup_error(broken):
    assert broken is not None

@pytest.mark.skip(reason="later")
def test_skip():
    assert False, "a skipped test never runs"

@pytest.mark.xfail
def test_xfail():
    assert False

@pytest.mark.xfail
def test_xpass():
    assert 1 + 1 == 2

@pytest.mark.xfail(strict=True)
def test_xpass_strict():
    assert 2 * 2 == 4

def test_warns():
    warnings.warn("careful", UserWarning)
"""

PYTEST_SUBTESTS = """
def test_with_subtests(subtests):
    for number in range(3):
        with subtests.test(number=number):
            assert number < 5
"""

IMPORT_ERROR = """
import unittest
from textkit.does_not_exist import nothing

class Never(unittest.TestCase):
    def test_never(self):
        self.assertTrue(nothing)
"""

CRASH = """
import os
import unittest

class Crash(unittest.TestCase):
    def test_crash(self):
        os._exit(3)
"""


def scenario(name: str, files: dict[str, str], command: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for path, content in files.items():
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(textwrap.dedent(content))
        done = subprocess.run(
            command, cwd=root, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"}
        )
    output = "\n".join(part for part in (done.stdout, done.stderr) if part)
    (HERE / f"{name}.txt").write_text(f"# exit {done.returncode}\n{output}")
    print(f"{name}: exit {done.returncode}")


def main() -> None:
    unittest_cmd = [PY, "-m", "unittest", "discover", "-s", "tests"]
    pytest_cmd = [PY, "-m", "pytest", "-p", "no:cacheprovider", "tests"]
    scenario("unittest_passing_verbose", {"tests/__init__.py": "", "tests/test_a.py": PASSING}, [*unittest_cmd, "-v"])
    scenario("unittest_passing_quiet", {"tests/__init__.py": "", "tests/test_a.py": PASSING}, unittest_cmd)
    scenario("unittest_mixed", {"tests/__init__.py": "", "tests/test_a.py": MIXED_UNITTEST}, [*unittest_cmd, "-v"])
    scenario("unittest_import_error", {"tests/__init__.py": "", "tests/test_a.py": IMPORT_ERROR}, unittest_cmd)
    scenario("unittest_no_tests", {"tests/__init__.py": ""}, unittest_cmd)
    scenario("unittest_crash", {"tests/__init__.py": "", "tests/test_a.py": CRASH}, [*unittest_cmd, "-v"])
    scenario(
        "unittest_two_suites",
        {"a/__init__.py": "", "a/test_a.py": PASSING, "b/__init__.py": "", "b/test_b.py": MIXED_UNITTEST},
        ["bash", "-c", f"{PY} -m unittest discover -s a; {PY} -m unittest discover -s b"],
    )
    scenario("pytest_passing", {"tests/test_a.py": PASSING}, pytest_cmd)
    scenario("pytest_passing_quiet", {"tests/test_a.py": PASSING}, [*pytest_cmd, "-q"])
    scenario("pytest_passing_very_quiet", {"tests/test_a.py": PASSING}, [*pytest_cmd, "-qq"])
    scenario("pytest_mixed", {"tests/test_a.py": PYTEST_MIXED}, [*pytest_cmd, "-rA"])
    scenario("pytest_mixed_verbose", {"tests/test_a.py": PYTEST_MIXED}, [*pytest_cmd, "-v"])
    scenario("pytest_unittest_mixed", {"tests/test_a.py": MIXED_UNITTEST}, [*pytest_cmd, "-q"])
    scenario("pytest_collection_error", {"tests/test_a.py": IMPORT_ERROR, "tests/test_b.py": PASSING}, pytest_cmd)
    scenario("pytest_no_tests", {"tests/test_a.py": "X = 1\n"}, pytest_cmd)
    scenario("pytest_no_tests_quiet", {"tests/test_a.py": "X = 1\n"}, [*pytest_cmd, "-q"])
    scenario("pytest_deselected", {"tests/test_a.py": PASSING}, [*pytest_cmd, "-k", "nothing_matches"])
    scenario("pytest_subtests", {"tests/test_a.py": PYTEST_SUBTESTS}, [*pytest_cmd, "-q"])
    scenario("pytest_crash", {"tests/test_a.py": CRASH}, pytest_cmd)


if __name__ == "__main__":
    main()
