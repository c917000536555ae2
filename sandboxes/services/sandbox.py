"""Sandbox lifecycle: one sandbox per ticket (all its tasks and host checks run in it) and one for a
spec's whole planning; acquire it, reopen it from any step, release it.

A local sandbox lives on one worker node's disk: its row names the node, steps that need it are
routed to that node's queue, and when the node dies the sandbox is marked lost (its run starts
again elsewhere from the last verified commit). The slow part (making the workspace) runs outside
any transaction; the row moves creating → ready (or failed) in short transactions around it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from omoi.nodes import current_node, nodes_alive
from sandboxes.models import LIVE_SANDBOX_STATUSES, AgentRun, AgentRunStatus, Sandbox, SandboxStatus
from sandboxes.providers import SandboxGone, SandboxUnavailable, get_sandbox_provider
from sandboxes.providers.confinement import unconfined_allowed
from sandboxes.services.events import event_record, truncate_text
from sandboxes.workspace import Workspace

logger = logging.getLogger(__name__)


class SandboxNotReady(Exception):
    """The sandbox is not ready (still creating, failed, released or lost)."""


class SandboxElsewhere(Exception):
    """The sandbox lives on another worker node, which is alive: the step belongs to its queue."""

    def __init__(self, node: str) -> None:
        super().__init__(f"the sandbox lives on worker {node}")
        self.node = node


def _live(*, ticket_id: int | None, spec_id: int | None) -> Sandbox | None:
    queryset = Sandbox.objects.filter(status__in=LIVE_SANDBOX_STATUSES)
    if ticket_id is not None:
        queryset = queryset.filter(ticket_id=ticket_id)
    else:
        queryset = queryset.filter(spec_id=spec_id, ticket__isnull=True)
    return queryset.order_by("-id").first()


def sandbox_live(*, ticket_id: int | None = None, spec_id: int | None = None) -> Sandbox | None:
    """The live sandbox of a ticket (or, without ticket_id, of a spec's planning)."""
    return _live(ticket_id=ticket_id, spec_id=spec_id)


def _mark_lost(sandbox: Sandbox, reason: str) -> None:
    with transaction.atomic():
        updated = Sandbox.objects.filter(pk=sandbox.pk, status__in=LIVE_SANDBOX_STATUSES).update(
            status=SandboxStatus.LOST, released_at=timezone.now(), updated_at=timezone.now()
        )
        if not updated:
            return
        for run_id in AgentRun.objects.filter(
            sandbox_id=sandbox.pk, status__in=[AgentRunStatus.RUNNING, AgentRunStatus.VERIFYING]
        ).values_list("pk", flat=True):
            from sandboxes.services.agent import agent_run_finish

            agent_run_finish(run_id=run_id, status=AgentRunStatus.FAILED, stop_reason=f"sandbox lost: {reason}")
        event_record(
            type="sandbox.lost",
            payload={"sandbox": sandbox.pk, "node": sandbox.node, "reason": reason},
            spec_id=sandbox.spec_id,
            ticket_id=sandbox.ticket_id,
            sandbox_id=sandbox.pk,
        )


def sandbox_acquire(
    *,
    spec_id: int | None,
    ticket_id: int | None = None,
    task_id: int | None = None,
    source: str | Callable[[], tuple[str, str]],
    ref: str = "",
    branch: str | None,
    network_allowed: bool = False,
) -> tuple[Sandbox, Workspace]:
    """The live sandbox of the ticket (or of the spec's planning when ticket_id is None), reopened
    when it is on this node, made from commit `ref` of the repository `source` otherwise (on
    `branch`, or detached). `source` may be a function answering (source, ref), called only when a
    sandbox must be made. A sandbox on another node that is alive raises SandboxElsewhere; one on a
    dead node, or gone, is marked lost and replaced. Records `sandbox.acquired`, and
    `sandbox.unconfined` when its commands run without a real boundary (a local worker without
    bubblewrap). `network_allowed` is the project's setting (every command may use the network)."""
    node = current_node()
    sandbox = _live(ticket_id=ticket_id, spec_id=spec_id)
    if sandbox is not None and sandbox.status == SandboxStatus.READY:
        if sandbox.node and sandbox.node != node:
            if sandbox.node in nodes_alive():
                raise SandboxElsewhere(sandbox.node)
            _mark_lost(sandbox, f"worker {sandbox.node} stopped")
            sandbox = None
        else:
            try:
                workspace = get_sandbox_provider(sandbox.provider).attach(sandbox=sandbox)
                Sandbox.objects.filter(pk=sandbox.pk).update(last_activity_at=timezone.now(), task_id=task_id)
                return sandbox, workspace
            except SandboxGone as exc:
                _mark_lost(sandbox, str(exc))
                sandbox = None
    if callable(source):
        source, ref = source()
    if sandbox is None:
        provider = get_sandbox_provider()
        try:
            with transaction.atomic():
                sandbox = Sandbox.objects.create(
                    provider=provider.name,
                    status=SandboxStatus.CREATING,
                    spec_id=spec_id,
                    ticket_id=ticket_id,
                    task_id=task_id,
                    node=node if not getattr(provider, "remote", False) else "",
                    branch=branch or "",
                    base_branch=ref,
                )
        except IntegrityError:
            sandbox = _live(ticket_id=ticket_id, spec_id=spec_id)
            if sandbox is None:
                raise
            return sandbox_acquire(
                spec_id=spec_id,
                ticket_id=ticket_id,
                task_id=task_id,
                source=source,
                ref=ref,
                branch=branch,
                network_allowed=network_allowed,
            )
    provider = get_sandbox_provider(sandbox.provider)
    try:
        workspace = provider.acquire(
            sandbox=sandbox,
            source=source,
            ref=sandbox.base_branch or ref,
            branch=branch,
            network_allowed=network_allowed,
        )
    except Exception as exc:
        # Whatever went wrong, this row must not stay "creating": the caller decides what the
        # failure means (and re-raises transient ones for a retry).
        with transaction.atomic():
            Sandbox.objects.filter(pk=sandbox.pk).update(status=SandboxStatus.FAILED, updated_at=timezone.now())
            event_record(
                type="sandbox.failed",
                payload={"sandbox": sandbox.pk, "error": truncate_text(str(exc), 2000)},
                spec_id=sandbox.spec_id,
                ticket_id=sandbox.ticket_id,
                task_id=sandbox.task_id,
                sandbox_id=sandbox.pk,
            )
        raise
    with transaction.atomic():
        # A remote provider's id of the sandbox (Daytona's), so that every later step finds it by
        # id and the reaper knows it is held.
        external_id = str(getattr(workspace, "external_id", "") or "")
        Sandbox.objects.filter(pk=sandbox.pk).update(
            status=SandboxStatus.READY,
            workspace_path=str(getattr(workspace, "root", "")),
            external_id=external_id,
            last_activity_at=timezone.now(),
            updated_at=timezone.now(),
        )
        sandbox.status = SandboxStatus.READY
        sandbox.external_id = external_id
        event_record(
            type="sandbox.acquired",
            payload={
                "sandbox": sandbox.pk,
                "provider": sandbox.provider,
                "node": sandbox.node,
                "branch": sandbox.branch,
                "base_ref": sandbox.base_branch,
                "confined": bool(getattr(workspace, "confined", False)),
            },
            spec_id=sandbox.spec_id,
            ticket_id=sandbox.ticket_id,
            task_id=sandbox.task_id,
            sandbox_id=sandbox.pk,
        )
        if not workspace.confined:
            event_record(
                type="sandbox.unconfined",
                payload={
                    "sandbox": sandbox.pk,
                    "provider": sandbox.provider,
                    "reason": provider.describe(),
                    "commands_allowed": unconfined_allowed(),
                },
                spec_id=sandbox.spec_id,
                ticket_id=sandbox.ticket_id,
                task_id=sandbox.task_id,
                sandbox_id=sandbox.pk,
            )
    sandbox.workspace_path = str(getattr(workspace, "root", ""))
    return sandbox, workspace


def sandbox_workspace(*, sandbox_id: int) -> Workspace:
    """Reopen a ready sandbox's workspace (in whatever process runs the next step)."""
    sandbox = Sandbox.objects.get(pk=sandbox_id)
    if sandbox.status != SandboxStatus.READY:
        raise SandboxNotReady(f"sandbox {sandbox_id} is {sandbox.status}, not ready")
    workspace = get_sandbox_provider(sandbox.provider).attach(sandbox=sandbox)
    Sandbox.objects.filter(pk=sandbox_id).update(last_activity_at=timezone.now())
    return workspace


def sandbox_touch(*, sandbox_id: int) -> None:
    """Record activity on a sandbox a run is using (every agent turn): the provider's auto-stop
    (Daytona's) counts from now, not from the last command, so a model that thinks for minutes
    does not find its sandbox stopped. Raises SandboxGone when the provider no longer has it."""
    sandbox = Sandbox.objects.get(pk=sandbox_id)
    get_sandbox_provider(sandbox.provider).touch(sandbox=sandbox)
    Sandbox.objects.filter(pk=sandbox_id).update(last_activity_at=timezone.now())


def sandbox_release(*, sandbox_id: int) -> Sandbox:
    """Mark the sandbox released and remove its workspace: here when it lives on this node (or
    remotely); a local workspace on another node is removed by that node's reaper. Idempotent;
    records `sandbox.released`."""
    sandbox = Sandbox.objects.get(pk=sandbox_id)
    if sandbox.status in (SandboxStatus.RELEASED, SandboxStatus.LOST):
        return sandbox
    if not sandbox.node or sandbox.node == current_node():
        try:
            get_sandbox_provider(sandbox.provider).release(sandbox=sandbox)
        except SandboxGone:
            pass
    with transaction.atomic():
        updated = (
            Sandbox.objects.filter(pk=sandbox.pk)
            .exclude(status__in=[SandboxStatus.RELEASED, SandboxStatus.LOST])
            .update(status=SandboxStatus.RELEASED, released_at=timezone.now(), updated_at=timezone.now())
        )
        if updated:
            event_record(
                type="sandbox.released",
                payload={"sandbox": sandbox.pk},
                spec_id=sandbox.spec_id,
                ticket_id=sandbox.ticket_id,
                task_id=sandbox.task_id,
                sandbox_id=sandbox.pk,
            )
    sandbox.refresh_from_db()
    return sandbox


def sandboxes_release(*, sandbox_ids: Iterable[int]) -> int:
    released = 0
    for sandbox_id in sandbox_ids:
        sandbox_release(sandbox_id=sandbox_id)
        released += 1
    return released


def sandboxes_of_dead_nodes(dead: set[str]) -> int:
    """Reconciler hook: the live local sandboxes of nodes that stopped beating are lost (their runs
    end; the tickets start a new run elsewhere from their last verified commit)."""
    lost = 0
    for sandbox in Sandbox.objects.filter(status__in=LIVE_SANDBOX_STATUSES, node__in=dead):
        _mark_lost(sandbox, f"worker {sandbox.node} stopped")
        lost += 1
    return lost


def remote_sandboxes_reap() -> int:
    """Reconciler repair: each remote provider in use (the configured one, and any a live row
    names) deletes its sandboxes that no live row holds, known by their external id or, for a
    row whose acquire has not recorded one yet, by their name. A provider that cannot be reached
    now is tried again next pass. Returns how many were deleted."""
    live = Sandbox.objects.filter(status__in=LIVE_SANDBOX_STATUSES)
    names = {settings.OMOI_SANDBOX_PROVIDER, *live.values_list("provider", flat=True).distinct()}
    removed = 0
    for name in sorted(names):
        try:
            provider = get_sandbox_provider(name)
        except SandboxUnavailable:
            continue
        if not getattr(provider, "remote", False):
            continue
        rows = list(live.filter(provider=name).only("pk", "external_id"))
        keep = {row.external_id for row in rows if row.external_id}
        keep |= {provider.sandbox_name(row) for row in rows}
        try:
            reaped = provider.reap(keep=keep)
        except Exception:  # the provider's API is down: the next pass tries again
            logger.warning("reaping %s sandboxes failed", name, exc_info=True)
            continue
        if reaped:
            logger.info("reaped %d %s sandboxes that no run holds: %s", len(reaped), name, ", ".join(reaped))
        removed += len(reaped)
    return removed


def local_sandboxes_reap(node: str) -> None:
    """Node job: remove the workspaces on this node's disk that no live sandbox row claims any more
    (every live row is kept, whatever its node: nodes may share a disk)."""
    keep = {str(pk) for pk in Sandbox.objects.filter(status__in=LIVE_SANDBOX_STATUSES).values_list("pk", flat=True)}
    for name in ("local",):
        try:
            provider = get_sandbox_provider(name)
        except Exception:  # a provider that cannot be built here has nothing on this disk
            continue
        removed = provider.reap(keep=keep)
        if removed:
            logger.info("node %s removed %d released workspaces", node, len(removed))
