"""Worker nodes (omoi/nodes.py): each worker beats in the database and consumes a queue of its own;
a step that needs a node's local sandbox goes to that node, and a node's disk keeps only the
workspaces of live sandboxes."""

import os
from datetime import timedelta

import pytest
from django.utils import timezone

from omoi import nodes
from omoi.models import Lease, WorkerNode
from omoi.nodes import node_beat, node_queue, node_started, nodes_alive
from sandboxes.models import Sandbox, SandboxStatus
from sandboxes.services.sandbox import local_sandboxes_reap
from tests.factories import SpecFactory, TaskFactory
from tests.support.steps import run_step
from tests.tickets.conftest import make_ticket
from tickets.models import Phase, TaskStatus
from tickets.services.execution import ticket_work_enqueue

pytestmark = pytest.mark.django_db


def test_a_node_is_named_by_its_worker_and_has_a_queue_of_its_own(settings):
    assert node_queue("celery@web-1.example") == "node.celery_web-1.example"

    node_started("celery@web-1.example")
    node = WorkerNode.objects.get()
    assert (node.name, node.queue, node.pid, node.data_dir) == (
        "celery@web-1.example",
        "node.celery_web-1.example",
        os.getpid(),
        str(settings.DATA_DIR),
    )
    assert nodes_alive() == {"celery@web-1.example"}


def test_a_node_that_stops_beating_is_dead_and_one_that_beats_again_lives(settings):
    node_started("a@host")
    node_beat("b@host")  # a beat from a node the table does not know yet records it
    WorkerNode.objects.filter(name="a@host").update(last_seen_at=timezone.now() - timedelta(hours=1))

    assert nodes_alive() == {"b@host"}
    node_beat("a@host")
    assert nodes_alive() == {"a@host", "b@host"}
    assert nodes_alive(now=timezone.now() + timedelta(seconds=settings.OMOI_NODE_DEAD_S + 1)) == set()


def test_a_restarted_node_sends_every_waiting_step_again_and_a_new_node_none(monkeypatch):
    """A restarted worker may have died holding a message it had not claimed yet (Redis gives it
    back only after its visibility timeout): every waiting step is sent again at once, however
    recently it was sent; a node that never ran had taken nothing."""
    from omoi import leases

    sent = []
    monkeypatch.setattr(leases, "_send", lambda kind, object_id, queue: sent.append((kind, object_id)))
    spec = SpecFactory()
    Lease.objects.create(kind="spec", object_id=spec.pk, owner="", enqueued_at=timezone.now() - timedelta(seconds=0.1))

    node_started("fresh@host")
    assert sent == []

    node_started("fresh@host")  # the same node again: a restart
    assert sent == [("spec", spec.pk)]


def test_a_tickets_step_goes_to_the_node_of_its_sandbox_and_is_rerouted_when_it_lands_elsewhere(
    project, monkeypatch, capture_sends
):
    now = timezone.now()
    WorkerNode.objects.create(name="one@host", queue="node.one_host", started_at=now, last_seen_at=now)
    spec = SpecFactory(project=project, status="executing")
    ticket = make_ticket(project=project, phase=Phase.IMPLEMENTATION, spec=spec)
    TaskFactory(ticket=ticket, task_type="implement_feature", status=TaskStatus.RUNNING, executor="agent")
    Sandbox.objects.create(provider="local", status=SandboxStatus.READY, spec=spec, ticket=ticket, node="one@host")

    with capture_sends() as sent:
        ticket_work_enqueue(ticket_id=ticket.pk)
    assert sent == [("tickets.tasks.ticket_step_task", (ticket.pk,), "node.one_host")]

    # A copy of the message reaches another node (a shared queue, an old message): it hands the step over.
    monkeypatch.setitem(nodes._node, "name", "two@host")
    assert run_step("ticket", ticket.pk) == "rerouted"
    lease = Lease.objects.get(kind="ticket", object_id=ticket.pk)
    assert (lease.owner, lease.queue, lease.failures) == ("", "node.one_host", 0)  # waiting, sent to its node


def test_a_node_removes_the_workspaces_no_live_sandbox_claims(settings, tmp_path, monkeypatch):
    from sandboxes.providers import local

    settings.OMOI_SANDBOX_ROOT = tmp_path / "sandboxes"
    monkeypatch.setattr(local, "REAP_GRACE_S", 0)
    live = Sandbox.objects.create(provider="local", status=SandboxStatus.READY)
    released = Sandbox.objects.create(provider="local", status=SandboxStatus.RELEASED)
    for name in (str(live.pk), f"{live.pk}.home", str(released.pk), f"{released.pk}.home", "notes"):
        (settings.OMOI_SANDBOX_ROOT / name).mkdir(parents=True)

    local_sandboxes_reap("one@host")

    assert sorted(p.name for p in settings.OMOI_SANDBOX_ROOT.iterdir()) == sorted(
        [str(live.pk), f"{live.pk}.home", "notes"]
    )
