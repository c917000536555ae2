"""Sandbox lifecycle: acquire a workspace for a spec or a task, reopen it from any process, release it.

The slow part (cloning) runs outside any transaction; the row moves creating → ready (or failed)
in short transactions around it. A task has at most one live sandbox (a database constraint), so
a repeated acquire for the same task reuses it instead of cloning again.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from sandboxes.models import Sandbox, SandboxStatus
from sandboxes.providers import SandboxGone, get_sandbox_provider
from sandboxes.providers.confinement import unconfined_allowed
from sandboxes.services.events import event_record, truncate_text
from sandboxes.workspace import Workspace


class SandboxNotReady(Exception):
    """The sandbox is not ready (still creating, failed, or released)."""


def _live_sandbox_of_task(task_id: int) -> Sandbox | None:
    return (
        Sandbox.objects.filter(task_id=task_id, status__in=[SandboxStatus.CREATING, SandboxStatus.READY])
        .order_by("-id")
        .first()
    )


def sandbox_acquire(
    *,
    spec_id: int | None,
    task_id: int | None,
    repository: str,
    base_ref: str,
    branch: str | None,
    network_allowed: bool = False,
) -> tuple[Sandbox, Workspace]:
    """A ready sandbox with its workspace: `repository` cloned, `branch` made at `base_ref` (or
    `base_ref` checked out when branch is None). Per task idempotent: the task's live sandbox is
    reused. Records `sandbox.acquired` on the spec when spec_id is given, and `sandbox.unconfined`
    when its commands run without a real boundary (a local worker without bubblewrap).
    `network_allowed` is the project's setting (every command may use the network)."""
    sandbox = _live_sandbox_of_task(task_id) if task_id is not None else None
    if sandbox is None:
        provider = get_sandbox_provider()
        try:
            with transaction.atomic():
                sandbox = Sandbox.objects.create(
                    provider=provider.name,
                    status=SandboxStatus.CREATING,
                    spec_id=spec_id,
                    task_id=task_id,
                    branch=branch or "",
                    base_branch=base_ref,
                )
        except IntegrityError:
            sandbox = _live_sandbox_of_task(task_id) if task_id is not None else None
            if sandbox is None:
                raise
    provider = get_sandbox_provider(sandbox.provider)
    if sandbox.status == SandboxStatus.READY:
        try:
            workspace = provider.attach(sandbox=sandbox)
            Sandbox.objects.filter(pk=sandbox.pk).update(last_activity_at=timezone.now())
            return sandbox, workspace
        except SandboxGone:
            pass
    try:
        workspace = provider.acquire(
            sandbox=sandbox,
            source=repository,
            ref=sandbox.base_branch or base_ref,
            branch=sandbox.branch or None,
            network_allowed=network_allowed,
        )
    except Exception as exc:
        with transaction.atomic():
            Sandbox.objects.filter(pk=sandbox.pk).update(status=SandboxStatus.FAILED, updated_at=timezone.now())
            if sandbox.spec_id is not None:
                event_record(
                    type="sandbox.failed",
                    payload={"sandbox": sandbox.pk, "error": truncate_text(str(exc), 2000)},
                    spec_id=sandbox.spec_id,
                    task_id=sandbox.task_id,
                    sandbox_id=sandbox.pk,
                )
        raise
    with transaction.atomic():
        sandbox = Sandbox.objects.select_for_update().get(pk=sandbox.pk)
        first_time = sandbox.status != SandboxStatus.READY
        sandbox.status = SandboxStatus.READY
        sandbox.workspace_path = str(workspace.root)
        sandbox.last_activity_at = timezone.now()
        sandbox.save(update_fields=["status", "workspace_path", "last_activity_at", "updated_at"])
        if first_time and sandbox.spec_id is not None:
            event_record(
                type="sandbox.acquired",
                payload={
                    "sandbox": sandbox.pk,
                    "provider": sandbox.provider,
                    "branch": sandbox.branch,
                    "base_ref": sandbox.base_branch,
                    "confined": workspace.confined,
                },
                spec_id=sandbox.spec_id,
                task_id=sandbox.task_id,
                sandbox_id=sandbox.pk,
            )
        if first_time and not workspace.confined:
            event_record(
                type="sandbox.unconfined",
                payload={
                    "sandbox": sandbox.pk,
                    "provider": sandbox.provider,
                    "reason": provider.describe(),
                    "commands_allowed": unconfined_allowed(),
                },
                spec_id=sandbox.spec_id,
                task_id=sandbox.task_id,
                sandbox_id=sandbox.pk,
            )
    return sandbox, workspace


def sandbox_workspace(*, sandbox_id: int) -> Workspace:
    """Reopen a ready sandbox's workspace (in whatever process runs the next turn)."""
    sandbox = Sandbox.objects.get(pk=sandbox_id)
    if sandbox.status != SandboxStatus.READY:
        raise SandboxNotReady(f"sandbox {sandbox_id} is {sandbox.status}, not ready")
    workspace = get_sandbox_provider(sandbox.provider).attach(sandbox=sandbox)
    Sandbox.objects.filter(pk=sandbox_id).update(last_activity_at=timezone.now())
    return workspace


def sandbox_release(*, sandbox_id: int) -> Sandbox:
    """Remove the workspace and mark the sandbox released. Idempotent; records `sandbox.released`."""
    sandbox = Sandbox.objects.get(pk=sandbox_id)
    if sandbox.status == SandboxStatus.RELEASED:
        return sandbox
    get_sandbox_provider(sandbox.provider).release(sandbox=sandbox)
    with transaction.atomic():
        sandbox = Sandbox.objects.select_for_update().get(pk=sandbox_id)
        if sandbox.status == SandboxStatus.RELEASED:
            return sandbox
        sandbox.status = SandboxStatus.RELEASED
        sandbox.released_at = timezone.now()
        sandbox.save(update_fields=["status", "released_at", "updated_at"])
        event_record(
            type="sandbox.released",
            payload={"sandbox": sandbox.pk},
            spec_id=sandbox.spec_id,
            task_id=sandbox.task_id,
            sandbox_id=sandbox.pk,
        )
    return sandbox
