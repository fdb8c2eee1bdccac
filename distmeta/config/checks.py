"""The primitives every config check raises through: one error form, naming the key."""

from __future__ import annotations

from collections.abc import Iterable

from distmeta.errors import ConfigError


def fail(key: str, problem: str) -> None:
    raise ConfigError(f"config key '{key}': {problem}")


def choice(key: str, value, choices: Iterable) -> None:
    choices = [str(c) for c in choices]
    if str(value) not in choices:
        fail(key, f"'{value}' is not one of {', '.join(choices)}")


def refuse_set(settings: list[tuple[str, object, object]], what: str) -> None:
    """Fail on the first of ``settings`` (``(key, value, default)``) changed from its default: it does not apply to ``what``."""
    for key, value, default in settings:
        if value != default:
            fail(key, f"does not apply to {what} (got {value})")
