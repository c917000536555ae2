"""The GitHub REST API client: the host opens pull requests with GITHUB_TOKEN, which never
enters a sandbox. Every call has a timeout; 5xx and rate limits are retried with backoff.

`pull_request_open` is idempotent: it first looks for an open pull request from the same head
branch and returns it, so a retried step never opens a second one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import httpx
from django.conf import settings

logger = logging.getLogger(__name__)


class GitHubError(Exception):
    """GitHub refused the request or could not be reached. `transient`: trying again later may help
    (a connection, a timeout, a rate limit, a server error)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


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

    def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                if attempt == self.max_attempts:
                    raise GitHubError(f"GitHub at {self.api_url} could not be reached: {exc}", transient=True) from exc
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
            except ValueError:
                message = response.text
            transient = response.status_code >= 500 or response.status_code == 429
            raise GitHubError(f"{what} failed: HTTP {response.status_code}: {message}", transient=transient)
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
