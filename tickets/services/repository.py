"""The host's own clones of project repositories, and the branches work moves through.

Each spec gets a host clone (OMOI_DATA_DIR/repos/spec-<id>) holding the spec branch, made from
the project's default branch, and one branch per ticket, made from the spec branch when the
ticket's work starts. Sandboxes clone from the host clone; verified work is fetched back into the
ticket branch and, at DEPLOYMENT, merged into the spec branch. Only the host pushes, so tokens
never enter a sandbox. Tickets made by hand use a project clone and an integration branch.

Git operations on one host clone are serialised by a file lock, because several worker processes
fetch into and merge in the same clone.
"""

from __future__ import annotations

import fcntl
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

from sandboxes import git
from tickets.models import Project, Ticket

INTEGRATION_BRANCH = "omoi/integration"


def slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-") or "work"


def spec_branch_name(*, spec_id: int, title: str) -> str:
    return f"omoi/spec-{spec_id}-{slug(title)}"


def _stamp(moment) -> str:
    return moment.strftime("%Y%m%d%H%M%S%f")


def spec_repo_dir(spec) -> Path:
    """The spec's host clone. The creation time in the name keeps a recreated database from
    reusing a clone made for another spec with the same id."""
    return Path(settings.OMOI_REPOS_DIR) / f"spec-{spec.pk}-{_stamp(spec.created_at)}"


def ticket_repo_dir(ticket: Ticket) -> Path:
    if ticket.spec_id:
        return spec_repo_dir(ticket.spec)
    return Path(settings.OMOI_REPOS_DIR) / f"project-{ticket.project_id}-{_stamp(ticket.project.created_at)}"


@contextmanager
def host_repo_lock(repo_dir: Path) -> Iterator[None]:
    repo_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(repo_dir.parent / f".{repo_dir.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _ensure_clone(project: Project, repo_dir: Path) -> None:
    if not (repo_dir / ".git").exists():
        partial = repo_dir.with_name(repo_dir.name + ".partial")
        if partial.exists():
            shutil.rmtree(partial)
        git.clone(project.repository, partial)
        partial.rename(repo_dir)


def spec_repo_prepare(*, spec, branch: str) -> Path:
    """The spec's host clone with its branch made from the default branch (idempotent)."""
    repo_dir = spec_repo_dir(spec)
    with host_repo_lock(repo_dir):
        _ensure_clone(spec.project, repo_dir)
        git.ensure_branch(repo_dir, branch, spec.project.default_branch)
    return repo_dir


def base_branch_for(ticket: Ticket) -> str:
    """The branch a ticket's work starts from and is merged into."""
    if ticket.spec_id and ticket.spec.branch_name:
        return ticket.spec.branch_name
    return INTEGRATION_BRANCH


def ticket_branch_name(ticket: Ticket) -> str:
    label = ticket.spec_task.key if ticket.spec_task_id else ticket.title
    return f"omoi/t{ticket.pk}-{slug(label, 24)}"


def ticket_repo_prepare(*, ticket: Ticket) -> tuple[Path, str, str]:
    """Make sure the host clone, the base branch and the ticket branch exist. The ticket branch is
    made from the base branch the first time, so it starts from the work merged so far.
    Returns (host clone, base branch, ticket branch)."""
    repo_dir = ticket_repo_dir(ticket)
    base = base_branch_for(ticket)
    branch = ticket_branch_name(ticket)
    with host_repo_lock(repo_dir):
        _ensure_clone(ticket.project, repo_dir)
        git.ensure_branch(repo_dir, base, ticket.project.default_branch)
        git.ensure_branch(repo_dir, branch, base)
    return repo_dir, base, branch


def ticket_work_fetch(*, ticket: Ticket, workspace_root: Path, workspace_branch: str) -> str:
    """Bring a verified workspace's branch back into the host clone's ticket branch."""
    repo_dir = ticket_repo_dir(ticket)
    with host_repo_lock(repo_dir):
        return git.fetch_branch(repo_dir, workspace_root, workspace_branch, ticket_branch_name(ticket))


def ticket_work_merge(*, ticket: Ticket, message: str) -> git.MergeResult:
    repo_dir = ticket_repo_dir(ticket)
    with host_repo_lock(repo_dir):
        return git.merge_into(repo_dir, ticket_branch_name(ticket), base_branch_for(ticket), message)


def spec_branch_push(*, spec, url: str, token: str | None = None) -> None:
    """Push the spec branch from the host clone to `url` (omoi.github.push_target decides where,
    and which token, if any, goes with it; the token never enters a sandbox)."""
    repo_dir = spec_repo_dir(spec)
    with host_repo_lock(repo_dir):
        git.push(repo_dir, url, spec.branch_name, token=token)
