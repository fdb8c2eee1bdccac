"""Task families whose tasks are environments (meta-RL): MDP distributions, vectorised."""

from distmeta.tasks.rl.bandit import BanditTasks, quadratic_bandit
from distmeta.tasks.rl.environments import EnvFamily, EnvTasks, VectorEnv, phase_generator
from distmeta.tasks.rl.navigation import Navigation2D, NavigationTasks, navigation2d

__all__ = [
    "BanditTasks", "EnvFamily", "EnvTasks", "Navigation2D", "NavigationTasks", "VectorEnv", "navigation2d", "phase_generator",
    "quadratic_bandit",
]  # fmt: skip
