"""Host-side git: the primitives the host uses on workspaces and on its own clones.

Every call has a timeout and raises `GitError` with git's stderr when git fails. Git runs with a
minimal environment (no server secrets), with hooks and fsmonitor disabled, because a workspace's
`.git` may have been touched by an agent's commands and the host must never run code from it.
A push token is passed only to the one push command, through git's environment-config variables:
it is never written to a config file and never appears on a command line.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

OMOI_AUTHOR_NAME = "Omoi"
OMOI_AUTHOR_EMAIL = "omoi@localhost"
HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Options that keep host-side git from running anything a workspace may have planted in .git.
SAFE_OPTIONS = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "protocol.ext.allow=never")


class GitError(Exception):
    """A git command failed (or timed out). `stderr` holds what git said."""

    def __init__(self, message: str, *, stderr: str = "", returncode: int | None = None) -> None:
        super().__init__(f"{message}: {stderr.strip()}" if stderr.strip() else message)
        self.stderr = stderr
        self.returncode = returncode


@dataclass
class MergeResult:
    merged: bool
    sha: str | None
    conflicts: list[str] = field(default_factory=list)


# Git's "file" protocol covers local paths too: the host clones and fetches between its own clones
# and workspaces. Every other protocol is refused unless the settings allow it (below).
GIT_PROTOCOL_NAMES = {"https": "https", "http": "http", "ssh": "ssh", "git": "git"}
# No configuration, keys or credentials of the host's user reach git: HOME is a path in which
# nothing can exist (git reads ~/.gitconfig and ~/.config/git/* from it and finds nothing).
EMPTY_HOME = os.devnull
DEFAULT_SSH_COMMAND = "ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o IdentityFile=none"


def git_protocols() -> list[str]:
    """The protocols host-side git may use: file (local paths), and those of the repository
    schemes the settings allow and of the GitHub host pushes go to. All others, `ext` included,
    are refused by git itself (GIT_ALLOW_PROTOCOL acts as protocol.allow=never plus these)."""
    from urllib.parse import urlsplit

    from django.conf import settings

    protocols = ["file"]
    schemes = [*getattr(settings, "OMOI_REPOSITORY_SCHEMES", ["https"])]
    github_api = getattr(settings, "GITHUB_API_URL", "")
    if github_api:
        schemes.append(urlsplit(github_api).scheme.lower())
    for scheme in schemes:
        name = GIT_PROTOCOL_NAMES.get(scheme)
        if name and name not in protocols:
            protocols.append(name)
    return protocols


def git_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment host-side git runs with: built from scratch, holding no secrets, with an
    empty HOME, no prompts and only the allowed protocols."""
    from django.conf import settings

    env = {
        "PATH": HOST_PATH,
        "HOME": EMPTY_HOME,
        "XDG_CONFIG_HOME": EMPTY_HOME,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "",
        "SSH_ASKPASS": "",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_ALLOW_PROTOCOL": ":".join(git_protocols()),
        "GIT_SSH_COMMAND": getattr(settings, "OMOI_GIT_SSH_COMMAND", "") or DEFAULT_SSH_COMMAND,
        "GIT_AUTHOR_NAME": OMOI_AUTHOR_NAME,
        "GIT_AUTHOR_EMAIL": OMOI_AUTHOR_EMAIL,
        "GIT_COMMITTER_NAME": OMOI_AUTHOR_NAME,
        "GIT_COMMITTER_EMAIL": OMOI_AUTHOR_EMAIL,
    }
    env.update(extra or {})
    return env


def git_run(
    *args: str,
    cwd: Path | str,
    timeout: float = 120,
    env: dict[str, str] | None = None,
    redact: tuple[str, ...] = (),
) -> str:
    """Run `git <args>` in `cwd` and return its stdout; raise GitError on failure or timeout."""
    command = ["git", *SAFE_OPTIONS, *args]
    try:
        completed = subprocess.run(
            command,
            cwd=str(cwd),
            env=git_env(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise GitError(f"git {args[0] if args else ''} timed out after {timeout:g} s") from exc
    except OSError as exc:
        raise GitError(f"cannot run git in {cwd}: {exc}") from exc
    if completed.returncode != 0:
        stderr = completed.stderr or completed.stdout
        for secret in redact:
            if secret:
                stderr = stderr.replace(secret, "***")
        raise GitError(f"git {' '.join(_shown(args))} failed", stderr=stderr, returncode=completed.returncode)
    return completed.stdout


def _shown(args: tuple[str, ...]) -> list[str]:
    return [re.sub(r"//[^@/]*@", "//***@", arg) for arg in args[:4]]


def rev_parse(repo_dir: Path | str, ref: str) -> str | None:
    """The commit a ref names, or None when it names none."""
    try:
        return git_run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=repo_dir).strip() or None
    except GitError:
        return None


def resolve_ref(repo_dir: Path | str, ref: str) -> str:
    """The commit `ref` names in a clone: a local ref or sha, else the origin's branch of that name."""
    sha = rev_parse(repo_dir, ref) or rev_parse(repo_dir, f"origin/{ref}")
    if sha is None:
        raise GitError(f"unknown revision {ref!r} in {repo_dir}")
    return sha


def clone(source: str, dest: Path | str, branch: str | None = None, *, timeout: float = 600) -> None:
    """Clone `source` (a local path or a URL) into `dest`, which must not exist yet. A local
    source is copied, not hard-linked, so nothing done in the clone can reach the source's objects."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    args = ["clone", "--no-hardlinks", "--quiet"]
    if branch:
        args += ["--branch", branch]
    git_run(*args, "--", source, str(dest), cwd=dest.parent, timeout=timeout)


def branch_exists(repo_dir: Path | str, branch: str) -> bool:
    return rev_parse(repo_dir, f"refs/heads/{branch}") is not None


def ensure_branch(repo_dir: Path | str, branch: str, from_ref: str) -> str:
    """Create `branch` at `from_ref` unless it exists; return the branch's commit either way."""
    if not branch_exists(repo_dir, branch):
        git_run("branch", branch, resolve_ref(repo_dir, from_ref), cwd=repo_dir)
    return git_run("rev-parse", f"refs/heads/{branch}", cwd=repo_dir).strip()


def fetch_branch(
    repo_dir: Path | str, source_repo: Path | str, source_branch: str, local_branch: str, *, timeout: float = 300
) -> str:
    """Fetch `source_branch` of `source_repo` (a path or URL) into `local_branch` of `repo_dir`,
    replacing what `local_branch` held. Returns the fetched commit."""
    git_run(
        "fetch",
        "--quiet",
        "--no-tags",
        str(source_repo),
        f"+refs/heads/{source_branch}:refs/heads/{local_branch}",
        cwd=repo_dir,
        timeout=timeout,
    )
    return git_run("rev-parse", f"refs/heads/{local_branch}", cwd=repo_dir).strip()


def _current_branch(repo_dir: Path | str) -> str | None:
    try:
        return git_run("symbolic-ref", "--quiet", "--short", "HEAD", cwd=repo_dir).strip() or None
    except GitError:
        return None


def _is_bare(repo_dir: Path | str) -> bool:
    return git_run("rev-parse", "--is-bare-repository", cwd=repo_dir).strip() == "true"


def _merge_in(work_dir: Path | str, source_sha: str, message: str) -> MergeResult:
    """Merge in a checkout; on conflict abort and report the conflicting files."""
    try:
        git_run("merge", "--no-ff", "--no-edit", "-m", message, source_sha, cwd=work_dir, timeout=300)
    except GitError:
        conflicts = [
            line
            for line in git_run("diff", "--name-only", "--diff-filter=U", cwd=work_dir).splitlines()
            if line.strip()
        ]
        try:
            git_run("merge", "--abort", cwd=work_dir)
        except GitError:
            git_run("reset", "--hard", "--quiet", "HEAD", cwd=work_dir)
        if not conflicts:
            raise
        return MergeResult(merged=False, sha=None, conflicts=sorted(conflicts))
    return MergeResult(merged=True, sha=git_run("rev-parse", "HEAD", cwd=work_dir).strip(), conflicts=[])


def merge_into(repo_dir: Path | str, source_branch: str, target_branch: str, message: str) -> MergeResult:
    """Merge `source_branch` into `target_branch` with a merge commit.

    When `target_branch` is checked out in `repo_dir` the merge happens in that checkout;
    otherwise in a temporary worktree, after which the branch moves only if nobody moved it
    meanwhile. On conflict the merge is aborted, `target_branch` is left untouched and the
    conflicting files are reported. Merging what is already merged changes nothing and answers
    merged=True with the target's commit.
    """
    repo_dir = Path(repo_dir)
    source_sha = resolve_ref(repo_dir, source_branch)
    target_sha = git_run("rev-parse", "--verify", f"refs/heads/{target_branch}^{{commit}}", cwd=repo_dir).strip()
    try:
        git_run("merge-base", "--is-ancestor", source_sha, target_sha, cwd=repo_dir)
        return MergeResult(merged=True, sha=target_sha, conflicts=[])
    except GitError as exc:
        if exc.returncode != 1:
            raise
    if not _is_bare(repo_dir) and _current_branch(repo_dir) == target_branch:
        status = git_run("status", "--porcelain", "--untracked-files=no", cwd=repo_dir)
        if status.strip():
            raise GitError(f"cannot merge into {target_branch}: its checkout in {repo_dir} has uncommitted changes")
        return _merge_in(repo_dir, source_sha, message)
    worktree = Path(tempfile.gettempdir()) / f"omoi-merge-{uuid.uuid4().hex}"
    git_run("worktree", "add", "--quiet", "--detach", str(worktree), target_sha, cwd=repo_dir)
    try:
        result = _merge_in(worktree, source_sha, message)
        if result.merged and result.sha:
            git_run(
                "update-ref",
                "-m",
                message,
                f"refs/heads/{target_branch}",
                result.sha,
                target_sha,
                cwd=repo_dir,
            )
        return result
    finally:
        try:
            git_run("worktree", "remove", "--force", str(worktree), cwd=repo_dir)
        except GitError:
            shutil.rmtree(worktree, ignore_errors=True)
            git_run("worktree", "prune", cwd=repo_dir)


def push(
    repo_dir: Path | str,
    remote_url: str,
    branch: str,
    token: str | None = None,
    *,
    force: bool = False,
    timeout: float = 300,
) -> None:
    """Push `branch` of `repo_dir` to the branch of the same name at `remote_url`.

    The token (for an https remote) travels as an Authorization header through GIT_CONFIG_*
    variables set for this one command only: never in .git/config, never on a command line.
    """
    env: dict[str, str] = {}
    redact: tuple[str, ...] = ()
    if token:
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        env = {
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "http.extraHeader",
            "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
        }
        redact = (token, basic)
    refspec = f"{'+' if force else ''}refs/heads/{branch}:refs/heads/{branch}"
    git_run("push", "--quiet", "--", remote_url, refspec, cwd=repo_dir, env=env, timeout=timeout, redact=redact)
