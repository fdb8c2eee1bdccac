"""The rules for runs whose tasks are environments (meta-RL): what such a run must be, and what
the other families' runs may not borrow from it."""

from __future__ import annotations

from distmeta.algorithms import ALGORITHMS, algorithm_kind
from distmeta.config.checks import fail as _fail
from distmeta.config.checks import refuse_set
from distmeta.config.schema import DistMetaConfig, TasksConfig
from distmeta.config.sections import RLConfig
from distmeta.models import MODELS, model_kind
from distmeta.tasks import FAMILIES, family_kind

SUPERVISED_KEYS = ("x_range", "amplitude", "phase", "ways", "image_size", "noise")
"""``tasks.*`` settings of regression and image episodes, which an environment family never reads."""

PROXIMAL_KEYS = ("epochs", "clip", "kl_penalty")
"""``algorithm.rl.*`` settings of ProMP's proximal outer step."""


def image_settings(t) -> list[tuple[str, object, object]]:
    """``(key, value, default)`` of the ``tasks`` settings that only image families read."""
    return [("tasks.root", t.root, ""), ("tasks.rotations", t.rotations, None), ("tasks.class_split", t.class_split, []),
            ("tasks.cache_dir", t.cache_dir, "")]  # fmt: skip


def validate_environments(cfg: DistMetaConfig) -> bool:
    """Check the pairing of family, algorithm and network; True when the tasks are environments
    (the rest of the task rules are then this module's)."""
    t, a, m = cfg.tasks, cfg.algorithm, cfg.model
    kinds = [family_kind(f.name) for f in t.families] or [family_kind(t.family)]
    kind = kinds[0]  # a mixture's families share one loss (validate.py): all environments, or none
    if len({(k.observations, k.actions) for k in kinds}) > 1:
        _fail("tasks.families", "one policy network serves a run: its environments must share observation and action sizes")
    collects, policy = algorithm_kind(a.name).cls.collects, model_kind(m.name).policy
    rl_algorithms = ", ".join(n for n, k in ALGORITHMS.items() if k.cls.collects)
    policies = ", ".join(n for n, k in MODELS.items() if k.policy)
    if not kind.environments:
        if collects:
            envs = ", ".join(n for n, k in FAMILIES.items() if k.environments)
            _fail("algorithm.name", f"{a.name} learns from rollouts: use an environment family (tasks.family={envs})")
        if policy:
            _fail("model.name", f"{m.name} is a policy, for environment families only")
        return False
    what = f"tasks.family={kind.name}"
    if not collects:
        _fail("algorithm.name", f"{what}'s tasks are environments: use {rl_algorithms}, not {a.name}")
    if not policy:
        _fail("model.name", f"{what} needs a policy network: use model.name={policies}, not {m.name}")
    supervised = [(f"tasks.{k}", getattr(t, k), getattr(TasksConfig(), k)) for k in SUPERVISED_KEYS]
    refuse_set(
        [*image_settings(t), *supervised, ("algorithm.checkpoint_inner", a.checkpoint_inner, False),
         ("algorithm.inner_grad_clip", a.inner_grad_clip, 0.0),
         ("algorithm.compile", a.compile, False), ("model.heads", m.heads, "shared")], what,
    )  # fmt: skip
    if t.shard_by == "classes":
        _fail("tasks.shard_by", f"'classes' partitions image classes; {what} has none")
    if not 0 < a.rl.discount <= 1:
        _fail("algorithm.rl.discount", f"must be in (0, 1], got {a.rl.discount}")
    _validate_proximal(cfg)
    return True


def _validate_proximal(cfg: DistMetaConfig) -> None:
    """ProMP's settings: only ``promp_rl`` reads them; its epochs need the learner to hold the
    meta-parameters and to ask each epoch after the one before."""
    a, defaults = cfg.algorithm, RLConfig()
    proximal = algorithm_kind(a.name).cls.proximal
    own = [(f"algorithm.rl.{k}", getattr(a.rl, k), getattr(defaults, k)) for k in PROXIMAL_KEYS]
    if not proximal:
        refuse_set(own, f"{a.name}: it applies to promp_rl only")
        return
    if a.rl.epochs < 1:
        _fail("algorithm.rl.epochs", f"must be 1 or more, got {a.rl.epochs}")
    if not a.rl.clip > 0:
        _fail("algorithm.rl.clip", f"must be positive, got {a.rl.clip}")
    if a.rl.kl_penalty < 0:
        _fail("algorithm.rl.kl_penalty", f"must be 0 or more, got {a.rl.kl_penalty}")
    if cfg.cluster.aggregation == "allreduce":
        _fail(
            "cluster.aggregation", f"{a.name} takes several updates per meta-step on the learner: use cluster.aggregation=learner"
        )
    if cfg.trainer.staleness:
        _fail("trainer.staleness", f"{a.name}'s epochs each need the update before them: use trainer.staleness=0")
