from pathlib import Path

import pytest

from tests.factories import ProjectFactory
from tests.specs.scripts import make_fixture_repository, planning_script, write_script


@pytest.fixture
def repository(tmp_path) -> Path:
    return make_fixture_repository(tmp_path / "notes-repo")


@pytest.fixture
def planning_env(settings, tmp_path) -> dict[str, str]:
    """The settings a planning run needs, for this process and (as env) for a worker."""
    env = {"OMOI_LLM_PROVIDER": "replay", "OMOI_SANDBOX_ROOT": str(tmp_path / "sandboxes")}
    settings.OMOI_LLM_PROVIDER = env["OMOI_LLM_PROVIDER"]
    settings.OMOI_SANDBOX_ROOT = Path(env["OMOI_SANDBOX_ROOT"])
    settings.OMOI_PHASE_MAX_ATTEMPTS = 3
    return env


@pytest.fixture
def use_script(settings, tmp_path, planning_env):
    """use_script(script=None) writes the replay script and points OMOI_REPLAY_SCRIPT at it."""
    counter = iter(range(1000))

    def use(script: dict | None = None) -> str:
        path = write_script(tmp_path / f"script-{next(counter)}.json", script or planning_script())
        settings.OMOI_REPLAY_SCRIPT = path
        return path

    return use


@pytest.fixture
def notes_project(user, repository):
    return ProjectFactory(owner=user, name="notes", repository=str(repository), default_branch="main")


def scheduled(callbacks) -> list[tuple[str, tuple]]:
    """The Celery tasks that on-commit callbacks (from delay_on_commit) would send: (name, args)."""
    return [(callback.func.__self__.name, callback.args) for callback in callbacks]


def run_planning(spec_id: int, *, limit: int = 20) -> list[tuple[str, str]]:
    """Drive the phases in this process, as the worker would: (phase, outcome) for each run."""
    from specs.models import Spec
    from specs.services.planning import planning_phase_run

    outcomes = []
    for _ in range(limit):
        spec = Spec.objects.get(pk=spec_id)
        if spec.status != "planning":
            return outcomes
        outcomes.append((spec.current_phase, planning_phase_run(spec_id=spec_id, phase=spec.current_phase)))
    raise AssertionError(f"planning did not end within {limit} phase runs: {outcomes}")


@pytest.fixture
def planned(db, user, notes_project, use_script):
    """A spec whose planning completed in this process with the fixture script."""
    from specs.models import Spec
    from specs.services.planning import spec_launch
    from tests.specs.scripts import IDEA

    use_script()
    spec = spec_launch(project_id=notes_project.pk, user=user, idea=IDEA, title="Tags")
    run_planning(spec.pk)
    return Spec.objects.get(pk=spec.pk)
