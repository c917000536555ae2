"""Which repositories a project may name: one policy for the API, the admin and the command line.

The repository is text a user typed, and the host acts on it: it clones it, fetches from it and
(without a GitHub repository) pushes to it. Unchecked, that text reaches another tenant's
workspace (`/…/sandboxes/17`), the host's SSH keys (`ssh://`), internal services
(`http://127.0.0.1:6379/`) or a command (`ext::sh -c …`). So a repository is accepted only as:

- an `https://` URL on a host listed in OMOI_REPOSITORY_HOSTS (default github.com), without
  credentials, query or fragment; another scheme (`ssh`, `http`) only when listed in
  OMOI_REPOSITORY_SCHEMES, on a listed host too;
- an absolute local path under one of OMOI_LOCAL_REPOSITORY_ROOTS (none by default in
  production), never inside Omoi's data directory (its database, broker, host clones and
  sandboxes), whatever the roots say, symbolic links resolved;

and then it must answer: `git ls-remote` reaches it once, within a timeout, and must find the
default branch. Each refusal names its rule, so the person who typed the text can fix it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings

from sandboxes import git


class RepositoryRefused(ValueError):
    """The repository is not acceptable; `rule` names the rule it broke."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"{message} (rule: {rule})")
        self.rule = rule
        self.message = message


@dataclass(frozen=True)
class Rule:
    name: str
    meaning: str


# Every rule a repository can break, for the documentation and the tests.
RULES = {
    "characters": "no whitespace, control characters or NUL anywhere",
    "option": "nothing that starts with '-' (git would read it as an option)",
    "transport-helper": "no '<transport>::<address>' forms (ext::, fd::, ...): they run programs",
    "file-url": "no file:// URLs: a local repository is named by its path",
    "scheme": "https:// only, unless OMOI_REPOSITORY_SCHEMES lists another scheme",
    "credentials": "no user name or password in the URL: credentials come from settings",
    "host": "only hosts listed in OMOI_REPOSITORY_HOSTS",
    "url-form": "a plain URL: no query, no fragment, a path naming the repository",
    "relative-path": "a local path must be absolute",
    "local-root": "a local path must be under one of OMOI_LOCAL_REPOSITORY_ROOTS",
    "data-directory": "never inside Omoi's data directory (its database, broker, host clones, sandboxes)",
    "unreachable": "the repository must answer git ls-remote with its default branch",
    "branch-name": "a default branch git accepts as a branch name, not starting with '-'",
}

_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_TRANSPORT_HELPER = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*::")
_SCP_LIKE = re.compile(r"^(?:(?P<user>[^@/:]+)@)?(?P<host>[^/:]+):(?P<path>.*)$")
_DEFAULT_PORTS = {"https": 443, "http": 80, "ssh": 22, "git": 9418}


def _refuse(rule: str, message: str) -> RepositoryRefused:
    return RepositoryRefused(rule, message)


def _listed_hosts() -> list[str]:
    return list(settings.OMOI_REPOSITORY_HOSTS)


def _host_allowed(host: str, port: int | None, scheme: str) -> bool:
    host = host.lower().rstrip(".") if host else ""
    for entry in _listed_hosts():
        name, _, entry_port = entry.partition(":")
        if name != host:
            continue
        if entry_port:
            if port == int(entry_port):
                return True
        elif port is None or port == _DEFAULT_PORTS.get(scheme):
            return True
    return False


def _check_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise _refuse("url-form", f"{value!r} is not a valid URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme == "file":
        raise _refuse("file-url", "file:// URLs are never accepted; name a local repository by its absolute path")
    if scheme not in settings.OMOI_REPOSITORY_SCHEMES:
        allowed = ", ".join(f"{s}://" for s in settings.OMOI_REPOSITORY_SCHEMES) or "none"
        raise _refuse("scheme", f"{scheme}:// repositories are not accepted here (allowed: {allowed})")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise _refuse("credentials", "the URL carries credentials; remove the user name and password")
    if not parts.hostname:
        raise _refuse("url-form", f"{value!r} names no host")
    if not _host_allowed(parts.hostname, port, scheme):
        hosts = ", ".join(_listed_hosts()) or "none"
        raise _refuse("host", f"repositories on {parts.netloc} are not accepted (allowed hosts: {hosts})")
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        raise _refuse("url-form", "the URL must not have a query (?...) or a fragment (#...)")
    if parts.path.strip("/") == "":
        raise _refuse("url-form", "the URL names a host but no repository")
    return value


def _check_scp_like(value: str) -> str:
    """`git@host:owner/name.git`, git's short form of an ssh:// URL."""
    if "ssh" not in settings.OMOI_REPOSITORY_SCHEMES:
        raise _refuse("scheme", "ssh repositories (user@host:path) are not accepted here (allowed: https://)")
    match = _SCP_LIKE.match(value)
    if match is None or not match.group("path"):
        raise _refuse("url-form", f"{value!r} is neither a URL nor an absolute path")
    if not _host_allowed(match.group("host"), None, "ssh"):
        raise _refuse("host", f"repositories on {match.group('host')} are not accepted")
    return value


def _forbidden_directories() -> list[Path]:
    """Where Omoi keeps what no project may read: always refused, whatever the roots say."""
    return [
        Path(settings.OMOI_SANDBOX_ROOT).resolve(),
        Path(settings.OMOI_REPOS_DIR).resolve(),
        Path(settings.CELERY_BROKER_DIR).resolve(),
    ]


def _inside(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


def _git_directories(path: Path) -> list[Path]:
    """The repository's own git directory and the object stores it borrows from (a `.git` file
    or `alternates` can point anywhere, so they are checked as strictly as the path itself)."""
    found: list[Path] = []
    dot_git = path / ".git"
    if dot_git.is_file():
        text = dot_git.read_text(errors="replace").strip()
        if text.startswith("gitdir:"):
            target = Path(text.removeprefix("gitdir:").strip())
            found.append((path / target).resolve() if not target.is_absolute() else target.resolve())
    elif dot_git.is_dir():
        found.append(dot_git.resolve())
    else:
        found.append(path)
    for git_dir in list(found):
        alternates = git_dir / "objects" / "info" / "alternates"
        if alternates.is_file():
            for line in alternates.read_text(errors="replace").splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    other = Path(line)
                    found.append(
                        (git_dir / "objects" / other).resolve() if not other.is_absolute() else other.resolve()
                    )
    return found


def _check_path(value: str) -> str:
    if not value.startswith("/"):
        raise _refuse("relative-path", f"{value!r} is neither an absolute path nor an accepted URL")
    path = Path(value).resolve()
    data_dir = Path(settings.DATA_DIR).resolve()
    roots = [Path(root).resolve() for root in settings.OMOI_LOCAL_REPOSITORY_ROOTS]
    for candidate in [path, *(_git_directories(path) if path.is_dir() else [])]:
        if any(_inside(candidate, forbidden) for forbidden in _forbidden_directories()):
            raise _refuse("data-directory", f"{value} is inside Omoi's data directory, where no project may reach")
        if _inside(candidate, data_dir) and not any(_inside(candidate, root) for root in roots):
            raise _refuse("data-directory", f"{value} is inside Omoi's data directory, where no project may reach")
        if not any(_inside(candidate, root) for root in roots):
            listed = ", ".join(str(root) for root in roots) or "none are configured"
            raise _refuse(
                "local-root", f"local repositories must be under OMOI_LOCAL_REPOSITORY_ROOTS ({listed}); {value} is not"
            )
    return str(path)


_BAD_BRANCH = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|/\.|\.lock(?:/|$)")


def branch_name_check(value: str) -> str:
    """A branch name as git's check-ref-format would accept it, refused when it could be read as
    an option or a revision expression instead."""
    if (
        not value
        or len(value) > 255
        or value.startswith(("-", "/", "."))
        or value.endswith(("/", "."))
        or value == "@"
        or _BAD_BRANCH.search(value)
    ):
        raise _refuse("branch-name", f"{value!r} is not a usable branch name")
    return value


def repository_check(value: str) -> str:
    """The repository as it will be stored (a local path resolved), or RepositoryRefused naming
    the rule it breaks. Reads no network: `repository_reach` does that."""
    if not isinstance(value, str) or not value.strip():
        raise _refuse("url-form", "a project needs a repository")
    if _CONTROL.search(value):
        raise _refuse("characters", "the repository contains whitespace or control characters")
    if value.startswith("-"):
        raise _refuse("option", f"{value!r} starts with '-', which git would read as an option")
    if _TRANSPORT_HELPER.match(value):
        transport = value.split("::", 1)[0]
        raise _refuse("transport-helper", f"{transport}:: repositories are never accepted: they run programs")
    if "://" in value:
        return _check_url(value)
    if value.startswith("/"):
        return _check_path(value)
    if ":" in value.split("/", 1)[0]:
        return _check_scp_like(value)
    return _check_path(value)


def repository_reach(repository: str, *, default_branch: str) -> None:
    """Reach the repository once (`git ls-remote`, no prompt, no redirects, with a timeout) and
    make sure it has the default branch; RepositoryRefused with git's reason when it cannot."""
    try:
        heads = git.git_run(
            "-c",
            "http.followRedirects=false",
            "ls-remote",
            "--heads",
            "--",
            repository,
            f"refs/heads/{default_branch}",
            cwd=Path(settings.DATA_DIR),
            timeout=settings.OMOI_REPOSITORY_CHECK_TIMEOUT_S,
        )
    except git.GitError as error:
        reason = (error.stderr or str(error)).strip().splitlines()
        said = "; ".join(line.strip() for line in reason[-3:] if line.strip()) or str(error)
        raise _refuse("unreachable", f"the repository could not be reached: {said}"[:1000]) from error
    if not heads.strip():
        raise _refuse("unreachable", f"the repository has no branch {default_branch!r}")


def repository_accept(value: str, *, default_branch: str) -> str:
    """The whole policy: the rules, then one reach. Returns the repository as it is stored."""
    repository = repository_check(value)
    repository_reach(repository, default_branch=default_branch or "main")
    return repository
