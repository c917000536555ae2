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
    env = {
        "OMOI_LLM_PROVIDER": "replay",
        "OMOI_SANDBOX_ROOT": str(tmp_path / "sandboxes"),
        "OMOI_REPOS_DIR": str(tmp_path / "repos"),
    }
    settings.OMOI_LLM_PROVIDER = env["OMOI_LLM_PROVIDER"]
    settings.OMOI_SANDBOX_ROOT = Path(env["OMOI_SANDBOX_ROOT"])
    settings.OMOI_REPOS_DIR = Path(env["OMOI_REPOS_DIR"])
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


def spec_steps(spec_id: int, *, count: int | None = None, limit: int = 60) -> list[tuple[str, str]]:
    """Run the spec's waiting steps in this process, as a worker would, while it plans (or just
    `count` of them): (phase, outcome) of each step, one model turn each ("turn", "retry" for
    output sent back, "completed" or "failed" for the phase)."""
    from specs.models import Spec
    from tests.support.steps import run_step, waiting_steps

    steps: list[tuple[str, str]] = []
    while len(steps) < (count or limit):
        spec = Spec.objects.get(pk=spec_id)
        if spec.status != "planning":
            return steps
        if ("spec", spec_id) not in waiting_steps():
            raise AssertionError(f"spec {spec_id} is planning {spec.current_phase} with no step waiting: {steps}")
        steps.append((spec.current_phase, run_step("spec", spec_id)))
    if count:
        return steps
    raise AssertionError(f"planning did not end within {limit} steps: {steps[-10:]}")


def run_planning(spec_id: int, *, limit: int = 60) -> list[tuple[str, str]]:
    """Drive planning in this process until the spec leaves `planning`: how each phase ended."""
    return [(phase, outcome) for phase, outcome in spec_steps(spec_id, limit=limit) if outcome not in ("turn", "retry")]


def run_phase(spec_id: int, *, limit: int = 30) -> str:
    """Run the spec's steps until its current phase ends; how it ended ("completed", "failed")."""
    from specs.models import Spec
    from tests.support.steps import run_step

    phase = Spec.objects.get(pk=spec_id).current_phase
    for _ in range(limit):
        outcome = run_step("spec", spec_id)
        spec = Spec.objects.get(pk=spec_id)
        if outcome not in ("turn", "retry") or spec.status != "planning" or spec.current_phase != phase:
            return outcome
    raise AssertionError(f"the {phase} phase did not end within {limit} steps")


@pytest.fixture
def planned(db, user, notes_project, use_script):
    """A spec whose planning completed in this process with the fixture script."""
    from specs.models import Spec
    from specs.services.planning import spec_launch
    from tests.specs.scripts import IDEA
    from tests.support.steps import drain

    use_script()
    spec = spec_launch(project_id=notes_project.pk, user=user, idea=IDEA, title="Tags")
    run_planning(spec.pk)
    drain()  # the step after planning finds nothing to do until someone approves
    return Spec.objects.get(pk=spec.pk)
