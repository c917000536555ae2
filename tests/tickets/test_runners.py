"""Deriving commands from a project's test command: one test file with the project's runner, and the
suite under coverage.py; anything else is refused with a reason (the evidence says "not measured")."""

import shlex
import subprocess
import sys

import pytest

from tickets.runners import Unsupported, coverage_plan, file_command, is_test_module, parse_test_command


@pytest.mark.parametrize(
    ("command", "path", "expected"),
    [
        ("pytest", "tests/test_stats.py", "pytest -- tests/test_stats.py"),
        ("pytest -q tests", "tests/test_stats.py", "pytest -q -- tests/test_stats.py"),
        (
            "python -m pytest -q -k 'not slow' -p no:cacheprovider tests/ src",
            "tests/unit/test_a.py",
            "python -m pytest -q -k 'not slow' -p no:cacheprovider -- tests/unit/test_a.py",
        ),
        ("python3 -m pytest --tb=short -x tests", "pkg/a_test.py", "python3 -m pytest --tb=short -x -- pkg/a_test.py"),
        ("python3 -m pytest --lf -n 4 --maxfail 2 t", "t/test_a.py", "python3 -m pytest --maxfail 2 -- t/test_a.py"),
        ("CI=1 python3 -W error -m pytest tests", "t/test_a.py", "CI=1 python3 -W error -m pytest -- t/test_a.py"),
        ("pytest tests/test_x.py::test_one", "tests/test_y.py", "pytest -- tests/test_y.py"),
        (
            "python3 -m unittest discover -s tests -v",
            "tests/test_stats.py",
            "python3 -m unittest discover -s tests -t tests -p test_stats.py -v",
        ),
        (
            "python3 -m unittest discover -s tests -v",
            "tests/unit/test_deep.py",
            "python3 -m unittest discover -s tests/unit -t tests -p test_deep.py -v",
        ),
        ("python -m unittest", "tests/test_a.py", "python -m unittest discover -s tests -t . -p test_a.py"),
        ("python -m unittest -v", "test_top.py", "python -m unittest discover -s . -t . -p test_top.py -v"),
        (
            "python -m unittest discover tests 'check_*.py'",
            "tests/check_a.py",
            "python -m unittest discover -s tests -t tests -p check_a.py",
        ),
        ("python -m unittest tests.test_a tests.test_b -v", "tests/test_b.py", "python -m unittest -v tests.test_b"),
    ],
)
def test_one_file_with_the_projects_runner(command, path, expected):
    assert file_command(command, path) == expected


@pytest.mark.parametrize(
    ("command", "path", "reason"),
    [
        ("make test", "tests/test_a.py", "runs `make`"),
        ("npm test", "web/app.test.js", "runs `npm`"),
        ("pytest tests && ruff check .", "tests/test_a.py", "pipeline or a list"),
        ("pytest $TESTS", "tests/test_a.py", "shell expansions"),
        ("pytest tests/*.py", "tests/test_a.py", "globs"),
        ("python manage.py test", "tests/test_a.py", "script or an option"),
        ("python -m tox", "tests/test_a.py", "module `tox`"),
        ("pytest", "tests/helpers.py", "not a test module"),
        ("python3 -m unittest discover -s tests", "other/test_a.py", "outside the directory"),
        ("python3 -m unittest discover -s tests", "tests/helpers_test.py", "pattern"),
        ("python -m unittest tests.test_a", "tests/test_b.py", "not one of the modules"),
        ("python -m unittest discover -s ../elsewhere", "tests/test_b.py", "outside the repository"),
        ("pytest --pyargs textkit", "tests/test_b.py", "--pyargs"),
    ],
)
def test_what_cannot_be_narrowed_says_why(command, path, reason):
    with pytest.raises(Unsupported, match=reason.replace("(", r"\(").replace("$", r"\$").replace("*", r"\*")):
        file_command(command, path)
    assert not is_test_module(command, path)


def test_words_stay_words_when_rebuilt():
    """A path with spaces or quotes is quoted again; nothing is left for the shell to expand."""
    command = file_command("pytest -q", "tests/test_it's odd.py")
    assert shlex.split(command) == ["pytest", "-q", "--", "tests/test_it's odd.py"]
    assert parse_test_command("A=1 B='x y' pytest").env == ("A=1", "B=x y")
    assert file_command("A=1 B='x y' pytest", "tests/test_a.py") == "A=1 B='x y' pytest -- tests/test_a.py"


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (
            "python3 -m unittest discover -s tests -v",
            'python3 -m coverage run --rcfile=/dev/null --include=textkit/stats.py --data-file="$d" '
            "-m unittest discover -s tests -v",
        ),
        (
            "python -X dev -m pytest -q",
            'python -X dev -m coverage run --rcfile=/dev/null --include=textkit/stats.py --data-file="$d" -m pytest -q',
        ),
        (
            "CI=1 pytest -q tests",
            'CI=1 python3 -m coverage run --rcfile=/dev/null --include=textkit/stats.py --data-file="$d" '
            '"$(command -v pytest)" -q tests',
        ),
    ],
)
def test_the_suite_under_coverage(command, expected):
    plan = coverage_plan(command)
    assert plan.run_command(data_file_word='"$d"', include=["textkit/stats.py"]) == expected


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ("pytest --cov=textkit", "pytest-cov"),
        (".venv/bin/pytest", "interpreter"),
        ("go test ./...", "runs `go`"),
    ],
)
def test_what_cannot_run_under_coverage_says_why(command, reason):
    with pytest.raises(Unsupported, match=reason):
        coverage_plan(command)


def test_a_derived_unittest_command_runs_exactly_the_one_file(tmp_path):
    """Discovery narrowed to one file keeps the suite's import names: two files of the same name in
    different packages are told apart."""
    for package in ("tests", "tests/a", "tests/b"):
        (tmp_path / package).mkdir(exist_ok=True)
        (tmp_path / package / "__init__.py").write_text("")
    for package, count in (("tests/a", 1), ("tests/b", 2)):
        body = "".join(f"    def test_{n}(self):\n        pass\n" for n in range(count))
        (tmp_path / package / "test_same.py").write_text(f"import unittest\n\nclass T(unittest.TestCase):\n{body}")
    command = file_command(f"{sys.executable} -m unittest discover -s tests", "tests/b/test_same.py")
    done = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True)
    assert "Ran 2 tests" in done.stderr, done.stderr
