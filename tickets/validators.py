"""Validators of the shell commands a project names (test_command, setup_command), shared by the
model (so the admin applies them), the API and the services."""

import re

from django.core.exceptions import ValidationError

MAX_COMMAND_CHARS = 1000
# Control characters other than tab and newline, and lone surrogates: no shell command needs them,
# and PostgreSQL cannot store NUL or a lone surrogate.
_FORBIDDEN = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")


def validate_shell_command(value: str) -> None:
    if not isinstance(value, str):
        raise ValidationError("a command must be text")
    if len(value) > MAX_COMMAND_CHARS:
        raise ValidationError(f"a command is at most {MAX_COMMAND_CHARS} characters (this one has {len(value)})")
    match = _FORBIDDEN.search(value)
    if match:
        raise ValidationError(
            f"a command must not contain control characters (found {match.group()!r} at position {match.start()})"
        )
