"""Completion under concurrency: many tickets of one spec reaching DONE at the same moment."""

import threading

import pytest
from django.db import connection

from omoi.models import Lease
from sandboxes.models import SandboxEvent
from specs.models import Spec
from tests.e2e.conftest import planned_spec
from tests.factories import ProjectFactory
from tests.worker import wait_for
from tickets.models import Phase, PhaseGateArtifact, Task, Ticket
from tickets.services import repository
from tickets.services.transitions import ticket_transition

pytestmark = pytest.mark.worker

TICKETS = 20


def test_twenty_tickets_done_at_once_complete_the_spec_and_open_one_pull_request(
    start_worker, user, sample_repository, fake_github, execution_env, settings
):
    settings.GITHUB_API_URL = fake_github.url
    worker = start_worker(env={**execution_env, "GITHUB_API_URL": fake_github.url}, concurrency=4)
    project = ProjectFactory(owner=user, repository=str(sample_repository), github_repo="acme/textkit")
    spec = planned_spec(project=project, user=user)
    spec.branch_name = repository.spec_branch_name(spec_id=spec.pk, title=spec.title)
    spec.status, spec.current_phase = "executing", "execute"
    spec.save()
    repository.spec_repo_prepare(spec=spec, branch=spec.branch_name)
    spec_task = spec.tasks.first()
    tickets = []
    for number in range(TICKETS):
        ticket = Ticket.objects.create(
            project=project,
            user=user,
            spec=spec,
            spec_task=spec_task if number == 0 else None,
            title=f"ticket {number}",
            phase=Phase.DEPLOYMENT,
        )
        Task.objects.create(
            ticket=ticket, phase=Phase.DEPLOYMENT, task_type="deploy", title="deploy", status="completed"
        )
        PhaseGateArtifact.objects.create(
            ticket=ticket,
            phase=Phase.DEPLOYMENT,
            artifact_type="deployment",
            content={"merged": True, "commit": "0" * 40, "branch": spec.branch_name},
            collected_by="test",
        )
        tickets.append(ticket)

    barrier = threading.Barrier(TICKETS)
    errors = []

    def finish(ticket_id):
        try:
            barrier.wait()
            ticket_transition(ticket_id=ticket_id, to=Phase.DONE, actor="test", reason="all at once")
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=finish, args=(t.pk,)) for t in tickets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    done = wait_for(
        lambda: Spec.objects.filter(pk=spec.pk, pull_request_number__isnull=False).first(),
        timeout=120, worker=worker, message="the pull request",
    )  # fmt: skip
    # Let every step the twenty completions made due run, then count what happened.
    wait_for(lambda: not Lease.objects.exists(), timeout=60, worker=worker, message="the spec's steps end")
    assert done.status == "completed" and done.progress == 100
    assert len(fake_github.pulls) == 1
    assert [r["method"] for r in fake_github.requests].count("POST") == 1
    assert SandboxEvent.objects.filter(spec=spec, type="spec.completed").count() == 1
    assert SandboxEvent.objects.filter(spec=spec, type="spec.pull_request_opened").count() == 1
    assert SandboxEvent.objects.filter(spec=spec, type="spec.status_changed", payload__to="completed").count() == 1
