"""The local provider: each sandbox is a git clone under OMOI_SANDBOX_ROOT/<sandbox id>, with its
commands' home directory beside it (OMOI_SANDBOX_ROOT/<sandbox id>.home)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

from sandboxes.git import clone, git_run, resolve_ref
from sandboxes.providers.base import SandboxGone, SetupOutcome
from sandboxes.workspace import LocalWorkspace, Workspace

if TYPE_CHECKING:
    from sandboxes.models import Sandbox


REAP_GRACE_S = 120


class LocalSandboxProvider:
    name = "local"

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root or settings.OMOI_SANDBOX_ROOT)

    def workspace_dir(self, sandbox: Sandbox) -> Path:
        return self.root / str(sandbox.pk)

    def _workspace(self, directory: Path) -> LocalWorkspace:
        return LocalWorkspace(directory, home=directory.parent / f"{directory.name}.home")

    confined = False

    def acquire(self, *, sandbox: Sandbox, source: str, ref: str, branch: str | None) -> LocalWorkspace:
        directory = self.workspace_dir(sandbox)
        if (directory / ".git").is_dir():
            return self._workspace(directory)
        # Clone beside the final place and rename, so a crash mid-clone leaves no half workspace.
        partial = self.root / f"{sandbox.pk}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(directory, ignore_errors=True)
        clone(source, partial)
        sha = resolve_ref(partial, ref)
        if branch:
            git_run("checkout", "--quiet", "-B", branch, sha, cwd=partial)
        else:
            git_run("checkout", "--quiet", "--detach", sha, cwd=partial)
        partial.rename(directory)
        workspace = self._workspace(directory)
        (workspace.home / "tmp").mkdir(parents=True, exist_ok=True)
        return workspace

    def attach(self, *, sandbox: Sandbox) -> LocalWorkspace:
        directory = Path(sandbox.workspace_path) if sandbox.workspace_path else self.workspace_dir(sandbox)
        if not (directory / ".git").is_dir():
            raise SandboxGone(f"the workspace of sandbox {sandbox.pk} ({directory}) no longer exists")
        return self._workspace(directory)

    def setup(self, *, sandbox: Sandbox, workspace: Workspace, command: str, cache_key: str) -> SetupOutcome:
        return SetupOutcome(result=workspace.run_command(command, network=True))

    def touch(self, *, sandbox: Sandbox) -> None:
        return None

    def reap(self, *, keep: set[str]) -> list[str]:
        """Remove workspaces (and their home and partial directories) whose sandbox id is not kept."""
        removed = []
        if not self.root.is_dir():
            return removed
        for entry in self.root.iterdir():
            sandbox_id = entry.name.split(".", 1)[0]
            if not sandbox_id.isdigit() or sandbox_id in keep:
                continue
            try:
                if time.time() - entry.stat().st_mtime < REAP_GRACE_S:
                    continue  # made a moment ago: its row may be newer than `keep`
            except OSError:
                continue
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
        return removed

    def release(self, *, sandbox: Sandbox) -> None:
        directory = Path(sandbox.workspace_path) if sandbox.workspace_path else self.workspace_dir(sandbox)
        self._workspace(directory).remove()
        shutil.rmtree(self.root / f"{sandbox.pk}.partial", ignore_errors=True)
