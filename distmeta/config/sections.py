"""The settings sections of single algorithms (``algorithm.<section>.*``), apart from the main
schema so that it reads as the run's shape."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ReptileConfig:
    inner_batch: int = 0
    """Examples per Reptile inner step, cycling through a fixed shuffle of the episode; 0 uses all."""
    use_query: bool = True
    """Train Reptile's inner loop on the whole episode (support and query sets), as in the paper."""


@dataclass
class CaviaConfig:
    contexts: int = 4
    """How many context parameters each task adapts (reset to zero per task); the paper's
    regression model uses 4 (at inner_lr 1.0), its mini-ImageNet model 100."""


@dataclass
class MMAMLConfig:
    encoder: str = "set"
    """The modulation network over the support pairs: ``set`` (an MLP over each pair, averaged) or
    ``lstm`` (the paper's two-layer bidirectional LSTM over the pairs in the order sampled)."""
    hidden: int = 40
    """The modulation network's width (the LSTM's hidden size, each way)."""
    standardize: bool = False
    """Regression: the modulation network reads each support target standardised over its set,
    (y - mean) / std, beside the set's mean and log std, so the shape of a task's function and its
    scale reach it apart (the benchmark's families differ 5x in target scale)."""


@dataclass
class RLConfig:
    discount: float = 0.99
    """Discount (gamma) of the returns the policy-gradient surrogates and the value baseline use;
    scores are undiscounted returns."""
    normalize_advantages: bool = True
    """Divide the inner step's surrogate by its advantages' standard deviation (MAML-RL's
    normalised advantages: ``algorithm.inner_lr`` then means the same across reward scales)."""
    epochs: int = 5
    """``promp_rl``: Adam steps per meta-iteration, each on the meta-gradient at the weights the
    ones before reached, over the iteration's trajectories (kept on the shards that collected them)."""
    clip: float = 0.3
    """``promp_rl``: PPO's clip range epsilon of the post-adaptation likelihood ratios."""
    kl_penalty: float = 0.0005
    """``promp_rl``: eta, the weight of KL(pre-update policy at collection || now) in the objective."""
