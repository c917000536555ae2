"""The GitHub REST API client, and where a GitHub token may go.

The host opens pull requests with a token (the project's own, else GITHUB_TOKEN), which never
enters a sandbox. A token is sent to exactly two places, both derived from settings and the
project's `github_repo`, never from a URL a user typed: GITHUB_API_URL (this client) and the
push URL of `github_repo` on the same GitHub host (`push_target`). A project's `repository` may
point anywhere the repository policy allows; pushing there never carries a token.

Every call has a timeout; 5xx and rate limits are retried with backoff. `pull_request_open` is
idempotent: it first looks for an open pull request from the same head branch and returns it, so
a retried step never opens a second one. No message this module produces holds the token.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import httpx
from django.conf import settings

logger = logging.getLogger(__name__)


class GitHubError(Exception):
    """GitHub refused the request or could not be reached. `transient`: trying again later may help
    (a connection, a timeout, a rate limit, a server error)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class TokenHolder(Protocol):
    """What this module needs of a project (omoi does not import the tickets app)."""

    repository: str
    github_repo: str
    github_token_encrypted: str


def github_web_url() -> str:
    """The GitHub host that GITHUB_API_URL belongs to, as the base of clone and push URLs:
    https://github.com for api.github.com, the same host for GitHub Enterprise
    (https://ghe.example/api/v3 → https://ghe.example) and for anything else."""
    parts = urlsplit(settings.GITHUB_API_URL)
    host = parts.netloc
    if host.lower() == "api.github.com":
        host = "github.com"
    return f"{parts.scheme}://{host}"


def project_token(project: TokenHolder) -> str | None:
    """The token for this project's GitHub repository: its own (decrypted) if it has one, else
    GITHUB_TOKEN when OMOI_GITHUB_TOKEN_REPOSITORIES lets the global token act on that
    repository; None when neither applies or the project names no GitHub repository."""
    from omoi.secrets import secret_decrypt

    if not project.github_repo:
        return None
    own = secret_decrypt(getattr(project, "github_token_encrypted", "") or "")
    if own:
        return own
    if settings.GITHUB_TOKEN and any(
        fnmatch.fnmatchcase(project.github_repo.lower(), pattern.lower())
        for pattern in settings.OMOI_GITHUB_TOKEN_REPOSITORIES
    ):
        return settings.GITHUB_TOKEN
    return None


def push_target(project: TokenHolder) -> tuple[str, str | None]:
    """Where the spec branch is pushed, and the token that goes with it.

    With a `github_repo`, the push goes to that repository on the GitHub host of GITHUB_API_URL,
    with the project's token. Without one, it goes to the project's `repository` (a path or a URL
    the repository policy accepted) and carries no token at all."""
    if project.github_repo:
        return f"{github_web_url()}/{project.github_repo}.git", project_token(project)
    return project.repository, None


def redact(text: str, *secrets: str | None) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


@dataclass(frozen=True)
class PullRequest:
    number: int
    url: str
    created: bool


class GitHubClient:
    def __init__(self, *, token: str, api_url: str, timeout: float = 20.0, max_attempts: int = 4) -> None:
        if not token:
            raise GitHubError("GITHUB_TOKEN is not set: the host cannot open a pull request")
        self.api_url = api_url.rstrip("/")
        self.max_attempts = max_attempts
        self._token = token
        self.http = httpx.Client(
            base_url=self.api_url,
            timeout=timeout,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
                "User-Agent": "omoi",
            },
        )

    @classmethod
    def from_settings(cls) -> GitHubClient:
        return cls(token=settings.GITHUB_TOKEN, api_url=settings.GITHUB_API_URL)

    @classmethod
    def for_project(cls, project: TokenHolder) -> GitHubClient:
        """A client for the project's GitHub repository, with the project's token (`project_token`)."""
        token = project_token(project)
        if not token:
            raise GitHubError(
                f"no GitHub token may act on {project.github_repo}: give the project its own token, "
                "or set GITHUB_TOKEN (and OMOI_GITHUB_TOKEN_REPOSITORIES) to cover it"
            )
        return cls(token=token, api_url=settings.GITHUB_API_URL)

    def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                if attempt == self.max_attempts:
                    reason = redact(str(exc), self._token)
                    raise GitHubError(
                        f"GitHub at {self.api_url} could not be reached: {reason}", transient=True
                    ) from None
            else:
                retryable = (
                    response.status_code >= 500
                    or response.status_code == 429
                    or (response.status_code == 403 and response.headers.get("x-ratelimit-remaining") == "0")
                )
                if not retryable or attempt == self.max_attempts:
                    return response
            time.sleep(min(2**attempt * 0.25, 4.0))
        raise AssertionError("unreachable")

    def _check(self, response: httpx.Response, what: str) -> dict | list:
        if response.status_code >= 400:
            try:
                message = response.json().get("message", response.text)
            except (ValueError, AttributeError):
                message = response.text
            transient = response.status_code >= 500 or response.status_code == 429
            raise GitHubError(
                redact(f"{what} failed: HTTP {response.status_code}: {message}", self._token), transient=transient
            )
        return response.json()

    def pull_request_find(self, *, repo: str, head: str) -> PullRequest | None:
        owner = repo.split("/", 1)[0]
        found = self._check(
            self._request("GET", f"/repos/{repo}/pulls", params={"head": f"{owner}:{head}", "state": "all"}),
            "looking up pull requests",
        )
        for pull in found:
            if pull.get("head", {}).get("ref") == head:
                return PullRequest(number=pull["number"], url=pull["html_url"], created=False)
        return None

    def pull_request_open(self, *, repo: str, head: str, base: str, title: str, body: str) -> PullRequest:
        existing = self.pull_request_find(repo=repo, head=head)
        if existing:
            return existing
        created = self._check(
            self._request(
                "POST", f"/repos/{repo}/pulls", json={"title": title, "head": head, "base": base, "body": body}
            ),
            f"opening a pull request {head} → {base} on {repo}",
        )
        return PullRequest(number=created["number"], url=created["html_url"], created=True)
