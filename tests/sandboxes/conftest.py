import json
import subprocess
from pathlib import Path

import pytest

from sandboxes.providers.local import LocalWorkspace


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@pytest.fixture
def git_repo(tmp_path) -> Path:
    """A small repository on branch main: a package, its test, a README."""
    repo = tmp_path / "origin"
    repo.mkdir()
    git("init", "--quiet", "--initial-branch=main", cwd=repo)
    (repo / "README.md").write_text("# Calculator\n\nAdds numbers.\n")
    (repo / "calc").mkdir()
    (repo / "calc" / "__init__.py").write_text("")
    (repo / "calc" / "ops.py").write_text("def add(a, b):\n    return a + b\n")
    (repo / "tests").mkdir()
    (repo / "tests" / "test_ops.py").write_text(
        "from calc.ops import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"
    )
    git("add", "-A", cwd=repo)
    git("commit", "--quiet", "-m", "initial", cwd=repo)
    return repo


@pytest.fixture
def workspace(git_repo, tmp_path) -> LocalWorkspace:
    """A workspace over a clone of git_repo, on branch work."""
    clone = tmp_path / "ws" / "repo"
    clone.parent.mkdir()
    git("clone", "--quiet", str(git_repo), str(clone), cwd=tmp_path)
    git("checkout", "--quiet", "-b", "work", cwd=clone)
    return LocalWorkspace(clone)


@pytest.fixture
def sandbox_root(settings, tmp_path) -> Path:
    settings.OMOI_SANDBOX_ROOT = tmp_path / "sandboxes"
    settings.OMOI_SANDBOX_PROVIDER = "local"
    return settings.OMOI_SANDBOX_ROOT


@pytest.fixture
def replay_script(settings, tmp_path):
    """Factory: replay_script({"conversation-key": [TURN, ...]}) writes the script and makes the
    replay provider the configured model."""

    def write(conversations: dict) -> Path:
        path = tmp_path / "replay.json"
        path.write_text(json.dumps({"model": "replay", "conversations": conversations}))
        settings.OMOI_LLM_PROVIDER = "replay"
        settings.OMOI_REPLAY_SCRIPT = str(path)
        return path

    return write
