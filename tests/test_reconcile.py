"""The reconciler (omoi/reconcile.py): one pass derives from the database everything that should be
moving and is not, and sets it moving again. Each kind of lost work: the state is made as a lost
message or a killed worker would leave it, one reconcile() pass runs, and what it sent is checked;
then the steps run in this process (drain) and the work completes."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from omoi.celery import app
from omoi.models import Lease, WorkerNode
from omoi.reconcile import reconcile
from omoi.tasks import reconcile_task
from sandboxes import git
from sandboxes.models import AgentRun, Sandbox, SandboxEvent, SandboxStatus
from specs.models import Spec
from specs.services.bridge import spec_execute
from specs.services.planning import spec_launch
from tests.e2e.conftest import make_sample_repository, planned_spec
from tests.factories import ProjectFactory, SpecFactory, TaskFactory
from tests.specs.scripts import IDEA, make_fixture_repository, planning_script, write_script
from tests.support.fake_github import FakeGitHub
from tests.support.steps import drain, run_step, waiting_steps
from tests.tickets.conftest import PASSING_ARTIFACTS, make_ticket, satisfy_gate
from tickets.models import Phase, PhaseGateArtifact, Task, TaskStatus, Ticket
from tickets.services import repository

pytestmark = pytest.mark.django_db

SPEC_STEP = "specs.tasks.spec_step_task"
TICKET_STEP = "tickets.tasks.ticket_step_task"


@pytest.fixture(autouse=True)
def git_store(settings, tmp_path):
    """Mirrors and sandboxes under this test's directory."""
    settings.OMOI_REPOS_DIR = tmp_path / "repos"
    settings.OMOI_SANDBOX_ROOT = tmp_path / "sandboxes"


@pytest.fixture
def sample(tmp_path) -> Path:
    return make_sample_repository(tmp_path / "textkit")


def ago(seconds: float):
    return timezone.now() - timedelta(seconds=seconds)


def lost_message(settings) -> dict:
    """A waiting step whose message was sent longer ago than a lease period."""
    return {"owner": "", "enqueued_at": ago(settings.OMOI_LEASE_S + 5)}


def killed_worker(settings, node: str = "killed@host") -> dict:
    """A step held by a worker that died: its lease expired."""
    return {
        "owner": f"{node}:4242:deadbeef",
        "expires_at": ago(1),
        "enqueued_at": ago(settings.OMOI_LEASE_S + 5),
        "claims": 1,
    }


def ready_to_finish(project, **fields) -> Ticket:
    """A ticket whose last phase's work is done: its step moves it to DONE."""
    ticket = make_ticket(project=project, phase=Phase.DEPLOYMENT, **fields)
    Task.objects.create(ticket=ticket, phase=Phase.DEPLOYMENT, task_type="deploy", executor="host")
    satisfy_gate(ticket, Phase.DEPLOYMENT)
    return ticket


def only(counts: dict[str, int]) -> dict[str, int]:
    return {name: count for name, count in counts.items() if count}


# --- Leases ---------------------------------------------------------------------------------------


def test_an_expired_lease_of_a_killed_worker_is_sent_again_and_its_step_completes(project, settings, capture_sends):
    ticket = ready_to_finish(project)
    Lease.objects.create(kind="ticket", object_id=ticket.pk, queue="node.killed_host", **killed_worker(settings))
    alive = ready_to_finish(project)
    Lease.objects.create(
        kind="ticket", object_id=alive.pk, owner="alive@host:1:x", expires_at=timezone.now() + timedelta(seconds=20),
        enqueued_at=ago(settings.OMOI_LEASE_S + 5),
    )  # fmt: skip

    with capture_sends() as sent:
        counts = reconcile()

    assert only(counts) == {"leases_resent": 1}
    assert sent == [(TICKET_STEP, (ticket.pk,), "execution")]  # routed afresh, not to the dead node
    row = Lease.objects.get(kind="ticket", object_id=ticket.pk)
    assert row.queue == "execution" and row.enqueued_at > ago(5)
    with capture_sends() as sent:
        assert only(reconcile()) == {}  # sent again at most once a lease period
    assert sent == []

    assert run_step("ticket", ticket.pk) == "idle"  # the worker that receives it takes the expired lease
    ticket.refresh_from_db()
    assert ticket.phase == Phase.DONE
    assert not Lease.objects.filter(kind="ticket", object_id=ticket.pk).exists()


def test_a_waiting_step_whose_message_was_lost_is_sent_again(project, settings, capture_sends):
    lost = ready_to_finish(project)
    Lease.objects.create(kind="ticket", object_id=lost.pk, queue="execution", **lost_message(settings))
    in_flight = ready_to_finish(project)
    Lease.objects.create(kind="ticket", object_id=in_flight.pk, queue="execution", enqueued_at=timezone.now())
    backing_off = ready_to_finish(project)
    Lease.objects.create(
        kind="ticket", object_id=backing_off.pk, queue="execution", not_before=timezone.now() + timedelta(seconds=60),
        failures=1, **lost_message(settings),
    )  # fmt: skip

    with capture_sends() as sent:
        counts = reconcile()

    assert only(counts) == {"leases_resent": 1}
    assert sent == [(TICKET_STEP, (lost.pk,), "execution")]

    assert ("ticket", lost.pk, "idle") in drain()
    assert Ticket.objects.get(pk=lost.pk).phase == Phase.DONE
    assert Ticket.objects.get(pk=backing_off.pk).phase == Phase.DEPLOYMENT  # its back-off still runs


# --- Specs ------------------------------------------------------------------------------------------


def test_an_approved_spec_without_tickets_gets_its_bridge(user, sample, capture_sends):
    project = ProjectFactory(owner=user, repository=str(sample))
    approved = planned_spec(project=project, user=user)
    waiting_for_a_person = planned_spec(project=project, user=user, approved=False)

    with capture_sends() as sent:
        counts = reconcile()

    assert only(counts) == {"specs_without_step": 1}
    assert sent == [(SPEC_STEP, (approved.pk,), "default")]
    assert waiting_steps() == [("spec", approved.pk)]

    assert drain(kinds=("spec",))[0] == ("spec", approved.pk, "bridged")
    approved.refresh_from_db()
    assert approved.status == "executing"
    assert sorted(Ticket.objects.filter(spec=approved).values_list("spec_task__key", flat=True)) == [
        "TSK-001",
        "TSK-002",
    ]
    assert Spec.objects.get(pk=waiting_for_a_person.pk).status == "planning_complete"
    assert not Ticket.objects.filter(spec=waiting_for_a_person).exists()


def test_a_spec_whose_planning_completed_without_approval_required_is_bridged(user, sample, capture_sends):
    project = ProjectFactory(owner=user, repository=str(sample))
    spec = planned_spec(project=project, user=user, approved=False)
    Spec.objects.filter(pk=spec.pk).update(require_approval=False)

    with capture_sends() as sent:
        assert only(reconcile()) == {"specs_without_step": 1}

    assert sent == [(SPEC_STEP, (spec.pk,), "default")]
    assert drain(kinds=("spec",))[0] == ("spec", spec.pk, "bridged")
    assert Spec.objects.get(pk=spec.pk).status == "executing"


def test_a_planning_spec_with_no_step_gets_one(user, settings, tmp_path, capture_sends):
    settings.OMOI_LLM_PROVIDER = "replay"
    settings.OMOI_REPLAY_SCRIPT = write_script(tmp_path / "script.json", planning_script())
    project = ProjectFactory(owner=user, repository=str(make_fixture_repository(tmp_path / "notes")))
    spec = spec_launch(project_id=project.pk, user=user, idea=IDEA)
    Lease.objects.all().delete()  # as if the spec had lost its step
    failed = SpecFactory(project=project, status="failed", current_phase="design")

    with capture_sends() as sent:
        assert only(reconcile()) == {"specs_without_step": 1}

    assert sent == [(SPEC_STEP, (spec.pk,), "planning")]
    assert run_step("spec", spec.pk) == "turn"
    assert AgentRun.objects.get(spec=spec).turns == 1
    assert not AgentRun.objects.filter(spec=failed).exists()


def test_a_ticket_blocked_while_its_spec_executes_fails_the_spec(project, capture_sends):
    spec = SpecFactory(project=project, status="executing", current_phase="execute")
    make_ticket(project=project, phase=Phase.DONE, spec=spec)
    blocked = make_ticket(
        project=project, phase=Phase.BLOCKED, spec=spec, previous_phase=Phase.TESTING,
        blocked_reason="failing_checks", blocked_message="2 tests failed",
    )  # fmt: skip

    with capture_sends() as sent:
        assert only(reconcile()) == {"specs_without_step": 1}

    assert sent == [(SPEC_STEP, (spec.pk,), "default")]
    assert drain() == [("spec", spec.pk, "failed")]
    spec.refresh_from_db()
    assert spec.status == "failed"
    assert spec.last_error == f"Ticket #{blocked.pk} ({blocked.title}) is blocked: failing_checks. 2 tests failed"
    assert SandboxEvent.objects.get(spec=spec, type="spec.failed").payload["ticket"] == blocked.pk


def test_every_ticket_done_completes_the_spec_and_pushes_its_branch(user, sample, capture_sends):
    project = ProjectFactory(owner=user, repository=str(sample))
    spec = spec_execute(spec_id=planned_spec(project=project, user=user).pk, actor="test")
    Ticket.objects.filter(spec=spec).update(phase=Phase.DONE)  # their completion's messages were lost
    Lease.objects.all().delete()

    with capture_sends() as sent:
        assert only(reconcile()) == {"specs_without_step": 1}

    assert sent == [(SPEC_STEP, (spec.pk,), "default")]
    assert drain() == [("spec", spec.pk, "completed"), ("spec", spec.pk, "pull_request")]
    spec.refresh_from_db()
    assert (spec.status, spec.progress, spec.current_phase) == ("completed", 100, "complete")
    assert spec.branch_pushed_at is not None
    assert git.rev_parse(sample, f"refs/heads/{spec.branch_name}") == repository.spec_branch_sha(spec=spec)
    assert only(reconcile()) == {}


def test_a_completed_spec_without_its_pull_request_gets_it_once(user, sample, settings, capture_sends):
    with FakeGitHub() as github:
        settings.GITHUB_API_URL, settings.GITHUB_TOKEN = github.url, "test-github-token"
        project = ProjectFactory(owner=user, repository=str(sample), github_repo="acme/textkit")
        spec = spec_execute(spec_id=planned_spec(project=project, user=user).pk, actor="test")
        Ticket.objects.filter(spec=spec).update(phase=Phase.DONE)
        Spec.objects.filter(pk=spec.pk).update(status="completed", current_phase="complete", branch_pushed_at=ago(60))
        Lease.objects.all().delete()  # the pull request step's message was lost
        gave_up = SpecFactory(
            project=project, status="completed", last_error="the pull request step kept failing: HTTP 422"
        )
        SpecFactory(project=ProjectFactory(owner=user), status="completed", branch_pushed_at=ago(60))  # no GitHub

        with capture_sends() as sent:
            assert only(reconcile()) == {"specs_without_step": 1}
        assert sent == [(SPEC_STEP, (spec.pk,), "default")]

        assert drain() == [("spec", spec.pk, "pull_request")]
        assert only(reconcile()) == {}
        assert drain() == []

    spec.refresh_from_db()
    assert (spec.pull_request_number, len(github.pulls)) == (1, 1)
    assert github.pulls[0]["head"]["ref"] == spec.branch_name
    assert Spec.objects.get(pk=gave_up.pk).pull_request_url == ""


def test_a_completed_spec_whose_branch_was_not_pushed_gets_it_pushed(user, sample, capture_sends):
    project = ProjectFactory(owner=user, repository=str(sample))  # no GitHub: the push is the whole step
    spec = spec_execute(spec_id=planned_spec(project=project, user=user).pk, actor="test")
    Ticket.objects.filter(spec=spec).update(phase=Phase.DONE)
    Spec.objects.filter(pk=spec.pk).update(status="completed", current_phase="complete")
    Lease.objects.all().delete()
    assert not git.branch_exists(sample, spec.branch_name)

    with capture_sends() as sent:
        assert only(reconcile()) == {"specs_without_step": 1}

    assert sent == [(SPEC_STEP, (spec.pk,), "default")]
    assert drain() == [("spec", spec.pk, "pull_request")]
    spec.refresh_from_db()
    assert spec.branch_pushed_at is not None and spec.pull_request_url == ""
    assert git.rev_parse(sample, f"refs/heads/{spec.branch_name}") == repository.spec_branch_sha(spec=spec)
    assert only(reconcile()) == {}


# --- Tickets -----------------------------------------------------------------------------------------


def test_a_runnable_ticket_with_no_step_gets_one(project, capture_sends):
    pending = make_ticket(project=project, phase=Phase.DESIGN)
    TaskFactory(ticket=pending, task_type="create_design")
    running = make_ticket(project=project, phase=Phase.IMPLEMENTATION)
    TaskFactory(ticket=running, task_type="implement_feature", status=TaskStatus.RUNNING)
    finished = ready_to_finish(project)
    Task.objects.filter(ticket=finished).update(status=TaskStatus.COMPLETED)
    # Nothing to do for these: waiting for a dependency, already stepping, not working, or their
    # spec is not executing.
    waiting = make_ticket(project=project, phase=Phase.DESIGN)
    TaskFactory(ticket=waiting, task_type="create_design")
    waiting.dependencies.add(pending)
    stepping = make_ticket(project=project, phase=Phase.DESIGN)
    TaskFactory(ticket=stepping, task_type="create_design")
    Lease.objects.create(kind="ticket", object_id=stepping.pk, enqueued_at=timezone.now())
    for phase in (Phase.BACKLOG, Phase.BLOCKED, Phase.DONE):
        make_ticket(project=project, phase=phase)
    for status in ("planning_complete", "failed", "cancelled"):
        make_ticket(project=project, phase=Phase.DESIGN, spec=SpecFactory(project=project, status=status))

    with capture_sends() as sent:
        counts = reconcile()

    assert only(counts) == {"tickets_without_step": 3}
    assert sorted(sent) == sorted((TICKET_STEP, (t.pk,), "execution") for t in (pending, running, finished))
    assert run_step("ticket", finished.pk) == "idle"
    assert Ticket.objects.get(pk=finished.pk).phase == Phase.DONE


def test_a_live_sandbox_whose_work_is_over_is_released(project):
    executing = SpecFactory(project=project, status="executing")
    done = make_ticket(project=project, phase=Phase.DONE, spec=executing)
    working = make_ticket(project=project, phase=Phase.IMPLEMENTATION, spec=executing)
    planning = SpecFactory(project=project, status="planning")
    cancelled = SpecFactory(project=project, status="cancelled")
    released = [
        Sandbox.objects.create(provider="local", status=SandboxStatus.READY, spec=executing, ticket=done),
        Sandbox.objects.create(provider="local", status=SandboxStatus.READY, spec=executing),  # planning's, left
        Sandbox.objects.create(provider="local", status=SandboxStatus.CREATING, spec=cancelled),
    ]
    kept = [
        Sandbox.objects.create(provider="local", status=SandboxStatus.READY, spec=executing, ticket=working),
        Sandbox.objects.create(provider="local", status=SandboxStatus.READY, spec=planning),
    ]

    assert reconcile()["sandboxes_unheld"] == 3

    assert {s.pk: s.status for s in Sandbox.objects.all()} == {
        **{s.pk: "released" for s in released},
        **{s.pk: "ready" for s in kept},
    }
    assert sorted(SandboxEvent.objects.filter(type="sandbox.released").values_list("sandbox_id", flat=True)) == sorted(
        s.pk for s in released
    )
    assert reconcile()["sandboxes_unheld"] == 0


def test_the_sandboxes_of_a_dead_node_are_lost_and_its_work_goes_elsewhere(project, settings, capture_sends):
    now = timezone.now()
    dead_since = ago(settings.OMOI_NODE_DEAD_S + 1)
    WorkerNode.objects.create(name="dead@host", queue="node.dead_host", started_at=dead_since, last_seen_at=dead_since)
    WorkerNode.objects.create(name="alive@host", queue="node.alive_host", started_at=now, last_seen_at=now)
    spec = SpecFactory(project=project, status="executing")
    orphan = make_ticket(project=project, phase=Phase.IMPLEMENTATION, spec=spec)
    TaskFactory(ticket=orphan, task_type="implement_feature", status=TaskStatus.RUNNING, executor="agent")
    on_dead = Sandbox.objects.create(
        provider="local", status=SandboxStatus.READY, spec=spec, ticket=orphan, node="dead@host"
    )
    run = AgentRun.objects.create(kind="task", spec=spec, sandbox=on_dead, status="running")
    Lease.objects.create(
        kind="ticket", object_id=orphan.pk, queue="node.dead_host", **killed_worker(settings, node="dead@host")
    )
    healthy = make_ticket(project=project, phase=Phase.IMPLEMENTATION, spec=spec)
    on_alive = Sandbox.objects.create(
        provider="local", status=SandboxStatus.READY, spec=spec, ticket=healthy, node="alive@host"
    )

    with capture_sends() as sent:
        counts = reconcile()

    assert (counts["node_lost:sandboxes_of_dead_nodes"], counts["leases_resent"]) == (1, 1)
    assert Sandbox.objects.get(pk=on_dead.pk).status == SandboxStatus.LOST
    assert Sandbox.objects.get(pk=on_alive.pk).status == SandboxStatus.READY
    run.refresh_from_db()
    assert (run.status, run.stop_reason) == ("failed", "sandbox lost: worker dead@host stopped")
    lost = SandboxEvent.objects.get(type="sandbox.lost")
    assert lost.payload == {"sandbox": on_dead.pk, "node": "dead@host", "reason": "worker dead@host stopped"}
    assert sorted(sent) == [
        (TICKET_STEP, (orphan.pk,), "execution"),  # any living worker takes it now
        (TICKET_STEP, (healthy.pk,), "node.alive_host"),  # (its phase's work is over) where its sandbox lives
    ]


# --- The pass itself -----------------------------------------------------------------------------------


def test_reconcile_on_a_settled_database_does_nothing_in_a_fixed_number_of_queries(project, settings):
    def settled(count: int) -> None:
        for _ in range(count):
            spec = SpecFactory(project=project, status="executing")
            ticket = make_ticket(project=project, phase=Phase.IMPLEMENTATION, spec=spec)
            TaskFactory(ticket=ticket, task_type="implement_feature", status=TaskStatus.RUNNING)
            Lease.objects.create(
                kind="ticket", object_id=ticket.pk, owner="w:1:a", expires_at=timezone.now() + timedelta(seconds=30),
                enqueued_at=timezone.now(),
            )  # fmt: skip
            PhaseGateArtifact.objects.create(
                ticket=ticket, phase=Phase.DESIGN, artifact_type="design_doc",
                content=dict(PASSING_ARTIFACTS[Phase.DESIGN])["design_doc"], collected_by="test",
            )  # fmt: skip
            completed = SpecFactory(project=project, status="completed", branch_pushed_at=timezone.now())
            make_ticket(project=project, phase=Phase.DONE, spec=completed)

    settled(3)
    with CaptureQueriesContext(connection) as few:
        assert only(reconcile()) == {}
    settled(30)
    with CaptureQueriesContext(connection) as many:
        assert only(reconcile()) == {}

    assert len(many) == len(few) <= 10


def test_the_beat_task_runs_one_pass_and_says_what_it_did(project, settings):
    ticket = ready_to_finish(project)
    Lease.objects.create(kind="ticket", object_id=ticket.pk, queue="execution", **lost_message(settings))

    counts = reconcile_task()

    assert counts["leases_resent"] == 1
    assert set(counts) >= {"sandboxes_unheld", "specs_without_step", "tickets_without_step", "leases_resent"}


def test_beat_runs_the_reconciler_every_interval(settings):
    [entry] = [e for e in app.conf.beat_schedule.values() if e["task"] == "omoi.tasks.reconcile_task"]
    assert entry["schedule"] == settings.OMOI_RECONCILE_INTERVAL_S == 10.0


@pytest.mark.parametrize(
    ("task", "queue"),
    [(SPEC_STEP, "planning"), (TICKET_STEP, "execution"), ("omoi.tasks.reconcile_task", "default")],
)
def test_steps_are_routed_to_their_queue_unless_sent_to_a_node(task, queue):
    assert app.amqp.router.route({}, task)["queue"].name == queue
