"""The Daytona provider: each sandbox is a remote Daytona sandbox, driven through the official SDK.

A Sandbox row N becomes the Daytona sandbox named `<DAYTONA_SANDBOX_PREFIX>-N`, labelled
`omoi.instance=<prefix>` and `omoi.sandbox=N`, created from DAYTONA_SNAPSHOT (or DAYTONA_IMAGE)
with no environment variables (no secret enters it) and, unless the project allows it (then also
labelled `omoi.network=allowed`), no network. The provider is `remote`: its rows name no worker
node, so any worker may run a step in the sandbox. Acquiring always asks Daytona to create it: a
sandbox left by a crashed acquire makes the create answer 409, and the provider then takes that
one (found by name, checked by its labels) instead of making a second. attach, touch and release
find it by its Daytona id (sandbox_acquire records it on the row) or, before the id was recorded,
by the same name.

Code goes in as git data only: the host makes a bundle with `git bundle create` from `source`,
a repository on this worker it owns; the bundle is uploaded and cloned inside the sandbox. The
task's commits come out the same way: `git()` runs inside the sandbox (for `git bundle
create`), `read_bytes` downloads the bundle, and the host fetches it into its own repository.

Everything else runs through sandboxes/sandbox_runner.py, uploaded (with sandboxes/fstools.py)
into the sandbox on each new workspace object and run with python3 through the process API:
- the file tools run the very code LocalWorkspace runs (sandboxes.fstools.DirectoryTools, which
  LocalWorkspace inherits), so the model reads the same answers, limits and refusals from either
  provider;
- a command runs under `bash -c` with an environment built from scratch, its own session,
  resource limits and its own timeout, writing its output to files in the sandbox as it goes; if
  the API call that started it times out or drops, a second call collects what it wrote (and
  kills it), so partial output survives.

The layout in the sandbox, under the sandbox user's home H: the repository `H/workspace`, Omoi's
own files in `H/.omoi` (the runner, the commands' HOME `H/.omoi/home`, command output
`H/.omoi/runs/<id>`, uploads in transit `H/.omoi/incoming`).

The SDK client is created lazily, once per process (the SDK starts a thread, which a fork does
not carry over), so every Celery worker child makes its own.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import posixpath
import re
import shlex
import tempfile
import uuid
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from daytona import (
    CreateSandboxFromImageParams,
    CreateSandboxFromSnapshotParams,
    Daytona,
    DaytonaConfig,
    DaytonaConflictError,
    DaytonaConnectionError,
    DaytonaNotFoundError,
    DaytonaTimeoutError,
    FileUpload,
    ListSandboxesQuery,
    SandboxState,
)
from daytona import Sandbox as RemoteSandbox
from django.conf import settings
from django.utils import timezone

from omoi.faults import fault_point
from sandboxes.git import GitError, git_run, resolve_ref
from sandboxes.providers.base import SandboxGone, SandboxUnavailable, SetupOutcome
from sandboxes.providers.confinement import CPU_SECONDS_BEYOND_TIMEOUT, Limits
from sandboxes.workspace import (
    MAX_OUTPUT_CHARS,
    SYSTEM_PATH_DIRS,
    WORKSPACE_GIT_OPTIONS,
    CommandResult,
    PathRefused,
    WorkspaceError,
    check_command,
    clamp_timeout,
    command_environment,
)

if TYPE_CHECKING:
    from sandboxes.models import Sandbox

LABEL_INSTANCE = "omoi.instance"
LABEL_SANDBOX = "omoi.sandbox"
# Present (value "allowed") on a sandbox whose project lets every command use the network.
LABEL_NETWORK = "omoi.network"
SETUP_RECORD = "setup.json"
MAX_SETUP_RECORD_BYTES = 200_000
RUNNER_FILES = ("fstools.py", "sandbox_runner.py")
RUNNER_RESULT_MARKER = "OMOI-RUNNER-RESULT "
# A request rides on the command line up to this size (Linux allows 128 KiB per argument); a
# larger one (a big write_file) is uploaded first.
INLINE_REQUEST_CHARS = 100_000
LIFECYCLE_TIMEOUT_S = 180
TOOL_TIMEOUT_S = 120
PREPARE_TIMEOUT_S = 900
COLLECT_TIMEOUT_S = 60
# How long the API call of a command may outlast the command's own timeout (the runner's kill,
# its tail reading, the network) before the provider gives up on the call and collects.
RUN_CALL_MARGIN_S = 30
SAFE_REMOTE_PATH = re.compile(r"^/[A-Za-z0-9._/@+-]*$")
PREFIX_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


class RemoteSandboxError(RuntimeError):
    """The remote sandbox did not answer as Omoi's runner does (no python3 in the image, a broken
    request, a daemon failure). Not the model's fault: it is raised, not shown to the model. The
    step that meets it is tried again (omoi.retry: `transient`), up to the cap, and then the
    ticket is blocked with this message, where an operator sees it."""

    transient = True


# --- one SDK client per process ------------------------------------------------------------------

_clients: dict[tuple, Daytona] = {}
_homes: dict[str, str] = {}


def daytona_client() -> Daytona:
    """This process's SDK client for the configured Daytona. A process forked from one that had a
    client makes its own (the inherited one's thread and connections belong to the parent)."""
    key = (os.getpid(), settings.DAYTONA_API_URL, settings.DAYTONA_API_KEY, settings.DAYTONA_TARGET)
    client = _clients.get(key)
    if client is None:
        reset_clients()
        config = DaytonaConfig(
            api_key=settings.DAYTONA_API_KEY,
            api_url=settings.DAYTONA_API_URL or None,
            target=settings.DAYTONA_TARGET or None,
        )
        client = _clients[key] = Daytona(config)
    return client


def reset_clients() -> None:
    """Forget this process's client and what it learnt (as a new process would start)."""
    _clients.clear()
    _homes.clear()


def _runner_sources() -> dict[str, bytes]:
    here = Path(__file__).resolve().parent.parent
    return {name: (here / name).read_bytes() for name in RUNNER_FILES}


_RUNNER = _runner_sources()
RUNNER_DIGEST = hashlib.sha256(b"".join(_RUNNER[name] for name in RUNNER_FILES)).hexdigest()[:16]


# --- the workspace ---------------------------------------------------------------------------------


class DaytonaWorkspace:
    """One Daytona sandbox as the Workspace protocol: tools and commands through the runner,
    bytes through the file-system API. `root` is the repository's path inside the sandbox."""

    confined = True

    def __init__(self, *, remote: RemoteSandbox, home: str, network_allowed: bool = False) -> None:
        if not SAFE_REMOTE_PATH.match(home):
            raise RemoteSandboxError(f"the sandbox's home directory {home!r} is not a plain absolute path")
        self.remote = remote
        self.external_id = remote.id
        self.name = remote.name
        self.label = f"daytona:{remote.name}"
        self.network_allowed = bool(network_allowed)
        self.user_home = PurePosixPath(home)
        self.root = self.user_home / "workspace"
        self.omoi_dir = self.user_home / ".omoi"
        self.command_home = self.omoi_dir / "home"
        self.runner_dir = self.omoi_dir / f"runner-{RUNNER_DIGEST}"
        self._runner_uploaded = False
        self._display_paths: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"DaytonaWorkspace({self.name!r}, {str(self.root)!r})"

    # --- the runner ------------------------------------------------------------------------------

    def _upload_runner(self, extra: list[FileUpload] | None = None) -> None:
        """Put the runner in place. Done once per workspace object, that is at least once per
        turn, so a runner an agent's command altered does not stay in use."""
        uploads = [FileUpload(source=data, destination=str(self.runner_dir / name)) for name, data in _RUNNER.items()]
        self.remote.fs.upload_files([*uploads, *(extra or [])])
        self._runner_uploaded = True

    def _runner(self, request: dict, *, timeout_s: float) -> dict:
        if not self._runner_uploaded:
            self._upload_runner()
        payload = json.dumps(request).encode("ascii")
        encoded = base64.urlsafe_b64encode(payload).decode("ascii")
        if len(encoded) <= INLINE_REQUEST_CHARS:
            argument = f"b64:{encoded}"
        else:
            path = self.omoi_dir / "incoming" / f"request-{uuid.uuid4().hex}.json"
            self.remote.fs.upload_file(payload, str(path))
            argument = f"@{path}"
        # Plain tokens only: the daemon may split the line on spaces or give it to a shell.
        command = f"python3 -I {self.runner_dir / 'sandbox_runner.py'} {argument}"
        response = self.remote.process.exec(command, timeout=math.ceil(timeout_s))
        answer = _runner_answer(response.result or "")
        if answer is None:
            output = (response.result or "").strip()[-2000:]
            raise RemoteSandboxError(
                f"Omoi's runner did not answer in sandbox {self.name} (exit code {response.exit_code}); the "
                f"image needs python3, bash and git. Output: {output or '(none)'}"
            )
        if "failure" in answer:
            raise RemoteSandboxError(f"Omoi's runner failed in sandbox {self.name}: {answer['failure']}")
        return answer

    def _tool(self, name: str, *args, display_of: str | None = None):
        request = {"op": "tool", "root": str(self.root), "name": name, "args": list(args)}
        if display_of is not None:
            request["display_of"] = display_of
        answer = self._runner(request, timeout_s=TOOL_TIMEOUT_S)
        if "ok" in answer:
            if "display" in answer:
                self._display_paths = {display_of: answer["display"]}
            return answer["ok"]
        if "refused" in answer:
            raise PathRefused(answer["refused"])
        if "error" in answer:
            raise WorkspaceError(answer["error"])
        if answer.get("exception") == "OSError":
            raise OSError(answer["message"])
        if answer.get("exception") == "ValueError":
            raise ValueError(answer["message"])
        raise RemoteSandboxError(f"unexpected answer from Omoi's runner: {answer!r}"[:2000])

    # --- model-facing tools --------------------------------------------------------------------

    def list_files(self, path: str = ".") -> str:
        return self._tool("list_files", path)

    def read_file(self, path: str, start_line: int | None = None, end_line: int | None = None) -> str:
        return self._tool("read_file", path, start_line, end_line)

    def write_file(self, path: str, content: str) -> str:
        return self._tool("write_file", path, content, display_of=path if isinstance(path, str) else None)

    def edit_file(self, path: str, old: str, new: str) -> str:
        return self._tool("edit_file", path, old, new, display_of=path if isinstance(path, str) else None)

    def search(self, pattern: str, path: str = ".") -> str:
        return self._tool("search", pattern, path)

    def display_path(self, path: str) -> str:
        if path in self._display_paths:
            return self._display_paths[path]
        return self._tool("display_path", path)

    # --- commands ------------------------------------------------------------------------------

    def command_env(self) -> dict[str, str]:
        """The whole environment of a command, built from scratch here: nothing of the worker's,
        nothing the sandbox was created with. The same builder (and names) as the local provider's."""
        return command_environment(
            path_dirs=SYSTEM_PATH_DIRS,
            home=str(self.command_home),
            tmpdir=str(self.command_home / "tmp"),
            workspace=str(self.root),
        )

    def _limits(self, timeout: float) -> dict[str, int]:
        """The same per-process limits as the local provider's (settings OMOI_SANDBOX_*); the
        sandbox as a whole has Daytona's CPU, memory and disk quotas."""
        limits = Limits.for_timeout(timeout)
        return {
            "address_space_bytes": limits.memory_bytes,
            "file_size_bytes": limits.file_size_bytes,
            "open_files": limits.open_files,
            "processes": limits.processes,
            "stdout_chars": MAX_OUTPUT_CHARS,
            "stderr_chars": MAX_OUTPUT_CHARS // 2,
        }

    def run_command(self, command: str, timeout_s: float | None = None, *, network: bool = False) -> CommandResult:
        """`bash -c command` in the repository, inside the sandbox. The timeout (default
        OMOI_COMMAND_TIMEOUT_S, at most MAX_COMMAND_TIMEOUT_S) is the runner's, which kills the
        command's process group; output is kept as it is written, so a call lost on the way
        (timeout, dropped connection) still yields what the command printed. With `network`,
        a sandbox created without network gets it for this command only."""
        return self._run(check_command(command), timeout_s=timeout_s, network=network, fault="sandbox.command")

    def _run(self, command: str, *, timeout_s: float | None, network: bool = False, fault: str = "") -> CommandResult:
        timeout = clamp_timeout(timeout_s, settings.OMOI_COMMAND_TIMEOUT_S)
        run_dir = str(self.omoi_dir / "runs" / uuid.uuid4().hex)
        limits = self._limits(timeout)
        request = {
            "op": "run",
            "root": str(self.root),
            "command": command,
            "env": self.command_env(),
            "timeout": timeout,
            "run_dir": run_dir,
            "limits": limits,
        }
        lift_block = network and bool(self.remote.network_block_all)
        if lift_block:
            self.remote.update_network_settings(network_block_all=False)
        try:
            try:
                answer = self._runner(request, timeout_s=timeout + CPU_SECONDS_BEYOND_TIMEOUT + RUN_CALL_MARGIN_S)
            except (DaytonaTimeoutError, DaytonaConnectionError):
                collect = {"op": "collect", "run_dir": run_dir, "limits": limits}
                answer = self._runner(collect, timeout_s=COLLECT_TIMEOUT_S)
        finally:
            if lift_block:
                self.remote.update_network_settings(network_block_all=True)
        if fault:
            # The command ran in the sandbox and its answer is here, not yet recorded: a worker
            # dying now leaves the sandbox behind, for the step's next attempt to find again.
            fault_point(fault)
        result = answer.get("ok")
        if not isinstance(result, dict):
            raise RemoteSandboxError(f"unexpected answer from Omoi's runner: {answer!r}"[:2000])
        return CommandResult(
            exit_code=int(result["exit_code"]),
            stdout=str(result["stdout"]),
            stderr=str(result["stderr"]),
            timed_out=bool(result["timed_out"]),
            duration_s=float(result["duration_s"]),
        )

    def git(self, *args: str, timeout_s: float = 120.0) -> CommandResult:
        quoted = " ".join(shlex.quote(arg) for arg in ("git", *WORKSPACE_GIT_OPTIONS, *args))
        return self._run(quoted, timeout_s=timeout_s)

    # --- bytes in and out ------------------------------------------------------------------------

    def remote_path(self, path: str) -> str:
        """The sandbox path of a workspace path, decided lexically (the host cannot resolve the
        sandbox's symbolic links; whatever they reach is inside the sandbox, not on the host)."""
        if not isinstance(path, str):
            raise WorkspaceError("path must be a string")
        if "\x00" in path:
            raise PathRefused("the path contains a NUL byte")
        joined = posixpath.normpath(posixpath.join(str(self.root), path.strip() or "."))
        if joined != str(self.root) and not joined.startswith(str(self.root) + "/"):
            raise PathRefused(f"{path!r} is outside the workspace; use paths relative to the repository root")
        return joined

    def exists(self, path: str) -> bool:
        try:
            self.remote.fs.get_file_info(self.remote_path(path))
        except DaytonaNotFoundError:
            return False
        return True

    def read_bytes(self, path: str, *, limit: int) -> bytes:
        remote = self.remote_path(path)
        try:
            info = self.remote.fs.get_file_info(remote)
        except DaytonaNotFoundError as exc:
            raise WorkspaceError(f"cannot read {path}: No such file or directory") from exc
        if info.is_dir:
            raise WorkspaceError(f"{path} is not a regular file")
        if info.size > limit:
            raise WorkspaceError(f"{path} is larger than {limit} bytes")
        data = self.remote.fs.download_file(remote)
        if len(data) > limit:
            raise WorkspaceError(f"{path} is larger than {limit} bytes")
        return data

    def write_bytes(self, path: str, data: bytes) -> None:
        self.remote.fs.upload_file(bytes(data), self.remote_path(path))

    # --- setting up ----------------------------------------------------------------------------

    def setup_record(self) -> dict | None:
        """What the project's setup step did in this sandbox (kept in Omoi's directory there), or
        None when it has not run."""
        path = str(self.omoi_dir / SETUP_RECORD)
        try:
            data = self.remote.fs.download_file(path)
        except DaytonaNotFoundError:
            return None
        try:
            record = json.loads(data[:MAX_SETUP_RECORD_BYTES])
        except ValueError:
            return None
        return record if isinstance(record, dict) else None

    def setup_record_write(self, record: dict) -> None:
        self.remote.fs.upload_file(json.dumps(record).encode(), str(self.omoi_dir / SETUP_RECORD))

    def prepare(self, *, source: str, sha: str, branch: str | None) -> None:
        """Clone commit `sha` of the host repository `source` into the workspace on `branch`, as
        a bundle made on the host and cloned inside. Nothing happens when the workspace exists."""
        if self.exists(".git"):
            return
        bundle = self.omoi_dir / "incoming" / f"{uuid.uuid4().hex}.bundle"
        with tempfile.TemporaryDirectory(prefix="omoi-bundle-") as tmp:
            local = Path(tmp) / "in.bundle"
            git_run("bundle", "create", "--quiet", str(local), "--branches", "--tags", sha, cwd=source, timeout=600)
            self._upload_runner(extra=[FileUpload(source=str(local), destination=str(bundle))])
        request = {
            "op": "prepare",
            "root": str(self.root),
            "bundle": str(bundle),
            "sha": sha,
            "branch": branch,
            "env": self.command_env(),
            "git_options": list(WORKSPACE_GIT_OPTIONS),
        }
        answer = self._runner(request, timeout_s=PREPARE_TIMEOUT_S)
        if "error" in answer:
            raise GitError(f"cannot prepare the workspace in sandbox {self.name}", stderr=answer["error"])


def _runner_answer(output: str) -> dict | None:
    for line in reversed(output.splitlines()):
        if line.startswith(RUNNER_RESULT_MARKER):
            try:
                answer = json.loads(line[len(RUNNER_RESULT_MARKER) :])
            except ValueError:
                return None
            return answer if isinstance(answer, dict) else None
    return None


# --- the provider ----------------------------------------------------------------------------------


class DaytonaSandboxProvider:
    name = "daytona"
    confined = True
    # Sandboxes live on Daytona, not on a worker's disk: their rows name no node, so any worker
    # may run a step in them (sandboxes.services.sandbox.sandbox_acquire).
    remote = True

    def __init__(self) -> None:
        self.prefix = settings.DAYTONA_SANDBOX_PREFIX
        if not PREFIX_PATTERN.match(self.prefix):
            raise SandboxUnavailable(
                f"DAYTONA_SANDBOX_PREFIX {self.prefix!r} must be 1-40 lowercase letters, digits or dashes"
            )
        if settings.DAYTONA_SNAPSHOT and settings.DAYTONA_IMAGE:
            raise SandboxUnavailable("set DAYTONA_SNAPSHOT or DAYTONA_IMAGE, not both")

    def describe(self) -> str:
        source = (
            f"image {settings.DAYTONA_IMAGE}"
            if settings.DAYTONA_IMAGE
            else f"snapshot {settings.DAYTONA_SNAPSHOT or '(Daytona default)'}"
        )
        where = settings.DAYTONA_API_URL or "Daytona cloud"
        network = "no network unless asked" if settings.DAYTONA_NETWORK_BLOCK_ALL else "network allowed"
        return f"commands run in remote Daytona sandboxes ({where}, {source}; {network})"

    # --- names and lookups -----------------------------------------------------------------------

    def sandbox_name(self, sandbox: Sandbox) -> str:
        return f"{self.prefix}-{sandbox.pk}"

    def _labels(self, sandbox: Sandbox) -> dict[str, str]:
        return {LABEL_INSTANCE: self.prefix, LABEL_SANDBOX: str(sandbox.pk)}

    def _is_ours(self, remote: RemoteSandbox, sandbox: Sandbox) -> bool:
        labels = remote.labels or {}
        return all(labels.get(key) == value for key, value in self._labels(sandbox).items())

    def _get(self, sandbox: Sandbox) -> RemoteSandbox:
        """The sandbox's Daytona sandbox, by its recorded id or else its name; SandboxGone when
        Daytona has none, or only one that is not this row's."""
        key = sandbox.external_id or self.sandbox_name(sandbox)
        try:
            remote = daytona_client().get(key)
        except DaytonaNotFoundError as exc:
            raise SandboxGone(f"Daytona has no sandbox {key} (sandbox {sandbox.pk})") from exc
        if not self._is_ours(remote, sandbox):
            raise SandboxGone(f"the Daytona sandbox {key} is not Omoi's sandbox {sandbox.pk}")
        return remote

    def _create_or_find(self, sandbox: Sandbox, *, network_allowed: bool) -> RemoteSandbox:
        name = self.sandbox_name(sandbox)
        labels = self._labels(sandbox)
        if network_allowed:
            labels[LABEL_NETWORK] = "allowed"
        common = {
            "name": name,
            "labels": labels,
            "env_vars": {},
            "public": False,
            "auto_stop_interval": settings.DAYTONA_AUTO_STOP_MINUTES,
            "network_block_all": settings.DAYTONA_NETWORK_BLOCK_ALL and not network_allowed,
        }
        if settings.DAYTONA_IMAGE:
            params = CreateSandboxFromImageParams(image=settings.DAYTONA_IMAGE, **common)
        else:
            params = CreateSandboxFromSnapshotParams(snapshot=settings.DAYTONA_SNAPSHOT or None, **common)
        client = daytona_client()
        try:
            return client.create(params, timeout=LIFECYCLE_TIMEOUT_S)
        except DaytonaConflictError:
            pass
        # The name is taken: a crashed acquire made it (found by name, it must carry our labels).
        remote = client.get(name)
        if not self._is_ours(remote, sandbox):
            raise SandboxUnavailable(
                f"a Daytona sandbox named {name} exists but is not labelled as Omoi's sandbox {sandbox.pk} "
                f"(prefix {self.prefix!r}); give this installation its own DAYTONA_SANDBOX_PREFIX"
            )
        return remote

    def _ensure_started(self, remote: RemoteSandbox) -> None:
        """Bring a stopped (auto-stopped), archived or starting sandbox to `started`."""
        state = remote.state
        if state == SandboxState.STARTED:
            return
        if state in (SandboxState.DESTROYED, SandboxState.DESTROYING, SandboxState.BUILD_FAILED):
            raise SandboxGone(f"the Daytona sandbox {remote.name} is {state.value}")
        if state == SandboxState.ERROR:
            if not remote.recoverable:
                raise SandboxGone(f"the Daytona sandbox {remote.name} failed: {remote.error_reason}")
            remote.recover(timeout=LIFECYCLE_TIMEOUT_S)
            return
        if state == SandboxState.STOPPING:
            remote.wait_for_sandbox_stop(timeout=LIFECYCLE_TIMEOUT_S)
            state = remote.state
        if state in (SandboxState.STOPPED, SandboxState.ARCHIVED, SandboxState.PAUSED):
            remote.start(timeout=LIFECYCLE_TIMEOUT_S)
        else:
            remote.wait_for_sandbox_start(timeout=LIFECYCLE_TIMEOUT_S)

    def _ensure_network(self, remote: RemoteSandbox) -> bool:
        """The sandbox's network as its project set it (the label): a block that a worker killed
        in the middle of the setup step left lifted is put back. Returns whether every command
        may use the network."""
        allowed = (remote.labels or {}).get(LABEL_NETWORK) == "allowed"
        if settings.DAYTONA_NETWORK_BLOCK_ALL and not allowed and not remote.network_block_all:
            remote.update_network_settings(network_block_all=True)
        return allowed or not settings.DAYTONA_NETWORK_BLOCK_ALL

    def _workspace(self, remote: RemoteSandbox) -> DaytonaWorkspace:
        home = _homes.get(remote.id)
        if home is None:
            home = _homes[remote.id] = remote.get_user_home_dir()
        network_allowed = self._ensure_network(remote)
        return DaytonaWorkspace(remote=remote, home=home, network_allowed=network_allowed)

    # --- the protocol --------------------------------------------------------------------------

    def acquire(
        self, *, sandbox: Sandbox, source: str, ref: str, branch: str | None, network_allowed: bool = False
    ) -> DaytonaWorkspace:
        sha = resolve_ref(source, ref)
        remote = self._create_or_find(sandbox, network_allowed=network_allowed)
        self._ensure_started(remote)
        workspace = self._workspace(remote)
        workspace.prepare(source=source, sha=sha, branch=branch)
        return workspace

    def attach(self, *, sandbox: Sandbox) -> DaytonaWorkspace:
        remote = self._get(sandbox)
        self._ensure_started(remote)
        workspace = self._workspace(remote)
        if not workspace.exists(".git"):
            raise SandboxGone(f"the Daytona sandbox {remote.name} holds no workspace")
        return workspace

    def setup(self, *, sandbox: Sandbox, workspace: DaytonaWorkspace, command: str, cache_key: str) -> SetupOutcome:
        """Run the setup command once in this sandbox, with network for that command only. Its
        result is kept in the sandbox, so a repeated call runs nothing (`repeated`). No result is
        reused across sandboxes: a project whose setup is slow bakes it into DAYTONA_SNAPSHOT."""
        done = workspace.setup_record()
        if done is not None and done.get("cache_key") == cache_key and isinstance(done.get("result"), dict):
            try:
                return SetupOutcome(result=CommandResult(**done["result"]), repeated=True)
            except TypeError:
                pass  # a record this version cannot read: run the command again
        result = workspace.run_command(command, timeout_s=settings.OMOI_SETUP_TIMEOUT_S, network=True)
        workspace.setup_record_write({"cache_key": cache_key, "result": asdict(result)})
        return SetupOutcome(result=result)

    def touch(self, *, sandbox: Sandbox) -> None:
        """Refresh the sandbox's activity, so auto-stop counts from now (a model may think for
        minutes between two commands)."""
        self._get(sandbox).refresh_activity()

    def release(self, *, sandbox: Sandbox) -> None:
        """Stop the sandbox, then delete it. Idempotent: a sandbox Daytona no longer has is released."""
        try:
            remote = self._get(sandbox)
        except SandboxGone:
            return
        try:
            if remote.state == SandboxState.STARTED:
                remote.stop(timeout=LIFECYCLE_TIMEOUT_S)
            daytona_client().delete(remote)
        except DaytonaNotFoundError:
            pass
        _homes.pop(remote.id, None)

    def reap(self, *, keep: set[str]) -> list[str]:
        """Delete this installation's sandboxes (by label) whose Daytona id or name is not in
        `keep`, unless younger than DAYTONA_REAP_GRACE_S (an acquire may not have recorded its id
        yet). Returns the ids deleted."""
        cutoff = timezone.now() - timedelta(seconds=settings.DAYTONA_REAP_GRACE_S)
        client = daytona_client()
        removed = []
        for remote in client.list(ListSandboxesQuery(labels={LABEL_INSTANCE: self.prefix})):
            if remote.id in keep or remote.name in keep:
                continue
            created = _parse_time(remote.created_at)
            if created is not None and created > cutoff:
                continue
            try:
                client.delete(remote)
            except DaytonaNotFoundError:
                continue
            _homes.pop(remote.id, None)
            removed.append(remote.id)
        return removed


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
