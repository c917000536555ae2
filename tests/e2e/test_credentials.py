"""A GitHub token goes only to GitHub: the API host and the push URL derived from the project's
own `github_repo`, never to the `repository` a user typed. A project may carry its own token,
stored encrypted; no token shows in an event, an error, the API or the spec."""

import base64
import json

import pytest
from django.utils import timezone

from omoi.github import github_web_url, push_target
from omoi.secrets import secret_decrypt
from sandboxes.models import SandboxEvent
from specs.models import Spec
from specs.services.bridge import spec_execute
from specs.services.completion import spec_completion_check
from tests.e2e.conftest import planned_spec
from tests.factories import ProjectFactory
from tests.support.git_http import GitHttpServer
from tests.support.steps import drain
from tickets.models import Phase, Project, Task, Ticket

pytestmark = pytest.mark.django_db

GLOBAL_TOKEN = "test-github-token"


def _secret_forms(token: str) -> list[str]:
    return [token, base64.b64encode(f"x-access-token:{token}".encode()).decode()]


def _leaked(requests: list[dict], token: str) -> list[dict]:
    return [r for r in requests if any(form in json.dumps(r) for form in _secret_forms(token))]


@pytest.fixture
def user_server(sample_repository, settings):
    """A git server the user controls, holding a copy of the sample; the policy allows it here
    (http on its host), so the project is created through the API like any other."""
    with GitHttpServer() as server:
        server.backend.seed("me/textkit", sample_repository)
        settings.OMOI_REPOSITORY_SCHEMES = ["https", "http"]
        settings.OMOI_REPOSITORY_HOSTS = ["github.com", server.host]
        yield server


def _project_via_api(api, repository: str, **extra) -> Project:
    response = api.post("/api/v1/projects", {"name": "mine", "repository": repository, **extra}, format="json")
    assert response.status_code == 201, response.json()
    assert "github_token" not in response.json()
    return Project.objects.get(pk=response.json()["id"])


def _complete(spec: Spec) -> Spec:
    spec_execute(spec_id=spec.pk, actor="test")
    Ticket.objects.filter(spec=spec).update(phase=Phase.DONE)
    Task.objects.filter(ticket__spec=spec).update(status="completed")
    return spec


def test_the_pull_request_step_never_sends_the_token_to_the_typed_repository(
    api, user, user_server, fake_github, execution_env, settings
):
    settings.GITHUB_API_URL = fake_github.url
    project = _project_via_api(api, f"{user_server.url}/me/textkit.git", github_repo="acme/textkit")
    spec = _complete(planned_spec(project=project, user=user))

    assert spec_completion_check(spec_id=spec.pk) == "completed"
    drain()  # the pull request step, run as a worker would

    spec.refresh_from_db()
    assert (spec.status, spec.pull_request_number) == ("completed", 1)
    assert fake_github.branch_exists("acme/textkit", spec.branch_name)
    assert user_server.requests, "the spec's clone came from the user's server"
    assert _leaked(user_server.requests, GLOBAL_TOKEN) == []
    assert not any(r["path"].endswith("git-receive-pack") for r in user_server.requests)
    pushes = [r for r in fake_github.git.requests if "receive-pack" in r["path"] + r["query"]]
    assert pushes and all(r["headers"].get("Authorization") for r in pushes)
    pushed = SandboxEvent.objects.get(spec=spec, type="spec.branch_pushed")
    assert pushed.payload["repository"] == f"{fake_github.url}/acme/textkit.git"


def test_create_pr_never_sends_the_token_to_the_typed_repository(
    api, user, user_server, fake_github, execution_env, settings
):
    settings.GITHUB_API_URL = fake_github.url
    project = _project_via_api(api, f"{user_server.url}/me/textkit.git", github_repo="acme/textkit")
    spec = _complete(planned_spec(project=project, user=user))
    Spec.objects.filter(pk=spec.pk).update(status="completed", current_phase="complete", completed_at=timezone.now())
    user_server.requests.clear()

    response = api.post(f"/api/v1/specs/{spec.pk}/create-pr")
    spec.refresh_from_db()

    assert response.status_code == 200, response.json()
    assert response.json()["pull_request_number"] == 1
    assert user_server.requests == []
    assert fake_github.branch_exists("acme/textkit", spec.branch_name)


def test_without_a_github_repo_the_push_goes_to_the_repository_with_no_token(
    api, user, user_server, fake_github, execution_env, settings
):
    settings.GITHUB_API_URL = fake_github.url
    project = _project_via_api(api, f"{user_server.url}/me/textkit.git")
    spec = _complete(planned_spec(project=project, user=user))

    assert spec_completion_check(spec_id=spec.pk) == "completed"
    drain()  # the completed spec's step pushes its branch
    spec.refresh_from_db()
    response = api.post(f"/api/v1/specs/{spec.pk}/create-pr")

    assert spec.branch_pushed_at is not None
    assert response.status_code == 409 and "names no GitHub repository" in response.json()["detail"]
    assert any(r["path"].endswith("git-receive-pack") for r in user_server.requests)
    assert all("Authorization" not in r["headers"] for r in user_server.requests)
    assert _leaked(user_server.requests, GLOBAL_TOKEN) == []
    assert fake_github.requests == [] and fake_github.git.requests == []


def test_a_projects_own_token_is_stored_encrypted_and_replaces_the_global_one(
    api, user, sample_repository, repository_root, execution_env, settings
):
    from tests.support.fake_github import FakeGitHub

    own = "ghp_project_own_secret"
    settings.GITHUB_TOKEN = "ghp_global_must_not_be_used"
    local = repository_root / "textkit"
    sample_repository.rename(local)
    with FakeGitHub(token=own) as github:
        settings.GITHUB_API_URL = github.url
        project = _project_via_api(api, str(local), github_repo="acme/textkit", github_token=own)
        spec = _complete(planned_spec(project=project, user=user))
        Spec.objects.filter(pk=spec.pk).update(
            status="completed", current_phase="complete", completed_at=timezone.now()
        )

        response = api.post(f"/api/v1/specs/{spec.pk}/create-pr")
        spec.refresh_from_db()

        assert response.status_code == 200, response.json()
        assert github.branch_exists("acme/textkit", spec.branch_name)
        assert {r["auth"] for r in github.requests} == {f"Bearer {own}"}
        assert _leaked(github.git.requests, settings.GITHUB_TOKEN) == []
    project.refresh_from_db()
    assert own not in project.github_token_encrypted
    assert secret_decrypt(project.github_token_encrypted) == own
    listed = api.get(f"/api/v1/projects/{project.pk}").json()
    assert listed["has_github_token"] is True
    assert own not in json.dumps(listed)
    everything = json.dumps(list(SandboxEvent.objects.values("payload"))) + json.dumps(response.json())
    assert own not in everything and settings.GITHUB_TOKEN not in everything


def test_a_refused_push_names_no_token(api, user, sample_repository, execution_env, fake_github, settings):
    settings.GITHUB_API_URL = fake_github.url
    settings.GITHUB_TOKEN = "ghp_wrong_token_value"
    project = ProjectFactory(owner=user, repository=str(sample_repository), github_repo="acme/textkit")
    spec = _complete(planned_spec(project=project, user=user))
    Spec.objects.filter(pk=spec.pk).update(status="completed", current_phase="complete", completed_at=timezone.now())

    response = api.post(f"/api/v1/specs/{spec.pk}/create-pr")

    assert response.status_code == 502
    body = json.dumps(response.json())
    assert all(form not in body for form in _secret_forms(settings.GITHUB_TOKEN))
    spec.refresh_from_db()
    assert spec.pull_request_url == ""


def test_the_push_target_is_derived_from_github_repo_on_the_github_host(settings):
    settings.GITHUB_TOKEN = "ghp_global"
    settings.GITHUB_API_URL = "https://api.github.com"
    typed = Project(repository="https://evil.example/x.git", github_repo="octo/widgets")
    assert github_web_url() == "https://github.com"
    assert push_target(typed) == ("https://github.com/octo/widgets.git", "ghp_global")
    assert push_target(Project(repository="https://evil.example/x.git", github_repo="")) == (
        "https://evil.example/x.git",
        None,
    )
    settings.GITHUB_API_URL = "https://ghe.example/api/v3"
    assert push_target(typed)[0] == "https://ghe.example/octo/widgets.git"
    settings.OMOI_GITHUB_TOKEN_REPOSITORIES = ["acme/*"]
    assert push_target(typed) == ("https://ghe.example/octo/widgets.git", None)
    assert push_target(Project(repository="/x", github_repo="acme/app"))[1] == "ghp_global"
