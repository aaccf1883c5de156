"""The one kind of error a user can fix: the CLI prints its message and exits with code 2.

Every stage raises a subclass of UserError for a mistake in the user's input (params, paths,
model specs, data), with a message that names what is wrong and how to fix it. Anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input; the message names the fix."""


def shortened(text: str, limit: int = 60) -> str:
    """A value, key or name as an error message shows it: what a user or a crafted file gives
    may be megabytes long, and a message stays one short line."""
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


class ConfigError(UserError, ValueError):
    """A bad or missing setting: a value in params.yaml or an option (the message starts with
    the key or the option's name)."""
