"""Output no database can store, from the agent's own commands and files: a command that prints NUL
bytes and a file read with NUL bytes in it leave the spec completing normally: the command's output
is recorded with the NUL replaced, the file is answered as binary, and nothing unstorable reaches
the transcript or the events."""

import json

import pytest

from sandboxes.models import AgentMessage, SandboxEvent
from specs.models import Spec
from tests.e2e.conftest import launch_sample, sample_script, write_script
from tests.support.steps import drain

pytestmark = pytest.mark.django_db

HOSTILE = [
    {"tool": "run_command", "input": {"command": "printf 'before\\000after\\n'; printf 'left\\000right' > blob.txt"}},
    {"tool": "read_file", "input": {"path": "blob.txt"}},
    {"tool": "run_command", "input": {"command": "rm blob.txt"}},
]


def test_nul_bytes_from_a_command_and_a_file_leave_the_spec_completing(
    api, user, sample_repository, fake_github, execution_env, tmp_path, settings
):
    script = sample_script()
    key = "TSK-001:implement_feature"
    script["conversations"][key] = [*HOSTILE, *script["conversations"][key]]
    settings.GITHUB_API_URL = fake_github.url
    settings.OMOI_LLM_PROVIDER = "replay"
    settings.OMOI_REPLAY_SCRIPT = write_script(tmp_path, script)
    spec_id = launch_sample(api, user=user, sample_repository=sample_repository, fake_github=fake_github)
    drain()

    spec = Spec.objects.get(pk=spec_id)
    assert (spec.status, spec.last_error) == ("completed", "")
    assert spec.pull_request_number == 1
    # What the agent saw is kept, readable, without the NUL bytes.
    results = [
        json.dumps(event.payload)
        for event in SandboxEvent.objects.filter(
            spec=spec, type="agent.tool_result", task__task_type="implement_feature"
        )
    ]
    command_output = next(text for text in results if "before" in text)
    assert "after" in command_output and "\\u0000" not in command_output
    # A file with NUL bytes is answered as binary (the model is told so), not passed on.
    payloads = SandboxEvent.objects.filter(spec=spec, type="agent.tool_result", task__task_type="implement_feature")
    assert any(
        (event.payload.get("name"), event.payload.get("is_error"), event.payload.get("content"))
        == ("read_file", True, "blob.txt is a binary file")
        for event in payloads
    ), [event.payload for event in payloads]
    transcript = json.dumps(list(AgentMessage.objects.filter(run__spec=spec).values_list("content", flat=True)))
    assert "before" in transcript and "\\u0000" not in transcript
    # The scratch file never reached the branch.
    assert "blob.txt" not in json.dumps(
        list(SandboxEvent.objects.filter(spec=spec, type="task.verified").values_list("payload", flat=True))
    )
