"""Task families whose tasks are environments (meta-RL): MDP distributions, vectorised."""

from collections.abc import Callable
from dataclasses import dataclass

from distmeta.tasks.rl.bandit import BanditTasks, quadratic_bandit
from distmeta.tasks.rl.environments import EnvFamily, EnvTasks, VectorEnv, phase_generator
from distmeta.tasks.rl.halfcheetah import (
    CheetahDirTasks,
    CheetahTasks,
    CheetahVelTasks,
    HalfCheetahVec,
    halfcheetah_dir,
    halfcheetah_vel,
)
from distmeta.tasks.rl.navigation import Navigation2D, NavigationTasks, navigation2d


@dataclass(frozen=True)
class Environment:
    """A registered environment family: ``make(label, shots, query)`` builds it; ``tasks`` is its task data."""

    make: Callable[[str, int, int], EnvFamily]
    tasks: type[EnvTasks]


ENVIRONMENTS: dict[str, Environment] = {
    "navigation2d": Environment(navigation2d, NavigationTasks),
    "halfcheetah_dir": Environment(halfcheetah_dir, CheetahDirTasks),
    "halfcheetah_vel": Environment(halfcheetah_vel, CheetahVelTasks),
}
"""The environment families a config may name (``tasks.family``)."""

__all__ = [
    "BanditTasks", "CheetahDirTasks", "CheetahTasks", "CheetahVelTasks", "ENVIRONMENTS", "EnvFamily", "Environment", "EnvTasks",
    "HalfCheetahVec", "Navigation2D", "NavigationTasks", "VectorEnv", "halfcheetah_dir", "halfcheetah_vel", "navigation2d",
    "phase_generator", "quadratic_bandit",
]  # fmt: skip
