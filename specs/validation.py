"""Validation of phase output beyond its schema. Every function returns a list of exact,
readable problems (empty when the output is valid); the planner sends them back to the model as
the submit tool's error, so each names the item and says what is expected.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from specs.models import SpecPhase
from specs.schemas import (
    PHASE_OUTPUTS,
    REQUIREMENT_KEY_PATTERN,
    TASK_KEY_PATTERN,
    RequirementOutput,
    RequirementsOutput,
    TasksOutput,
)

KEY_LIST_LIMIT = 20

# The main clause every EARS sentence ends with: "the <system> shall <response>".
_MAIN = r"the\s+\S.*?\s+shall\s+\S"
EARS_PATTERNS: dict[str, re.Pattern[str]] = {
    "ubiquitous": re.compile(rf"^(?!(?:when|while|if|where)\b){_MAIN}", re.IGNORECASE | re.DOTALL),
    "event": re.compile(rf"^when\s+\S.*?,\s*{_MAIN}", re.IGNORECASE | re.DOTALL),
    "state": re.compile(rf"^while\s+\S.*?,\s*{_MAIN}", re.IGNORECASE | re.DOTALL),
    "unwanted": re.compile(rf"^if\s+\S.*?,\s*then\s+{_MAIN}", re.IGNORECASE | re.DOTALL),
    "optional": re.compile(rf"^where\s+\S.*?,\s*{_MAIN}", re.IGNORECASE | re.DOTALL),
    "complex": re.compile(
        rf"^(?P<preamble>(?:while|when|if)\s+\S.*),\s*(?:then\s+)?{_MAIN}", re.IGNORECASE | re.DOTALL
    ),
}
EARS_SHAPES: dict[str, str] = {
    "ubiquitous": "The <system> shall <response>.",
    "event": "When <trigger>, the <system> shall <response>.",
    "state": "While <state>, the <system> shall <response>.",
    "unwanted": "If <unwanted condition>, then the <system> shall <response>.",
    "optional": "Where <feature is included>, the <system> shall <response>.",
    "complex": "While <state>, when <trigger>, the <system> shall <response>. (two or more of While, When, If)",
}
_CLAUSE_KEYWORD = re.compile(r"(?:^|,\s*|\band\s+)(while|when|if)\b", re.IGNORECASE)


def _quote(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return f'"{text}"' if len(text) <= limit else f'"{text[:limit]}…"'


def _keys_hint(keys: Sequence[str]) -> str:
    if not keys:
        return "none"
    shown = ", ".join(keys[:KEY_LIST_LIMIT])
    return shown if len(keys) <= KEY_LIST_LIMIT else f"{shown}, … ({len(keys)} in all)"


def ears_problem(*, key: str, ears_type: str, text: str) -> str | None:
    """Whether `text` has the EARS sentence shape of `ears_type` (case-insensitive)."""
    pattern = EARS_PATTERNS.get(ears_type)
    if pattern is None:
        return f"{key}: unknown ears_type {ears_type!r}; use one of {', '.join(EARS_PATTERNS)}"
    match = pattern.match(text.strip())
    if match and ears_type == "complex":
        keywords = {word.lower() for word in _CLAUSE_KEYWORD.findall(match.group("preamble"))}
        if len(keywords) < 2:
            match = None
    if match:
        return None
    article = "an" if ears_type in ("event", "unwanted", "optional") else "a"
    return f'{key}: {article} {ears_type} requirement must read "{EARS_SHAPES[ears_type]}"; got {_quote(text)}'


def _location(loc: Sequence[Any], data: Any) -> str:
    """('requirements', 1, 'text') → 'requirements[1] (REQ-002).text'."""
    parts: list[str] = []
    node = data
    for item in loc:
        if isinstance(item, int):
            label = f"[{item}]"
            node = node[item] if isinstance(node, list) and item < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("key"), str):
                label += f" ({node['key']})"
            parts.append(label)
        else:
            parts.append(f".{item}" if parts else str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return "".join(parts) or "input"


def schema_problems(error: ValidationError, data: Any) -> list[str]:
    problems = []
    for item in error.errors():
        where = _location(item["loc"], data)
        problems.append(f"{where}: {item['msg']}")
    return problems


def _key_problems(keys: list[str], *, pattern: str, example: str, noun: str) -> list[str]:
    problems = []
    seen: set[str] = set()
    for index, key in enumerate(keys):
        if not re.match(pattern, key):
            problems.append(f"{noun}[{index}]: key {key!r} must look like {example!r}")
        if key in seen:
            problems.append(f"{noun}[{index}]: key {key} is used more than once; keys must be unique")
        seen.add(key)
    return problems


def _requirement_content_problems(requirement: RequirementOutput) -> list[str]:
    problems = []
    problem = ears_problem(key=requirement.key, ears_type=requirement.ears_type, text=requirement.text)
    if problem:
        problems.append(problem)
    for position, criterion in enumerate(requirement.acceptance_criteria):
        if not criterion.strip():
            problems.append(f"{requirement.key}: acceptance_criteria[{position}] is empty")
    return problems


def requirement_problems(requirement: RequirementOutput) -> list[str]:
    """One requirement on its own (an edit through the API)."""
    problems = []
    if not re.match(REQUIREMENT_KEY_PATTERN, requirement.key):
        problems.append(f"key {requirement.key!r} must look like 'REQ-001'")
    return problems + _requirement_content_problems(requirement)


def requirements_problems(output: RequirementsOutput) -> list[str]:
    keys = [item.key for item in output.requirements]
    problems = _key_problems(keys, pattern=REQUIREMENT_KEY_PATTERN, example="REQ-001", noun="requirements")
    for item in output.requirements:
        problems += _requirement_content_problems(item)
    return problems


def dependency_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """The first cycle found (as a closed path, the first key repeated at the end), or None.
    Iterative depth-first search, so a long chain of 2,000 tasks needs no deep recursion."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(graph, white)
    for start in graph:
        if colour[start] != white:
            continue
        path = [start]
        iterators = [iter(graph[start])]
        colour[start] = grey
        while iterators:
            advanced = False
            for nxt in iterators[-1]:
                if nxt not in colour:
                    continue
                if colour[nxt] == grey:
                    return [*path[path.index(nxt) :], nxt]
                if colour[nxt] == white:
                    colour[nxt] = grey
                    path.append(nxt)
                    iterators.append(iter(graph[nxt]))
                    advanced = True
                    break
            if not advanced:
                colour[path.pop()] = black
                iterators.pop()
    return None


def tasks_problems(output: TasksOutput, *, requirement_keys: Iterable[str]) -> list[str]:
    requirement_keys = list(requirement_keys)
    keys = [task.key for task in output.tasks]
    problems = _key_problems(keys, pattern=TASK_KEY_PATTERN, example="TSK-001", noun="tasks")
    known_tasks = set(keys)
    known_requirements = set(requirement_keys)
    covered: set[str] = set()
    for task in output.tasks:
        for dependency in task.depends_on:
            if dependency == task.key:
                problems.append(f"{task.key}: depends_on names the task itself")
            elif dependency not in known_tasks:
                problems.append(
                    f"{task.key}: depends_on names {dependency!r}, which is not a task key (tasks: {_keys_hint(keys)})"
                )
        for requirement in task.requirements:
            if requirement in known_requirements:
                covered.add(requirement)
            else:
                problems.append(
                    f"{task.key}: requirements names {requirement!r}, which is not a requirement key "
                    f"(requirements: {_keys_hint(requirement_keys)})"
                )
    graph = {task.key: [d for d in task.depends_on if d in known_tasks and d != task.key] for task in output.tasks}
    cycle = dependency_cycle(graph)
    if cycle:
        problems.append(f"the dependencies form a cycle: {' → '.join(cycle)}; a task cannot wait for itself")
    for requirement in requirement_keys:
        if requirement not in covered:
            problems.append(
                f"{requirement} is not covered by any task: add it to the requirements of the task(s) that implement it"
            )
    return problems


def phase_output_validate(
    *, phase: str, data: Any, requirement_keys: Iterable[str] = ()
) -> tuple[BaseModel | None, list[str]]:
    """The phase's validated output, or None and the exact problems."""
    model = PHASE_OUTPUTS[phase]
    try:
        output = model.model_validate(data)
    except ValidationError as error:
        return None, schema_problems(error, data)
    problems: list[str] = []
    if phase == SpecPhase.REQUIREMENTS:
        problems = requirements_problems(output)  # type: ignore[arg-type]
    elif phase == SpecPhase.TASKS:
        problems = tasks_problems(output, requirement_keys=requirement_keys)  # type: ignore[arg-type]
    return (None, problems) if problems else (output, [])
