"""The evidence measured in a real sandbox (LocalWorkspace, behind bubblewrap where it works): the
task's changes read inside the sandbox, the suite under coverage.py, and each test file run before
and after the change. The workspace is left as it was: same HEAD, same index, same files."""

import shutil
import subprocess
from pathlib import Path

import pytest

from sandboxes.providers.local import LocalWorkspace
from tickets.services.execution import evidence

PYTEST = "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 python3 -m pytest -q -p no:cacheprovider"
UNITTEST = "python3 -m unittest discover -s tests -v"


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=T", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def repository(root: Path, files: dict[str, str]) -> str:
    root.mkdir(parents=True)
    git("init", "--quiet", "--initial-branch=main", cwd=root)
    write(root, files)
    git("add", "-A", cwd=root)
    git("commit", "--quiet", "-m", "initial", cwd=root)
    return git("rev-parse", "HEAD", cwd=root).strip()


def write(root: Path, files: dict[str, str]) -> None:
    for path, content in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)


CALC = {
    "calc/__init__.py": "",
    "calc/ops.py": "def add(a, b):\n    return a + b\n",
    "tests/test_ops.py": "from calc.ops import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n",
}
TEST_MUL = "from calc.ops import mul\n\n\ndef test_mul():\n    assert mul(2, 3) == 6\n"
TEST_ADD_AGAIN = "from calc.ops import add\n\n\ndef test_add():\n    assert add(2, 2) == 4\n"
TEST_ZERO = "from calc.ops import mul\n\n\ndef test_zero():\n    assert mul(0, 9) == 0\n"
MUL = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    if a == 0:\n        return 0\n    return a * b\n"


@pytest.fixture
def calc(tmp_path) -> tuple[LocalWorkspace, str]:
    root = tmp_path / "sandboxes" / "1"
    base = repository(root, CALC)
    return LocalWorkspace(root), base


def state(workspace: LocalWorkspace) -> tuple[str, str]:
    return git("rev-parse", "HEAD", cwd=workspace.root), git("status", "--porcelain", cwd=workspace.root)


def test_a_real_test_goes_red_to_green_and_a_vacuous_one_is_found(calc, settings):
    workspace, base = calc
    write(
        workspace.root,
        {
            "calc/ops.py": MUL,
            "tests/test_mul.py": TEST_MUL,
            "tests/test_add_again.py": TEST_ADD_AGAIN,
        },
    )
    before_state = state(workspace)

    changes = evidence.task_changes(workspace, base=base)
    assert changes.files == {"calc/ops.py": "M", "tests/test_add_again.py": "A", "tests/test_mul.py": "A"}
    assert changes.source_lines == {"calc/ops.py": [3, 4, 5, 6, 7, 8]}

    suite = evidence.suite_run(workspace, command=PYTEST, changes=changes)
    assert (suite.test_results["passed"], suite.test_results["failed"]) == (3, 0)
    coverage = suite.coverage
    assert coverage["status"] == "measured" and coverage["tool"].startswith("coverage.py")
    [ops] = coverage["files"]
    # def mul, the if, its return 0 (a == 0 never happens) and the last return: 3 of 4 ran.
    assert (ops["path"], ops["changed"], ops["covered"], ops["never_run"]) == ("calc/ops.py", 4, 3, "7")

    red_green = evidence.red_to_green(workspace, command=PYTEST, changes=changes, fork_point=lambda: None)
    files = {item["path"]: item for item in red_green["files"]}
    mul = files["tests/test_mul.py"]
    assert mul["verdict"] == "red_to_green"
    assert mul["before"]["outcome"] == "error" and "cannot import name 'mul'" in mul["before"]["tail"]
    assert (mul["after"]["outcome"], mul["after"]["passed"]) == ("passed", 1)
    assert mul["command"] == f"{PYTEST} -- tests/test_mul.py"
    again = files["tests/test_add_again.py"]
    assert again["verdict"] == "passed_before" and again["before"]["passed"] == 1
    assert red_green["red_to_green"] == 1 and red_green["passed_before"] == ["tests/test_add_again.py"]
    assert red_green["before_commit"] == base

    # Nothing of the measurement stays behind in the agent's tree or the sandbox's home.
    assert state(workspace) == before_state
    assert not (workspace.home / ".omoi-before").exists()


def test_a_test_only_task_is_held_against_the_tickets_change(tmp_path, settings):
    """A test-writing task after the implementation: its test files run on the ticket's fork point
    (before the implementation), with the ticket's test files applied."""
    root = tmp_path / "sandboxes" / "2"
    fork = repository(root, CALC)
    write(root, {"calc/ops.py": MUL, "tests/test_mul.py": TEST_MUL})
    git("add", "-A", cwd=root)
    git("commit", "--quiet", "-m", "implementation", cwd=root)
    base = git("rev-parse", "HEAD", cwd=root).strip()
    write(root, {"tests/test_mul_zero.py": TEST_ZERO})
    workspace = LocalWorkspace(root)

    changes = evidence.task_changes(workspace, base=base)
    suite = evidence.suite_run(workspace, command=PYTEST, changes=changes)
    assert suite.coverage["status"] == "not_applicable"
    red_green = evidence.red_to_green(workspace, command=PYTEST, changes=changes, fork_point=lambda: fork)
    assert red_green["before_commit"] == fork and "fork point" in red_green["before_label"]
    assert red_green["applied"] == ["tests/test_mul.py", "tests/test_mul_zero.py"]
    [item] = red_green["files"]
    assert (item["path"], item["verdict"]) == ("tests/test_mul_zero.py", "red_to_green")

    # With no ticket change before it there is nothing to hold the tests against.
    nothing = evidence.red_to_green(workspace, command=PYTEST, changes=changes, fork_point=lambda: base)
    assert nothing["status"] == "not_applicable" and nothing["files"] == []


def test_unittest_by_file_on_the_sample(tmp_path, settings):
    from specs.cli.demo import SAMPLE_REPOSITORY

    root = tmp_path / "sandboxes" / "3"
    shutil.copytree(SAMPLE_REPOSITORY, root)
    git("init", "--quiet", "--initial-branch=main", cwd=root)
    git("add", "-A", cwd=root)
    git("commit", "--quiet", "-m", "sample", cwd=root)
    base = git("rev-parse", "HEAD", cwd=root).strip()
    write(
        root,
        {
            "textkit/stats.py": "def word_count(text: str) -> int:\n    return len(text.split())\n",
            "tests/test_stats.py": "import unittest\n\nfrom textkit.stats import word_count\n\n\n"
            "class T(unittest.TestCase):\n    def test_count(self):\n        self.assertEqual(word_count('a b'), 2)\n",
        },
    )
    workspace = LocalWorkspace(root)
    changes = evidence.task_changes(workspace, base=base)
    suite = evidence.suite_run(workspace, command=UNITTEST, changes=changes)
    assert suite.test_results["runner"] == "unittest" and suite.test_results["failed"] == 0
    assert suite.coverage["files"][0]["percent"] == 100.0
    red_green = evidence.red_to_green(workspace, command=UNITTEST, changes=changes, fork_point=lambda: None)
    [item] = red_green["files"]
    assert item["command"] == "python3 -m unittest discover -s tests -t tests -p test_stats.py -v"
    assert item["verdict"] == "red_to_green"
    assert item["before"]["errors"] == 1 and "No module named 'textkit.stats'" in item["before"]["tail"]
    assert item["after"]["passed"] == 1


def test_what_cannot_be_measured_says_so(calc, settings):
    workspace, base = calc
    write(workspace.root, {"calc/ops.py": MUL, "tests/test_mul.py": TEST_MUL})
    changes = evidence.task_changes(workspace, base=base)

    compound = f"{PYTEST} && echo done"
    suite = evidence.suite_run(workspace, command=compound, changes=changes)
    assert suite.test_results["passed"] == 2
    assert suite.coverage["status"] == "not_measured" and "list of commands" in suite.coverage["reason"]
    red_green = evidence.red_to_green(workspace, command=compound, changes=changes, fork_point=lambda: None)
    assert red_green["status"] == "not_measured" and "list of commands" in red_green["reason"]

    system_python = "/usr/bin/python3 -m unittest discover -s tests"
    if Path("/usr/bin/python3").exists():
        suite = evidence.suite_run(workspace, command=system_python, changes=changes)
        assert suite.coverage["status"] == "not_measured"
        assert "cannot be imported by `/usr/bin/python3`" in suite.coverage["reason"]

    settings.OMOI_COVERAGE = False
    settings.OMOI_RED_GREEN = False
    suite = evidence.suite_run(workspace, command=PYTEST, changes=changes)
    assert suite.coverage["reason"] == "coverage is switched off (OMOI_COVERAGE)"
    off = evidence.red_to_green(workspace, command=PYTEST, changes=changes, fork_point=lambda: None)
    assert off["status"] == "not_measured" and "OMOI_RED_GREEN" in off["reason"]


def test_a_change_to_prose_alone_is_not_a_change_for_tests_to_catch(calc, settings):
    """A task that only documents and adds a regression test for what exists: nothing to go red."""
    workspace, base = calc
    write(workspace.root, {"README.md": "# calc\n", "tests/test_add_more.py": TEST_ADD_AGAIN})
    changes = evidence.task_changes(workspace, base=base)
    assert changes.code_files == []
    red_green = evidence.red_to_green(workspace, command=PYTEST, changes=changes, fork_point=lambda: base)
    assert red_green["status"] == "not_applicable" and red_green["passed_before"] == []
