"""Where code lives between sandboxes: the database holds the truth (GitRef: where each branch Omoi
maintains points; GitBundle: the git objects Omoi made), and each worker keeps a bare mirror per
scope (a spec, or a project's hand-made tickets) as a cache, rebuilt on any worker from the
project's repository plus the scope's bundles. So no step depends on the disk of the worker that
ran the step before it, and a worker lost for good loses no verified work.

Code crosses boundaries only as git data: a sandbox's commits leave it as a bundle that git inside
the sandbox wrote (`workspace_export`), and the host fetches that bundle into its own mirror. The
host never runs git inside a tree an agent controlled: its git runs only in its own bare mirrors
(no working tree, so no checkout, no attributes, no filters), and merges are computed with
`git merge-tree` and `git commit-tree` there. A branch moves with a compare-and-set on its GitRef
row, so two merges into one spec branch cannot both win, and no row lock is held while git runs.
"""

from __future__ import annotations

import fcntl
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from sandboxes.git import GitError, git_run
from sandboxes.models import GitBundle, GitRef
from sandboxes.workspace import Workspace, WorkspaceError

EXPORT_REF = "refs/omoi/export"
EXPORT_FILE = ".git/omoi-export.bundle"
MAX_BUNDLE_BYTES = 200 * 1024 * 1024


class TransferError(Exception):
    """Code could not be moved between a sandbox and the host (the message says what failed)."""


@dataclass
class MergeOutcome:
    merged: bool
    sha: str | None
    conflicts: list[str] = field(default_factory=list)


def mirror_dir(scope: str) -> Path:
    return Path(settings.OMOI_REPOS_DIR) / f"{scope}.git"


@contextmanager
def mirror_lock(scope: str) -> Iterator[None]:
    """Serialise git on one mirror between the processes of this worker (a file lock, not a row lock)."""
    root = Path(settings.OMOI_REPOS_DIR)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{scope}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def has_commit(path: Path, sha: str) -> bool:
    try:
        git_run("cat-file", "-e", f"{sha}^{{commit}}", cwd=path)
        return True
    except GitError:
        return False


def _clone_mirror(origin: str, path: Path) -> None:
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    git_run("clone", "--bare", "--quiet", "--", origin, str(partial), cwd=partial.parent, timeout=600)
    # Objects fetched from bundles wait unreferenced for a moment: never let auto-gc prune them.
    git_run("config", "gc.auto", "0", cwd=partial)
    partial.rename(path)


def _fetch_bundle(path: Path, data: bytes) -> str:
    """Fetch a bundle's objects into the mirror; returns its tip."""
    with tempfile.NamedTemporaryFile(dir=path, suffix=".bundle", delete=True) as handle:
        handle.write(data)
        handle.flush()
        incoming = f"refs/omoi/incoming/{uuid.uuid4().hex}"
        try:
            git_run("fetch", "--quiet", "--no-tags", handle.name, f"{EXPORT_REF}:{incoming}", cwd=path, timeout=300)
        except GitError as exc:
            raise TransferError(f"the bundle could not be fetched: {exc}") from exc
        tip = git_run("rev-parse", "--verify", f"{incoming}^{{commit}}", cwd=path).strip()
        git_run("update-ref", "-d", incoming, cwd=path)
    return tip


_synced: dict[str, dict[str, str]] = {}


def mirror_ensure(*, scope: str, origin: str) -> Path:
    """This worker's mirror of `scope`: a bare clone of `origin` holding every commit the scope's
    GitRefs name, as branches of the same names. One query and no git at all when nothing changed
    since this process last looked."""
    path = mirror_dir(scope)
    refs = dict(GitRef.objects.filter(scope=scope).values_list("name", "sha"))
    if _synced.get(str(path)) == refs and (path / "HEAD").exists():
        return path
    with mirror_lock(scope):
        if not (path / "HEAD").exists():
            _clone_mirror(origin, path)
        current = {}
        for line in git_run("for-each-ref", "--format=%(refname) %(objectname)", "refs/heads", cwd=path).splitlines():
            name, _, sha = line.partition(" ")
            current[name.removeprefix("refs/heads/")] = sha
        changed = {name: sha for name, sha in refs.items() if current.get(name) != sha}
        if any(not has_commit(path, sha) for sha in changed.values()):
            for tip, data in GitBundle.objects.filter(scope=scope).order_by("id").values_list("tip", "data"):
                if not has_commit(path, tip):
                    _fetch_bundle(path, bytes(data))
        for name, sha in changed.items():
            git_run("update-ref", f"refs/heads/{name}", sha, cwd=path)
    _synced[str(path)] = refs
    return path


def mirror_ensure_commits(*, scope: str, path: Path, shas: list[str]) -> None:
    """Make sure the mirror holds these commits (read from GitRefs after the mirror was last
    synchronised: another worker may have made them since), fetching the scope's bundles it lacks."""
    if all(has_commit(path, sha) for sha in shas):
        return
    with mirror_lock(scope):
        for tip, data in GitBundle.objects.filter(scope=scope).order_by("id").values_list("tip", "data"):
            if not has_commit(path, tip):
                _fetch_bundle(path, bytes(data))
    missing = [sha for sha in shas if not has_commit(path, sha)]
    if missing:
        raise TransferError(f"the commits {', '.join(sha[:12] for sha in missing)} are in no stored bundle")


def resolve(path: Path, ref: str) -> str:
    """The commit `ref` names in the mirror (a branch, a sha)."""
    try:
        return git_run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=path).strip()
    except GitError as exc:
        raise TransferError(f"unknown revision {ref!r} in the repository") from exc


def ref_get(*, scope: str, name: str) -> str | None:
    return GitRef.objects.filter(scope=scope, name=name).values_list("sha", flat=True).first()


def refs_get(*, scope: str, names: list[str]) -> dict[str, str]:
    """Where each of the named branches of the scope points (those recorded), in one query."""
    return dict(GitRef.objects.filter(scope=scope, name__in=names).values_list("name", "sha"))


_REF_CREATE_SQL = f"""
INSERT INTO {GitRef._meta.db_table} (scope, name, sha, spec_id, updated_at) VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (scope, name) DO NOTHING RETURNING sha
"""


def ref_create(*, scope: str, name: str, sha: str, spec_id: int | None = None) -> str:
    """Record branch `name` at `sha` unless it exists; returns where it points. One statement (no
    savepoint inside the caller's transaction) when it did not exist."""
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(_REF_CREATE_SQL, [scope, name, sha, spec_id, now])
        if cursor.fetchone() is not None:
            return sha
    return GitRef.objects.values_list("sha", flat=True).get(scope=scope, name=name)


def bundle_from_mirror(path: Path, *, tip: str, base: str | None) -> bytes:
    """A bundle of `base..tip` (all of tip's history when base is None) made in the mirror."""
    with mirror_export_lock(path):
        git_run("update-ref", EXPORT_REF, tip, cwd=path)
        with tempfile.TemporaryDirectory(dir=path) as tmp:
            target = Path(tmp) / "out.bundle"
            git_run("bundle", "create", "--quiet", str(target), EXPORT_REF, *([f"^{base}"] if base else []), cwd=path)
            return target.read_bytes()


@contextmanager
def mirror_export_lock(path: Path) -> Iterator[None]:
    with open(path / "omoi-export.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ref_advance(*, scope: str, name: str, old: str | None, new: str, bundle: bytes, spec_id: int | None = None) -> bool:
    """Move branch `name` from `old` to `new` (compare-and-set), keeping the bundle that holds the
    new commits, in one short transaction. False when the branch is no longer at `old` (another
    step moved it first): the caller recomputes from where it is now."""
    if old == new:
        return True
    with transaction.atomic():
        GitBundle.objects.get_or_create(
            scope=scope, tip=new, defaults={"base": old or "", "data": bundle, "size": len(bundle), "spec_id": spec_id}
        )
        if old is None:
            try:
                with transaction.atomic():
                    GitRef.objects.create(scope=scope, name=name, sha=new, spec_id=spec_id)
            except IntegrityError:
                return False
            return True
        return bool(GitRef.objects.filter(scope=scope, name=name, sha=old).update(sha=new))


def mirror_import(*, scope: str, path: Path, bundle: bytes) -> str:
    with mirror_lock(scope):
        return _fetch_bundle(path, bundle)


def merge_base(path: Path, one: str, other: str) -> str | None:
    try:
        return git_run("merge-base", one, other, cwd=path).strip() or None
    except GitError:
        return None


def changed_files(path: Path, base: str, tip: str) -> list[str]:
    output = git_run("diff", "--name-only", "--no-renames", "--no-ext-diff", "--no-textconv", base, tip, cwd=path)
    return [line for line in output.splitlines() if line]


def diff_stat(path: Path, base: str, tip: str) -> str:
    return git_run("diff", "--stat=120", "--no-ext-diff", "--no-textconv", base, tip, cwd=path).rstrip()


def merge_commits(*, path: Path, ours: str, theirs: str, message: str) -> MergeOutcome:
    """Merge commit `theirs` into `ours` without any working tree (merge-tree, commit-tree).
    Already merged: merged=True with `ours`. A conflict: merged=False with the conflicting files."""
    try:
        git_run("merge-base", "--is-ancestor", theirs, ours, cwd=path)
        return MergeOutcome(merged=True, sha=ours)
    except GitError as exc:
        if exc.returncode != 1:
            raise
    try:
        output = git_run("merge-tree", "--write-tree", "--name-only", "--no-messages", ours, theirs, cwd=path)
    except GitError as exc:
        if exc.returncode != 1:
            raise
        # Exit 1: a conflict. git_run reports stdout when stderr is empty: the tree, then the files.
        lines = [line.strip() for line in exc.stderr.splitlines() if line.strip()]
        return MergeOutcome(merged=False, sha=None, conflicts=sorted(set(lines[1:])))
    tree = output.splitlines()[0].strip()
    sha = git_run("commit-tree", tree, "-p", ours, "-p", theirs, "-m", message, cwd=path).strip()
    return MergeOutcome(merged=True, sha=sha)


def mirror_commit_file(mirror: Path, *, scope: str, parent: str, path: str, content: bytes, message: str) -> str | None:
    """A commit on top of `parent` that sets one file, made in the bare mirror without any working
    tree: the blob written from a temporary file (no filters), a tree from a temporary index read
    from `parent`, and commit-tree. None when `parent` already holds exactly this content."""
    with mirror_lock(scope), tempfile.TemporaryDirectory(dir=mirror) as tmp:
        source = Path(tmp) / "content"
        source.write_bytes(content)
        blob = git_run("hash-object", "-w", "--no-filters", str(source), cwd=mirror).strip()
        try:
            current = git_run("rev-parse", "--verify", "--quiet", f"{parent}:{path}", cwd=mirror).strip()
        except GitError:
            current = ""
        if current == blob:
            return None
        index = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        git_run("read-tree", parent, cwd=mirror, env=index)
        git_run("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", cwd=mirror, env=index)
        tree = git_run("write-tree", cwd=mirror, env=index).strip()
        return git_run("commit-tree", tree, "-p", parent, "-m", message, cwd=mirror).strip()


def push(path: Path, *, url: str, branch: str, token: str | None = None) -> None:
    from sandboxes import git

    git.push(path, url, branch, token=token)


# --- the sandbox side (git runs inside the boundary) ----------------------------------------------


def _checked(workspace: Workspace, *args: str, timeout_s: float = 300.0) -> str:
    result = workspace.git(*args, timeout_s=timeout_s)
    if result.exit_code != 0:
        detail = (result.stderr or result.stdout).strip()[-2000:]
        raise TransferError(f"git {args[0]} in the sandbox failed (exit {result.exit_code}): {detail}")
    return result.stdout


def workspace_head(workspace: Workspace) -> str:
    return _checked(workspace, "rev-parse", "HEAD").strip()


def workspace_commit(workspace: Workspace, message: str) -> str | None:
    """Commit everything in the sandbox (inside it); the new HEAD, or None when nothing changed."""
    _checked(workspace, "add", "-A")
    staged = workspace.git("diff", "--cached", "--quiet", "--no-ext-diff")
    if staged.exit_code == 0:
        return None
    if staged.exit_code != 1:
        raise TransferError(f"git diff in the sandbox failed: {(staged.stderr or staged.stdout).strip()[-2000:]}")
    _checked(workspace, "commit", "--quiet", "--no-verify", "-m", message)
    return workspace_head(workspace)


def workspace_export(workspace: Workspace, *, base: str) -> tuple[str, bytes | None]:
    """The sandbox's HEAD and a bundle of `base..HEAD` written by git inside the sandbox (None when
    HEAD is base). The host reads only the bundle's bytes."""
    head = workspace_head(workspace)
    if head == base:
        return head, None
    _checked(workspace, "update-ref", EXPORT_REF, head)
    _checked(workspace, "bundle", "create", "--quiet", EXPORT_FILE, EXPORT_REF, f"^{base}")
    try:
        data = workspace.read_bytes(EXPORT_FILE, limit=MAX_BUNDLE_BYTES)
    except WorkspaceError as exc:
        raise TransferError(f"the sandbox's bundle could not be read: {exc}") from exc
    return head, data


_RECORD_SCRIPT = """set -e
export GIT_CONFIG_NOSYSTEM=1 GIT_OPTIONAL_LOCKS=0
g() {{ git {options} "$@"; }}
g add -A
if ! g diff --cached --quiet --no-ext-diff; then g commit --quiet --no-verify -m {message}; fi
head=$(g rev-parse HEAD)
if [ "$head" != {base} ]; then
  g update-ref {ref} "$head"
  g bundle create --quiet {file} {ref} ^{base}
fi
echo "$head"
"""


def workspace_record(workspace: Workspace, *, message: str, base: str) -> tuple[str, bytes | None]:
    """Commit everything in the sandbox and bundle `base..HEAD`, inside the sandbox, in one command
    (what workspace_commit and workspace_export do in seven). Returns the HEAD and the bundle's
    bytes (None when HEAD is base)."""
    import shlex

    from sandboxes.workspace import WORKSPACE_GIT_OPTIONS

    script = _RECORD_SCRIPT.format(
        options=" ".join(shlex.quote(option) for option in WORKSPACE_GIT_OPTIONS),
        message=shlex.quote(message),
        base=shlex.quote(base),
        ref=EXPORT_REF,
        file=EXPORT_FILE,
    )
    result = workspace.run_command(script, timeout_s=300)
    lines = result.stdout.strip().splitlines()
    if result.exit_code != 0 or result.timed_out or not lines:
        detail = (result.stderr or result.stdout).strip()[-2000:]
        raise TransferError(f"recording the sandbox's work failed (exit {result.exit_code}): {detail}")
    head = lines[-1].strip()
    if head == base:
        return head, None
    try:
        return head, workspace.read_bytes(EXPORT_FILE, limit=MAX_BUNDLE_BYTES)
    except WorkspaceError as exc:
        raise TransferError(f"the sandbox's bundle could not be read: {exc}") from exc
