"""Nothing stuck: the beat sweeper re-enqueues a planning phase with no sign of life, and the claim
keeps a phase from running twice at once."""

from datetime import timedelta

import pytest
from django.utils import timezone

from omoi.celery import app
from omoi.llm.replay import ReplayProvider
from sandboxes.models import AgentRun, SandboxEvent
from specs.models import Spec
from specs.services import planning
from specs.services.planning import planning_phase_run, planning_sweep, spec_launch
from tests.factories import ProjectFactory, SpecFactory
from tests.specs.conftest import scheduled
from tests.specs.scripts import IDEA


def stale(settings, seconds=60):
    return timezone.now() - timedelta(seconds=settings.OMOI_PLANNING_STUCK_AFTER_S + seconds)


def test_a_planning_spec_without_a_heartbeat_is_requeued_and_its_dead_claim_broken(
    db, user, settings, django_capture_on_commit_callbacks
):
    spec = SpecFactory(
        project=ProjectFactory(owner=user),
        status="planning",
        current_phase="design",
        phase_claim="worker-that-died",
        phase_heartbeat_at=stale(settings),
    )
    lively = SpecFactory(
        project=spec.project,
        status="planning",
        current_phase="tasks",
        phase_claim="alive",
        phase_heartbeat_at=timezone.now(),
    )
    SpecFactory(project=spec.project, status="failed", phase_heartbeat_at=stale(settings))

    with django_capture_on_commit_callbacks() as callbacks:
        swept = planning_sweep()

    assert swept == [spec.pk]
    assert scheduled(callbacks) == [("specs.tasks.planning_phase_task", (spec.pk, "design"))]
    spec.refresh_from_db()
    assert (spec.status, spec.current_phase, spec.phase_claim) == ("planning", "design", "")
    assert spec.phase_heartbeat_at > timezone.now() - timedelta(seconds=5)
    event = SandboxEvent.objects.get(spec=spec, type="spec.phase_requeued")
    assert (event.payload["phase"], event.payload["claim_broken"]) == ("design", True)
    assert event.payload["idle_s"] >= settings.OMOI_PLANNING_STUCK_AFTER_S
    assert Spec.objects.get(pk=lively.pk).phase_claim == "alive"


def test_a_requeued_spec_is_not_requeued_again_until_the_deadline_passes_again(
    db, user, settings, django_capture_on_commit_callbacks
):
    spec = SpecFactory(
        project=ProjectFactory(owner=user),
        status="planning",
        current_phase="explore",
        phase_heartbeat_at=stale(settings),
    )
    planning_sweep()

    with django_capture_on_commit_callbacks() as callbacks:
        assert planning_sweep() == []
        assert planning_sweep(now=timezone.now() + timedelta(seconds=settings.OMOI_PLANNING_STUCK_AFTER_S + 1)) == [
            spec.pk
        ]

    assert scheduled(callbacks) == [("specs.tasks.planning_phase_task", (spec.pk, "explore"))]


def test_an_approved_spec_that_did_not_start_executing_gets_its_bridge_task_again(
    db, user, settings, django_capture_on_commit_callbacks
):
    spec = SpecFactory(project=ProjectFactory(owner=user), status="planning_complete", approved_at=timezone.now())
    Spec.objects.filter(pk=spec.pk).update(updated_at=stale(settings))
    SpecFactory(project=spec.project, status="planning_complete", approved_at=None)  # waits for a person

    with django_capture_on_commit_callbacks() as callbacks:
        assert planning_sweep() == [spec.pk]

    assert scheduled(callbacks) == [("specs.tasks.spec_execute_task", (spec.pk, "sweeper"))]


class SweepDuringTheTurn(ReplayProvider):
    """The scripted model, plus the passage of time: while its first answer is "in flight" the
    holder looks dead, and the sweeper breaks its claim."""

    def __init__(self, script_path, spec_id, settings):
        super().__init__(script_path)
        self.spec_id, self.settings, self.swept = spec_id, settings, False

    def complete(self, **kwargs):
        if not self.swept:
            Spec.objects.filter(pk=self.spec_id).update(phase_heartbeat_at=stale(self.settings))
            assert planning_sweep() == [self.spec_id]
            self.swept = True
        return super().complete(**kwargs)


def test_a_holder_whose_claim_was_broken_stops_and_the_new_run_continues_its_transcript(
    db, user, notes_project, use_script, settings, monkeypatch
):
    script = use_script()
    spec = spec_launch(project_id=notes_project.pk, user=user, idea=IDEA)
    provider = SweepDuringTheTurn(script, spec.pk, settings)
    monkeypatch.setattr(planning, "get_provider", lambda: provider)

    assert planning_phase_run(spec_id=spec.pk, phase="explore") == "lost"

    run = AgentRun.objects.get(spec=spec)
    assert (run.status, run.turns) == ("running", 1)
    spec.refresh_from_db()
    assert (spec.status, spec.current_phase, spec.phase_claim) == ("planning", "explore", "")

    assert planning_phase_run(spec_id=spec.pk, phase="explore") == "completed"

    assert list(AgentRun.objects.filter(spec=spec).values_list("pk", "status", "turns")) == [(run.pk, "finished", 3)]
    assert Spec.objects.get(pk=spec.pk).current_phase == "requirements"


@pytest.mark.parametrize(
    ("task", "queue"),
    [
        ("specs.tasks.planning_phase_task", "planning"),
        ("specs.tasks.planning_sweep_task", "planning"),
        ("specs.tasks.spec_execute_task", "default"),
    ],
)
def test_planning_tasks_are_routed_to_their_queue(task, queue):
    route = app.amqp.router.route({}, task)
    assert route["queue"].name == queue


def test_beat_runs_the_sweeper_every_minute():
    entry = next(e for e in app.conf.beat_schedule.values() if e["task"] == "specs.tasks.planning_sweep_task")
    assert entry["schedule"] == 60.0
