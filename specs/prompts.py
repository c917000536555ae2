"""What the planner says to the model: one system prompt per phase and the phase's first message,
which carries the idea and the validated output of the phases before it (read from the database,
so an edited requirement reaches DESIGN and TASKS on a re-plan)."""

from __future__ import annotations

import json
from typing import Any

from specs.models import Spec, SpecPhase, SpecRequirement
from specs.schemas import SUBMIT_TOOL_NAMES, TASK_PHASES

COMMON = """You are the planner of Omoi, a system that turns an idea about a code repository into
merged work. You plan; engineers (agents) carry out the tasks later, one ticket per task.

You can read the repository with list_files(path), read_file(path, start_line?, end_line?) and
search(pattern, path?). Paths are relative to the repository root. You cannot change anything.
Look at what you need, no more. End the phase by calling {submit} exactly once with the complete
output; if it is rejected, the error lists every problem: fix them all and call {submit} again."""

PHASE_INSTRUCTIONS: dict[str, str] = {
    SpecPhase.EXPLORE: """Phase: EXPLORE. Learn what this repository is so the next phases can plan
against the code that exists: its type, languages and frameworks, how it is laid out, the files a
change for this idea will touch or imitate, its conventions (style, naming, tests), and the exact
shell command that runs its tests (look at README, CI files, Makefile, pyproject/package.json).""",
    SpecPhase.REQUIREMENTS: """Phase: REQUIREMENTS. Write the requirements of the idea in EARS form,
each with a stable key (REQ-001, REQ-002, ...), a title, its ears_type and the whole sentence in
`text`, shaped exactly as its type requires:
  ubiquitous  The <system> shall <response>.
  event       When <trigger>, the <system> shall <response>.
  state       While <state>, the <system> shall <response>.
  unwanted    If <unwanted condition>, then the <system> shall <response>.
  optional    Where <feature is included>, the <system> shall <response>.
  complex     While <state>, when <trigger>, the <system> shall <response>. (two or more of While/When/If)
Put the clause after the keyword in `condition` ('' for ubiquitous) and what the system does in
`action`. Give every requirement a priority and at least one observable acceptance criterion.
Cover the idea completely and nothing beyond it.""",
    SpecPhase.DESIGN: """Phase: DESIGN. Design how the requirements will be met in this repository:
the architecture (markdown), the components with their responsibility and files, the data model,
the API endpoints or public functions, and the risks. Fit the existing structure and conventions.""",
    SpecPhase.TASKS: """Phase: TASKS. Break the design into tasks an engineer can do one at a time,
each with a stable key (TSK-001, ...), a title, a precise description, the ticket phase its work
starts in ({phases}; usually IMPLEMENTATION), a priority, an estimate in hours, the keys of the
tasks it depends on, the keys of the requirements it covers, the files it touches and its
acceptance criteria. Every requirement must be covered by at least one task; dependencies must
name existing tasks and must not form a cycle. Prefer few, cohesive tasks; each one is tested.""",
}


def system_prompt(phase: str) -> str:
    instructions = PHASE_INSTRUCTIONS[phase].format(phases=", ".join(str(p) for p in TASK_PHASES))
    return COMMON.format(submit=SUBMIT_TOOL_NAMES[phase]) + "\n\n" + instructions


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def requirement_dicts(spec: Spec) -> list[dict[str, Any]]:
    """The spec's requirement rows in the shape of the REQUIREMENTS output (two queries)."""
    requirements = SpecRequirement.objects.filter(spec=spec).prefetch_related("criteria").order_by("position", "id")
    return [
        {
            "key": requirement.key,
            "title": requirement.title,
            "ears_type": requirement.ears_type,
            "text": requirement.text,
            "condition": requirement.condition,
            "action": requirement.action,
            "priority": requirement.priority,
            "acceptance_criteria": [criterion.text for criterion in requirement.criteria.all()],
        }
        for requirement in requirements
    ]


def first_message(spec: Spec, phase: str) -> str:
    project = spec.project
    parts = [
        f"Project: {project.name} (repository {project.repository}, branch {project.default_branch})",
        f"Spec: {spec.title}",
        f"Idea:\n{spec.idea}",
    ]
    if phase != SpecPhase.EXPLORE and spec.phase_data.get(SpecPhase.EXPLORE):
        parts.append("What exploration found:\n" + _json(spec.phase_data[SpecPhase.EXPLORE]))
    if phase in (SpecPhase.DESIGN, SpecPhase.TASKS):
        parts.append("The requirements:\n" + _json(requirement_dicts(spec)))
    if phase == SpecPhase.TASKS and spec.design:
        parts.append("The design:\n" + _json(spec.design))
    parts.append(f"Now carry out the {phase.upper()} phase and call {SUBMIT_TOOL_NAMES[phase]}.")
    return "\n\n".join(parts)
