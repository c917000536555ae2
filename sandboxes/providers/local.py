"""The local provider: each sandbox is a directory on this worker, its commands confined by
bubblewrap (sandboxes.providers.confinement).

Sandbox N is `OMOI_SANDBOX_ROOT/N` (the workspace, a `git clone --shared` of the host's repository:
no objects are copied, the clone borrows the source's through git's alternates), `N.home` (the
commands' home directory, outside the repository so it is never committed) and `N.json` (what
the host knows about it: the read-only paths its commands need, the network setting, the setup
step's result). Inside the boundary the workspace is /workspace and the home /home/agent.

File tools act on the directory from the host, confined by path resolution: every path is
resolved, symlinks included, and must land inside the workspace; writes into `.git` are refused.
Everything git does in a workspace after acquire runs inside the boundary (`LocalWorkspace.git`):
the host never runs git, or anything else, in a tree an agent or a repository controlled.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shlex
import shutil
import stat
import subprocess
import sys
import sysconfig
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

from sandboxes.fstools import DirectoryTools
from sandboxes.git import GitError, clone, git_run, resolve_ref
from sandboxes.providers.base import SandboxGone, SetupOutcome
from sandboxes.providers.confinement import (
    HOME_MOUNT,
    WORKSPACE_MOUNT,
    Limits,
    Probe,
    bubblewrap_argv,
    confinement_probe,
    python_installation_paths,
    run_process,
    unconfined_allowed,
)
from sandboxes.workspace import (
    SYSTEM_PATH_DIRS,
    WORKSPACE_GIT_OPTIONS,
    CommandRefused,
    CommandResult,
    WorkspaceError,
    check_command,
    check_extra_environment,
    clamp_timeout,
    command_environment,
)

if TYPE_CHECKING:
    from sandboxes.models import Sandbox

SANDBOX_VENV = ".venv"
REAP_GRACE_S = 120
MAX_ALTERNATES_DEPTH = 5
SETUP_CACHE_DIR = ".setup-cache"
SETUP_CACHE_MAX_ENTRIES = 10_000


class LocalWorkspace(DirectoryTools):
    """One sandbox directory: the file tools (DirectoryTools', the code a remote sandbox runs too)
    act on it from the host, commands run behind the boundary this process probed (bubblewrap, or
    nothing on a machine without it, which `confined` says).

    `home` is the commands' HOME (by default the sibling `<root>.home`); `read_only_paths` are host
    directories commands see read-only at the same path (the source repository's objects);
    `network_allowed` lets every command use the network (a project setting)."""

    def __init__(
        self,
        root: Path | str,
        *,
        home: Path | str | None = None,
        path_dirs: list[str] | None = None,
        extra_env: dict[str, str] | None = None,
        read_only_paths: list[Path | str] | tuple[Path | str, ...] = (),
        network_allowed: bool = False,
    ) -> None:
        super().__init__(root)
        self.home = Path(home) if home is not None else self.root.parent / f"{self.root.name}.home"
        self.path_dirs = path_dirs
        self.extra_env = check_extra_environment(extra_env)
        self.read_only_paths = tuple(Path(p) for p in read_only_paths)
        self.network_allowed = bool(network_allowed)
        self.label = f"local:{self.root.name}"

    def __repr__(self) -> str:
        return f"LocalWorkspace({str(self.root)!r})"

    @property
    def probe(self) -> Probe:
        return confinement_probe()

    @property
    def confined(self) -> bool:
        return self.probe.confined

    def root_alias(self) -> str | None:
        """Inside a confined command the workspace is /workspace, so that prefix names it too."""
        return WORKSPACE_MOUNT if self.confined else None

    # --- commands -----------------------------------------------------------------------

    def seen_paths(self) -> tuple[str, str, str]:
        """(workspace, home, tmp) as a command sees them: fixed mount points behind bubblewrap
        (so what the setup step installs is valid in every sandbox), the host paths without it."""
        if self.confined:
            return WORKSPACE_MOUNT, HOME_MOUNT, "/tmp"
        return str(self.root), str(self.home), str(self.home / "tmp")

    def command_env(self) -> dict[str, str]:
        """The whole environment of a command, built from scratch: never from os.environ."""
        workspace, home, tmp = self.seen_paths()
        path_dirs = self.path_dirs
        if path_dirs is None:
            # The sandbox's environment first; then the worker's (its compiled tools, such as ruff,
            # visible read-only); then the system's.
            worker_bin = [str(Path(sys.executable).parent)] if sys.prefix != sys.base_prefix else []
            path_dirs = [f"{home}/{SANDBOX_VENV}/bin", *worker_bin, *SYSTEM_PATH_DIRS]
        return command_environment(
            path_dirs=path_dirs, home=home, tmpdir=tmp, workspace=workspace, extra=self.extra_env
        )

    def refusal(self) -> str | None:
        """Why commands may not run here, or None."""
        probe = self.probe
        if probe.required_but_missing:
            return (
                "refused: OMOI_SANDBOX_CONFINEMENT requires bubblewrap, which does not work on this worker "
                f"({probe.reason}); no command runs until it does"
            )
        if not probe.confined and not unconfined_allowed():
            return (
                f"refused: commands would not be isolated on this worker ({probe.reason}), and running them "
                "unconfined is not allowed. Install bubblewrap (Debian package `bubblewrap`), or set "
                "OMOI_ALLOW_UNCONFINED=1 (DJANGO_DEBUG=1 allows it by default) on a machine you trust"
            )
        return None

    def execute(
        self,
        argv: list[str],
        *,
        timeout_s: float | None = None,
        network: bool = False,
        extra_env: dict[str, str] | None = None,
        fault: str = "",
    ) -> CommandResult:
        """Run `argv` in the workspace behind the boundary. Raises CommandRefused when commands may
        not run here (see `refusal`)."""
        reason = self.refusal()
        if reason:
            raise CommandRefused(reason)
        probe = self.probe
        timeout = clamp_timeout(timeout_s, settings.OMOI_COMMAND_TIMEOUT_S)
        limits = Limits.for_timeout(timeout)
        self.home.mkdir(parents=True, exist_ok=True)
        _, seen_home, _ = self.seen_paths()
        ensure_python_environment(self.home, seen_home)
        env = {**self.command_env(), **(extra_env or {})}
        fds: list[int] = []
        network_setup = None
        if probe.confined:
            full, fds, network_setup = bubblewrap_argv(
                probe,
                command=argv,
                workspace=self.root,
                home=self.home,
                read_only=[*python_installation_paths(), *self.read_only_paths],
                network=network or self.network_allowed,
                limits=limits,
            )
        else:
            (self.home / "tmp").mkdir(parents=True, exist_ok=True)
            # In a PID namespace a small shell is its first process (init), so that the command keeps
            # normal signal behaviour and its exit code comes back through it.
            pid_namespace = list(probe.pid_namespace)
            full = [*pid_namespace, "/bin/sh", "-c", '"$@"; exit $?', "sh", *argv] if pid_namespace else argv
        return run_process(
            full,
            fault=fault,
            cwd=self.root,
            env=env,
            timeout=timeout,
            limits=limits,
            probe=probe,
            disk_path=self.root,
            pass_fds=fds,
            network=network_setup,
        )

    def run_command(self, command: str, timeout_s: float | None = None, *, network: bool = False) -> CommandResult:
        """Run `bash -c command` in the workspace. The timeout (default OMOI_COMMAND_TIMEOUT_S,
        at most MAX_COMMAND_TIMEOUT_S) kills everything the command started; so does the
        command's end, so nothing it started in the background outlives it."""
        return self.execute(
            ["bash", "-c", check_command(command)], timeout_s=timeout_s, network=network, fault="sandbox.command"
        )

    # --- host needs: git inside the boundary, bytes in and out -----------------------------

    def git(self, *args: str, timeout_s: float = 120.0) -> CommandResult:
        return self.execute(["git", *WORKSPACE_GIT_OPTIONS, *args], timeout_s=timeout_s, extra_env=_GIT_ENV)

    def read_bytes(self, path: str, *, limit: int) -> bytes:
        target = self.resolve(path)
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
        try:
            descriptor = os.open(target, flags)
        except OSError as exc:
            raise WorkspaceError(f"cannot read {path}: {exc.strerror}") from exc
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            os.close(descriptor)
            raise WorkspaceError(f"{path} is not a regular file")
        with os.fdopen(descriptor, "rb") as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise WorkspaceError(f"{path} is larger than {limit} bytes")
        return data

    def write_bytes(self, path: str, data: bytes) -> None:
        target = self.resolve(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink():
            target.unlink()
        target.write_bytes(data)

    # --- composite git steps, all inside the boundary --------------------------------------

    def _git_checked(self, *args: str, env: dict[str, str] | None = None, ok_codes: tuple[int, ...] = (0,)) -> str:
        argv = ["git", *WORKSPACE_GIT_OPTIONS, *args]
        result = self.execute(argv, timeout_s=300, extra_env={**_GIT_ENV, **(env or {})})
        if result.exit_code not in ok_codes or result.timed_out:
            raise GitError(
                f"git {' '.join(args[:3])} failed in {self.label}",
                stderr=result.stderr or result.stdout,
                returncode=result.exit_code,
            )
        return result.stdout

    def head_sha(self) -> str:
        return self._git_checked("rev-parse", "HEAD").strip()

    def commit_all(self, message: str) -> str | None:
        """Commit everything (git add -A) as Omoi, inside the boundary; None when nothing changed."""
        self._git_checked("add", "-A")
        staged = self.execute(
            ["git", *WORKSPACE_GIT_OPTIONS, "diff", "--cached", "--quiet"], timeout_s=300, extra_env=_GIT_ENV
        )
        if staged.exit_code == 0:
            return None
        self._git_checked("commit", "--quiet", "--no-verify", "-m", message, env=_OMOI_IDENTITY)
        return self.head_sha()

    def _diff_against_fork(self, base_ref: str, *diff_args: str) -> str:
        """`git diff <diff_args> <fork point> <snapshot>`: the snapshot is the working tree as
        `git add -A` would see it, written through a throwaway index so the workspace's own index
        is left alone. One script, so every step runs inside the same boundary."""
        git = " ".join(shlex.quote(part) for part in ("git", *WORKSPACE_GIT_OPTIONS))
        script = f"""set -e
ref="$1"; shift
base=$({git} rev-parse --verify --quiet "$ref^{{commit}}" \\
  || {git} rev-parse --verify --quiet "origin/$ref^{{commit}}") \\
  || {{ echo "unknown revision $ref" >&2; exit 3; }}
fork=$({git} merge-base "$base" HEAD 2>/dev/null || true)
export GIT_INDEX_FILE="$(mktemp)"
if {git} rev-parse --verify --quiet HEAD >/dev/null; then {git} read-tree HEAD; fi
{git} add -A
tree=$({git} write-tree)
rm -f "$GIT_INDEX_FILE"
{git} diff "$@" "${{fork:-$base}}" "$tree"
"""
        argv = ["bash", "-c", script, "omoi-diff", base_ref, *diff_args]
        result = self.execute(argv, timeout_s=300, extra_env=_GIT_ENV)
        if result.exit_code != 0 or result.timed_out:
            raise GitError(
                f"git diff against {base_ref!r} failed in {self.label}",
                stderr=result.stderr,
                returncode=result.exit_code,
            )
        return result.stdout

    def changed_files(self, base_ref: str) -> list[str]:
        """Files changed since the work forked from `base_ref`: committed, staged, unstaged and
        untracked (ignored files excluded)."""
        output = self._diff_against_fork(base_ref, "--name-only", "--no-renames")
        return [line for line in output.splitlines() if line]

    def diff_stat(self, base_ref: str) -> str:
        return self._diff_against_fork(base_ref, "--stat=120").rstrip()

    def remove(self) -> None:
        """Delete the workspace and its home directory (used by providers on release), also what a
        command left without permissions (a directory chmod 000 stops a plain rmtree)."""
        for directory in (self.root, self.home):
            _remove_tree(directory)


def _remove_tree(directory: Path) -> None:
    if not os.path.lexists(directory):
        return
    inside = str(directory)

    def grant_and_retry(function, path, _exc_info) -> None:
        if path != inside and not path.startswith(inside + os.sep):
            return
        with contextlib.suppress(OSError):
            parent = os.path.dirname(path)
            if parent.startswith(inside):
                os.chmod(parent, 0o700)
            if not os.path.islink(path) and os.path.isdir(path):
                os.chmod(path, 0o700)
            function(path)

    shutil.rmtree(directory, onerror=grant_and_retry)
    shutil.rmtree(directory, ignore_errors=True)


_GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_OPTIONAL_LOCKS": "0"}
_OMOI_IDENTITY = {
    "GIT_AUTHOR_NAME": "Omoi",
    "GIT_AUTHOR_EMAIL": "omoi@localhost",
    "GIT_COMMITTER_NAME": "Omoi",
    "GIT_COMMITTER_EMAIL": "omoi@localhost",
}


# --- the Python environment commands get ---------------------------------------------------------


def _worker_interpreter() -> Path:
    return Path(os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable))


def ensure_python_environment(home: Path, seen_home: str) -> None:
    """A virtual environment at <home>/.venv, first on the commands' PATH: `python` is the worker's
    interpreter, the worker's packages are importable (a .pth file names the worker's
    site-packages, which commands see read-only), and what the setup step installs (`pip install
    -e .`) goes into this environment, which the sandbox owns, not into the worker's. The worker's
    console scripts (pytest, pip...) are copied with this environment's interpreter, so they see
    those installs too. Built once per home (cheap: a few files, no subprocess)."""
    venv = home / SANDBOX_VENV
    seen_venv = f"{seen_home}/{SANDBOX_VENV}"
    interpreter = _worker_interpreter()
    in_venv = sys.prefix != sys.base_prefix
    stamp = json.dumps([seen_venv, sys.prefix, str(interpreter)])
    marker = venv / ".omoi-environment"
    with contextlib.suppress(OSError):
        if marker.read_text() == stamp:
            return
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    bin_dir = venv / "bin"
    site_packages = venv / "lib" / f"python{version}" / "site-packages"
    bin_dir.mkdir(parents=True, exist_ok=True)
    site_packages.mkdir(parents=True, exist_ok=True)
    (venv / "pyvenv.cfg").write_text(
        f"home = {interpreter.parent}\n"
        f"include-system-site-packages = {'false' if in_venv else 'true'}\n"
        f"version = {platform.python_version()}\n"
    )
    for name in ("python", "python3", f"python{version}"):
        link = bin_dir / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(interpreter)
    if in_venv:
        worker_site = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
        (site_packages / "_omoi_worker_packages.pth").write_text("\n".join(worker_site) + "\n")
    _copy_console_scripts(Path(sys.executable).parent, bin_dir, f"{seen_venv}/bin/python")
    marker.write_text(stamp)


def _copy_console_scripts(source_dir: Path, target_dir: Path, interpreter: str) -> None:
    own = {os.path.realpath(sys.executable), str(_worker_interpreter())}
    try:
        entries = list(source_dir.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(("python", "activate", "Activate")) or entry.is_symlink() or not entry.is_file():
            continue
        try:
            if entry.stat().st_size > 64 * 1024:
                continue
            data = entry.read_bytes()
        except OSError:
            continue
        first, _, rest = data.partition(b"\n")
        if not first.startswith(b"#!"):
            continue
        shebang = first[2:].decode(errors="replace").strip().split()
        if not shebang or os.path.realpath(shebang[0]) not in own:
            continue
        target = target_dir / entry.name
        target.write_bytes(f"#!{interpreter}\n".encode() + rest)
        target.chmod(0o755)


# --- the provider ----------------------------------------------------------------------------------


def source_objects(source: str) -> list[Path]:
    """The object directories a `--shared` clone of `source` reads: its own and, through its
    alternates, those it borrows from (bounded)."""
    path = Path(source)
    if not path.is_absolute() or not path.exists():
        return []
    if (path / ".git" / "objects").is_dir():
        objects = path / ".git" / "objects"
    elif (path / "objects").is_dir() and (path / "HEAD").is_file():
        objects = path / "objects"
    else:
        objects = Path(git_run("rev-parse", "--git-path", "objects", cwd=path).strip())
        if not objects.is_absolute():
            objects = path / objects
    found: list[Path] = []
    pending = [Path(os.path.realpath(objects))]
    while pending and len(found) < MAX_ALTERNATES_DEPTH:
        current = pending.pop(0)
        if current in found or not current.is_dir():
            continue
        found.append(current)
        with contextlib.suppress(OSError):
            for line in (current / "info" / "alternates").read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    pending.append(Path(os.path.realpath(current / line)))
    return found


class LocalSandboxProvider:
    name = "local"
    # Workspaces live on one worker's disk: their rows name the node, whose queue runs their steps.
    remote = False

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root or settings.OMOI_SANDBOX_ROOT)

    @property
    def confined(self) -> bool:
        return confinement_probe().confined

    def describe(self) -> str:
        return confinement_probe().describe()

    def workspace_dir(self, sandbox: Sandbox) -> Path:
        return self.root / str(sandbox.pk)

    def _directory(self, sandbox: Sandbox) -> Path:
        return Path(sandbox.workspace_path) if sandbox.workspace_path else self.workspace_dir(sandbox)

    @staticmethod
    def _meta_path(directory: Path) -> Path:
        return directory.parent / f"{directory.name}.json"

    def _read_meta(self, directory: Path) -> dict:
        try:
            meta = json.loads(self._meta_path(directory).read_text())
        except (OSError, ValueError):
            return {}
        return meta if isinstance(meta, dict) else {}

    def _write_meta(self, directory: Path, meta: dict) -> None:
        path = self._meta_path(directory)
        partial = path.with_name(f"{path.name}.{uuid.uuid4().hex}.partial")
        partial.write_text(json.dumps(meta))
        partial.replace(path)

    def _workspace(self, directory: Path) -> LocalWorkspace:
        meta = self._read_meta(directory)
        read_only = [Path(p) for p in meta.get("read_only", []) if isinstance(p, str) and os.path.isabs(p)]
        return LocalWorkspace(
            directory,
            home=directory.parent / f"{directory.name}.home",
            read_only_paths=read_only,
            network_allowed=bool(meta.get("network_allowed", False)),
        )

    def acquire(
        self, *, sandbox: Sandbox, source: str, ref: str, branch: str | None, network_allowed: bool = False
    ) -> LocalWorkspace:
        directory = self.workspace_dir(sandbox)
        if (directory / ".git").is_dir():
            return self._workspace(directory)
        # Clone beside the final place and rename, so a crash mid-clone leaves no half workspace.
        partial = self.root / f"{sandbox.pk}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(directory, ignore_errors=True)
        shutil.rmtree(directory.parent / f"{directory.name}.home", ignore_errors=True)
        objects = source_objects(source)
        if objects:
            # No object is copied: the clone reads the source's through alternates, which its
            # commands see read-only. Nothing in the workspace can change the source's objects.
            partial.parent.mkdir(parents=True, exist_ok=True)
            git_run("clone", "--shared", "--no-checkout", "--quiet", "--", source, str(partial), cwd=partial.parent,
                    timeout=600)  # fmt: skip
        else:
            clone(source, partial)
        sha = resolve_ref(partial, ref)
        if branch:
            git_run("checkout", "--quiet", "-B", branch, sha, cwd=partial)
        else:
            git_run("checkout", "--quiet", "--detach", sha, cwd=partial)
        self._write_meta(directory, {"read_only": [str(p) for p in objects], "network_allowed": bool(network_allowed)})
        partial.rename(directory)
        workspace = self._workspace(directory)
        (workspace.home / "tmp").mkdir(parents=True, exist_ok=True)
        return workspace

    def attach(self, *, sandbox: Sandbox) -> LocalWorkspace:
        directory = self._directory(sandbox)
        if not (directory / ".git").is_dir():
            raise SandboxGone(f"the workspace of sandbox {sandbox.pk} ({directory}) no longer exists")
        return self._workspace(directory)

    # --- the setup step and its cache ------------------------------------------------------------

    def _cache_dir(self, cache_key: str) -> Path:
        return self.root / SETUP_CACHE_DIR / hashlib.sha256(cache_key.encode()).hexdigest()[:40]

    def setup(self, *, sandbox: Sandbox, workspace: LocalWorkspace, command: str, cache_key: str) -> SetupOutcome:
        """Run `command` once in this sandbox with network allowed, or reuse the result of an
        earlier sandbox with the same cache_key: what that run wrote outside the repository's
        tracked files (the home directory, with the Python environment packages went into, and
        untracked or ignored files of the tree such as node_modules) is copied in instead."""
        directory = workspace.root
        meta = self._read_meta(directory)
        done = meta.get("setup")
        if isinstance(done, dict) and done.get("cache_key") == cache_key and isinstance(done.get("result"), dict):
            return SetupOutcome(result=CommandResult(**done["result"]), reused=bool(done.get("reused")), repeated=True)
        cache = self._cache_dir(cache_key)
        outcome = self._restore(cache, workspace)
        if outcome is None:
            result = workspace.run_command(command, timeout_s=settings.OMOI_SETUP_TIMEOUT_S, network=True)
            if result.ok:
                self._store(cache, workspace, result)
            outcome = SetupOutcome(result=result, reused=False)
        meta["setup"] = {"cache_key": cache_key, "result": asdict(outcome.result), "reused": outcome.reused}
        self._write_meta(directory, meta)
        return outcome

    def _store(self, cache: Path, workspace: LocalWorkspace, result: CommandResult) -> None:
        if cache.exists():
            return
        listing = workspace.git("status", "--porcelain=v1", "-z", "--ignored=matching", "--untracked-files=normal")
        if not listing.ok:
            return
        entries = _untracked_entries(listing.stdout)
        staging = cache.parent / f"{cache.name}.{uuid.uuid4().hex}.partial"
        try:
            (staging / "tree").mkdir(parents=True)
            _copy_tree(workspace.home, staging / "home")
            for entry in entries:
                source = workspace.root / entry
                if not os.path.lexists(source):
                    continue
                (staging / "tree" / entry).parent.mkdir(parents=True, exist_ok=True)
                _copy_tree(source, staging / "tree" / entry)
            (staging / "entries.json").write_text(json.dumps(entries))
            (staging / "result.json").write_text(json.dumps(asdict(result)))
            staging.rename(cache)
        except (OSError, subprocess.SubprocessError):
            pass  # no cache this time: a later sandbox runs the setup command itself
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _restore(self, cache: Path, workspace: LocalWorkspace) -> SetupOutcome | None:
        try:
            entries = json.loads((cache / "entries.json").read_text())
            result = CommandResult(**json.loads((cache / "result.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None
        try:
            if workspace.home.exists():
                shutil.rmtree(workspace.home)
            _copy_tree(cache / "home", workspace.home)
            for entry in entries if isinstance(entries, list) else []:
                if not isinstance(entry, str) or not _safe_relative(entry):
                    continue
                target = workspace.root / entry
                if os.path.lexists(target) or not _no_symlink_between(workspace.root, target.parent):
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                _copy_tree(cache / "tree" / entry, target)
        except (OSError, subprocess.SubprocessError):
            # A cache that cannot be copied is no cache: start from an empty home and run the command.
            shutil.rmtree(workspace.home, ignore_errors=True)
            workspace.home.mkdir(parents=True, exist_ok=True)
            return None
        with contextlib.suppress(OSError):
            os.utime(cache)
        return SetupOutcome(result=result, reused=True)

    # --- lifecycle ---------------------------------------------------------------------------

    def touch(self, *, sandbox: Sandbox) -> None:
        return None

    def reap(self, *, keep: set[str]) -> list[str]:
        """Remove the workspaces (with their home, meta and partial files) whose sandbox id is not
        kept — a sandbox released by another process, or lost — and the setup cache's entries not
        used for OMOI_SETUP_CACHE_MAX_AGE_S."""
        removed = []
        if self.root.is_dir():
            for entry in list(self.root.iterdir()):
                sandbox_id = entry.name.split(".", 1)[0]
                if not sandbox_id.isdigit() or sandbox_id in keep:
                    continue
                try:
                    if time.time() - entry.lstat().st_mtime < REAP_GRACE_S:
                        continue  # made a moment ago: its row may be newer than `keep`
                except OSError:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    _remove_tree(entry)
                else:
                    with contextlib.suppress(OSError):
                        entry.unlink()
                removed.append(entry.name)
        cache_root = self.root / SETUP_CACHE_DIR
        cutoff = time.time() - float(settings.OMOI_SETUP_CACHE_MAX_AGE_S)
        with contextlib.suppress(OSError):
            for entry in list(cache_root.iterdir())[:SETUP_CACHE_MAX_ENTRIES]:
                with contextlib.suppress(OSError):
                    if entry.stat().st_mtime < cutoff:
                        shutil.rmtree(entry)
                        removed.append(f"setup-cache:{entry.name}")
        return removed

    def release(self, *, sandbox: Sandbox) -> None:
        directory = self._directory(sandbox)
        self._workspace(directory).remove()
        shutil.rmtree(self.root / f"{sandbox.pk}.partial", ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self._meta_path(directory).unlink()


def _untracked_entries(porcelain: str) -> list[str]:
    """Untracked (??) and ignored (!!) paths of `git status --porcelain=v1 -z`, directories with
    a trailing '/' stripped; anything that is not a plain relative path is dropped."""
    entries = []
    for record in porcelain.split("\x00"):
        if len(record) > 3 and record[:3] in ("?? ", "!! "):
            path = record[3:].rstrip("/")
            if _safe_relative(path):
                entries.append(path)
    return entries


def _safe_relative(path: str) -> bool:
    parts = Path(path).parts
    return bool(parts) and not Path(path).is_absolute() and ".." not in parts and parts[0] != ".git"


def _no_symlink_between(root: Path, directory: Path) -> bool:
    """No component from root down to `directory` is a symbolic link (a copy there stays inside)."""
    current = root
    for part in directory.relative_to(root).parts:
        current = current / part
        if current.is_symlink() or (current.exists() and not current.is_dir()):
            return False
    return True


def _copy_tree(source: Path, target: Path) -> None:
    """Copy a file or directory as it is (symbolic links as links, never followed), with
    copy-on-write where the file system supports it."""
    cp = shutil.which("cp", path=":".join(SYSTEM_PATH_DIRS))
    if cp:
        subprocess.run(
            [cp, "-a", "--reflink=auto", "--", str(source), str(target)],
            check=True,
            capture_output=True,
            timeout=600,
            env={"PATH": ":".join(SYSTEM_PATH_DIRS)},
        )
    elif source.is_dir() and not source.is_symlink():
        shutil.copytree(source, target, symlinks=True)
    else:
        shutil.copy2(source, target, follow_symlinks=False)
