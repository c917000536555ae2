"""Failures, with every step run in this process: a transient one (a time limit, a dropped database
connection, a network error) is retried with back-off and the work completes; a lasting one ends
in a state a user sees, with its reason, and a retry resumes it."""

from datetime import timedelta

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.db import OperationalError
from django.utils import timezone

from omoi.llm.replay import ReplayProvider
from omoi.models import Lease, LLMUsage
from omoi.reconcile import reconcile
from sandboxes.git import GitError
from sandboxes.models import AgentRun, SandboxEvent
from specs.models import Spec
from specs.services.planning import spec_launch, spec_retry
from tests.e2e.conftest import planned_spec
from tests.factories import ProjectFactory, SpecFactory
from tests.specs.conftest import run_phase
from tests.specs.scripts import IDEA, make_fixture_repository, planning_script
from tests.specs.scripts import write_script as write_planning_script
from tests.support.steps import drain, run_step, waiting_steps
from tests.tickets.conftest import make_ticket
from tickets.models import Phase, Task, TaskStatus, Ticket
from tickets.services import repository

pytestmark = pytest.mark.django_db


def back_off_over(kind: str, object_id: int) -> Lease:
    """The step waits for its back-off: let the time pass."""
    lease = Lease.objects.get(kind=kind, object_id=object_id)
    Lease.objects.filter(pk=lease.pk).update(not_before=timezone.now())
    return lease


class FailsFirst(ReplayProvider):
    """The scripted model, whose first call is interrupted by `error`."""

    def __init__(self, script_path, error):
        super().__init__(script_path)
        self.error = error

    def complete(self, **kwargs):
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        return super().complete(**kwargs)


@pytest.mark.parametrize(
    "error",
    [SoftTimeLimitExceeded("soft time limit exceeded"), OperationalError("server closed the connection unexpectedly")],
    ids=["time limit", "database connection"],
)
def test_a_planning_turn_interrupted_by_a_transient_failure_runs_again(
    user, settings, tmp_path, monkeypatch, execution_env, error
):
    from sandboxes.services import agent

    settings.OMOI_LLM_PROVIDER = "replay"
    script = write_planning_script(tmp_path / "script.json", planning_script())
    model = FailsFirst(script, error)
    monkeypatch.setattr(agent, "get_provider", lambda: model)
    project = ProjectFactory(owner=user, repository=str(make_fixture_repository(tmp_path / "notes")))
    spec = spec_launch(project_id=project.pk, user=user, idea=IDEA)

    assert run_step("spec", spec.pk) == "failed:retry"

    spec.refresh_from_db()
    assert (spec.status, spec.current_phase, spec.last_error) == ("planning", "explore", "")
    lease = Lease.objects.get(kind="spec", object_id=spec.pk)
    assert (lease.owner, lease.failures) == ("", 1)
    assert lease.last_error.startswith(type(error).__name__)
    assert lease.not_before > timezone.now()
    assert waiting_steps() == []  # backing off
    assert (AgentRun.objects.get(spec=spec).turns, LLMUsage.objects.count()) == (0, 0)

    back_off_over("spec", spec.pk)
    assert run_phase(spec.pk) == "completed"
    assert Spec.objects.get(pk=spec.pk).current_phase == "requirements"
    assert AgentRun.objects.get(spec=spec, phase="explore").turns == 3


def test_a_bridge_that_cannot_run_fails_the_spec_visibly_and_a_retry_runs_it_again(
    user, sample_repository, execution_env, tmp_path
):
    project = ProjectFactory(owner=user, repository=str(tmp_path / "moved-away"))
    spec = planned_spec(project=project, user=user)
    Spec.objects.filter(pk=spec.pk).update(updated_at=timezone.now())
    reconcile()  # an approved spec without tickets: its bridge is due

    assert drain() == [("spec", spec.pk, "failed:gave_up")]

    spec.refresh_from_db()
    assert (spec.status, spec.current_phase) == ("failed", "execute")
    assert spec.last_error.startswith("the execute step kept failing: GitError: ")
    assert str(tmp_path / "moved-away") in spec.last_error
    assert not Ticket.objects.filter(spec=spec).exists()
    assert not Lease.objects.exists()
    assert {name: n for name, n in reconcile().items() if n} == {}  # failed is final until a person acts

    project.repository = str(sample_repository)
    project.save()
    spec_retry(spec_id=spec.pk, user=user)
    assert drain(kinds=("spec",))[0] == ("spec", spec.pk, "bridged")
    spec.refresh_from_db()
    assert (spec.status, spec.last_error) == ("executing", "")
    assert Ticket.objects.filter(spec=spec).count() == 2


def test_a_ticket_step_that_keeps_failing_blocks_the_ticket_with_the_error_and_fails_the_spec(
    project, settings, monkeypatch
):
    settings.OMOI_WORK_MAX_FAILURES = 2

    def unreachable(**kwargs):
        raise GitError(
            "git fetch failed",
            stderr="fatal: unable to access 'https://git.example/': Connection refused",
            returncode=128,
        )

    monkeypatch.setattr(repository, "ticket_work_merge", unreachable)
    spec = SpecFactory(project=project, status="executing", current_phase="execute")
    ticket = make_ticket(project=project, phase=Phase.DEPLOYMENT, spec=spec)
    deploy = Task.objects.create(ticket=ticket, phase=Phase.DEPLOYMENT, task_type="deploy", executor="host")
    reconcile()  # a runnable ticket without a step

    assert run_step("ticket", ticket.pk) == "failed:retry"  # a network error: worth another try
    assert Ticket.objects.get(pk=ticket.pk).phase == Phase.DEPLOYMENT
    back_off_over("ticket", ticket.pk)
    assert run_step("ticket", ticket.pk) == "failed:gave_up"

    ticket.refresh_from_db()
    deploy.refresh_from_db()
    assert (ticket.phase, ticket.blocked_reason) == (Phase.BLOCKED, "environment")
    assert ticket.blocked_message.startswith("deploy failed: the ticket's step kept failing: GitError: ")
    assert "Connection refused" in ticket.blocked_message
    assert deploy.status == TaskStatus.FAILED
    assert drain() == [("spec", spec.pk, "failed")]  # told by ticket_blocked, the spec fails with it
    spec.refresh_from_db()
    assert spec.status == "failed" and "environment" in spec.last_error


def test_a_pull_request_github_refuses_is_recorded_once_and_a_person_can_open_it_later(
    api, user, sample_repository, execution_env, fake_github, settings
):
    settings.GITHUB_API_URL, settings.GITHUB_TOKEN = fake_github.url, "revoked"
    fake_github.git.seed("acme/textkit", sample_repository)
    project = ProjectFactory(owner=user, repository=str(sample_repository), github_repo="acme/textkit")
    from specs.services.bridge import spec_execute

    spec = spec_execute(spec_id=planned_spec(project=project, user=user).pk, actor="test")
    Ticket.objects.filter(spec=spec).update(phase=Phase.DONE)
    Lease.objects.all().delete()
    reconcile()

    assert drain() == [("spec", spec.pk, "completed"), ("spec", spec.pk, "failed:gave_up")]

    spec.refresh_from_db()
    assert (spec.status, spec.pull_request_url) == ("completed", "")
    # GitHub refuses the revoked token from the push on (the push goes to the GitHub repository).
    assert spec.branch_pushed_at is None
    assert spec.last_error.startswith("the pull request step kept failing: GitError: git push")
    assert "revoked" not in spec.last_error
    assert SandboxEvent.objects.filter(spec=spec, type="spec.pull_request_failed").count() == 1
    assert {name: n for name, n in reconcile().items() if n} == {}  # not retried for ever

    settings.GITHUB_TOKEN = "test-github-token"
    response = api.post(f"/api/v1/specs/{spec.pk}/create-pr")

    assert response.status_code == 200, response.json()
    spec.refresh_from_db()
    assert (spec.pull_request_number, len(fake_github.pulls)) == (1, 1)
    assert spec.last_error == ""


def test_a_step_given_up_on_a_spec_already_failed_changes_nothing(user):
    spec = SpecFactory(project=ProjectFactory(owner=user), status="failed", last_error="earlier")
    from specs.services.steps import spec_give_up

    spec_give_up(spec.pk, "late")

    spec.refresh_from_db()
    assert (spec.status, spec.last_error) == ("failed", "earlier")
    assert timezone.now() - spec.updated_at < timedelta(minutes=1)


def test_a_ticket_whose_step_is_given_up_releases_its_sandbox(user, sample_repository, execution_env, monkeypatch):
    from sandboxes.models import Sandbox
    from specs.services.bridge import spec_execute
    from tickets.services.execution import runs

    project = ProjectFactory(owner=user, repository=str(sample_repository), test_command="python3 -m unittest")
    spec = spec_execute(spec_id=planned_spec(project=project, user=user).pk, actor="test")
    ticket = Ticket.objects.get(spec=spec, spec_task__key="TSK-001")
    sandbox, _workspace = runs.ticket_workspace(ticket=ticket)

    def broken(**kwargs):
        raise ValueError("a bug, not a passing trouble")

    monkeypatch.setattr(runs, "run_begin_with_first_turn", broken)  # the step begins the run
    assert ticket.phase == Phase.IMPLEMENTATION  # the bridge took its planned documents from the spec

    assert run_step("ticket", ticket.pk) == "failed:gave_up"

    ticket.refresh_from_db()
    assert (ticket.phase, ticket.blocked_reason) == (Phase.BLOCKED, "environment")
    assert "ValueError: a bug, not a passing trouble" in ticket.blocked_message
    assert Sandbox.objects.get(pk=sandbox.pk).status == "released"
