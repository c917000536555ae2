"""What Omoi understands of a project's test command: how to run one test file with it, and how to
run it under coverage.py. Pure functions over the command's text, no sandbox.

Only simple commands are understood: `pytest ARGS`, `python -m pytest ARGS` and `python -m
unittest ARGS` (optionally after `NAME=value` words and python's own flags). A command with shell
syntax (`&&`, `;`, pipes, redirections, `$`, globs) or another runner (`make test`, `tox`, `npm
test`, `go test`) is not rewritten: the evidence then says "not measured" and why, instead of
guessing. Every word of a derived command is quoted again, so nothing the repository or the model
wrote is expanded by the shell a second time.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
import shlex
from dataclasses import dataclass

PYTHON_WORD = re.compile(r"^(?:[\w./-]*/)?python(?:\d+(?:\.\d+)*)?$")
ENV_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
PYTHON_FLAGS = {"-u", "-B", "-O", "-OO", "-b", "-bb", "-E", "-s", "-I", "-q", "-P", "-R"}
PYTHON_VALUE_OPTIONS = {"-X", "-W"}
UNSAFE_CHARACTERS = set("$`\n\r")
GLOB_CHARACTERS = set("*?[]{}")

# pytest options that take the next word as their value (when not written as --name=value).
PYTEST_SHORT_VALUES = set("kmcpoWrn")
PYTEST_LONG_VALUES = {
    "--basetemp", "--capture", "--code-highlight", "--color", "--confcutdir", "--cov", "--cov-config",
    "--cov-fail-under", "--cov-report", "--deselect", "--dist", "--doctest-glob", "--durations",
    "--durations-min", "--ignore", "--ignore-glob", "--import-mode", "--junit-prefix", "--junit-xml",
    "--junitxml", "--log-cli-level", "--log-file", "--log-file-level", "--log-level", "--maxfail",
    "--maxprocesses", "--numprocesses", "--override-ini", "--pythonwarnings", "--rootdir", "--show-capture",
    "--tb", "--timeout", "--verbosity",
}  # fmt: skip
# Options that narrow or spread a run in ways a single file's run must not inherit.
PYTEST_DROPPED = {
    "--lf", "--last-failed", "--ff", "--failed-first", "--sw", "--stepwise", "--sw-skip", "--stepwise-skip",
    "--nf", "--new-first", "-n", "--numprocesses", "--dist", "--maxprocesses", "--deselect",
}  # fmt: skip
UNITTEST_FLAGS = {"-v", "--verbose", "-q", "--quiet", "-f", "--failfast", "-c", "--catch", "-b", "--buffer", "--locals"}
UNITTEST_VALUE_OPTIONS = {"-k", "--durations"}


class Unsupported(Exception):
    """The command (or this file with it) cannot be derived; the message says why, for a reader."""


@dataclass(frozen=True)
class TestCommand:
    """A test command taken apart: NAME=value words, the interpreter and its flags ("" for a bare
    pytest script), the runner (pytest or unittest), the script word when pytest runs as a script
    (`pytest`, `.venv/bin/pytest`), and the runner's arguments."""

    __test__ = False  # not a pytest test class

    env: tuple[str, ...]
    python: str
    python_options: tuple[str, ...]
    runner: str
    script: str
    args: tuple[str, ...]

    def render(self, args: list[str] | tuple[str, ...]) -> str:
        """The command again with other runner arguments."""
        if self.script:
            head = [self.script]
        else:
            head = [self.python, *self.python_options, "-m", self.runner]
        return _join([*self.env], [*head, *args])


def _join(env: list[str], words: list[str]) -> str:
    rendered = []
    for word in env:
        name, _, value = word.partition("=")
        rendered.append(f"{name}={shlex.quote(value)}")
    return " ".join([*rendered, *(shlex.quote(word) for word in words)])


def _words(command: str) -> list[str]:
    if not isinstance(command, str) or not command.strip():
        raise Unsupported("there is no test command")
    if any(character in UNSAFE_CHARACTERS for character in command):
        raise Unsupported(f"`{command}` uses shell expansions or several lines")
    if _unquoted_glob(command):
        raise Unsupported(f"`{command}` uses globs the shell would expand")
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        words = list(lexer)
    except ValueError as exc:
        raise Unsupported(f"`{command}` cannot be read as one command ({exc})") from exc
    if any(word and all(character in "();<>|&" for character in word) for word in words):
        raise Unsupported(f"`{command}` is a shell pipeline or a list of commands")
    if any(word.startswith("~") for word in words):
        raise Unsupported(f"`{command}` uses a home-directory path")
    return words


def _unquoted_glob(command: str) -> bool:
    """A word with a wildcard or braces that is not quoted as a whole (the shell would expand it)."""
    lexer = shlex.shlex(command, posix=False, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        words = list(lexer)
    except ValueError:
        return True
    return any(
        not (len(word) >= 2 and word[0] == word[-1] and word[0] in "'\"")
        and any(character in GLOB_CHARACTERS for character in word)
        for word in words
    )


def parse_test_command(command: str) -> TestCommand:
    """The command taken apart; raises Unsupported (with the reason) for anything but pytest or
    unittest run directly."""
    words = _words(command)
    env: list[str] = []
    while words and ENV_WORD.match(words[0]):
        env.append(words.pop(0))
    if not words:
        raise Unsupported(f"`{command}` sets variables and runs nothing")
    first = words[0]
    name = posixpath.basename(first)
    if name in ("pytest", "py.test"):
        return TestCommand(tuple(env), "", (), "pytest", first, tuple(words[1:]))
    if not PYTHON_WORD.match(first):
        raise Unsupported(f"`{command}` does not run pytest or unittest directly (it runs `{name}`)")
    index = 1
    options: list[str] = []
    while index < len(words) and words[index] != "-m":
        word = words[index]
        if word in PYTHON_FLAGS:
            options.append(word)
            index += 1
        elif word in PYTHON_VALUE_OPTIONS and index + 1 < len(words):
            options += [word, words[index + 1]]
            index += 2
        elif word[:2] in PYTHON_VALUE_OPTIONS and len(word) > 2:
            options.append(word)
            index += 1
        else:
            raise Unsupported(f"`{command}` runs a script or an option Omoi does not know (`{word}`), not `-m`")
    if index + 1 >= len(words):
        raise Unsupported(f"`{command}` names no module to run")
    module = words[index + 1]
    if module not in ("pytest", "unittest"):
        raise Unsupported(f"`{command}` runs the module `{module}`, not pytest or unittest")
    return TestCommand(tuple(env), first, tuple(options), module, "", tuple(words[index + 2 :]))


# --- one file -----------------------------------------------------------------------------------


def file_command(command: str, path: str) -> str:
    """The project's test command narrowed to one test file (a path relative to the repository
    root), or Unsupported with the reason: the command is not one Omoi understands, or the file is
    not one of the tests it would run."""
    parsed = parse_test_command(command)
    if parsed.runner == "pytest":
        return _pytest_file(parsed, path)
    return _unittest_file(parsed, path)


def is_test_module(command: str, path: str) -> bool:
    """Whether the command's runner would collect this file as a test module (by name: pytest's
    default `test_*.py` / `*_test.py`, unittest's discovery pattern)."""
    try:
        file_command(command, path)
    except Unsupported:
        return False
    return True


def _pytest_file(parsed: TestCommand, path: str) -> str:
    name = posixpath.basename(path)
    if not path.endswith(".py") or not (name.startswith("test_") or name.endswith("_test.py")):
        raise Unsupported(f"{path} is not a test module pytest collects by default (test_*.py or *_test.py)")
    if "--pyargs" in parsed.args:
        raise Unsupported("the command names packages (--pyargs), not files")
    kept: list[str] = []
    args = list(parsed.args)
    index = 0
    while index < len(args):
        word = args[index]
        if word == "--":
            break  # only positional arguments follow: the files and directories the suite runs
        if word.startswith("--"):
            option = word.split("=", 1)[0]
            takes_value = "=" not in word and option in PYTEST_LONG_VALUES
            group = [word, *args[index + 1 : index + 2]] if takes_value else [word]
            index += len(group)
            if option not in PYTEST_DROPPED:
                kept += group
            continue
        if word.startswith("-") and len(word) > 1:
            value_letter = next((letter for letter in word[1:] if letter in PYTEST_SHORT_VALUES), None)
            takes_value = value_letter is not None and word.endswith(value_letter)
            group = [word, *args[index + 1 : index + 2]] if takes_value else [word]
            index += len(group)
            if f"-{value_letter}" not in PYTEST_DROPPED:
                kept += group
            continue
        index += 1  # a file, directory or node id of the whole suite: replaced by the one file
    return parsed.render([*kept, "--", path])


def _unittest_arguments(parsed: TestCommand) -> tuple[list[str], list[str], dict[str, str] | None]:
    """(flags, names, discovery) of a unittest command: discovery holds start, pattern and top
    when the command discovers (`discover`, or no names at all)."""
    args = list(parsed.args)
    flags: list[str] = []
    discovering = not args or args[0] == "discover" or all(a.startswith("-") for a in args)
    if args and args[0] == "discover":
        args = args[1:]
    names: list[str] = []
    options = {"start": ".", "pattern": "test*.py", "top": ""}
    positional: list[str] = []
    index = 0
    discover_options = {
        "-s": "start", "--start-directory": "start", "-p": "pattern", "--pattern": "pattern",
        "-t": "top", "--top-level-directory": "top",
    }  # fmt: skip
    while index < len(args):
        word = args[index]
        option, equals, value = word.partition("=")
        if discovering and option in discover_options:
            if not equals:
                if index + 1 >= len(args):
                    raise Unsupported(f"`{word}` has no value")
                value = args[index + 1]
                index += 1
            options[discover_options[option]] = value
        elif word in UNITTEST_FLAGS or _short_flag_group(word):
            flags.append(word)
        elif option in UNITTEST_VALUE_OPTIONS:
            if not equals:
                if index + 1 >= len(args):
                    raise Unsupported(f"`{word}` has no value")
                flags += [word, args[index + 1]]
                index += 1
            else:
                flags.append(word)
        elif word.startswith("-"):
            raise Unsupported(f"the unittest option `{word}` is not one Omoi knows")
        elif discovering:
            positional.append(word)
        else:
            names.append(word)
        index += 1
    for key, value in zip(("start", "pattern", "top"), positional, strict=False):
        options[key] = value
    return flags, names, options if discovering else None


def _short_flag_group(word: str) -> bool:
    """-vb, -fc...: unittest's one-letter flags written together."""
    return word.startswith("-") and not word.startswith("--") and len(word) > 1 and set(word[1:]) <= set("vqfcb")


def _normal(path: str) -> str:
    normal = posixpath.normpath(path)
    if normal.startswith("/") or normal == ".." or normal.startswith("../"):
        raise Unsupported(f"`{path}` is outside the repository")
    return normal


def _unittest_file(parsed: TestCommand, path: str) -> str:
    flags, names, discovery = _unittest_arguments(parsed)
    if not path.endswith(".py"):
        raise Unsupported(f"{path} is not a Python module")
    if discovery is None:
        module = path[: -len(".py")].replace("/", ".")
        if module not in names and path not in names:
            raise Unsupported(f"{path} is not one of the modules `{' '.join(names)}` the command runs")
        return parsed.render([*flags, module])
    start = _normal(discovery["start"])
    top = _normal(discovery["top"] or discovery["start"])
    directory = posixpath.dirname(path) or "."
    inside = start == "." or path.startswith(start + "/")
    if not inside:
        raise Unsupported(f"{path} is outside the directory `{start}` the command discovers tests in")
    if not fnmatch.fnmatchcase(posixpath.basename(path), discovery["pattern"]):
        raise Unsupported(f"{path} does not match the discovery pattern `{discovery['pattern']}`")
    return parsed.render(["discover", "-s", directory, "-t", top, "-p", posixpath.basename(path), *flags])


# --- under coverage.py --------------------------------------------------------------------------


@dataclass(frozen=True)
class CoveragePlan:
    """How to run the suite under coverage.py: `python` runs both the suite (`run_words`, after
    the coverage options) and the report; `command` is the suite as the project wrote it."""

    env: tuple[str, ...]
    python: str
    python_options: tuple[str, ...]
    run_words: tuple[str, ...]
    script: str
    command: str

    def run_command(self, *, data_file_word: str, include: list[str]) -> str:
        """The suite under `python -m coverage run`, measuring only `include` (all files when
        empty), its data in `data_file_word` (a shell word the caller wrote and quoted, such as
        "$data/coverage"). A pytest script is run as a file ("$(command -v pytest)"), as the shell
        would run it, so that sys.path is the same as without coverage. The project's own coverage
        configuration is not read (--rcfile=/dev/null): Omoi measures what the task changed."""
        options = ["--rcfile=/dev/null"]
        if include:
            options.append("--include=" + ",".join(include))
        words = [self.python, *self.python_options, "-m", "coverage", "run", *options]
        rendered = f"{_join(list(self.env), words)} --data-file={data_file_word}"
        if self.script:
            return f'{rendered} "$(command -v {shlex.quote(self.script)})" {_join([], list(self.run_words))}'.rstrip()
        return f"{rendered} {_join([], list(self.run_words))}".rstrip()


def coverage_plan(command: str) -> CoveragePlan:
    """How to measure the suite under coverage.py; Unsupported when the command cannot be wrapped
    (another runner, shell syntax, a pytest script outside PATH, pytest-cov already measuring)."""
    parsed = parse_test_command(command)
    if any(arg == "--cov" or arg.startswith(("--cov=", "--cov-")) for arg in parsed.args):
        raise Unsupported("the command measures coverage itself (pytest-cov)")
    if parsed.script:
        if "/" in parsed.script:
            raise Unsupported(f"pytest runs from `{parsed.script}`, whose interpreter Omoi cannot tell")
        return CoveragePlan(parsed.env, "python3", (), parsed.args, parsed.script, command)
    return CoveragePlan(
        parsed.env, parsed.python, parsed.python_options, ("-m", parsed.runner, *parsed.args), "", command
    )


def include_pattern_safe(path: str) -> bool:
    """Whether a path can be named in coverage's --include list as it is (no separator or wildcard)."""
    return not any(character in path for character in ",*?[]")
