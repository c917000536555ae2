"""The local provider: each sandbox is a git clone under OMOI_SANDBOX_ROOT/<sandbox id>, with its
commands' home directory beside it (OMOI_SANDBOX_ROOT/<sandbox id>.home)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

from sandboxes.git import clone, git_run, resolve_ref
from sandboxes.providers.base import SandboxGone
from sandboxes.workspace import Workspace

if TYPE_CHECKING:
    from sandboxes.models import Sandbox


class LocalSandboxProvider:
    name = "local"

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root or settings.OMOI_SANDBOX_ROOT)

    def workspace_dir(self, sandbox: Sandbox) -> Path:
        return self.root / str(sandbox.pk)

    def _workspace(self, directory: Path) -> Workspace:
        return Workspace(directory, home=directory.parent / f"{directory.name}.home")

    def acquire(self, *, sandbox: Sandbox, repository: str, base_ref: str, branch: str | None) -> Workspace:
        directory = self.workspace_dir(sandbox)
        if (directory / ".git").is_dir():
            return self._workspace(directory)
        # Clone beside the final place and rename, so a crash mid-clone leaves no half workspace.
        partial = self.root / f"{sandbox.pk}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(directory, ignore_errors=True)
        clone(repository, partial)
        sha = resolve_ref(partial, base_ref)
        if branch:
            git_run("checkout", "--quiet", "-B", branch, sha, cwd=partial)
        else:
            git_run("checkout", "--quiet", "--detach", sha, cwd=partial)
        partial.rename(directory)
        workspace = self._workspace(directory)
        (workspace.home / "tmp").mkdir(parents=True, exist_ok=True)
        return workspace

    def attach(self, *, sandbox: Sandbox) -> Workspace:
        directory = Path(sandbox.workspace_path) if sandbox.workspace_path else self.workspace_dir(sandbox)
        if not (directory / ".git").is_dir():
            raise SandboxGone(f"the workspace of sandbox {sandbox.pk} ({directory}) no longer exists")
        return self._workspace(directory)

    def release(self, *, sandbox: Sandbox) -> None:
        directory = Path(sandbox.workspace_path) if sandbox.workspace_path else self.workspace_dir(sandbox)
        self._workspace(directory).remove()
        shutil.rmtree(self.root / f"{sandbox.pk}.partial", ignore_errors=True)
