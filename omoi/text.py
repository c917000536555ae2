"""The one boundary between text from outside and the database.

Text reaches Omoi from requests, from a model and from commands run in a sandbox. PostgreSQL
refuses two things any of them can produce: a NUL character (in `text` and in `jsonb`) and a lone
UTF-16 surrogate (it cannot be encoded as UTF-8 at all). A row that fails to save because of one
such character strands the work it describes, so:

- what Omoi records from a model or a command goes through `storable` / `storable_json`, which
  replace those characters with U+FFFD and cap the size: the record is kept, slightly altered;
- what a client sends is checked with `unstorable_reason`, and refused with a 400 that names the
  place and the character, because a client can fix its request and a silent change would lie.
"""

from __future__ import annotations

import math
import re
from typing import Any

REPLACEMENT = "\ufffd"
# NUL and every lone surrogate (a well-formed str never holds a pair as two code points).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
TRUNCATION_NOTE = "\n… [{omitted} more characters]"


def _describe(character: str) -> str:
    if character == "\x00":
        return "a NUL character (\\u0000)"
    return f"a lone surrogate (\\u{ord(character):04x})"


def storable(text: str, limit: int | None = None) -> str:
    """`text` with NUL and lone surrogates replaced by U+FFFD and, past `limit` characters, cut
    with a note of how much was left out."""
    if not isinstance(text, str):
        text = str(text)
    text = _UNSTORABLE.sub(REPLACEMENT, text)
    if limit is not None and len(text) > limit:
        text = text[:limit] + TRUNCATION_NOTE.format(omitted=len(text) - limit)
    return text


def storable_json(value: Any, limit: int | None = None) -> Any:
    """A copy of a JSON value that PostgreSQL's jsonb accepts: every string and key made
    `storable` (each string capped at `limit`), NaN and infinities (which JSON has no words for)
    replaced by None, and anything else that is not JSON turned into its text."""
    if isinstance(value, str):
        return storable(value, limit)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {storable(str(key)): storable_json(item, limit) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [storable_json(item, limit) for item in value]
    return storable(str(value), limit)


def unstorable_reason(value: Any, where: str = "") -> str | None:
    """Why `value` (text or a JSON value) cannot be stored as it is, naming where the first
    offending character is (`content.key[2]`), or None when it can."""
    if isinstance(value, str):
        found = _UNSTORABLE.search(value)
        if found is None:
            return None
        place = f"{where} " if where else ""
        return f"{place}contains {_describe(found.group())}, which cannot be stored".strip()
    if isinstance(value, dict):
        for key, item in value.items():
            bad_key = _UNSTORABLE.search(key) if isinstance(key, str) else None
            if bad_key is not None:
                return f"a key in {where or 'the body'} contains {_describe(bad_key.group())}, which cannot be stored"
            path = f"{where}.{key}" if where else str(key)
            reason = unstorable_reason(item, path)
            if reason:
                return reason
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            reason = unstorable_reason(item, f"{where}[{index}]")
            if reason:
                return reason
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where or 'the body'} is {value}, which JSON cannot hold"
    return None
