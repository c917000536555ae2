"""An honest demo: the demo's replay script plays only the idea it was recorded for. Another idea
fails its spec at EXPLORE with a message that names the mismatch, and nothing is planned."""

from pathlib import Path

from sandboxes.models import SandboxEvent
from specs.models import Spec, SpecRequirement, SpecTask
from specs.services.planning import spec_launch
from tests.e2e.conftest import make_sample_repository
from tests.factories import ProjectFactory
from tests.specs.conftest import run_planning


def _demo_project(user, tmp_path, settings, planning_env):
    settings.OMOI_REPLAY_SCRIPT = str(Path(settings.BASE_DIR) / "samples" / "textkit.replay.json")
    repository = make_sample_repository(tmp_path / "textkit")
    return ProjectFactory(owner=user, name="textkit-demo", repository=str(repository), test_command="")


def test_another_idea_on_the_demo_script_fails_with_the_mismatch(db, user, tmp_path, settings, planning_env):
    project = _demo_project(user, tmp_path, settings, planning_env)
    spec = spec_launch(project_id=project.pk, user=user, idea="Add CSV export", require_approval=False)

    assert run_planning(spec.pk) == [("explore", "failed")]

    spec = Spec.objects.get(pk=spec.pk)
    assert (spec.status, spec.current_phase) == ("failed", "explore")
    assert "the model could not be used" in spec.last_error
    assert "does not fit conversation 'explore'" in spec.last_error
    assert "does not contain 'Add word statistics'" in spec.last_error
    assert "recorded for: the textkit sample repository" in spec.last_error
    assert not SpecRequirement.objects.filter(spec=spec).exists()
    assert not SpecTask.objects.filter(spec=spec).exists()
    failed = SandboxEvent.objects.get(spec=spec, type="spec.phase_failed")
    assert "does not fit conversation 'explore'" in failed.payload["error"]


def test_the_recorded_idea_is_planned(db, user, tmp_path, settings, planning_env):
    project = _demo_project(user, tmp_path, settings, planning_env)
    spec = spec_launch(
        project_id=project.pk, user=user, idea="Add word statistics to textkit: count the words in a text."
    )

    assert [phase for phase, _ in run_planning(spec.pk)] == ["explore", "requirements", "design", "tasks", "sync"]

    spec = Spec.objects.get(pk=spec.pk)
    assert (spec.status, spec.last_error) == ("planning_complete", "")
    assert list(SpecTask.objects.filter(spec=spec).values_list("key", flat=True)) == ["TSK-001", "TSK-002"]
