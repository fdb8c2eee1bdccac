"""The algorithm registry: every algorithm a config may name.

Adding an algorithm is one module (a frozen :class:`~distmeta.algorithms.base.Algorithm` subclass
with ``from_options`` and its per-task methods) plus one :func:`register` call. What the rest of
distmeta needs to know about it is read from the class's capabilities (``adapts``, ``uses_head``,
``classification_only``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from distmeta.algorithms.base import Algorithm, Options
from distmeta.registry import Registry


@dataclass(frozen=True)
class AlgorithmKind:
    name: str
    cls: type[Algorithm]
    forced: dict[str, Any] = field(default_factory=dict)
    """Options this name fixes (``fomaml``: MAML with ``first_order`` forced)."""
    section: str = ""
    """The config section (``algorithm.<section>.*``) of its own settings: by default its name;
    variants of one algorithm share one (``maml_rl`` and ``fomaml_rl``: ``rl``)."""

    @property
    def settings(self) -> str:
        return self.section or self.name


ALGORITHMS: Registry[AlgorithmKind] = Registry("algorithm")


def register(name: str, cls: type[Algorithm], section: str = "", **forced: Any) -> AlgorithmKind:
    """Make ``cls`` available as ``algorithm.name: <name>``; ``forced`` fixes some of its options,
    ``section`` names its settings' section when not ``name``."""
    return ALGORITHMS.add(name, AlgorithmKind(name, cls, dict(forced), section))


def algorithm_kind(name: str) -> AlgorithmKind:
    return ALGORITHMS.lookup(name)


OPTION_FIELDS = ("loss", "steps", "lr", "first_order", "checkpoint", "inner_grad_clip", "ways")


def build(name: str, **options: Any) -> Algorithm:
    """Algorithm ``name`` with plain settings: :class:`Options` fields by keyword; any other
    keyword is the algorithm's own (``Options.extra``, e.g. Reptile's ``inner_batch``)."""
    kind = algorithm_kind(name)
    extra = {k: v for k, v in options.items() if k not in OPTION_FIELDS}
    opts = Options(**{k: v for k, v in options.items() if k in OPTION_FIELDS}, extra=extra)
    return kind.cls.from_options(replace(opts, **kind.forced))
