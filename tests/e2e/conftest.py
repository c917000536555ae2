import json
import shutil
from pathlib import Path

import pytest
from django.conf import settings

from sandboxes import git
from tests.support.fake_github import FakeGitHub

SAMPLES = Path(settings.BASE_DIR) / "samples"


def make_sample_repository(target: Path) -> Path:
    """The demo's sample project as a fresh git repository on branch main."""
    shutil.copytree(SAMPLES / "textkit", target)
    git.git_run("init", "--quiet", "--initial-branch=main", cwd=target)
    git.git_run("add", "-A", cwd=target)
    git.git_run("commit", "--quiet", "-m", "initial import", cwd=target)
    return target


def sample_script() -> dict:
    return json.loads((SAMPLES / "textkit.replay.json").read_text())


@pytest.fixture
def sample_repository(tmp_path) -> Path:
    return make_sample_repository(tmp_path / "textkit")


@pytest.fixture
def fake_github():
    with FakeGitHub() as github:
        yield github


@pytest.fixture
def execution_env(tmp_path, settings):
    """Settings shared by the test process and its worker: where host clones and sandboxes live."""
    env = {
        "OMOI_REPOS_DIR": str(tmp_path / "repos"),
        "OMOI_SANDBOX_ROOT": str(tmp_path / "sandboxes"),
        "GITHUB_TOKEN": "test-github-token",
    }
    settings.OMOI_REPOS_DIR = Path(env["OMOI_REPOS_DIR"])
    settings.OMOI_SANDBOX_ROOT = Path(env["OMOI_SANDBOX_ROOT"])
    settings.GITHUB_TOKEN = env["GITHUB_TOKEN"]
    return env


def write_script(tmp_path: Path, script: dict, name: str = "script.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(script))
    return str(path)
