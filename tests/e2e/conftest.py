import json
from pathlib import Path

import pytest
from django.conf import settings

from specs.cli.demo import prepare_sample
from tests.support.fake_github import FakeGitHub

SAMPLES = Path(settings.BASE_DIR) / "samples"


def make_sample_repository(target: Path) -> Path:
    """The demo's sample project as a fresh git repository on branch main."""
    prepare_sample(target)
    return target


def sample_script() -> dict:
    return json.loads((SAMPLES / "textkit.replay.json").read_text())


@pytest.fixture
def sample_repository(tmp_path) -> Path:
    return make_sample_repository(tmp_path / "textkit")


@pytest.fixture
def fake_github():
    with FakeGitHub() as github:
        yield github


@pytest.fixture
def execution_env(tmp_path, settings):
    """Settings shared by the test process and its worker: where host clones and sandboxes live."""
    env = {
        "OMOI_REPOS_DIR": str(tmp_path / "repos"),
        "OMOI_SANDBOX_ROOT": str(tmp_path / "sandboxes"),
        "GITHUB_TOKEN": "test-github-token",
    }
    settings.OMOI_REPOS_DIR = Path(env["OMOI_REPOS_DIR"])
    settings.OMOI_SANDBOX_ROOT = Path(env["OMOI_SANDBOX_ROOT"])
    settings.GITHUB_TOKEN = env["GITHUB_TOKEN"]
    return env


def launch_sample(
    api,
    *,
    user,
    sample_repository: Path,
    fake_github,
    idea: str = "Add word statistics",
    require_approval: bool = False,
    **project_fields,
) -> int:
    """A project on the sample repository, pushed to acme/textkit on the fake GitHub, and an idea
    launched on it through the API. Returns the spec's id."""
    from tests.factories import ProjectFactory

    fake_github.git.seed("acme/textkit", sample_repository)
    project = ProjectFactory(
        owner=user, repository=str(sample_repository), github_repo="acme/textkit", **project_fields
    )
    launched = api.post(
        "/api/v1/specs/launch",
        {"project": project.pk, "idea": idea, "require_approval": require_approval},
        format="json",
    )
    assert launched.status_code == 201, launched.json()
    return launched.json()["id"]


def write_script(tmp_path: Path, script: dict, name: str = "script.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(script))
    return str(path)


def planned_spec(*, project, user, script: dict | None = None, approved: bool = True):
    """A spec whose planning is complete, with the sample script's requirements and tasks, as
    the planner would have written them (for tests of execution that do not replay planning)."""
    from django.utils import timezone

    from specs.models import (
        Spec,
        SpecAcceptanceCriterion,
        SpecRequirement,
        SpecTask,
        SpecTaskDependency,
        SpecTaskRequirement,
    )

    script = script or sample_script()
    conversations = script["conversations"]
    explore = conversations["explore"][-1]["input"]
    design = conversations["design"][-1]["input"]
    spec = Spec.objects.create(
        project=project,
        user=user,
        title="Word statistics",
        idea="Add word statistics",
        status="planning_complete",
        current_phase="sync",
        phase_data={"explore": explore},
        design=design,
        require_approval=True,
        approved_at=timezone.now() if approved else None,
        approved_by=user if approved else None,
    )
    requirements = {}
    for position, item in enumerate(conversations["requirements"][-1]["input"]["requirements"]):
        requirement = SpecRequirement.objects.create(
            spec=spec,
            key=item["key"],
            title=item["title"],
            ears_type=item["ears_type"],
            condition=item["condition"],
            action=item["action"],
            text=item["text"],
            priority=item["priority"],
            position=position,
        )
        for index, text in enumerate(item["acceptance_criteria"]):
            SpecAcceptanceCriterion.objects.create(requirement=requirement, position=index, text=text)
        requirements[item["key"]] = requirement
    tasks = {}
    for position, item in enumerate(conversations["tasks"][-1]["input"]["tasks"]):
        tasks[item["key"]] = SpecTask.objects.create(
            spec=spec,
            key=item["key"],
            title=item["title"],
            description=item["description"],
            phase=item["phase"],
            priority=item["priority"],
            files=item["files"],
            acceptance_criteria=item["acceptance_criteria"],
            position=position,
        )
        for key in item["requirements"]:
            SpecTaskRequirement.objects.create(task=tasks[item["key"]], requirement=requirements[key])
        for key in item["depends_on"]:
            SpecTaskDependency.objects.create(task=tasks[item["key"]], depends_on=tasks[key])
    return spec
