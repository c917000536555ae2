"""A minimal Server-Sent Events client over httpx for tests and the stream benchmark: it parses
frames exactly as a browser's EventSource does (fields `id`, `event`, `data`, comments)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx


@dataclass
class Frame:
    id: str | None = None
    event: str = "message"
    data: list[str] = field(default_factory=list)
    comment: str | None = None

    @property
    def json(self):
        return json.loads("\n".join(self.data))


def frames(lines: Iterator[str]) -> Iterator[Frame]:
    """Frames from the lines of an event stream; a comment comes out as a frame of its own. As in
    EventSource, a frame without data (the `retry:` line) is not an event."""
    frame = Frame()
    for line in lines:
        if line == "":
            if frame.data:
                yield frame
            frame = Frame()
            continue
        if line.startswith(":"):
            yield Frame(comment=line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "id":
            frame.id = value
        elif name == "event":
            frame.event = value
        elif name == "data":
            frame.data.append(value)


def session_cookie(user) -> dict[str, str]:
    """A logged-in session of `user`, as the cookies a browser would send."""
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    return {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value}


def open_stream(client: httpx.Client, url: str, *, last_event_id: str | None = None, params: dict | None = None):
    """A stream request of `client` (which carries the session cookie)."""
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    return client.stream("GET", url, headers=headers, params=params)
