from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from omoi.models import WorkerNode
from sandboxes.git import GitError
from sandboxes.models import AgentRun, Sandbox, SandboxEvent, SandboxStatus
from sandboxes.providers import SandboxGone, SandboxUnavailable, get_sandbox_provider
from sandboxes.providers.local import LocalSandboxProvider
from sandboxes.services.sandbox import (
    SandboxElsewhere,
    SandboxNotReady,
    sandbox_acquire,
    sandbox_release,
    sandbox_workspace,
)
from tests.factories import SpecFactory, TaskFactory, TicketFactory
from tests.sandboxes.conftest import git


def test_the_configured_provider_is_local_by_default(settings):
    settings.OMOI_SANDBOX_PROVIDER = "local"
    assert isinstance(get_sandbox_provider(), LocalSandboxProvider)


def test_daytona_without_a_key_is_a_clear_error(settings):
    settings.DAYTONA_API_KEY = ""
    with pytest.raises(SandboxUnavailable, match="Daytona is not configured: set DAYTONA_API_KEY"):
        get_sandbox_provider("daytona")
    with pytest.raises(SandboxUnavailable, match="unknown OMOI_SANDBOX_PROVIDER 'docker'"):
        get_sandbox_provider("docker")


@pytest.mark.django_db
def test_local_acquire_clones_on_a_new_branch_and_is_idempotent(git_repo, sandbox_root):
    sandbox = Sandbox.objects.create(provider="local")
    provider = LocalSandboxProvider()

    workspace = provider.acquire(sandbox=sandbox, source=str(git_repo), ref="main", branch="omoi/task-1")
    workspace.write_file("work.txt", "in progress\n")
    again = provider.acquire(sandbox=sandbox, source=str(git_repo), ref="main", branch="omoi/task-1")

    assert workspace.root == again.root == (sandbox_root / str(sandbox.pk)).resolve()
    assert (again.root / "work.txt").read_text() == "in progress\n"
    assert git("symbolic-ref", "--short", "HEAD", cwd=workspace.root).strip() == "omoi/task-1"
    assert workspace.head_sha() == git("rev-parse", "main", cwd=git_repo).strip()
    assert workspace.home == sandbox_root / f"{sandbox.pk}.home"
    assert workspace.run_command("echo home > $HOME/note").exit_code == 0
    assert (workspace.home / "note").read_text() == "home\n"
    assert not (sandbox_root / f"{sandbox.pk}.partial").exists()


@pytest.mark.django_db
def test_local_acquire_from_a_remote_branch_and_read_only_checkout(git_repo, sandbox_root):
    git("checkout", "--quiet", "-b", "omoi/spec-1", cwd=git_repo)
    (git_repo / "SPEC.md").write_text("spec branch\n")
    git("add", "-A", cwd=git_repo)
    git("commit", "--quiet", "-m", "spec", cwd=git_repo)
    spec_head = git("rev-parse", "HEAD", cwd=git_repo).strip()
    git("checkout", "--quiet", "main", cwd=git_repo)
    provider = LocalSandboxProvider()

    task_ws = provider.acquire(
        sandbox=Sandbox.objects.create(provider="local"),
        source=str(git_repo),
        ref="omoi/spec-1",
        branch="omoi/task-2",
    )
    planning_ws = provider.acquire(
        sandbox=Sandbox.objects.create(provider="local"), source=str(git_repo), ref="main", branch=None
    )

    assert task_ws.head_sha() == spec_head
    assert (task_ws.root / "SPEC.md").exists()
    assert planning_ws.head_sha() == git("rev-parse", "main", cwd=git_repo).strip()
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=planning_ws.root).strip() == "HEAD"


@pytest.mark.django_db
def test_attach_reopens_and_release_removes(git_repo, sandbox_root):
    sandbox = Sandbox.objects.create(provider="local")
    provider = LocalSandboxProvider()
    workspace = provider.acquire(sandbox=sandbox, source=str(git_repo), ref="main", branch="b")
    sandbox.workspace_path = str(workspace.root)

    assert LocalSandboxProvider().attach(sandbox=sandbox).root == workspace.root
    provider.release(sandbox=sandbox)
    provider.release(sandbox=sandbox)

    assert not workspace.root.exists()
    assert not workspace.home.exists()
    with pytest.raises(SandboxGone):
        provider.attach(sandbox=sandbox)


@pytest.mark.django_db
def test_sandbox_acquire_is_one_per_ticket_for_all_its_tasks_and_records_events(git_repo, sandbox_root):
    spec = SpecFactory()
    ticket = TicketFactory(project=spec.project, spec=spec)
    first, second = TaskFactory(ticket=ticket), TaskFactory(ticket=ticket)

    sandbox, workspace = sandbox_acquire(
        spec_id=spec.pk, ticket_id=ticket.pk, task_id=first.pk, source=str(git_repo), ref="main", branch="omoi/t-9"
    )
    workspace.write_file("wip.txt", "wip\n")
    same, reopened = sandbox_acquire(
        spec_id=spec.pk, ticket_id=ticket.pk, task_id=second.pk, source=str(git_repo), ref="main", branch="omoi/t-9"
    )

    assert same.pk == sandbox.pk
    assert Sandbox.objects.filter(ticket=ticket).count() == 1
    assert reopened.root == workspace.root
    assert (reopened.root / "wip.txt").exists()
    sandbox.refresh_from_db()
    assert (sandbox.status, sandbox.provider, sandbox.branch, sandbox.base_branch, sandbox.task_id) == (
        SandboxStatus.READY,
        "local",
        "omoi/t-9",
        "main",
        second.pk,
    )
    assert sandbox.workspace_path == str(workspace.root)
    assert sandbox.last_activity_at is not None
    events = SandboxEvent.objects.filter(spec=spec)
    # Where bubblewrap is missing the sandbox also says its commands run without a boundary.
    unconfined = [] if workspace.confined else [("sandbox.unconfined", 2, ticket.pk, first.pk, sandbox.pk)]
    assert [(e.type, e.sequence, e.ticket_id, e.task_id, e.sandbox_id) for e in events] == [
        ("sandbox.acquired", 1, ticket.pk, first.pk, sandbox.pk),
        *unconfined,
    ]
    assert events[0].payload == {
        "sandbox": sandbox.pk,
        "provider": "local",
        "node": "",
        "branch": "omoi/t-9",
        "base_ref": "main",
        "confined": workspace.confined,
    }


@pytest.mark.django_db
def test_a_source_function_is_called_only_when_a_sandbox_must_be_made(git_repo, sandbox_root):
    spec = SpecFactory()
    calls = []

    def source():
        calls.append(1)
        return str(git_repo), "main"

    sandbox, _ = sandbox_acquire(spec_id=spec.pk, source=source, branch=None)
    again, _ = sandbox_acquire(spec_id=spec.pk, source=source, branch=None)

    assert again.pk == sandbox.pk
    assert calls == [1]


@pytest.mark.django_db
def test_a_ticket_and_a_specs_planning_have_at_most_one_live_sandbox_each():
    spec = SpecFactory()
    ticket = TicketFactory(project=spec.project, spec=spec)
    Sandbox.objects.create(provider="local", ticket=ticket, spec=spec, status=SandboxStatus.READY)
    Sandbox.objects.create(provider="local", ticket=ticket, spec=spec, status=SandboxStatus.RELEASED)
    Sandbox.objects.create(provider="local", spec=spec, status=SandboxStatus.READY)  # planning's

    with pytest.raises(IntegrityError), transaction.atomic():
        Sandbox.objects.create(provider="local", ticket=ticket, spec=spec, status=SandboxStatus.CREATING)
    with pytest.raises(IntegrityError), transaction.atomic():
        Sandbox.objects.create(provider="local", spec=spec, status=SandboxStatus.CREATING)


@pytest.mark.django_db
def test_sandbox_workspace_reopens_and_touches_activity(git_repo, sandbox_root):
    spec = SpecFactory()
    sandbox, workspace = sandbox_acquire(spec_id=spec.pk, source=str(git_repo), ref="main", branch=None)
    Sandbox.objects.filter(pk=sandbox.pk).update(last_activity_at=None)

    reopened = sandbox_workspace(sandbox_id=sandbox.pk)

    assert reopened.root == workspace.root
    assert Sandbox.objects.get(pk=sandbox.pk).last_activity_at is not None


@pytest.mark.django_db
def test_sandbox_release_is_idempotent(git_repo, sandbox_root):
    spec = SpecFactory()
    sandbox, workspace = sandbox_acquire(spec_id=spec.pk, source=str(git_repo), ref="main", branch="x")

    sandbox_release(sandbox_id=sandbox.pk)
    sandbox_release(sandbox_id=sandbox.pk)

    sandbox.refresh_from_db()
    assert sandbox.status == SandboxStatus.RELEASED
    assert sandbox.released_at is not None
    assert not workspace.root.exists()
    assert list(SandboxEvent.objects.filter(spec=spec).values_list("type", flat=True)) == [
        "sandbox.acquired",
        *([] if workspace.confined else ["sandbox.unconfined"]),
        "sandbox.released",
    ]
    with pytest.raises(SandboxNotReady, match="is released, not ready"):
        sandbox_workspace(sandbox_id=sandbox.pk)


@pytest.mark.django_db
def test_a_failed_clone_marks_the_sandbox_failed_and_a_retry_gets_a_new_one(git_repo, sandbox_root, tmp_path):
    spec = SpecFactory()
    ticket = TicketFactory(project=spec.project, spec=spec)

    with pytest.raises(GitError):
        sandbox_acquire(spec_id=spec.pk, ticket_id=ticket.pk, source=str(tmp_path / "missing"), ref="main", branch="b")

    failed = Sandbox.objects.get(ticket=ticket)
    assert failed.status == SandboxStatus.FAILED
    assert list(SandboxEvent.objects.filter(spec=spec).values_list("type", flat=True)) == ["sandbox.failed"]
    assert not (sandbox_root / str(failed.pk)).exists()

    sandbox, _ = sandbox_acquire(spec_id=spec.pk, ticket_id=ticket.pk, source=str(git_repo), ref="main", branch="b")
    assert sandbox.pk != failed.pk
    assert sandbox.status == SandboxStatus.READY


@pytest.mark.django_db
def test_a_ready_sandbox_whose_workspace_vanished_is_lost_and_replaced(git_repo, sandbox_root):
    spec = SpecFactory()
    ticket = TicketFactory(project=spec.project, spec=spec)
    sandbox, workspace = sandbox_acquire(
        spec_id=spec.pk, ticket_id=ticket.pk, source=str(git_repo), ref="main", branch="b"
    )
    run = AgentRun.objects.create(kind="task", spec=spec, sandbox=sandbox)
    workspace.remove()

    replacement, again = sandbox_acquire(
        spec_id=spec.pk, ticket_id=ticket.pk, source=str(git_repo), ref="main", branch="b"
    )

    assert replacement.pk != sandbox.pk
    assert (again.root / ".git").is_dir()
    assert git("symbolic-ref", "--short", "HEAD", cwd=again.root).strip() == "b"
    sandbox.refresh_from_db()
    run.refresh_from_db()
    assert sandbox.status == SandboxStatus.LOST
    assert (run.status, run.stop_reason.startswith("sandbox lost: the workspace of sandbox")) == ("failed", True)
    lost = SandboxEvent.objects.get(spec=spec, type="sandbox.lost")
    assert (lost.sandbox_id, lost.ticket_id) == (sandbox.pk, ticket.pk)


@pytest.mark.django_db
def test_a_sandbox_on_another_living_node_is_its_alone_and_one_on_a_dead_node_is_replaced(
    git_repo, sandbox_root, settings
):
    spec = SpecFactory()
    ticket = TicketFactory(project=spec.project, spec=spec)
    now = timezone.now()
    WorkerNode.objects.create(name="alive@host", queue="node.alive_host", started_at=now, last_seen_at=now)
    dead_since = now - timedelta(seconds=settings.OMOI_NODE_DEAD_S + 1)
    WorkerNode.objects.create(name="dead@host", queue="node.dead_host", started_at=dead_since, last_seen_at=dead_since)
    elsewhere = Sandbox.objects.create(
        provider="local", spec=spec, ticket=ticket, node="alive@host", status=SandboxStatus.READY
    )

    with pytest.raises(SandboxElsewhere) as error:
        sandbox_acquire(spec_id=spec.pk, ticket_id=ticket.pk, source=str(git_repo), ref="main", branch="b")
    assert error.value.node == "alive@host"

    Sandbox.objects.filter(pk=elsewhere.pk).update(node="dead@host")
    replacement, _ = sandbox_acquire(spec_id=spec.pk, ticket_id=ticket.pk, source=str(git_repo), ref="main", branch="b")

    assert replacement.pk != elsewhere.pk and replacement.status == SandboxStatus.READY
    assert Sandbox.objects.get(pk=elsewhere.pk).status == SandboxStatus.LOST


@pytest.mark.django_db
def test_release_removes_what_a_command_locked_away(git_repo, sandbox_root):
    sandbox = Sandbox.objects.create(provider="local")
    provider = LocalSandboxProvider()
    workspace = provider.acquire(sandbox=sandbox, source=str(git_repo), ref="main", branch="b")
    locked = workspace.run_command("mkdir -p build/deep && touch build/deep/f && chmod 000 build/deep build")
    assert locked.exit_code == 0, locked.as_text()

    provider.release(sandbox=sandbox)

    assert not workspace.root.exists()
    assert sandbox_root.exists()
