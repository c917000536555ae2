"""The output schemas of the planning phases: pydantic models, from which the submit tools'
input schemas are generated. This is the model-facing contract (docs/planning.md): a phase ends
when the model calls its one submit tool with input that validates here and in
specs/validation.py.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from specs.models import EarsType, SpecPhase
from tickets.models import Phase, Priority

REQUIREMENT_KEY_PATTERN = r"^REQ-\d{3,}$"
TASK_KEY_PATTERN = r"^TSK-\d{3,}$"
# The ticket phases a planned task may start its work in (not BACKLOG, DONE or BLOCKED).
TASK_PHASES = [Phase.REQUIREMENTS, Phase.DESIGN, Phase.IMPLEMENTATION, Phase.TESTING, Phase.DEPLOYMENT]

PriorityName = Literal["low", "medium", "high", "critical"]
EarsTypeName = Literal["ubiquitous", "event", "state", "unwanted", "optional", "complex"]
TaskPhaseName = Literal["REQUIREMENTS", "DESIGN", "IMPLEMENTATION", "TESTING", "DEPLOYMENT"]

assert set(PriorityName.__args__) == set(Priority.values)  # type: ignore[attr-defined]
assert set(EarsTypeName.__args__) == set(EarsType.values)  # type: ignore[attr-defined]
assert list(TaskPhaseName.__args__) == [str(p) for p in TASK_PHASES]  # type: ignore[attr-defined]


class _Output(BaseModel):
    # Unknown fields are dropped rather than refused: a model adding a helpful extra field should
    # not cost a repair round.
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


# --- EXPLORE --------------------------------------------------------------------------------


class KeyFile(_Output):
    path: str = Field(min_length=1, description="Path relative to the repository root.")
    purpose: str = Field(description="What the file is for.")


class ExplorationOutput(_Output):
    """What the repository is, so the later phases plan against the code that exists."""

    project_type: str = Field(min_length=1, description='The kind of project, e.g. "django-app", "python-library".')
    tech_stack: list[str] = Field(description="Languages, frameworks and tools in use.")
    structure: str = Field(min_length=1, description="How the repository is laid out.")
    key_files: list[KeyFile] = Field(description="The files a change will most likely touch or imitate.")
    conventions: str = Field(description="Code style, naming, testing and layout conventions to follow.")
    test_command: str = Field(description="The shell command that runs this repository's tests ('' if none).")
    notes: str = Field(default="", description="Anything else the planner should know.")


# --- REQUIREMENTS ---------------------------------------------------------------------------


class RequirementOutput(_Output):
    key: str = Field(
        description='Stable key, "REQ-001", "REQ-002", ...', json_schema_extra={"pattern": REQUIREMENT_KEY_PATTERN}
    )
    title: str = Field(min_length=1, max_length=500)
    ears_type: EarsTypeName = Field(
        description=(
            "ubiquitous: 'The <system> shall <response>.' event: 'When <trigger>, the <system> shall <response>.' "
            "state: 'While <state>, the <system> shall <response>.' unwanted: 'If <unwanted condition>, then the "
            "<system> shall <response>.' optional: 'Where <feature is included>, the <system> shall <response>.' "
            "complex: a combination of While, When and If clauses before 'the <system> shall <response>.'"
        )
    )
    text: str = Field(min_length=1, description="The whole EARS sentence, in the shape its ears_type requires.")
    condition: str = Field(default="", description="The trigger, state or condition clause ('' for ubiquitous).")
    action: str = Field(min_length=1, description="What the system shall do.")
    priority: PriorityName = "medium"
    acceptance_criteria: list[str] = Field(min_length=1, description="Observable checks; at least one.")

    _normalise_type = field_validator("ears_type", "priority", mode="before")(_lower)


class RequirementsOutput(_Output):
    requirements: list[RequirementOutput] = Field(min_length=1)


# --- DESIGN ---------------------------------------------------------------------------------


class Component(_Output):
    name: str = Field(min_length=1)
    responsibility: str
    files: list[str] = Field(default_factory=list, description="Files the component lives in.")


class DataEntity(_Output):
    name: str = Field(min_length=1)
    description: str = ""
    fields: list[str] = Field(default_factory=list, description='Fields, e.g. "title: str (max 200)".')


class ApiEndpoint(_Output):
    method: str = Field(min_length=1, description="HTTP method, or 'CALL' for a function or CLI entry point.")
    path: str = Field(min_length=1, description="URL path, function name or command.")
    description: str = ""


class DesignOutput(_Output):
    architecture: str = Field(min_length=1, description="The architecture, in markdown.")
    components: list[Component] = Field(default_factory=list)
    data_model: list[DataEntity] = Field(default_factory=list)
    api_endpoints: list[ApiEndpoint] = Field(default_factory=list)
    risks: list[str] = Field(default_factory=list)


# --- TASKS ----------------------------------------------------------------------------------


class TaskOutput(_Output):
    key: str = Field(
        description='Stable key, "TSK-001", "TSK-002", ...', json_schema_extra={"pattern": TASK_KEY_PATTERN}
    )
    title: str = Field(min_length=1, max_length=500)
    description: str = Field(min_length=1, description="What to do, precisely enough for an engineer to start.")
    phase: TaskPhaseName = Field(default="IMPLEMENTATION", description="The ticket phase the work starts in.")
    priority: PriorityName = "medium"
    estimate_hours: float | None = Field(default=None, ge=0, le=10000)
    depends_on: list[str] = Field(default_factory=list, description="Keys of tasks that must be done first.")
    requirements: list[str] = Field(default_factory=list, description="Keys of the requirements this task covers.")
    files: list[str] = Field(default_factory=list, description="Files the task will create or change.")
    acceptance_criteria: list[str] = Field(default_factory=list)

    _normalise_priority = field_validator("priority", mode="before")(_lower)

    @field_validator("phase", mode="before")
    @classmethod
    def _upper_phase(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value


class TasksOutput(_Output):
    tasks: list[TaskOutput] = Field(min_length=1)


# --- The submit tools -----------------------------------------------------------------------

PHASE_OUTPUTS: dict[str, type[_Output]] = {
    SpecPhase.EXPLORE: ExplorationOutput,
    SpecPhase.REQUIREMENTS: RequirementsOutput,
    SpecPhase.DESIGN: DesignOutput,
    SpecPhase.TASKS: TasksOutput,
}
SUBMIT_TOOL_NAMES: dict[str, str] = {
    SpecPhase.EXPLORE: "submit_exploration",
    SpecPhase.REQUIREMENTS: "submit_requirements",
    SpecPhase.DESIGN: "submit_design",
    SpecPhase.TASKS: "submit_tasks",
}
SUBMIT_DESCRIPTIONS: dict[str, str] = {
    SpecPhase.EXPLORE: "Submit what you learned about the repository. This ends the exploration phase.",
    SpecPhase.REQUIREMENTS: (
        "Submit the EARS requirements with their acceptance criteria. They are validated (EARS sentence shape "
        "for the type, unique REQ-### keys, at least one criterion each); problems come back as an error for "
        "you to fix and submit again."
    ),
    SpecPhase.DESIGN: "Submit the design: architecture (markdown), components, data model, API endpoints, risks.",
    SpecPhase.TASKS: (
        "Submit the implementation tasks. They are validated (unique TSK-### keys, depends_on and requirements "
        "name existing keys, no dependency cycle, every requirement covered by at least one task); problems come "
        "back as an error for you to fix and submit again."
    ),
}


def _inline(schema: Any, definitions: dict[str, Any]) -> Any:
    """The schema with every $ref replaced by its definition and pydantic's titles dropped, so the
    tool schema is one self-contained object."""
    if isinstance(schema, list):
        return [_inline(item, definitions) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        return _inline(definitions[schema["$ref"].rsplit("/", 1)[-1]], definitions)
    inlined = {}
    for key, value in schema.items():
        if key in ("title", "$defs"):
            continue
        if key == "properties":
            inlined[key] = {name: _inline(prop, definitions) for name, prop in value.items()}
        else:
            inlined[key] = _inline(value, definitions)
    return inlined


def input_schema_for(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    return _inline(schema, schema.get("$defs", {}))


def submit_tool(phase: str) -> dict[str, Any]:
    """The Messages-API tool definition of the phase's submit tool."""
    return {
        "name": SUBMIT_TOOL_NAMES[phase],
        "description": SUBMIT_DESCRIPTIONS[phase],
        "input_schema": input_schema_for(PHASE_OUTPUTS[phase]),
    }
