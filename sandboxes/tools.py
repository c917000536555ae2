"""The model-facing tools: their definitions (the stable contract, in the Messages API's tool shape)
and their execution in a workspace.

`tool_execute` never raises for anything the model sent: bad input, a missing file, an ambiguous
edit become an error result the model reads and can act on; a path outside the workspace or an
attempt to print the server's environment becomes a refusal (`refused=True`), which the agent loop
also records as a `sandbox.refused` event.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sandboxes.workspace import CommandRefused, PathRefused, Workspace, WorkspaceError

LIST_FILES = {
    "name": "list_files",
    "description": (
        "List the files and directories under a path of the repository (recursively, directories first "
        "level by level; directories end with '/', symbolic links with '@'; .git is skipped; long listings "
        "are cut, so list a subdirectory to see more). Paths are relative to the repository root."
    ),
    "input_schema": {
        "type": "object",
        "properties": {"path": {"type": "string", "description": "Directory to list; '.' is the repository root."}},
        "required": ["path"],
    },
}
READ_FILE = {
    "name": "read_file",
    "description": (
        "Read a text file of the repository, with line numbers. Long files are cut; pass start_line and "
        "end_line (1-based, inclusive) to read a part."
    ),
    "input_schema": {
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "File path relative to the repository root."},
            "start_line": {"type": "integer", "minimum": 1, "description": "First line to show (1-based)."},
            "end_line": {"type": "integer", "minimum": 1, "description": "Last line to show (inclusive)."},
        },
        "required": ["path"],
    },
}
SEARCH = {
    "name": "search",
    "description": (
        "Search the repository's text files for a Python regular expression, line by line. Answers "
        "'path:line: text' for each match (bounded). Skips .git and binary files."
    ),
    "input_schema": {
        "type": "object",
        "properties": {
            "pattern": {"type": "string", "description": "A Python regular expression."},
            "path": {"type": "string", "description": "File or directory to search; default the whole repository."},
        },
        "required": ["pattern"],
    },
}
WRITE_FILE = {
    "name": "write_file",
    "description": "Create or overwrite a file of the repository with the given content (parent directories are made).",
    "input_schema": {
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "File path relative to the repository root."},
            "content": {"type": "string", "description": "The whole new content of the file."},
        },
        "required": ["path", "content"],
    },
}
EDIT_FILE = {
    "name": "edit_file",
    "description": (
        "Replace one exact piece of text in a file. `old` must occur exactly once in the file (copy it "
        "exactly, with its whitespace); otherwise nothing changes and the error says how many times it occurs."
    ),
    "input_schema": {
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "File path relative to the repository root."},
            "old": {"type": "string", "description": "The exact text to replace; must occur exactly once."},
            "new": {"type": "string", "description": "The replacement text."},
        },
        "required": ["path", "old", "new"],
    },
}
RUN_COMMAND = {
    "name": "run_command",
    "description": (
        "Run a shell command (bash -c) in the repository root and get its exit code and the tail of its "
        "output. Commands run with a timeout, resource limits and a minimal environment; nothing started "
        "in the background survives the command. Use it to run tests, linters and builds."
    ),
    "input_schema": {
        "type": "object",
        "properties": {
            "command": {"type": "string", "description": "The shell command."},
            "timeout_s": {"type": "integer", "minimum": 1, "description": "Timeout in seconds (capped)."},
        },
        "required": ["command"],
    },
}
FINISH = {
    "name": "finish",
    "description": (
        "Call when the work is complete: the host then checks it (runs the tests) and tells you if "
        "anything is still wrong. Give a summary of what you did and, optionally, artifacts."
    ),
    "input_schema": {
        "type": "object",
        "properties": {
            "summary": {"type": "string", "description": "What was done, decisions made, anything left open."},
            "artifacts": {
                "type": "array",
                "description": "Optional artifacts, such as a document written or test results seen.",
                "items": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string", "description": "Artifact type, e.g. 'design_document'."},
                        "path": {"type": "string", "description": "A repository path, when it is a file."},
                        "content": {"description": "The artifact's content (text or an object)."},
                    },
                    "required": ["type"],
                },
            },
        },
        "required": ["summary"],
    },
}

READ_ONLY_TOOLS: list[dict[str, Any]] = [LIST_FILES, READ_FILE, SEARCH]
EXECUTION_TOOLS: list[dict[str, Any]] = [LIST_FILES, READ_FILE, SEARCH, WRITE_FILE, EDIT_FILE, RUN_COMMAND, FINISH]
WORKSPACE_TOOL_NAMES = {"list_files", "read_file", "search", "write_file", "edit_file", "run_command"}
FILE_CHANGING_TOOLS = {"write_file", "edit_file"}
_SCHEMAS = {tool["name"]: tool["input_schema"] for tool in EXECUTION_TOOLS}


@dataclass
class ToolResult:
    content: str
    is_error: bool = False
    refused: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


# --- refusing attempts to print the server's environment -----------------------------------

SECRET_VARIABLES = (
    "ANTHROPIC_API_KEY",
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "DATABASE_URL",
    "DJANGO_SECRET_KEY",
    "SECRET_KEY",
    "CELERY_BROKER_URL",
    "DAYTONA_API_KEY",
    "OPENAI_API_KEY",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "PGPASSWORD",
    "REDIS_URL",
)
_START = r"(?:^|[;&|({`\n]|\$\(|\bthen\b|\bdo\b|\belse\b|\bsudo\b|\bexec\b|\bxargs\b)\s*"
_END = r"\s*(?:$|[;&|)}>`<\n])"
ENVIRONMENT_PROBES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(_START + r"(?:/usr/bin/|/bin/)?env(?:\s+-[-\w]+)*" + _END), "`env` without a command prints it"),
    (re.compile(r"\bprintenv\b"), "`printenv` prints it"),
    (re.compile(_START + r"set" + _END), "`set` without arguments prints it"),
    (re.compile(_START + r"(?:export|declare|typeset)(?:\s+-[a-zA-Z]*[px][a-zA-Z]*)*" + _END), "it lists exports"),
    (re.compile(r"\b(?:declare|typeset)\s+-[a-zA-Z]*[px]"), "it lists exported variables"),
    (re.compile(r"\bcompgen\s+-[a-zA-Z]*[ev]"), "it lists variable names"),
    (re.compile(r"/proc/[^\s/]+/environ"), "it reads a process's environment from /proc"),
    (re.compile(r"\bps\s+(?!-)\S*e"), "`ps e` prints processes' environments"),
    (
        re.compile(r"\b(?:python[\d.]*|node|perl|ruby|php|deno|bun)\b.*(?:\benviron\b|getenv|process\.env|\bENV\b)"),
        "it reads the environment from an interpreter",
    ),
    (
        re.compile(r"\$\{?!?(?:" + "|".join(SECRET_VARIABLES) + r")\b"),
        "it reads a server secret's variable",
    ),
    (
        re.compile(r"\$\{?!?[A-Z0-9_]*(?:API_KEY|TOKEN|SECRET|PASSWORD)[A-Z0-9_]*\b"),
        "it reads a secret-looking variable",
    ),
]


def environment_probe_reason(command: str) -> str | None:
    """Why `command` looks like an attempt to print the server's environment, or None."""
    for pattern, why in ENVIRONMENT_PROBES:
        if pattern.search(command):
            return (
                f"refused: this command tries to print the server's environment ({why}). The sandbox holds "
                "none of the server's variables or secrets; run the command you need directly."
            )
    return None


# --- execution ----------------------------------------------------------------------------


def _check_input(name: str, tool_input: Any) -> str | None:
    """A message for the model when `tool_input` does not fit the tool's schema, else None."""
    if not isinstance(tool_input, dict):
        return f"{name}: the input must be an object with the tool's arguments"
    schema = _SCHEMAS[name]
    missing = [arg for arg in schema.get("required", []) if arg not in tool_input]
    if missing:
        return f"{name}: missing required argument(s): {', '.join(missing)}"
    for arg, spec in schema["properties"].items():
        if arg not in tool_input or tool_input[arg] is None:
            continue
        value = tool_input[arg]
        expected = spec.get("type")
        if expected == "string" and not isinstance(value, str):
            return f"{name}: argument {arg!r} must be a string"
        if expected == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
            if not (isinstance(value, str) and value.strip().isdigit()):
                return f"{name}: argument {arg!r} must be an integer"
        if expected == "integer" and int(value) < spec.get("minimum", 0):
            return f"{name}: argument {arg!r} must be at least {spec['minimum']}"
    return None


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def tool_execute(*, workspace: Workspace, name: str, tool_input: dict[str, Any]) -> ToolResult:
    """Execute one workspace tool call. Never raises for the model's input."""
    if name not in WORKSPACE_TOOL_NAMES:
        return ToolResult(content=f"unknown tool {name!r}", is_error=True)
    problem = _check_input(name, tool_input)
    if problem:
        return ToolResult(content=problem, is_error=True)
    try:
        if name == "list_files":
            return ToolResult(content=workspace.list_files(tool_input.get("path") or "."))
        if name == "read_file":
            return ToolResult(
                content=workspace.read_file(
                    tool_input["path"],
                    start_line=_int_or_none(tool_input.get("start_line")),
                    end_line=_int_or_none(tool_input.get("end_line")),
                )
            )
        if name == "search":
            return ToolResult(content=workspace.search(tool_input["pattern"], tool_input.get("path") or "."))
        if name == "write_file":
            content = workspace.write_file(tool_input["path"], tool_input["content"])
            return ToolResult(content=content, meta={"path": workspace.display_path(tool_input["path"])})
        if name == "edit_file":
            content = workspace.edit_file(tool_input["path"], tool_input["old"], tool_input["new"])
            return ToolResult(content=content, meta={"path": workspace.display_path(tool_input["path"])})
        command = tool_input["command"]
        reason = environment_probe_reason(command)
        if reason:
            return ToolResult(content=reason, is_error=True, refused=True, meta={"reason": reason})
        result = workspace.run_command(command, timeout_s=_int_or_none(tool_input.get("timeout_s")))
        return ToolResult(
            content=result.as_text(),
            is_error=False,
            meta={
                "command": command,
                "exit_code": result.exit_code,
                "duration_s": result.duration_s,
                "timed_out": result.timed_out,
            },
        )
    except PathRefused as exc:
        reason = f"refused: {exc.reason}"
        return ToolResult(content=reason, is_error=True, refused=True, meta={"reason": reason})
    except CommandRefused as exc:
        return ToolResult(content=exc.reason, is_error=True, refused=True, meta={"reason": exc.reason})
    except WorkspaceError as exc:
        return ToolResult(content=str(exc), is_error=True)
    except (OSError, ValueError) as exc:
        return ToolResult(content=f"{name} failed: {exc}", is_error=True)
