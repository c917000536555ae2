"""Sandbox providers: where a workspace lives. `get_sandbox_provider()` picks the configured one."""

from sandboxes.providers.base import (
    SandboxGone,
    SandboxProvider,
    SandboxUnavailable,
    get_sandbox_provider,
    sandbox_boundary_line,
)

__all__ = ["SandboxGone", "SandboxProvider", "SandboxUnavailable", "get_sandbox_provider", "sandbox_boundary_line"]
