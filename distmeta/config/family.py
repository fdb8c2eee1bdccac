"""One family of a mixture (``tasks.families`` entries), apart from the main schema."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FamilyConfig:
    name: str = "sine"
    """Family kind: ``sine``, ``linear``, ``quadratic``, ``harmonic``, ``parabola``, ``tanh``,
    ``l1`` (regression), ``glyphs``, ``omniglot``, ``miniimagenet``, ... (classification) or an
    environment family (meta-RL)."""
    label: str = ""
    """Name in metrics and tables; empty means ``name`` (set it to mix two variants of one kind)."""
    weight: float = 1.0
    """Sampling weight: each task comes from this family with probability weight / sum of weights."""
    loss_weight: float = 1.0
    """This family's weight in the meta-gradient when ``tasks.family_weighting: weights``."""
    ranges: dict[str, list[float]] = field(default_factory=dict)
    """Regression families: parameter ranges by name, e.g. ``{slope: [-1, 1]}``; unset ones keep their defaults."""
    root: str = ""
    """omniglot, miniimagenet: the dataset folder; empty means ``tasks.root``."""
    ways: int = 0
    """This family's N (image families); 0 means ``tasks.ways``. Families with different N need
    ``model.heads: per_family`` (or ProtoNets, which have no head)."""
    shots: int = 0
    """This family's K; 0 means ``tasks.shots``."""
    query: int = 0
    """This family's query points or images per class; 0 means ``tasks.query``."""
    noise: float | None = None
    """Regression families: the standard deviation of Gaussian noise on this family's targets;
    unset means ``tasks.noise``."""
