import pytest

from omoi.github import GitHubClient, GitHubError
from tests.support.fake_github import FakeGitHub


def test_opens_a_pull_request_once_and_finds_it_again():
    with FakeGitHub() as github:
        client = GitHubClient(token="test-github-token", api_url=github.url)
        first = client.pull_request_open(repo="acme/app", head="omoi/spec-1", base="main", title="T", body="B")
        second = client.pull_request_open(repo="acme/app", head="omoi/spec-1", base="main", title="T", body="B")

    assert (first.number, first.created) == (1, True)
    assert (second.number, second.created) == (1, False)
    assert first.url == "https://github.example/acme/app/pull/1"
    assert [p["head"]["ref"] for p in github.pulls] == ["omoi/spec-1"]


def test_a_refused_token_is_a_clear_error():
    with FakeGitHub() as github:
        client = GitHubClient(token="wrong", api_url=github.url)
        with pytest.raises(GitHubError, match="HTTP 401: Bad credentials"):
            client.pull_request_open(repo="acme/app", head="b", base="main", title="T", body="B")


def test_no_token_is_a_clear_error():
    with pytest.raises(GitHubError, match="GITHUB_TOKEN is not set"):
        GitHubClient(token="", api_url="http://127.0.0.1:1")


def test_unreachable_github_is_a_clear_error():
    client = GitHubClient(token="t", api_url="http://127.0.0.1:1", timeout=1, max_attempts=1)
    with pytest.raises(GitHubError, match="could not be reached"):
        client.pull_request_find(repo="acme/app", head="b")
