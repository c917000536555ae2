"""Text that can always be stored: the one boundary every text from a command, a model or a
request passes before it reaches the database."""

from __future__ import annotations

import re
from typing import Any

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: Any, limit: int | None = None) -> str:
    """`text` as a string PostgreSQL and SQLite both accept: NUL bytes and lone surrogates replaced
    by U+FFFD, and cut at `limit` characters with a note of how much was cut."""
    text = text if isinstance(text, str) else str(text)
    text = _UNSTORABLE.sub("\ufffd", text)
    if limit is not None and len(text) > limit:
        text = text[:limit] + f"\n… [{len(text) - limit} more characters]"
    return text


def storable_json(value: Any) -> Any:
    """A JSON value with every string (keys included) made storable."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {storable(key): storable_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [storable_json(item) for item in value]
    return value
