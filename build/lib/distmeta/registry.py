"""A named registry of choices (algorithms, models, task families): the one source a config's
choices and their rules are validated against."""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(dict[str, T], Generic[T]):
    """``name -> entry``; refuses a name twice, and names the choices when asked for an unknown one."""

    def __init__(self, what: str):
        super().__init__()
        self.what = what

    def add(self, name: str, entry: T) -> T:
        if name in self:
            raise ValueError(f"{self.what} '{name}' is registered already")
        self[name] = entry
        return entry

    def lookup(self, name: str) -> T:
        if name not in self:
            raise ValueError(f"unknown {self.what} '{name}'; known: {', '.join(self)}")
        return self[name]
