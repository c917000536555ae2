"""The project's setup step: its `setup_command` (`pip install -e '.[test]'`, `npm ci`) runs once per
sandbox, with network allowed for that step only, before the agent's first turn.

Agent commands run without network, so a repository's dependencies have to be there before the
agent needs them. The step's output and duration are recorded as a `sandbox.setup` event; a
failure raises `SetupFailed` (the caller blocks the ticket with reason `environment` and the
output). Where the provider can, a later sandbox reuses the result instead of running the command
again (the local provider copies what the first run wrote outside the tracked files). The cache key
is the caller's (for example the spec) joined with the command and the dependency manifests of the
checked-out tree, so a change to `pyproject.toml` or `package-lock.json` runs the setup again.
"""

from __future__ import annotations

import hashlib

from django.db import transaction

from sandboxes.models import Sandbox, SandboxEvent, SandboxStatus
from sandboxes.providers import get_sandbox_provider
from sandboxes.providers.base import SetupOutcome
from sandboxes.services.events import event_record, truncate_text
from sandboxes.services.sandbox import SandboxNotReady
from sandboxes.workspace import Workspace

# Files whose content decides what a setup command installs, at any depth of the tree.
DEPENDENCY_MANIFESTS = (
    "pyproject.toml",
    "setup.py",
    "setup.cfg",
    "requirements*.txt",
    "requirements/*.txt",
    "Pipfile.lock",
    "poetry.lock",
    "uv.lock",
    "package.json",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "Cargo.toml",
    "Cargo.lock",
    "go.mod",
    "go.sum",
    "Gemfile",
    "Gemfile.lock",
    "composer.json",
    "composer.lock",
    "pom.xml",
    "build.gradle",
    "build.gradle.kts",
)
EVENT_OUTPUT_LIMIT = 4000


class SetupFailed(Exception):
    """The setup command failed (non-zero exit, timeout or a limit). `message` is what the ticket's
    blocked reason shows: the command, how it ended and the tail of its output."""

    def __init__(self, *, outcome: SetupOutcome, command: str) -> None:
        result = outcome.result
        if result.timed_out:
            how = f"timed out after {result.duration_s:.0f} s"
        elif result.killed_by:
            how = f"was killed: {result.killed_by}"
        else:
            how = f"exited with code {result.exit_code}"
        output = setup_output(outcome)
        self.outcome = outcome
        self.command = command
        self.output = output
        self.message = f"the setup command `{command}` {how}" + (f":\n{output}" if output else "")
        super().__init__(self.message)


def setup_output(outcome: SetupOutcome, limit: int = EVENT_OUTPUT_LIMIT) -> str:
    """The tail of the step's output (stdout, then stderr), at most `limit` characters."""
    text = "\n".join(part.rstrip("\n") for part in (outcome.result.stdout, outcome.result.stderr) if part.strip())
    return text if len(text) <= limit else "…" + text[-limit:]


def setup_cache_key(*, workspace: Workspace, cache_key: str, command: str) -> str:
    """`cache_key` joined with the command and a digest of the dependency manifests checked out in
    the workspace (read with git inside the boundary)."""
    listing = workspace.git("ls-files", "-s", "--", *[f":(glob)**/{name}" for name in DEPENDENCY_MANIFESTS])
    manifests = listing.stdout if listing.ok else f"unreadable:{listing.exit_code}"
    digest = hashlib.sha256(f"{command}\x00{manifests}".encode()).hexdigest()[:32]
    return f"{cache_key}|{digest}"


def sandbox_setup_run(*, sandbox_id: int, command: str, cache_key: str) -> SetupOutcome:
    """Run (or reuse) the setup step in a ready sandbox. Records `sandbox.setup` {sandbox, command,
    ok, exit_code, timed_out, killed_by, duration_s, reused, output}; raises SetupFailed when the
    command did not succeed, CommandRefused when commands may not run on this worker. A repeated
    call for the same sandbox runs nothing and records nothing."""
    command = command.strip()
    if not command:
        raise ValueError("there is no setup command to run")
    sandbox = Sandbox.objects.get(pk=sandbox_id)
    if sandbox.status != SandboxStatus.READY:
        raise SandboxNotReady(f"sandbox {sandbox_id} is {sandbox.status}, not ready")
    provider = get_sandbox_provider(sandbox.provider)
    workspace = provider.attach(sandbox=sandbox)
    key = setup_cache_key(workspace=workspace, cache_key=cache_key, command=command)
    outcome = provider.setup(sandbox=sandbox, workspace=workspace, command=command, cache_key=key)
    if not outcome.repeated:
        result = outcome.result
        with transaction.atomic():
            event_record(
                type="sandbox.setup",
                payload={
                    "sandbox": sandbox.pk,
                    "command": truncate_text(command, 1000),
                    "ok": result.ok,
                    "exit_code": result.exit_code,
                    "timed_out": result.timed_out,
                    "killed_by": result.killed_by,
                    "duration_s": result.duration_s,
                    "reused": outcome.reused,
                    "output": setup_output(outcome),
                },
                spec_id=sandbox.spec_id,
                ticket_id=sandbox.ticket_id,
                task_id=sandbox.task_id,
                sandbox_id=sandbox.pk,
            )
    if not outcome.result.ok:
        raise SetupFailed(outcome=outcome, command=command)
    return outcome


def sandbox_setup_ensure(*, sandbox_id: int, command: str, cache_key: str) -> None:
    """The setup step, unless this sandbox already went through it (one query then): called before
    every agent run and host check, so a crash between a sandbox's creation and its setup is
    healed by the next step. Raises SetupFailed or CommandRefused like sandbox_setup_run."""
    done = SandboxEvent.objects.filter(sandbox_id=sandbox_id, type="sandbox.setup", payload__ok=True).exists()
    if not done:
        sandbox_setup_run(sandbox_id=sandbox_id, command=command, cache_key=cache_key)
