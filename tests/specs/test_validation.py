import copy

import pytest

from specs.schemas import submit_tool
from specs.validation import EARS_SHAPES, dependency_cycle, ears_problem, phase_output_validate
from tests.specs.scripts import DESIGN, EXPLORATION, REQUIREMENTS, TASKS


@pytest.mark.parametrize(
    ("ears_type", "text"),
    [
        ("ubiquitous", "The notes library shall keep notes in order."),
        ("ubiquitous", "the API shall answer in JSON"),
        ("event", "When a user saves a note, the notes library shall store it."),
        ("event", "WHEN the clock ticks, THE scheduler SHALL run due jobs."),
        ("state", "While the store is read-only, the notes library shall refuse writes."),
        ("unwanted", "If the disk is full, then the notes library shall report an error."),
        ("optional", "Where encryption is enabled, the notes library shall encrypt notes at rest."),
        ("complex", "While the store is open, when a note is saved, the notes library shall index it."),
        ("complex", "When a note is saved, if it is empty, then the notes library shall refuse it."),
    ],
)
def test_well_shaped_ears_sentences_pass(ears_type, text):
    assert ears_problem(key="REQ-001", ears_type=ears_type, text=text) is None


@pytest.mark.parametrize(
    ("ears_type", "text"),
    [
        ("ubiquitous", "Notes are kept in order."),
        ("ubiquitous", "When saving, the library shall store."),
        ("event", "The library shall store notes when saved."),
        ("event", "When a note is saved the library stores it."),
        ("state", "When idle, the library shall sleep."),
        ("unwanted", "If the disk is full, the library shall fail."),
        ("optional", "If enabled, then the library shall encrypt."),
        ("complex", "When a note is saved, the library shall index it."),
        ("complex", "While open, while saved, the library shall index it."),
    ],
)
def test_malformed_ears_sentences_name_the_expected_shape(ears_type, text):
    article = "an" if ears_type in ("event", "unwanted", "optional") else "a"
    assert ears_problem(key="REQ-007", ears_type=ears_type, text=text) == (
        f'REQ-007: {article} {ears_type} requirement must read "{EARS_SHAPES[ears_type]}"; got "{text}"'
    )


def test_the_shapes_are_the_ears_templates():
    assert EARS_SHAPES == {
        "ubiquitous": "The <system> shall <response>.",
        "event": "When <trigger>, the <system> shall <response>.",
        "state": "While <state>, the <system> shall <response>.",
        "unwanted": "If <unwanted condition>, then the <system> shall <response>.",
        "optional": "Where <feature is included>, the <system> shall <response>.",
        "complex": "While <state>, when <trigger>, the <system> shall <response>. (two or more of While, When, If)",
    }


def requirements_with(**changes):
    data = copy.deepcopy(REQUIREMENTS)
    for index, values in changes.items():
        data["requirements"][int(index[1:])].update(values)
    return data


def test_requirement_keys_must_be_well_formed_and_unique():
    data = requirements_with(r1={"key": "REQ-001"}, r2={"key": "R3"})

    output, problems = phase_output_validate(phase="requirements", data=data)

    assert output is None
    assert problems == [
        "requirements[1]: key REQ-001 is used more than once; keys must be unique",
        "requirements[2]: key 'R3' must look like 'REQ-001'",
    ]


def test_a_missing_field_and_a_wrong_type_are_located():
    data = requirements_with(r0={"acceptance_criteria": "just one"})
    del data["requirements"][2]["action"]

    output, problems = phase_output_validate(phase="requirements", data=data)

    assert problems == [
        "requirements[0] (REQ-001).acceptance_criteria: Input should be a valid list",
        "requirements[2] (REQ-003).action: Field required",
    ]


def test_output_that_is_not_an_object_is_refused():
    assert phase_output_validate(phase="design", data="a design")[1] == [
        "input: Input should be a valid dictionary or instance of DesignOutput"
    ]


def test_case_is_normalised_and_extra_fields_ignored():
    data = requirements_with(r0={"ears_type": "EVENT", "priority": "High", "rationale": "users asked"})

    output, problems = phase_output_validate(phase="requirements", data=data)

    assert problems == []
    assert (output.requirements[0].ears_type, output.requirements[0].priority) == ("event", "high")
    assert "rationale" not in output.model_dump()


def tasks_with(*changes):
    data = copy.deepcopy(TASKS)
    for index, values in changes:
        data["tasks"][index].update(values)
    return data


def test_task_links_must_name_existing_keys_and_cover_every_requirement():
    data = tasks_with((0, {"requirements": ["REQ-001", "REQ-404"]}), (1, {"depends_on": ["TSK-002"]}))
    data["tasks"][2]["requirements"] = ["REQ-001"]

    output, problems = phase_output_validate(
        phase="tasks", data=data, requirement_keys=["REQ-001", "REQ-002", "REQ-003"]
    )

    assert problems == [
        "TSK-001: requirements names 'REQ-404', which is not a requirement key (requirements: REQ-001, REQ-002, "
        "REQ-003)",
        "TSK-002: depends_on names the task itself",
        "REQ-003 is not covered by any task: add it to the requirements of the task(s) that implement it",
    ]


def test_the_cycle_is_named():
    data = tasks_with((0, {"depends_on": ["TSK-002"]}))

    _, problems = phase_output_validate(phase="tasks", data=data, requirement_keys=["REQ-001", "REQ-002", "REQ-003"])

    assert problems == ["the dependencies form a cycle: TSK-001 → TSK-002 → TSK-001; a task cannot wait for itself"]


def test_a_long_chain_has_no_cycle_and_a_long_loop_is_found():
    chain = {f"T{n}": [f"T{n - 1}"] if n else [] for n in range(3000)}
    assert dependency_cycle(chain) is None
    chain["T0"] = ["T2999"]
    cycle = dependency_cycle(chain)
    assert (cycle[0], cycle[-1], len(cycle)) == ("T0", "T0", 3001)


def test_task_phase_and_estimate_are_checked():
    data = tasks_with((0, {"phase": "done", "estimate_hours": -1}))

    _, problems = phase_output_validate(phase="tasks", data=data, requirement_keys=["REQ-001", "REQ-002", "REQ-003"])

    assert problems == [
        "tasks[0] (TSK-001).phase: Input should be 'REQUIREMENTS', 'DESIGN', 'IMPLEMENTATION', 'TESTING' or "
        "'DEPLOYMENT'",
        "tasks[0] (TSK-001).estimate_hours: Input should be greater than or equal to 0",
    ]


@pytest.mark.parametrize(
    ("phase", "data"),
    [("explore", EXPLORATION), ("requirements", REQUIREMENTS), ("design", DESIGN), ("tasks", TASKS)],
)
def test_the_fixture_outputs_are_valid(phase, data):
    output, problems = phase_output_validate(phase=phase, data=data, requirement_keys=["REQ-001", "REQ-002", "REQ-003"])
    assert problems == []
    assert output is not None


def test_submit_tools_carry_the_output_schemas_self_contained():
    tools = {phase: submit_tool(phase) for phase in ("explore", "requirements", "design", "tasks")}

    assert [tool["name"] for tool in tools.values()] == [
        "submit_exploration",
        "submit_requirements",
        "submit_design",
        "submit_tasks",
    ]
    assert "$ref" not in str(tools) and "$defs" not in str(tools)
    requirement = tools["requirements"]["input_schema"]["properties"]["requirements"]["items"]
    assert requirement["required"] == ["key", "title", "ears_type", "text", "action", "acceptance_criteria"]
    assert requirement["properties"]["ears_type"]["enum"] == [
        "ubiquitous",
        "event",
        "state",
        "unwanted",
        "optional",
        "complex",
    ]
    assert requirement["properties"]["acceptance_criteria"]["minItems"] == 1
    assert requirement["properties"]["key"]["pattern"] == r"^REQ-\d{3,}$"
    task = tools["tasks"]["input_schema"]["properties"]["tasks"]["items"]
    assert task["properties"]["phase"]["default"] == "IMPLEMENTATION"
    assert set(task["properties"]) == {
        "key",
        "title",
        "description",
        "phase",
        "priority",
        "estimate_hours",
        "depends_on",
        "requirements",
        "files",
        "acceptance_criteria",
    }
    assert set(tools["explore"]["input_schema"]["properties"]) == {
        "project_type",
        "tech_stack",
        "structure",
        "key_files",
        "conventions",
        "test_command",
        "notes",
    }
    assert set(tools["design"]["input_schema"]["properties"]) == {
        "architecture",
        "components",
        "data_model",
        "api_endpoints",
        "risks",
    }
