"""The HalfCheetah meta-RL families: the rewards as defined, the task distributions, and a task
collecting the same trajectories whichever batch it is computed in."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from distmeta.algorithms import build
from distmeta.models import ModelSpec
from distmeta.tasks.rl import ENVIRONMENTS, CheetahDirTasks, CheetahVelTasks, halfcheetah_dir, halfcheetah_vel
from distmeta.tasks.rl.halfcheetah import RESET
from distmeta.tasks.seeding import task_seed


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread, as a shard worker runs: the policy's small matmuls are far slower
    with a thread pool on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_families_are_registered():
    assert ENVIRONMENTS["halfcheetah_dir"].tasks is CheetahDirTasks
    assert ENVIRONMENTS["halfcheetah_vel"].tasks is CheetahVelTasks
    family = ENVIRONMENTS["halfcheetah_vel"].make("cheetah", 3, 4)
    assert (family.name, family.shots, family.query, family.tasks.horizon) == ("cheetah", 3, 4, 200)


def test_directions_are_plus_or_minus_one_and_velocities_lie_in_0_2():
    directions = halfcheetah_dir().sample(0, 0, 0, range(1000)).targets()
    assert set(directions.tolist()) == {-1.0, 1.0}
    assert 400 < (directions > 0).sum() < 600
    velocities = halfcheetah_vel().sample(0, 0, 0, range(1000)).targets()
    assert velocities.min() >= 0.0 and velocities.max() <= 2.0
    assert velocities.min() < 0.1 and velocities.max() > 1.9


@pytest.mark.parametrize("family", [halfcheetah_dir, halfcheetah_vel])
def test_the_reward_is_the_definition_on_gymnasiums_cheetah(family):
    """Each environment against ``HalfCheetah-v5`` stepped by hand from the same reset seed, with
    actions beyond the action space (clipped to [-1, 1]): the same observations, and the reward
    ``d * x_velocity - 0.05 |a|^2`` or ``-|x_velocity - v| - 0.05 |a|^2``."""
    tasks = family().sample(1, 0, 3, range(8), dtype=torch.float64)
    targets = tasks.targets()
    if family is halfcheetah_dir:
        assert set(targets.tolist()) == {-1.0, 1.0}  # both directions are checked
    n, phase, steps = 2, 1, 5
    actions = 1.5 * torch.randn(steps, len(tasks), n, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    envs = tasks.environments(n, phase)
    obs = [envs.reset()]
    rewards = []
    for a in actions:
        o, r = envs.step(a)
        obs.append(o)
        rewards.append(r)
    envs.close()
    for i in (0, len(tasks) - 1):
        for j in range(n):
            env = gym.make("HalfCheetah-v5")
            o, _ = env.reset(seed=task_seed(int(tasks.seeds[i]), phase, RESET, j))
            np.testing.assert_allclose(obs[0][i, j].numpy(), o, rtol=0, atol=1e-12)
            for t in range(steps):
                a = np.clip(actions[t, i, j].numpy(), -1.0, 1.0)
                o, gym_reward, *_, info = env.step(a)
                v, ctrl = info["x_velocity"], 0.05 * np.square(a).sum()
                forward = targets[i].item() * v if family is halfcheetah_dir else -abs(v - targets[i].item())
                np.testing.assert_allclose(obs[t + 1][i, j].numpy(), o, rtol=0, atol=1e-12)
                assert rewards[t][i, j].item() == pytest.approx(forward - ctrl, abs=1e-12)
                assert gym_reward == pytest.approx(v - 2 * ctrl, abs=1e-12)  # Gymnasium's: control cost 0.1
            env.close()
    assert not torch.allclose(obs[0][0, 0], obs[0][0, 1])  # each environment its own reset


def test_observations_follow_the_task_dtype():
    tasks = halfcheetah_vel().sample(0, 0, 0, range(2))
    with tasks.environments(3, 0) as envs:
        o = envs.reset()
        o2, r = envs.step(torch.zeros(2, 3, 6))
    assert o.shape == o2.shape == (2, 3, 17) and r.shape == (2, 3)
    assert o.dtype == o2.dtype == r.dtype == torch.float32
    assert envs.envs == []


@pytest.mark.parametrize("family", [halfcheetah_dir, halfcheetah_vel])
def test_a_tasks_environments_are_the_same_in_any_batch(family):
    """Resets and dynamics depend only on the task's own seed: task 9 alone, or among others,
    under the same actions (its own action noise), gives bitwise the same episode."""
    f = family(shots=2, query=2)
    together, alone = f.sample(0, 0, 5, [4, 9, 2]), f.sample(0, 0, 5, [9])
    phase, n = 1, 2
    noise = alone.noise(n, phase)
    assert torch.equal(together.noise(n, phase)[1:2], noise)
    runs = []
    for tasks, row in ((together, 1), (alone, 0)):
        with tasks.environments(n, phase) as envs:
            obs, rewards = [envs.reset()[row]], []
            for t in range(tasks.horizon):
                actions = torch.zeros(len(tasks), n, 6)
                actions[row] = noise[0, :, t]
                o, r = envs.step(actions)
                obs.append(o[row])
                rewards.append(r[row])
        runs.append((torch.stack(obs), torch.stack(rewards)))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    with alone.environments(n, phase + 1) as envs:
        assert not torch.equal(envs.reset()[0], runs[1][0][0])  # another collection, other resets


@pytest.mark.parametrize("family", [halfcheetah_dir, halfcheetah_vel])
def test_a_task_collects_the_same_trajectories_in_any_batch(family):
    """Through ``maml_rl``'s collections: a task sampled alone, or among others, collects bitwise
    the same episodes, before and after adaptation. The dynamics are chaotic: a policy forward
    that rounded differently with the batch (~1e-7) would give other episodes within ~50 steps,
    so the policy runs one task at a time (:mod:`distmeta.algorithms.rl.rollouts`)."""
    torch.manual_seed(0)
    model = ModelSpec("gaussian_mlp", (17,), 6, hidden=(16, 16)).build()
    params = {k: p.detach() for k, p in model.named_parameters()}
    algo = build("maml_rl", loss="return", steps=1, lr=0.1)
    f = family(shots=2, query=2)
    together = algo.prepare(model, params, {}, f.sample(0, 0, 5, [4, 9, 2])).slice(1, 2)
    alone = algo.prepare(model, params, {}, f.sample(0, 0, 5, [9]))
    assert alone.inner_obs.shape == (1, 1, 2, 200, 17) and alone.outer_obs.shape == (1, 2, 200, 17)
    for x, y in zip(together.tensors(), alone.tensors()):
        assert x.dtype == y.dtype == torch.float32 and torch.equal(x, y)
    other_step = algo.prepare(model, params, {}, f.sample(0, 0, 6, [9]))
    assert not torch.allclose(other_step.outer_obs[..., 0, :], alone.outer_obs[..., 0, :])
