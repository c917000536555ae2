"""Which failures are worth trying again. One rule for every step: transient failures (a database
or broker connection, a timeout, a rate limit or a server error from GitHub or the model, a network
error of git) retry with back-off and a cap; anything else is bad data or a bug and fails fast into
a visible state with its reason (omoi/leases.py)."""

from __future__ import annotations

import re

from django.db import InterfaceError, OperationalError

_GIT_NETWORK = re.compile(
    r"could not resolve host|connection (refused|reset|timed out)|timed out|unable to access|early eof|"
    r"remote end hung up|rpc failed|http 5\d\d|the requested url returned error: 5\d\d|429|temporarily unavailable",
    re.I,
)


def is_transient(exc: BaseException) -> bool:
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 5:
        if _transient_one(current):
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False


def _transient_one(exc: BaseException) -> bool:
    from celery.exceptions import SoftTimeLimitExceeded

    if isinstance(exc, OperationalError | InterfaceError | ConnectionError | TimeoutError | SoftTimeLimitExceeded):
        return True
    if getattr(exc, "transient", False) is True:
        return True
    try:
        import httpx

        if isinstance(exc, httpx.TransportError):
            return True
    except ImportError:  # pragma: no cover
        pass
    try:
        from kombu.exceptions import OperationalError as BrokerError

        if isinstance(exc, BrokerError):
            return True
    except ImportError:  # pragma: no cover
        pass
    if _daytona_transient(exc):
        return True
    from sandboxes.git import GitError

    return isinstance(exc, GitError) and bool(_GIT_NETWORK.search(str(exc)))


def _daytona_transient(exc: BaseException) -> bool:
    """The Daytona SDK's errors that a later attempt may not meet: a timeout, a lost connection,
    a rate limit, a server error, a sandbox evicted from its machine. Not a refused key, a bad
    request or a name taken by someone else: those fail fast, with their message."""
    if not any(cls.__module__.partition(".")[0] == "daytona" for cls in type(exc).__mro__):
        return False  # not the SDK's (and no need to import it here)
    import daytona

    if not isinstance(exc, daytona.DaytonaError):
        return False
    transient_types = (
        daytona.DaytonaTimeoutError,
        daytona.DaytonaConnectionError,
        daytona.DaytonaRateLimitError,
        daytona.DaytonaInternalServerError,
        daytona.DaytonaBadGatewayError,
        daytona.DaytonaServiceUnavailableError,
        daytona.DaytonaSpotEvictedError,
    )
    if isinstance(exc, transient_types):
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and (status in (408, 429) or status >= 500)


def describe_error(exc: BaseException) -> str:
    """A readable one-line account of a failure (its type and message), safe to store and show."""
    from omoi.text import storable

    text = str(exc).strip() or "(no message)"
    return storable(f"{type(exc).__name__}: {text}", 2000)
