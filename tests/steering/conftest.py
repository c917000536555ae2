"""Specs whose agents are scripted to loop, overspend or take guidance, run in this process with
drain() (as a worker would) against the sample repository."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from tests.e2e.conftest import make_sample_repository, planned_spec, sample_script
from tests.factories import ProjectFactory


@pytest.fixture
def sample_repository(tmp_path) -> Path:
    return make_sample_repository(tmp_path / "textkit")


@pytest.fixture
def steering(settings, tmp_path, user, sample_repository):
    settings.OMOI_REPOS_DIR = tmp_path / "repos"
    settings.OMOI_SANDBOX_ROOT = tmp_path / "sandboxes"
    settings.OMOI_LLM_PROVIDER = "replay"
    project = ProjectFactory(owner=user, repository=str(sample_repository))

    def launch(conversations: dict[str, list], *, budget_usd: str | None = None):
        """A planned, approved spec of the sample whose task conversations are `conversations`
        (others as in the demo's script), its tickets made (the bridge run)."""
        from specs.services.bridge import spec_execute

        script = copy.deepcopy(sample_script())
        script["conversations"].update(conversations)
        path = Path(tmp_path) / f"script-{len(list(Path(tmp_path).glob('script-*.json')))}.json"
        path.write_text(json.dumps(script))
        settings.OMOI_REPLAY_SCRIPT = str(path)
        spec = planned_spec(project=project, user=user, script=script)
        if budget_usd is not None:
            spec.budget_usd = budget_usd
            spec.save(update_fields=["budget_usd"])
        spec_execute(spec_id=spec.pk, actor="test")
        return spec

    def launch_idea(conversations: dict[str, list]):
        """A spec of the sample launched for real (planned by its scripted planner, no approval)."""
        from specs.services.planning import spec_launch

        script = copy.deepcopy(sample_script())
        script["conversations"].update(conversations)
        path = Path(tmp_path) / "launched-script.json"
        path.write_text(json.dumps(script))
        settings.OMOI_REPLAY_SCRIPT = str(path)
        return spec_launch(project_id=project.pk, user=user, idea="Add word statistics", require_approval=False)

    launch.idea = launch_idea
    return launch


def loop(turn: dict, times: int = 12) -> list[dict]:
    return [copy.deepcopy(turn) for _ in range(times)]
