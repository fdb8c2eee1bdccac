"""What every algorithm provides, and the pieces they share (options, modes, functional calls).

An :class:`Algorithm` is a frozen dataclass of plain settings (it travels to shard actors) with
pure ``torch.func`` methods over one task (the family's task data, e.g. a
:class:`~distmeta.tasks.TaskBatch` of one task: ``support_x, support_y, query_x, query_y``):

- ``task_objective``: the scalar whose gradient w.r.t. the meta-parameters is the task's
  meta-gradient, plus a dict of detached per-task metrics;
- ``task_grad``: that gradient directly (the default differentiates ``task_objective``;
  algorithms with a memory-saving explicit gradient override it);
- ``scores``: the evaluation score (accuracy, or MSE for regression) after given numbers of
  adaptation steps.

What differs between algorithms that other code must know (whether there is an inner loop, a
classification head, a classification family) are class-level capabilities, never string
comparisons elsewhere.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from torch.func import functional_call, grad

from distmeta.algorithms.losses import LOSSES, accuracy

Params = dict[str, torch.Tensor]
Metrics = dict[str, torch.Tensor]


def as_objective(post: Metrics) -> Metrics:
    """The post-adaptation query metrics with ``query_loss`` named ``loss``: the objective the
    meta-gradient differentiates is that loss, and it is reported once, under that name."""
    return {("loss" if k == "query_loss" else k): v for k, v in post.items()}


@dataclass(frozen=True)
class Options:
    """The plain settings every algorithm is built from (:func:`distmeta.algorithms.build`);
    ``extra`` holds an algorithm's own settings (e.g. Reptile's ``inner_batch``)."""

    loss: str = "mse"
    steps: int = 1
    lr: float = 0.01
    first_order: bool = False
    checkpoint: bool = False
    inner_grad_clip: float = 0.0
    ways: int = 5
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Mode:
    """How a task's objective is computed, passed explicitly by the caller."""

    diagnostics: bool = True
    """Also measure the metrics that cost compute of their own (``preadapt_*``: one more forward
    pass over each task's query set). The learner asks for them on logged steps only."""
    autograd: bool = False
    """Inner gradients by ``torch.autograd.grad(create_graph=...)`` instead of ``torch.func.grad``:
    for one task at a time outside any ``torch.func`` transform (the per-task path). Same maths;
    on CPU convolutions the plain autograd graph is the faster one."""

    def untracked(self):
        """Around a metric's forward pass: no graph under plain autograd (under ``torch.func``
        transforms the caller detaches the result instead)."""
        return torch.no_grad() if self.autograd else nullcontext()


def forward(model: nn.Module, params: Params, buffers: Params, x: torch.Tensor) -> torch.Tensor:
    return functional_call(model, (params, buffers), (x,))


def forward_part(model: nn.Module, part: str, params: Params, buffers: Params, x: torch.Tensor) -> torch.Tensor:
    """Run submodule ``part`` of ``model`` (e.g. ``body``) with the entries of ``params``/``buffers``
    under its prefix."""
    prefix = part + "."

    def strip(d: Params) -> Params:
        return {k[len(prefix) :]: v for k, v in d.items() if k.startswith(prefix)}

    return functional_call(getattr(model, part), (strip(params), strip(buffers)), (x,))


@dataclass(frozen=True)
class Algorithm:
    """Base of every algorithm; ``loss`` is a key of :data:`~distmeta.algorithms.losses.LOSSES`."""

    name: ClassVar[str] = ""
    adapts: ClassVar[bool] = True
    """False for methods with no inner loop (ProtoNets): evaluation then has a single step count, 0."""
    uses_head: ClassVar[bool] = True
    """False for metric methods: the network is an embedding (no classification head, any N)."""
    classification_only: ClassVar[bool] = False
    """True when the algorithm only makes sense for classification families (ProtoNets)."""
    collects: ClassVar[bool] = False
    """True for meta-RL algorithms: their tasks are environments, and :meth:`prepare` collects the
    trajectories the meta-gradient is computed from (they train on environment families only)."""
    modulates: ClassVar[bool] = False
    """True for task-aware modulation (CAVIA, MMAML): it wraps the network with a modulation that
    needs to know its layers (:attr:`distmeta.models.ModelKind.modulated`)."""
    one_network: ClassVar[bool] = False
    """True when it needs a single network (MMAML: its modulation fits one set of layers), not
    per-family heads or networks."""
    proximal: ClassVar[bool] = False
    """True for ProMP: several outer epochs per meta-step (:attr:`outer_epochs`) over data the
    shards keep between them."""
    loss: str = "mse"

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss '{self.loss}'; known: {', '.join(LOSSES)}")

    @classmethod
    def from_options(cls, options: Options) -> Algorithm:
        """The algorithm with ``options`` (the base takes only the loss)."""
        return cls(loss=options.loss)

    @property
    def classification(self) -> bool:
        return LOSSES[self.loss].classification

    @property
    def score_name(self) -> str:
        """What :meth:`scores` measures (``acc``, ``mse``)."""
        return LOSSES[self.loss].score_name

    @property
    def higher_is_better(self) -> bool:
        return LOSSES[self.loss].higher_is_better

    def meta_model(self, model: nn.Module) -> nn.Module:
        """The module whose parameters are the meta-parameters (MetaSGD adds learned step sizes)."""
        return model

    def prepare(self, model: nn.Module, params: Params, buffers: Params, tasks):
        """The task data the meta-gradient is computed from, for a shard's sampled ``tasks`` at
        ``params``: the tasks themselves, or (:attr:`collects`) trajectories collected in them."""
        return tasks

    def task_objective(self, model: nn.Module, params: Params, buffers: Params, task, mode: Mode = Mode()):
        """``(objective, metrics)`` of one task."""
        raise NotImplementedError

    def task_grad(self, model: nn.Module, params: Params, buffers: Params, task, mode: Mode = Mode()):
        """``(gradient dict, metrics)`` of one task."""
        return grad(lambda p: self.task_objective(model, p, buffers, task, mode), has_aux=True)(params)

    @property
    def outer_epochs(self) -> int:
        """Meta-optimizer steps per meta-iteration, each on the meta-gradient at the weights the
        steps before reached, over the same tasks and collected data (ProMP's proximal epochs;
        the shards keep what :meth:`prepare` collected, at the iteration's first weights)."""
        return 1

    @property
    def explicit_grad(self) -> bool:
        """True when :meth:`task_grad` is not simply the gradient of :meth:`task_objective`
        (then the batched path vmaps ``task_grad`` instead of differentiating a vmapped sum)."""
        return False

    def scores(self, model: nn.Module, params: Params, buffers: Params, task, steps: tuple[int, ...]) -> torch.Tensor:
        """``[len(steps)]``: the query score after each of ``steps`` inner steps (first order)."""
        raise NotImplementedError

    def query_outputs(self, model: nn.Module, params: Params, buffers: Params, support_x: torch.Tensor,
                      support_y: torch.Tensor, query_x: torch.Tensor, steps: int) -> torch.Tensor:  # fmt: skip
        """One task's query outputs (regression values, or class logits) after ``steps`` inner steps
        on its support set, first order: what the served model returns. An algorithm without it
        logs no adaptive model."""
        raise NotImplementedError

    def norm_batches(self, task) -> tuple[torch.Tensor, ...]:
        """The input batches the network normalises, each in a forward pass of its own, when it
        trains on ``task`` (one task): running-statistics norms estimate from these. Supervised
        tasks: the support set and the query set."""
        return (task.support_x, task.query_x)

    # -- shared helpers ---------------------------------------------------------------------------
    def query_metrics(self, out: torch.Tensor, y: torch.Tensor, prefix: str = "query") -> tuple[torch.Tensor, Metrics]:
        """The loss of ``out`` against ``y`` and detached metrics ``<prefix>_loss`` (and ``_acc``)."""
        loss = LOSSES[self.loss].fn(out, y)
        metrics = {f"{prefix}_loss": loss.detach()}
        if self.classification:
            metrics[f"{prefix}_acc"] = accuracy(out, y).detach()
        return loss, metrics

    def score(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return LOSSES[self.loss].score(out, y)
