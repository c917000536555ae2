"""The repository policy: every refused form is a 400 that names its rule and writes nothing, the
accepted forms are reached once, and host git runs with an empty HOME and only the allowed
protocols. The same policy guards the admin form and the command line."""

import os
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from sandboxes import git
from tests.conftest import make_git_repository
from tests.support.git_http import GitHttpServer
from tickets.admin import ProjectAdminForm
from tickets.models import Project
from tickets.repository_policy import RULES, RepositoryRefused, repository_check

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def git_server():
    with GitHttpServer() as server:
        server.backend.seed("team/app", make_git_repository(server.backend.root / "src"))
        yield server


@pytest.fixture
def listening(git_server):
    """A git server on 127.0.0.1: a refused form must not cause even one request to it."""
    git_server.requests.clear()
    return git_server


def _post(api, repository: str, **extra):
    return api.post("/api/v1/projects", {"name": "p", "repository": repository, **extra}, format="json")


REFUSED = [
    ("file:///srv/repos/app", "file-url"),
    ("FILE:///srv/repos/app", "file-url"),
    ("ext::sh -c touch% /tmp/pwned", "characters"),
    ("ext::sh", "transport-helper"),
    ("fd::17", "transport-helper"),
    ("ssh://github.com/octo/widgets.git", "scheme"),
    ("git@github.com:octo/widgets.git", "scheme"),
    ("git://github.com/octo/widgets.git", "scheme"),
    ("http://github.com/octo/widgets.git", "scheme"),
    ("http://127.0.0.1:6379/", "scheme"),
    ("https://user:secret@github.com/octo/widgets.git", "credentials"),
    ("https://token@github.com/octo/widgets.git", "credentials"),
    ("https://github.com@evil.example/octo/widgets.git", "credentials"),
    ("https://evil.example/octo/widgets.git", "host"),
    ("https://127.0.0.1/octo/widgets.git", "host"),
    ("https://github.com:8443/octo/widgets.git", "host"),
    ("https://github.com.evil.example/octo/widgets.git", "host"),
    ("https://github.com/octo/widgets.git?x=1", "url-form"),
    ("https://github.com/octo/widgets.git#main", "url-form"),
    ("https://github.com/", "url-form"),
    ("https://github.com:99999/octo/widgets", "url-form"),
    ("--upload-pack=touch /tmp/pwned", "characters"),
    ("-uhttps://github.com/octo/widgets", "option"),
    ("relative/path", "relative-path"),
    ("/srv/elsewhere/app", "local-root"),
    ("/etc", "local-root"),
    ("https://github.com/octo/wid gets", "characters"),
    ("https://github.com/octo/\twidgets", "characters"),
]


@pytest.mark.parametrize(("repository", "rule"), REFUSED)
def test_each_refused_form_is_a_400_naming_its_rule(api, repository_root, listening, repository, rule):
    response = _post(api, repository.replace("127.0.0.1:6379", listening.host))

    assert response.status_code == 400
    body = response.json()
    assert body["detail"].startswith("repository: ")
    assert f"(rule: {rule})" in body["detail"]
    assert not Project.objects.exists()
    assert listening.requests == []


def test_every_rule_has_a_refused_form_tested():
    tested = {rule for _, rule in REFUSED} | {"data-directory", "unreachable", "branch-name"}
    assert tested == set(RULES)


@pytest.mark.parametrize("where", ["sandboxes", "repos", "broker", "data"])
def test_nothing_inside_omois_data_directory_is_accepted_even_under_a_listed_root(api, settings, tmp_path, where):
    data = tmp_path / "data"
    settings.DATA_DIR = data
    settings.OMOI_SANDBOX_ROOT = data / "sandboxes"
    settings.OMOI_REPOS_DIR = data / "repos"
    settings.CELERY_BROKER_DIR = data / "broker"
    target = make_git_repository((data / where / "17") if where != "data" else (data / "somewhere"))
    roots = [tmp_path] if where != "data" else [tmp_path / "other"]
    settings.OMOI_LOCAL_REPOSITORY_ROOTS = roots

    response = _post(api, str(target))

    assert response.status_code == 400
    assert "(rule: data-directory)" in response.json()["detail"]
    assert not Project.objects.exists()


def test_a_link_or_a_git_file_into_a_workspace_is_refused(api, settings, repository_root, tmp_path):
    settings.OMOI_SANDBOX_ROOT = tmp_path / "sandboxes"
    workspace = make_git_repository(tmp_path / "sandboxes" / "17")
    (repository_root / "link").symlink_to(workspace)
    redirected = repository_root / "redirected"
    redirected.mkdir()
    (redirected / ".git").write_text(f"gitdir: {workspace / '.git'}\n")
    borrowing = make_git_repository(repository_root / "borrowing")
    (borrowing / ".git" / "objects" / "info" / "alternates").write_text(f"{workspace / '.git' / 'objects'}\n")

    for path in ("link", "redirected", "borrowing"):
        response = _post(api, str(repository_root / path))
        assert response.status_code == 400, path
        assert "(rule: data-directory)" in response.json()["detail"], path
    assert not Project.objects.exists()


def test_the_demo_folder_is_a_root_only_in_the_embedded_default(tmp_path):
    import subprocess
    import sys

    code = "from django.conf import settings; print([str(p) for p in settings.OMOI_LOCAL_REPOSITORY_ROOTS])"
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_DEBUG")}
    base["OMOI_DATA_DIR"] = str(tmp_path)
    base.pop("OMOI_LOCAL_REPOSITORY_ROOTS", None)
    run = [sys.executable, "-c", f"import django; django.setup(); {code}"]
    env_embedded = {**base, "DJANGO_SETTINGS_MODULE": "omoi.settings"}
    embedded = subprocess.run(run, env=env_embedded, capture_output=True, text=True, check=True)
    production = subprocess.run(
        run,
        env={**env_embedded, "DJANGO_DEBUG": "false", "DJANGO_SECRET_KEY": "x" * 50},
        capture_output=True,
        text=True,
        check=True,
    )
    assert embedded.stdout.strip() == str([str(tmp_path / "demo")])
    assert production.stdout.strip() == "[]"


def test_an_unreachable_repository_is_refused_with_gits_reason(api, repository_root):
    (repository_root / "empty").mkdir()

    missing = _post(api, str(repository_root / "missing"))
    not_a_repository = _post(api, str(repository_root / "empty"))

    for response in (missing, not_a_repository):
        assert response.status_code == 400
        detail = response.json()["detail"]
        assert detail.startswith("repository: the repository could not be reached: ")
        assert "(rule: unreachable)" in detail
    assert not Project.objects.exists()


def test_a_local_repository_under_a_root_is_accepted_as_its_real_path(api, repository_root, local_repository):
    (repository_root / "alias").symlink_to(local_repository)

    response = _post(api, str(repository_root / "alias"))

    assert response.status_code == 201, response.json()
    assert Project.objects.get().repository == str(local_repository.resolve())


def test_an_https_url_on_a_listed_host_passes_the_rules():
    assert repository_check("https://github.com/octo/widgets.git") == "https://github.com/octo/widgets.git"
    assert repository_check("https://GitHub.com/octo/widgets") == "https://GitHub.com/octo/widgets"


def test_a_listed_scheme_and_host_is_reached_once_without_credentials(api, settings, listening):
    settings.GITHUB_TOKEN = "ghp_host_secret"
    settings.OMOI_REPOSITORY_SCHEMES = ["https", "http"]
    settings.OMOI_REPOSITORY_HOSTS = ["github.com", listening.host]

    response = _post(api, f"{listening.url}/team/app.git")

    assert response.status_code == 201, response.json()
    # one git ls-remote: the ref advertisement (and, in protocol v2, its ls-refs command)
    assert [r["path"] for r in listening.requests if r["method"] == "GET"] == ["/team/app.git/info/refs"]
    assert all("Authorization" not in r["headers"] for r in listening.requests)


def test_a_listed_host_on_another_port_is_refused(api, settings, listening):
    settings.OMOI_REPOSITORY_SCHEMES = ["https", "http"]
    settings.OMOI_REPOSITORY_HOSTS = ["127.0.0.1:1"]

    response = _post(api, f"{listening.url}/team/app.git")

    assert response.status_code == 400
    assert "(rule: host)" in response.json()["detail"]
    assert listening.requests == []


def test_host_git_runs_with_an_empty_home_and_only_allowed_protocols(tmp_path, monkeypatch, settings):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[alias]\n  planted = !touch /tmp/omoi-planted\n[user]\n  name = Planted\n")
    monkeypatch.setenv("HOME", str(home))
    settings.OMOI_REPOSITORY_SCHEMES = ["https"]
    settings.GITHUB_API_URL = "https://api.github.com"

    env = git.git_env()
    assert (env["HOME"], env["GIT_TERMINAL_PROMPT"], env["GIT_ALLOW_PROTOCOL"]) == (os.devnull, "0", "file:https")
    with pytest.raises(git.GitError) as unseen:
        git.git_run("config", "--get", "alias.planted", cwd=tmp_path)
    assert unseen.value.returncode == 1  # the key is not set anywhere git looks
    for url in ("ext::sh -c touch% /tmp/omoi-planted", "http://127.0.0.1:1/x", "ssh://127.0.0.1/x"):
        with pytest.raises(git.GitError, match="not allowed"):
            git.git_run("ls-remote", "--", url, cwd=tmp_path)
    assert not Path("/tmp/omoi-planted").exists()


def test_the_admin_form_applies_the_same_policy(user, repository_root, local_repository):
    refused = ProjectAdminForm(
        data={"name": "p", "owner": user.pk, "repository": "file:///etc", "default_branch": "main"}
    )
    accepted = ProjectAdminForm(
        data={"name": "p", "owner": user.pk, "repository": str(local_repository), "default_branch": "main"}
    )

    assert not refused.is_valid()
    assert "(rule: file-url)" in refused.errors["repository"][0]
    assert accepted.is_valid(), accepted.errors


def test_the_demo_command_refuses_a_repository_outside_the_roots(settings, tmp_path, user):
    settings.ANTHROPIC_API_KEY = "sk-test"
    settings.OMOI_LLM_PROVIDER = "anthropic"
    settings.OMOI_LOCAL_REPOSITORY_ROOTS = []
    outside = make_git_repository(tmp_path / "outside")

    with pytest.raises(CommandError, match=r"\(rule: local-root\)"):
        call_command("omoi", "demo", "--repository", str(outside), "--idea", "x")
    assert not Project.objects.exists()


def test_refusals_are_values_with_a_rule():
    with pytest.raises(RepositoryRefused) as caught:
        repository_check("file:///x")
    assert caught.value.rule == "file-url"
