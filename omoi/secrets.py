"""Secrets Omoi keeps at rest (a project's own GitHub token), encrypted with keys from the
environment.

Fernet (AES-128-CBC with an HMAC, from `cryptography`) under OMOI_ENCRYPTION_KEYS: the first key
encrypts, every listed key decrypts, so keys rotate by putting the new one first. With none set,
one key is derived from SECRET_KEY (which production requires to be set and secret); changing
SECRET_KEY then makes stored tokens unreadable, and they must be entered again.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class SecretUnreadable(Exception):
    """A stored secret cannot be decrypted with the configured keys."""


def _cipher() -> MultiFernet:
    keys = [key.encode() for key in settings.OMOI_ENCRYPTION_KEYS if key]
    if not keys:
        derived = hashlib.sha256(b"omoi-secrets:" + settings.SECRET_KEY.encode()).digest()
        keys = [base64.urlsafe_b64encode(derived)]
    return MultiFernet([Fernet(key) for key in keys])


def secret_encrypt(plain: str) -> str:
    return _cipher().encrypt(plain.encode()).decode() if plain else ""


def secret_decrypt(stored: str) -> str:
    if not stored:
        return ""
    try:
        return _cipher().decrypt(stored.encode()).decode()
    except (InvalidToken, ValueError) as exc:
        raise SecretUnreadable("a stored secret cannot be decrypted with OMOI_ENCRYPTION_KEYS") from exc
