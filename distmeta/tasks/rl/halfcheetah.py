"""``halfcheetah_dir`` and ``halfcheetah_vel``: the MuJoCo cheetah of Finn et al. (MAML, ICML 2017,
section 5.3), with the rewards as ProMP's ``HalfCheetahRandDirecEnv`` / ``HalfCheetahRandVelEnv``
define them, on Gymnasium's ``HalfCheetah-v5`` dynamics (17 observations, 6 actions in [-1, 1]).

- ``halfcheetah_dir``: a direction ``d`` in {-1, +1} (each with probability 1/2); the reward of a
  step is ``d * forward_velocity - 0.05 * |a|^2``.
- ``halfcheetah_vel``: a target velocity ``v`` uniform in [0, 2]; the reward of a step is
  ``-|forward_velocity - v| - 0.05 * |a|^2``.

Episodes last 200 steps. The forward velocity is Gymnasium's ``info["x_velocity"]`` (the torso's
displacement over the 5 physics steps of an environment step, divided by their 0.05 s); Gymnasium's own reward
(control cost 0.1) is not used. Each environment is reset with a seed hashed from its task's seed,
the collection phase and its index, so a task's environments are the same in any batch (bitwise, given the
same actions). The dynamics are chaotic: an action off by a rounding error (~1e-7) gives another
episode within ~50 steps, which is why the collection computes each task's policy apart
(:mod:`distmeta.algorithms.rl.rollouts`).

Gymnasium and MuJoCo are imported when environments are built, not when this module is.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from distmeta.tasks.rl.environments import EnvFamily, EnvTasks
from distmeta.tasks.seeding import task_seed

if TYPE_CHECKING:
    from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv

HORIZON, CTRL_COST, VELOCITY_LOW, VELOCITY_HIGH = 200, 0.05, 0.0, 2.0
OBSERVATIONS, ACTIONS = 17, 6
log = logging.getLogger(__name__)
RESET = 1
"""The third key of an environment's reset seed, ``task_seed(task's seed, phase, RESET, index)``: the
action noise of the same collection is drawn from ``(task's seed, phase, 0, 0)``."""


@functools.cache
def _compiled(path: str) -> Any:
    """The MuJoCo model of ``path``, compiled once per process. Every environment shares it (MuJoCo
    only reads the model while stepping; each environment has its own ``MjData``): building an
    environment is then several times cheaper. MuJoCo 4's compiler warns that Gymnasium's own
    model file uses a deprecated attribute (``settotalmass``), on the console and into a
    ``MUJOCO_LOG.TXT`` in the working directory: nothing a user can act on, so while distmeta
    compiles it the warning goes to this module's debug log instead."""
    import mujoco

    before = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(lambda text: log.debug("MuJoCo compiling %s: %s", path, text))
    try:
        return mujoco.MjModel.from_xml_path(path)
    finally:
        mujoco.set_mju_user_warning(before)


@functools.cache
def _cheetah_class() -> type[HalfCheetahEnv]:
    """``HalfCheetahEnv`` sharing the compiled model (defined on first use: imports Gymnasium)."""
    import mujoco
    from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv

    class SharedModelCheetah(HalfCheetahEnv):
        def _initialize_simulation(self) -> tuple[Any, Any]:
            model = _compiled(self.fullpath)
            return model, mujoco.MjData(model)

    return SharedModelCheetah


class HalfCheetahVec:
    """``T`` tasks x ``n`` HalfCheetah-v5 environments, stepped one after another in Python.

    The environments are Gymnasium's ``HalfCheetahEnv`` itself (sharing one compiled model), without
    ``gymnasium.make``'s wrappers: a 200-step episode never reaches their 1000-step time limit.
    This plain loop measured faster than ``gymnasium.make`` environments and than Gymnasium's
    synchronous and asynchronous vector environments (docs/performance.md).

    :meth:`close` (or ``with``) closes them; dropped unclosed, as ``collect`` does, they hold no
    reference cycle and are freed at once."""

    def __init__(self, tasks: CheetahTasks, n: int, phase: int):
        self.shape = (len(tasks), n)
        self.dtype, self.device = tasks.params.dtype, tasks.params.device
        self.seeds = [task_seed(int(s), phase, RESET, j) for s in tasks.seeds.tolist() for j in range(n)]
        self.forward, self.targets = tasks.forward_reward, tasks.targets().cpu().numpy()[:, None]  # [T, 1]
        cheetah = _cheetah_class()
        self.envs: list[HalfCheetahEnv] = [cheetah() for _ in self.seeds]

    def _tensor(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).to(device=self.device, dtype=self.dtype)

    def reset(self) -> torch.Tensor:
        obs = np.stack([env.reset(seed=seed)[0] for env, seed in zip(self.envs, self.seeds)])
        return self._tensor(obs.reshape(*self.shape, OBSERVATIONS))

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = actions.detach().to("cpu", torch.float64).numpy().reshape(-1, ACTIONS).clip(-1.0, 1.0)
        obs = np.empty((len(self.envs), OBSERVATIONS))
        velocity = np.empty(len(self.envs))
        for i, env in enumerate(self.envs):
            obs[i], _, _, _, info = env.step(a[i])
            velocity[i] = info["x_velocity"]
        rewards = self.forward(velocity.reshape(self.shape), self.targets) - CTRL_COST * np.square(a).sum(-1).reshape(self.shape)
        return self._tensor(obs.reshape(*self.shape, OBSERVATIONS)), self._tensor(rewards)

    def close(self) -> None:
        """Closes the environments (their renderers; the simulation's memory is freed with them)."""
        for env in self.envs:
            env.close()
        self.envs = []

    def __enter__(self) -> HalfCheetahVec:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class CheetahTasks(EnvTasks):
    """``params [T, 1]``: the task's parameter, which :meth:`targets` reads (a direction, a target
    velocity); :meth:`forward_reward` is the reward of a step before the control cost."""

    observations: ClassVar[int] = OBSERVATIONS
    actions: ClassVar[int] = ACTIONS
    horizon: ClassVar[int] = HORIZON

    def targets(self) -> torch.Tensor:
        """``[T]`` (float64): what each task's reward compares the velocity with."""
        raise NotImplementedError

    @staticmethod
    def forward_reward(velocity: np.ndarray, target: np.ndarray) -> np.ndarray:
        """``velocity [T, n]``, ``target [T, 1]`` (float64) -> each step's reward before the control cost."""
        raise NotImplementedError

    def environments(self, n: int, phase: int) -> HalfCheetahVec:
        return HalfCheetahVec(self, n, phase)


@dataclass(frozen=True)
class CheetahDirTasks(CheetahTasks):
    """``params [T, 1]``: a uniform ``u`` in (0, 1); the direction is -1 where ``u < 0.5``, else +1."""

    def targets(self) -> torch.Tensor:
        """``[T]``: each task's direction, -1.0 or +1.0."""
        return torch.where(self.params[:, 0].double() < 0.5, -1.0, 1.0).to(torch.float64)

    @staticmethod
    def forward_reward(velocity: np.ndarray, target: np.ndarray) -> np.ndarray:
        return target * velocity


@dataclass(frozen=True)
class CheetahVelTasks(CheetahTasks):
    """``params [T, 1]``: the target velocities."""

    def targets(self) -> torch.Tensor:
        """``[T]``: each task's target velocity."""
        return self.params[:, 0].double()

    @staticmethod
    def forward_reward(velocity: np.ndarray, target: np.ndarray) -> np.ndarray:
        return -np.abs(velocity - target)


def halfcheetah_dir(name: str = "halfcheetah_dir", shots: int = 20, query: int = 20) -> EnvFamily:
    """The family: forward or backward with probability 1/2; 20 trajectories per collection, as the paper."""
    return EnvFamily(name, CheetahDirTasks, ((0.0, 1.0),), shots, query)


def halfcheetah_vel(name: str = "halfcheetah_vel", shots: int = 20, query: int = 20) -> EnvFamily:
    """The family: target velocities uniform in [0, 2]; 20 trajectories per collection, as the paper."""
    return EnvFamily(name, CheetahVelTasks, ((VELOCITY_LOW, VELOCITY_HIGH),), shots, query)
