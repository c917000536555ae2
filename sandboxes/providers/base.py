"""The sandbox provider interface. A provider makes a workspace for a Sandbox row, reopens it in
another process (agent turns run in separate Celery tasks), and removes it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from django.conf import settings

from sandboxes.workspace import CommandResult, Workspace

if TYPE_CHECKING:
    from sandboxes.models import Sandbox


class SandboxUnavailable(Exception):
    """The configured provider cannot be used (unknown, or not configured)."""


class SandboxGone(Exception):
    """A sandbox's workspace no longer exists (released, or its machine was lost). Transient for
    the step that meets it (omoi.retry): its next attempt finds the sandbox gone when it reopens
    it, marks it lost and starts the work again in a new one."""

    transient = True


@dataclass
class SetupOutcome:
    """What a project's setup_command did in a sandbox: its result, or that a cached result of an
    earlier sandbox of the same spec was reused (then `result` is that earlier run's)."""

    result: CommandResult
    reused: bool = False
    # This sandbox had already run its setup (a repeated call): nothing ran, nothing new to record.
    repeated: bool = False


class SandboxProvider(Protocol):
    """Where workspaces live. Every implementation gives the same Workspace protocol; code enters
    a sandbox only as git data taken from a repository on this worker (`source`, the host's
    mirror), and leaves it only as a bundle (sandboxes.transfer)."""

    name: str
    # True when commands run behind a real boundary (bubblewrap, a remote machine).
    confined: bool
    # True for a provider whose sandboxes live off the workers (Daytona):
    # their rows name no node, so any worker may run their steps, and the reconciler reaps the
    # provider's sandboxes that no live row holds (`reap(keep=...)`, with each live row's
    # external_id and `sandbox_name(row)`, the name an acquire that has not recorded its id yet
    # gave it).
    remote: bool

    def describe(self) -> str:
        """One line for the CLI: what isolates commands, or that nothing does and why."""
        ...

    def acquire(
        self, *, sandbox: Sandbox, source: str, ref: str, branch: str | None, network_allowed: bool = False
    ) -> Workspace:
        """Make the sandbox's workspace holding commit `ref` of the git repository `source` (a path on
        this worker), checked out on a new `branch` (detached when None). Idempotent: a workspace
        that exists (or, remotely, a sandbox labelled with this row's id) is found, not made twice.
        `network_allowed` (the project's setting) lets every command of this sandbox use the
        network; otherwise only a command run with network=True (the setup step) may."""
        ...

    def attach(self, *, sandbox: Sandbox) -> Workspace:
        """Reopen an acquired workspace, possibly in another process. Raises SandboxGone."""
        ...

    def setup(self, *, sandbox: Sandbox, workspace: Workspace, command: str, cache_key: str) -> SetupOutcome:
        """Run the project's setup command once in a new workspace, with network allowed for that
        step only; reuse the result of an earlier run with the same cache_key where the provider
        can (a cached layer, a snapshot)."""
        ...

    def touch(self, *, sandbox: Sandbox) -> None:
        """Record activity, so that a provider's auto-stop does not stop a sandbox a run still uses."""
        ...

    def release(self, *, sandbox: Sandbox) -> None:
        """Remove the workspace. Idempotent."""
        ...

    def reap(self, *, keep: set[str]) -> list[str]:
        """Remove this provider's sandboxes (labelled as Omoi's) that no live row holds: for the
        local provider `keep` holds the live rows' ids, for a remote one their external ids and
        names. Returns what was removed."""
        ...


def get_sandbox_provider(name: str | None = None) -> SandboxProvider:
    """The provider named `name`, by default settings.OMOI_SANDBOX_PROVIDER."""
    name = name or settings.OMOI_SANDBOX_PROVIDER
    if name == "local":
        from sandboxes.providers.local import LocalSandboxProvider

        return LocalSandboxProvider()
    if name == "daytona":
        if not settings.DAYTONA_API_KEY:
            raise SandboxUnavailable(
                "OMOI_SANDBOX_PROVIDER is 'daytona' but Daytona is not configured: set DAYTONA_API_KEY "
                "(and DAYTONA_API_URL for a Daytona other than app.daytona.io), or use OMOI_SANDBOX_PROVIDER=local"
            )
        from sandboxes.providers.daytona import DaytonaSandboxProvider

        return DaytonaSandboxProvider()
    raise SandboxUnavailable(f"unknown OMOI_SANDBOX_PROVIDER {name!r}: use 'local' or 'daytona'")


def sandbox_boundary_line(name: str | None = None) -> str:
    """What the CLI says about where commands run: "local: commands confined by bubblewrap 0.8.0
    (...)" or "local: commands are NOT isolated: bubblewrap is not installed ..."."""
    name = name or settings.OMOI_SANDBOX_PROVIDER
    try:
        provider = get_sandbox_provider(name)
    except SandboxUnavailable as exc:
        return f"{name}: unavailable: {exc}"
    describe = getattr(provider, "describe", None)
    return f"{name}: {describe()}" if describe else name
