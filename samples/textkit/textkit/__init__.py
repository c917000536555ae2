from textkit.core import normalize_whitespace, slugify

__all__ = ["normalize_whitespace", "slugify"]
