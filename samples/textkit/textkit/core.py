"""Small, dependency-free text helpers."""

import re


def normalize_whitespace(text: str) -> str:
    """Collapse runs of whitespace into single spaces and strip the ends."""
    return re.sub(r"\s+", " ", text).strip()


def slugify(text: str) -> str:
    """Lower-case `text` and join its words with hyphens."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    return "-".join(words)
