"""Meta-reinforcement learning: rollouts where the environments live, policy-gradient
surrogates, and the algorithms built on them (pure torch; no ray/mlflow/lightning/omegaconf)."""

from distmeta.algorithms.rl.maml import PolicyMAML
from distmeta.algorithms.rl.promp import PolicyProMP, ProMPTrajectories
from distmeta.algorithms.rl.rollouts import Rollout, Trajectories, collect
from distmeta.algorithms.rl.surrogate import dice_objective, magic_box

__all__ = ["PolicyMAML", "PolicyProMP", "ProMPTrajectories", "Rollout", "Trajectories", "collect", "dice_objective", "magic_box"]
