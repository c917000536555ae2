"""The sandbox provider interface. A provider makes a workspace for a Sandbox row, reopens it in
another process (agent turns run in separate Celery tasks), and removes it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from django.conf import settings

from sandboxes.workspace import Workspace

if TYPE_CHECKING:
    from sandboxes.models import Sandbox


class SandboxUnavailable(Exception):
    """The configured provider cannot be used (unknown, or not configured)."""


class SandboxGone(Exception):
    """A sandbox's workspace no longer exists (released, or its machine was lost)."""


class SandboxProvider(Protocol):
    name: str

    def acquire(self, *, sandbox: Sandbox, repository: str, base_ref: str, branch: str | None) -> Workspace:
        """Make the sandbox's workspace: a clone of `repository` with `branch` made at `base_ref`
        (or `base_ref` checked out when branch is None). Idempotent: an existing workspace is reused."""
        ...

    def attach(self, *, sandbox: Sandbox) -> Workspace:
        """Reopen an acquired workspace, possibly in another process. Raises SandboxGone."""
        ...

    def release(self, *, sandbox: Sandbox) -> None:
        """Remove the workspace. Idempotent."""
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
                "(and DAYTONA_API_URL), or use OMOI_SANDBOX_PROVIDER=local"
            )
        raise SandboxUnavailable(
            "the Daytona sandbox provider is not available in this version; use OMOI_SANDBOX_PROVIDER=local"
        )
    raise SandboxUnavailable(f"unknown OMOI_SANDBOX_PROVIDER {name!r}: use 'local' or 'daytona'")
