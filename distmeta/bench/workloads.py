"""The workloads ``distmeta bench`` measures: each a config (dot-list overrides), the torch threads
of its single-process modes, and, for those that read a dataset, a writer of a synthetic copy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from distmeta.bench import synthetic

WORKLOADS: dict[str, list[str]] = {
    # MAML sine (Finn et al. 5.1): MLP 40-40, 25 tasks, K=10, one second-order step, 1 thread per
    # process; compiled as configs/sine_maml.yaml trains it (the shards compile in the warm-up block)
    "sine": [
        "tasks.family=sine",
        "model.name=mlp",
        "model.hidden=[40,40]",
        "algorithm.name=maml",
        "algorithm.inner_steps=1",
        "algorithm.inner_lr=0.01",
        "algorithm.meta_batch_size=25",
        "tasks.shots=10",
        "tasks.query=10",
        "algorithm.compile=true",
        "cluster.cpus_per_shard=1",
    ],
    # Conv4 5-way 1-shot 28x28, 15 queries per class, 32 tasks, one second-order step
    "conv4-5w1s": [
        "tasks.family=glyphs",
        "model.name=conv4",
        "model.filters=64",
        "algorithm.name=maml",
        "algorithm.inner_steps=1",
        "algorithm.inner_lr=0.4",
        "algorithm.meta_batch_size=32",
        "tasks.ways=5",
        "tasks.shots=1",
        "tasks.query=15",
        "cluster.cpus_per_shard=1",
    ],
    # ResNet-12 at narrow widths (16-32-64-128) on CIFAR-FS-shaped episodes: 32x32 RGB, 5-way
    # 1-shot, 15 queries per class, 8 tasks, one second-order step; the data is a synthetic
    # CIFAR-100 release written where the bench runs (DATA), read by the real loader and cache
    "resnet12-cfs-5w1s": [
        "tasks.family=cifar_fs",
        "model.name=resnet12",
        "model.widths=[16,32,64,128]",
        "algorithm.name=maml",
        "algorithm.inner_steps=1",
        "algorithm.inner_lr=0.01",
        "algorithm.meta_batch_size=8",
        "tasks.ways=5",
        "tasks.shots=1",
        "tasks.query=15",
        "cluster.cpus_per_shard=1",
    ],
    # meta-RL (Finn et al. 5.3): 2D navigation, 20 tasks, 20 episodes of 100 steps before and after one
    # second-order policy-gradient step, Gaussian MLP 100-100; 4,000 environment steps per task
    "navigation2d": [
        "tasks.family=navigation2d",
        "model.name=gaussian_mlp",
        "model.hidden=[100,100]",
        "algorithm.name=maml_rl",
        "algorithm.inner_steps=1",
        "algorithm.inner_lr=0.1",
        "algorithm.meta_batch_size=20",
        "tasks.shots=20",
        "tasks.query=20",
        "cluster.cpus_per_shard=1",
    ],
    # the same on HalfCheetah-v5 (MuJoCo), forward/backward, shrunk to 4 tasks of 10 + 10 episodes
    # (200 steps): 4,000 environment steps per task
    "halfcheetah-dir": [
        "tasks.family=halfcheetah_dir",
        "model.name=gaussian_mlp",
        "model.hidden=[100,100]",
        "algorithm.name=maml_rl",
        "algorithm.inner_steps=1",
        "algorithm.inner_lr=0.1",
        "algorithm.meta_batch_size=4",
        "tasks.shots=10",
        "tasks.query=10",
        "cluster.cpus_per_shard=1",
    ],
}
THREADS = {"sine": 1, "conv4-5w1s": 2, "resnet12-cfs-5w1s": 2, "navigation2d": 1, "halfcheetah-dir": 1}
"""Torch threads of the single-process modes (the baseline and in-process distmeta)."""
DATA: dict[str, Callable[[Path], Path]] = {
    "resnet12-cfs-5w1s": lambda root: synthetic.write_cifar100(root, lambda fine: (16, 4)),
}
"""Workloads that read a dataset: a writer of a synthetic copy in the released layout under a folder."""
