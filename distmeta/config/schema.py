"""The one schema every config is validated against. Each field says what it controls; YAML files
in ``configs/`` and ``key=value`` overrides are merged onto these defaults by :func:`distmeta.config.load`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from distmeta.config.family import FamilyConfig
from distmeta.config.sections import CaviaConfig, MMAMLConfig, ReptileConfig, RLConfig


@dataclass
class TrainerConfig:
    max_steps: int = 20000
    """Number of meta-steps (optimizer updates) to run."""
    val_every_n_steps: int = 2000
    """Run validation (held-out tasks: adaptation MSE, or accuracy) every this many meta-steps."""
    val_tasks: int = 200
    """Held-out tasks per validation run."""
    log_every_n_steps: int = 100
    """Send training metrics to MLflow every this many steps (asynchronously)."""
    grad_clip: float = 0.0
    """Clip the aggregated meta-gradient to this global L2 norm; 0 disables clipping."""
    progress_bar: bool = True
    """Show progress: Lightning's bar on a terminal, else a line about every 5% of the run."""
    on_nonfinite: str = "stop"
    """A NaN/inf meta-gradient: ``stop`` ends the run naming the step, shard and family (the last
    good checkpoint is kept); ``skip`` makes no update at that step and counts it
    (``fault/skipped_steps``)."""
    precision: str = "32"
    """Shard actors' meta-gradient arithmetic: ``32`` (float32) or ``bf16-mixed`` (bfloat16
    autocast; gradients are returned, aggregated and applied in float32, validation is float32)."""
    staleness: int = 0
    """``0``: every meta-step's gradient is computed at the current weights (synchronous). ``1``:
    pipelined: the shards compute step s+1's tasks at the weights of step s while the learner
    applies step s, so the learner never waits for a round trip it could overlap; each applied
    gradient is then one update old."""
    delay_compensation: float = 0.0
    """With ``staleness: 1``, correct each one-update-old gradient g towards the current weights
    (Zheng et al. 2017, DC-ASGD): ``g + lambda * g * g * (theta_now - theta_sent)``, the diagonal
    outer-product approximation of the Hessian. ``0`` applies the stale gradient as it is."""


@dataclass
class AlgorithmConfig:
    name: str = "maml"
    """``maml`` (second order), ``fomaml`` (first order), ``reptile``, ``anil`` (inner loop on the
    head only), ``metasgd`` (learned per-weight inner LRs), ``protonet`` (no inner loop) or
    ``cavia`` (only a few context parameters adapt) or ``mmaml`` (FiLM modulation from the
    support set, then MAML's inner loop), both for mlp and conv4; for
    environment families ``maml_rl`` (DiCE policy-gradient inner step, second order), ``fomaml_rl``,
    ``promp_rl`` (ProMP: a clipped, KL-penalised outer objective taken for several epochs per
    meta-step) or ``pretrain_rl`` (one policy trained on every task, fine-tuned with the inner step at test)."""
    inner_steps: int = 1
    """Gradient steps of inner-loop adaptation on each task's support set."""
    inner_lr: float = 0.01
    """Inner-loop SGD step size (MetaSGD: the initial value of its learned step sizes)."""
    first_order: bool = False
    """Treat inner gradients as constants (maml, anil, metasgd): no second derivatives, memory of
    one inner step's activations per step instead of their double-backward graph."""
    checkpoint_inner: bool = False
    """Recompute the inner loop in the backward pass (maml, fomaml, anil, metasgd): memory of one
    inner step plus ``inner_steps`` weight copies, instead of all steps' activations; same gradient."""
    inner_grad_clip: float = 0.0
    """Clamp every entry of each inner-loop gradient to [-clip, clip] (the MAML family; 0: off),
    as MMAML's regression code does (10): large inner steps on steep tasks stay finite."""
    batching: str = "auto"
    """How a shard computes its tasks' meta-gradients: ``vmap`` (one batched ``torch.func`` call
    over the tasks), ``loop`` (one task at a time) or ``auto``: ``loop`` for image families on
    CPU shards (a vmapped convolution is ~3x slower than a loop there, docs/performance.md),
    ``vmap`` otherwise."""
    chunk_size: int = 0
    """Tasks a shard differentiates at once (vmap chunk); 0 does all of its tasks together. Smaller
    chunks bound peak memory to one chunk's activations; the summed gradient is the same."""
    reptile: ReptileConfig = field(default_factory=ReptileConfig)
    """Reptile-only settings."""
    cavia: CaviaConfig = field(default_factory=CaviaConfig)
    """CAVIA's settings."""
    mmaml: MMAMLConfig = field(default_factory=MMAMLConfig)
    """MMAML's settings."""
    rl: RLConfig = field(default_factory=RLConfig)
    """Settings of the meta-RL algorithms (``maml_rl``, ``fomaml_rl``, ``promp_rl``, ``pretrain_rl``)."""
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
    """Task family. ``sine``: y = A sin(x - phase), the MAML paper's regression benchmark;
    ``linear``, ``quadratic``, ``harmonic``: more 1-D regression families; ``glyphs``: procedural
    Omniglot-like characters (no files); ``omniglot``, ``miniimagenet``, ``tieredimagenet``,
    ``cifar_fs``, ``fc100`` and ``cub``: local copies under ``tasks.root`` in their released
    layouts. Ignored when ``tasks.families`` lists a mixture."""
    families: list[FamilyConfig] = field(default_factory=list)
    """A mixture: every task comes from one of these families (drawn by weight from the task's
    key). All regression (sharing ``shots``, ``query``, ``x_range``) or all image families (sharing
    ``ways``, ``shots``, ``query``, resized to one ``image_size`` and channel count); empty means
    the single ``tasks.family``."""
    family_sampling: str = "weighted"
    """How a mixture's tasks pick their family: ``weighted`` (drawn by ``weight`` from the task's
    key) or ``stratified`` (task i from family i mod F: every family alike in every meta-batch)."""
    family_weighting: str = "count"
    """How the learner weighs families in the meta-gradient: ``count`` (every task alike),
    ``uniform`` (every family present in the meta-batch alike), ``weights`` (by ``loss_weight``),
    ``normalized`` (every family's gradient rescaled to the same norm) or ``pcgrad`` (each family's
    gradient stripped of its part against another's, gradient surgery)."""
    shots: int = 10
    """K: support points per task (sine), or support images per class (image families)."""
    query: int = 10
    """Query points per task (sine), or query images per class (image families)."""
    ways: int = 5
    """N: classes per episode (image families)."""
    noise: float = 0.0
    """Regression families: the standard deviation of Gaussian noise on every target (support and
    query), as MMAML's benchmark (0.3); a family's own ``noise`` overrides it."""
    root: str = ""
    """Dataset folder, in the dataset's own released layout; never downloaded."""
    cache: bool = True
    """Decode a dataset split once into a uint8 cache that later starts memory-map (one copy per
    node, shared by every process there); false decodes at every start and ships the images
    through Ray's object store."""
    cache_dir: str = ""
    """Where the decoded caches live; empty is ``<root>/.distmeta_cache``. On a cluster: shared
    storage, or a local path on nodes that each hold the dataset at ``root`` (an actor on a node
    without the cache decodes that node's own, once)."""
    image_size: int = 0
    """Side images are resized to; 0 is the family's standard (28 omniglot/glyphs, 32 cifar_fs/fc100,
    84 miniimagenet/tieredimagenet/cub)."""
    rotations: Optional[bool] = None
    """Add 90/180/270-degree rotations of each training class as extra classes; unset means the
    family's standard (on for omniglot, as in the MAML paper; off otherwise)."""
    class_split: list[int] = field(default_factory=list)
    """Omniglot characters per split [train, val, test]; empty is the standard 1100/100/423."""
    shard_by: str = "tasks"
    """``tasks``: every shard can compute any task and gets a contiguous share of each meta-batch;
    ``family``: each shard owns whole families of a mixture (only it loads their data) and computes
    their tasks; ``classes``: each image family's classes are dealt into ``class_partitions``
    disjoint parts, each task draws from one part (fixed by its key), and each shard holds and
    computes only the parts it owns."""
    class_partitions: int = 4
    """Under ``shard_by: classes``: disjoint class parts per family. Fixed in the config, not by
    the shard count, so the task stream (and the result) is the same on any number of actors;
    with more shards than parts, parts have several owners."""
    amplitude: list[float] = field(default_factory=lambda: [0.1, 5.0])
    """Range [low, high] of the sine amplitude A."""
    phase: list[float] = field(default_factory=lambda: [0.0, 3.141592653589793])
    """Range [low, high] of the sine phase."""
    x_range: list[float] = field(default_factory=lambda: [-5.0, 5.0])
    """Range [low, high] the inputs x are drawn from."""


@dataclass
class ModelConfig:
    name: str = "mlp"
    """Network: ``mlp`` (ReLU multilayer perceptron), ``conv4`` (4 conv blocks, the few-shot
    backbone of 2017), ``resnet12`` (TADAM/MetaOptNet ResNet-12) or ``wrn28_10`` (Wide ResNet-28-10)."""
    hidden: list[int] = field(default_factory=lambda: [40, 40])
    """Widths of the MLP's hidden layers."""
    filters: int = 64
    """Conv4: filters per convolution (64 in the MAML/ProtoNets papers; 32 for mini-ImageNet MAML)."""
    norm: str = "auto"
    """Convolutional backbones' normalisation: ``batch`` (transductive batch statistics in training
    and evaluation, as MAML's reference code: an adapted network needs only its weights),
    ``running`` (batch statistics in training, running estimates in evaluation, as standard batch
    norm: test queries are not normalised by each other) or ``auto``: ``batch`` for algorithms with
    an inner loop, ``running`` for metric methods (ProtoNets)."""
    widths: list[int] = field(default_factory=list)
    """Residual backbones: the four stage widths (resnet12: its blocks, 64-160-320-640; wrn28_10:
    the stem and its three groups, 16-160-320-640); empty: those defaults. Narrow ones run on a CPU."""
    dropblock: Optional[float] = None
    """resnet12: the share of features DropBlock drops in its last two blocks (MetaOptNet: 0.1);
    0 turns it off; unset: 0.1 for metric methods (ProtoNets) and off for algorithms with an
    inner loop, as their reference setups: the inner steps would adapt on dropped features in
    training and on all of them at test, a mismatch a few support images cannot average out."""
    dropblock_size: int = 0
    """resnet12: the side of DropBlock's squares; 0: the last feature map's side, at most 5
    (MetaOptNet's 5 at 84x84, 2 at 32x32)."""
    heads: str = "shared"
    """``shared``: one head for every family of a mixture; ``per_family``: one shared body and a
    linear head per family (its own number of classes), trained only on that family's tasks."""
    share: str = "all"
    """``all``: one network for every family of a mixture; ``none``: a whole network per family,
    each trained only on its family's tasks (Multi-MAML: one model per family, in one run)."""


@dataclass
class ClusterConfig:
    address: str = ""
    """Ray address to join (``host:6379``, ``ray://host:10001``, or ``auto``: ``RAY_ADDRESS``, else
    the cluster the latest ``ray start --head`` on this machine recorded); empty starts Ray in-process."""
    num_shards: int = 2
    """Shard actors; 0 computes every task in the learner's process (no actors, for debugging)."""
    aggregation: str = "learner"
    """``learner``: every shard returns its gradients to the learner, which steps and sends the
    weights out again (the default; best for small models); ``allreduce``: the shard actors
    all-reduce their gradients among themselves and each steps a replica of the meta-parameters,
    the learner sending only step numbers and loading the weights when it validates or saves."""
    replica_calls: str = "tasks"
    """All-reduce mode: how the learner asks the replicas for an ordinary step: ``tasks`` (one Ray
    actor task each) or ``compiled`` (one execution of a Ray compiled graph: less of the learner's
    CPU per replica, for many GPU actors; its waits spin, so it needs a spare core per process)."""
    collective: str = "auto"
    """All-reduce mode: the replicas' collective backend: ``gloo`` (CPU tensors; GPU replicas copy
    their gradient rows to the host and back), ``nccl`` (GPU to GPU; every shard needs a whole GPU
    of its own, ``gpus_per_shard >= 1``) or ``auto`` (NCCL where that holds and CUDA is there, else gloo)."""
    cpus_per_shard: float = 1.0
    """CPUs reserved per shard actor; also sets the actor's torch thread count (at least 1)."""
    gpus_per_shard: float = 0.0
    """GPUs per shard actor (fractions pack several shards per GPU)."""
    step_timeout_s: float = 120.0
    """Seconds to wait for a shard's result before treating the shard as failed."""
    max_actor_restarts: int = 2
    """How often Ray may restart a dead shard actor; its tasks are recomputed."""
    placement_strategy: str = "PACK"
    """How the shards' placement-group bundles (one per shard: cpus_per_shard, gpus_per_shard)
    spread over nodes: ``PACK`` (few nodes), ``SPREAD`` (many nodes), ``STRICT_PACK`` (one node)
    or ``STRICT_SPREAD`` (one shard per node)."""
    local_channel: bool = True
    """Shard actors on the learner's node get their requests and send their results over a Unix
    socket (:mod:`distmeta.shard.channel`) instead of Ray calls, whose fixed cost is as large as
    a small model's step (docs/performance.md); Ray still places and restarts them and carries every retry."""
    retain_freed_memory: bool = True
    """Shards keep freed memory for the next task instead of returning it to the kernel (glibc
    ``mallopt``, :mod:`distmeta.shard.allocator`; with ``num_shards: 0`` that is the learner's
    own process): the per-task loop stops faulting its pages in again (docs/performance.md)."""
    learner_device: str = "cpu"
    """Where the learner (optimizer, validation, evaluation) runs: ``cpu`` or ``cuda`` (a GPU of
    the driver's node, outside the shards' bundles)."""
    dashboard: bool = False
    """In-process Ray (no ``address``): also start Ray's dashboard on 127.0.0.1 and print its address."""


@dataclass
class TrackingConfig:
    uri: str = ""
    """MLflow tracking URI; empty means ``sqlite:///<working dir>/mlflow.db`` (artifacts in ``./mlartifacts``)."""
    experiment: str = "distmeta"
    """MLflow experiment name."""
    run_name: str = ""
    """MLflow run name; empty: the config file's name, plus the algorithm if it does not say it."""
    register_model: str = ""
    """Register the run's adaptive model (the served one) in MLflow's model registry under this name."""
    flush_timeout_s: float = 60.0
    """At the end of training, how long to wait for metrics kept during a tracking-server outage
    to be delivered; what is still undelivered is written to ``unsent_metrics.jsonl`` beside the
    checkpoints."""
    system_metrics_s: float = 10.0
    """Seconds between system metrics (0: none), MLflow's System metrics tab: the learner's machine
    (MLflow's own monitors) and each shard's process (``system/shard_<k>/``: CPU, RSS, GPU)."""


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
    shots: list[int] = field(default_factory=list)
    """Support-set sizes K to evaluate; empty means 5, 10 and 20 for sine and the training shots otherwise."""
    steps: list[int] = field(default_factory=lambda: [0, 1, 5, 10])
    """Inner gradient steps after which the query score (MSE or accuracy) is reported."""
    query: int = 0
    """Query points per evaluation task (sine) or per class (images); 0 means 100 for sine, 15 otherwise."""


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
