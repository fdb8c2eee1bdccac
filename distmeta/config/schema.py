"""The one schema every config is validated against.

Each field carries a comment saying what it controls; YAML files in ``configs/`` and ``key=value``
overrides are merged onto these defaults by :func:`distmeta.config.load`.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainerConfig:
    max_steps: int = 20000
    """Number of meta-steps (optimizer updates) to run."""
    val_every_n_steps: int = 2000
    """Run validation (held-out tasks, adaptation MSE) every this many meta-steps."""
    val_tasks: int = 200
    """Held-out tasks per validation run."""
    log_every_n_steps: int = 100
    """Send training metrics to MLflow every this many steps (asynchronously)."""
    grad_clip: float = 0.0
    """Clip the aggregated meta-gradient to this global L2 norm; 0 disables clipping."""
    progress_bar: bool = True
    """Show Lightning's progress bar."""


@dataclass
class AlgorithmConfig:
    name: str = "maml"
    """``maml`` (second order, differentiates through the inner loop) or ``fomaml`` (first order)."""
    inner_steps: int = 1
    """Gradient steps of inner-loop adaptation on each task's support set."""
    inner_lr: float = 0.01
    """Inner-loop SGD step size."""
    meta_lr: float = 0.001
    """Meta-optimizer (Adam) learning rate."""
    meta_batch_size: int = 25
    """Tasks per meta-step, split across the shards."""
    compile: bool = False
    """Run each shard's batched meta-gradient through ``torch.compile`` (same maths; the first step
    compiles for tens of seconds, later steps are several times faster on small models)."""
    lr_schedule: str = "constant"
    """Meta learning-rate schedule: ``constant`` or ``cosine`` (decays to ``meta_lr * min_lr_ratio``)."""
    min_lr_ratio: float = 0.0
    """Final LR of the cosine schedule as a fraction of ``meta_lr``."""


@dataclass
class TasksConfig:
    family: str = "sine"
    """Task family. ``sine``: y = A sin(x - phase), the MAML paper's regression benchmark."""
    shots: int = 10
    """K: support points per task (used by the inner loop)."""
    query: int = 10
    """Query points per task (the meta-loss is measured on them)."""
    amplitude: list[float] = field(default_factory=lambda: [0.1, 5.0])
    """Range [low, high] of the sine amplitude A."""
    phase: list[float] = field(default_factory=lambda: [0.0, 3.141592653589793])
    """Range [low, high] of the sine phase."""
    x_range: list[float] = field(default_factory=lambda: [-5.0, 5.0])
    """Range [low, high] the inputs x are drawn from."""


@dataclass
class ModelConfig:
    name: str = "mlp"
    """Network: ``mlp`` (ReLU multilayer perceptron)."""
    hidden: list[int] = field(default_factory=lambda: [40, 40])
    """Widths of the hidden layers."""


@dataclass
class ClusterConfig:
    address: str = ""
    """Ray address to join (``auto``, ``host:6379`` or ``ray://host:10001``); empty starts Ray in-process."""
    num_shards: int = 2
    """Shard actors; 0 computes every task in the learner's process (no actors, for debugging)."""
    cpus_per_shard: float = 1.0
    """CPUs reserved per shard actor; also sets the actor's torch thread count (at least 1)."""
    gpus_per_shard: float = 0.0
    """GPUs per shard actor (fractions pack several shards per GPU)."""
    step_timeout_s: float = 120.0
    """Seconds to wait for a shard's result before treating the shard as failed."""
    max_actor_restarts: int = 2
    """How often Ray may restart a dead shard actor; its tasks are recomputed."""


@dataclass
class TrackingConfig:
    uri: str = ""
    """MLflow tracking URI; empty means ``sqlite:///<working dir>/mlflow.db`` (artifacts in ``./mlartifacts``)."""
    experiment: str = "distmeta"
    """MLflow experiment name."""
    run_name: str = ""
    """MLflow run name; empty lets MLflow choose one."""


@dataclass
class CheckpointConfig:
    dir: str = "checkpoints"
    """Root folder; each run writes ``<dir>/<mlflow run id>/{last,best}.ckpt``."""
    every_n_steps: int = 1000
    """Save ``last.ckpt`` every this many meta-steps (and at the end)."""


@dataclass
class EvaluationConfig:
    seed: int = 20240601
    """Seed of the held-out evaluation task stream (fixed so results compare across runs)."""
    num_tasks: int = 600
    """Held-out tasks per (shots, steps) cell."""
    shots: list[int] = field(default_factory=lambda: [5, 10, 20])
    """Support-set sizes K to evaluate."""
    steps: list[int] = field(default_factory=lambda: [0, 1, 5, 10])
    """Inner gradient steps after which the query MSE is reported."""
    query: int = 100
    """Query points per evaluation task."""


@dataclass
class DistMetaConfig:
    seed: int = 0
    """Run seed: task i of meta-step s is a pure function of (seed, s, i)."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    tasks: TasksConfig = field(default_factory=TasksConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
