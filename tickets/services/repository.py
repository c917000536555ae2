"""The branches work moves through, kept in sandboxes' git store (the database is where each branch
points; each worker's bare mirror is a cache any worker can rebuild).

Each spec has a scope holding the spec branch, made from the project's default branch, and one
branch per ticket, made from the spec branch when the ticket's work starts. A ticket's sandbox is
made from its ticket branch; verified work leaves the sandbox as a bundle and advances the ticket
branch; at DEPLOYMENT the ticket branch is merged into the spec branch with a compare-and-set, so
two tickets merging at once cannot lose each other's work and no lock is held while git runs.
Only the host pushes, so tokens never enter a sandbox. Tickets made by hand use a project scope
and an integration branch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from omoi.faults import fault_point
from sandboxes.services import gitstore
from sandboxes.workspace import Workspace
from tickets.models import Project, Ticket

INTEGRATION_BRANCH = "omoi/integration"
MERGE_ATTEMPTS = 20


def slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-") or "work"


def spec_branch_name(*, spec_id: int, title: str) -> str:
    return f"omoi/spec-{spec_id}-{slug(title)}"


def _stamp(moment) -> str:
    return moment.strftime("%Y%m%d%H%M%S%f")


def spec_scope(spec) -> str:
    """The spec's git scope. The creation time in the name keeps a recreated database from reusing
    a mirror made for another spec with the same id."""
    return f"spec-{spec.pk}-{_stamp(spec.created_at)}"


def project_scope(project: Project) -> str:
    return f"project-{project.pk}-{_stamp(project.created_at)}"


def ticket_scope(ticket: Ticket) -> str:
    return spec_scope(ticket.spec) if ticket.spec_id else project_scope(ticket.project)


def base_branch_for(ticket: Ticket) -> str:
    """The branch a ticket's work starts from and is merged into."""
    if ticket.spec_id and ticket.spec.branch_name:
        return ticket.spec.branch_name
    return INTEGRATION_BRANCH


def ticket_branch_name(ticket: Ticket) -> str:
    label = ticket.spec_task.key if ticket.spec_task_id else ticket.title
    return f"omoi/t{ticket.pk}-{slug(label, 24)}"


def scope_mirror(*, scope: str, project: Project) -> Path:
    return gitstore.mirror_ensure(scope=scope, origin=project.repository)


def spec_repo_prepare(*, spec, branch: str) -> Path:
    """The spec's mirror with its branch made from the default branch (idempotent)."""
    scope = spec_scope(spec)
    mirror = scope_mirror(scope=scope, project=spec.project)
    if gitstore.ref_get(scope=scope, name=branch) is None:
        sha = gitstore.resolve(mirror, spec.project.default_branch)
        gitstore.ref_create(scope=scope, name=branch, sha=sha, spec_id=spec.pk)
        mirror = scope_mirror(scope=scope, project=spec.project)
    return mirror


def planning_start_point(*, spec) -> tuple[Path, str]:
    """The mirror and commit planning explores: the project's default branch."""
    mirror = scope_mirror(scope=spec_scope(spec), project=spec.project)
    return mirror, gitstore.resolve(mirror, spec.project.default_branch)


@dataclass
class StartPoint:
    mirror: Path
    scope: str
    base_branch: str
    branch: str
    sha: str


def ticket_start_point(*, ticket: Ticket) -> StartPoint:
    """Where the ticket's work stands: its branch (made from the base branch the first time, so it
    starts from the work merged so far) in this worker's mirror."""
    scope = ticket_scope(ticket)
    base = base_branch_for(ticket)
    branch = ticket_branch_name(ticket)
    mirror = scope_mirror(scope=scope, project=ticket.project)
    refs = gitstore.refs_get(scope=scope, names=[base, branch])
    base_sha = refs.get(base)
    if base_sha is None:
        base_sha = gitstore.ref_create(
            scope=scope, name=base, sha=gitstore.resolve(mirror, ticket.project.default_branch), spec_id=ticket.spec_id
        )
    sha = refs.get(branch)
    if sha is None:
        sha = gitstore.ref_create(scope=scope, name=branch, sha=base_sha, spec_id=ticket.spec_id)
    gitstore.mirror_ensure_commits(scope=scope, path=mirror, shas=[sha])
    return StartPoint(mirror=mirror, scope=scope, base_branch=base, branch=branch, sha=sha)


@dataclass
class BranchPoint:
    """Where a ticket's branch is (`sha`), and whether it is recorded yet: when it is not, it is
    made at its base branch's commit by `ticket_branch_record`, in the caller's transaction."""

    sha: str
    recorded: bool


def ticket_branch_point(*, ticket: Ticket) -> BranchPoint:
    """Where the ticket's branch is: from the database alone (one query) when the branch or its
    base is recorded, the common case; else through this worker's mirror, which records both."""
    scope, branch, base = ticket_scope(ticket), ticket_branch_name(ticket), base_branch_for(ticket)
    refs = gitstore.refs_get(scope=scope, names=[branch, base])
    if branch in refs:
        return BranchPoint(sha=refs[branch], recorded=True)
    if base in refs:
        return BranchPoint(sha=refs[base], recorded=False)
    return BranchPoint(sha=ticket_start_point(ticket=ticket).sha, recorded=True)


def ticket_branch_record(*, ticket: Ticket, point: BranchPoint) -> str:
    """Record the ticket's branch at `point` unless it is recorded; returns where it points (a
    concurrent maker's commit, should one have won)."""
    if point.recorded:
        return point.sha
    return gitstore.ref_create(
        scope=ticket_scope(ticket), name=ticket_branch_name(ticket), sha=point.sha, spec_id=ticket.spec_id
    )


@dataclass
class RecordedWork:
    """Where the ticket's branch now is, the files the ticket changed so far (since it forked from
    its base branch) with their diff stat, and the files this task changed."""

    sha: str
    files: list[str]
    diff_stat: str
    task_files: list[str]


def ticket_work_record(*, ticket: Ticket, workspace: Workspace, base_sha: str, message: str) -> RecordedWork:
    """Commit the sandbox's work (inside it) and bring base_sha..HEAD into the ticket branch, as a
    bundle."""
    scope = ticket_scope(ticket)
    branch = ticket_branch_name(ticket)
    head, bundle = gitstore.workspace_record(workspace, message=message, base=base_sha)
    mirror = scope_mirror(scope=scope, project=ticket.project)
    if bundle is not None:
        tip = gitstore.mirror_import(scope=scope, path=mirror, bundle=bundle)
        if tip != head:
            raise gitstore.TransferError(f"the sandbox's bundle holds {tip[:12]}, not its HEAD {head[:12]}")
        current = gitstore.ref_get(scope=scope, name=branch)
        if current != head and not gitstore.ref_advance(
            scope=scope, name=branch, old=current, new=head, bundle=bundle, spec_id=ticket.spec_id
        ):
            raise gitstore.TransferError(f"the branch {branch} moved while the work was recorded")
    # The ticket's changes so far: from where its branch forked from the base branch to its head.
    base_tip = gitstore.ref_get(scope=scope, name=base_branch_for(ticket)) or base_sha
    gitstore.mirror_ensure_commits(scope=scope, path=mirror, shas=[base_tip])
    fork = gitstore.merge_base(mirror, base_tip, head) or base_sha
    return RecordedWork(
        sha=head,
        files=gitstore.changed_files(mirror, fork, head) if head != fork else [],
        diff_stat=gitstore.diff_stat(mirror, fork, head) if head != fork else "",
        task_files=gitstore.changed_files(mirror, base_sha, head) if head != base_sha else [],
    )


def ticket_work_merge(*, ticket: Ticket, message: str) -> gitstore.MergeOutcome:
    """Merge the ticket branch into its base branch. A compare-and-set moves the base branch; when
    another merge moved it first, the merge is computed again from where it is now."""
    scope = ticket_scope(ticket)
    base = base_branch_for(ticket)
    branch = ticket_branch_name(ticket)
    for _ in range(MERGE_ATTEMPTS):
        mirror = scope_mirror(scope=scope, project=ticket.project)
        ours = gitstore.ref_get(scope=scope, name=base)
        theirs = gitstore.ref_get(scope=scope, name=branch)
        if ours is None or theirs is None:
            raise gitstore.TransferError(f"the branches of ticket #{ticket.pk} are not recorded")
        # Another worker may have moved the base branch since this mirror was synchronised.
        gitstore.mirror_ensure_commits(scope=scope, path=mirror, shas=[ours, theirs])
        outcome = gitstore.merge_commits(path=mirror, ours=ours, theirs=theirs, message=message)
        if not outcome.merged or outcome.sha == ours:
            return outcome
        bundle = gitstore.bundle_from_mirror(mirror, tip=outcome.sha, base=ours)
        fault_point("merge.computed")
        if gitstore.ref_advance(
            scope=scope, name=base, old=ours, new=outcome.sha, bundle=bundle, spec_id=ticket.spec_id
        ):
            return outcome
    raise gitstore.TransferError(f"the branch {base} kept moving: gave up merging after {MERGE_ATTEMPTS} attempts")


def spec_branch_sha(*, spec) -> str | None:
    return gitstore.ref_get(scope=spec_scope(spec), name=spec.branch_name)


def spec_branch_push(*, spec, url: str, token: str | None = None) -> None:
    """Push the spec branch from this worker's mirror (the host's job: the token never enters a
    sandbox)."""
    mirror = scope_mirror(scope=spec_scope(spec), project=spec.project)
    gitstore.push(mirror, url=url, branch=spec.branch_name, token=token)
