"""The gradient-based family (MAML, FOMAML, ANIL, MetaSGD, Reptile): shared adaptation code.

Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks",
ICML 2017. For a task with support set S and query set Q, the fast weights are adapted with
``steps`` gradient steps on S,

    f_0 = theta_fast,   f_{j+1} = f_j - alpha * grad_f L_S(f_j, theta_slow),

and the meta-objective is L_Q(f_steps, theta_slow). ``theta_fast`` are the weights the inner loop
changes (all of them for MAML, the head for ANIL); ``theta_slow`` are meta-parameters it only
reads (ANIL's body, MetaSGD's step sizes). Second order differentiates through the inner loop;
first order (``first_order``) treats each inner gradient as a constant.

Memory. The default path lets ``torch.func.grad`` differentiate the unrolled loop: it keeps every
inner step's activations and their double-backward graph, so memory grows linearly with
``steps``. With ``checkpoint=True`` the same meta-gradient is computed by the reverse recursion

    g_steps = dL_Q/df_steps,   (g_j, dtheta_slow) += vjp(step_j)(g_{j+1}),

which keeps only the ``steps + 1`` fast-weight vectors and recomputes one step's activations at a
time: memory of one inner step plus ``steps`` weight copies, for about one extra forward and
backward per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import grad, vjp

from distmeta.algorithms.base import Algorithm, Metrics, Mode, Options, Params, as_objective, forward
from distmeta.algorithms.losses import LOSSES


@dataclass(frozen=True)
class InnerLoop:
    """Inner-loop settings. ``first_order`` stops gradients through the inner updates;
    ``checkpoint`` recomputes the inner loop in the backward pass instead of storing it;
    ``clip`` > 0 clamps every entry of each inner gradient to ``[-clip, clip]``."""

    steps: int
    lr: float
    first_order: bool = False
    checkpoint: bool = False
    clip: float = 0.0


@dataclass(frozen=True)
class GradientAdaptation(Algorithm):
    """Adaptation by SGD on the support set. Subclasses choose which weights adapt
    (:meth:`split`), how inputs are embedded once per task (:meth:`embed`), how the fast weights
    predict (:meth:`predict`) and the update rule (:meth:`update`)."""

    inner: InnerLoop = InnerLoop(steps=1, lr=0.01)

    @classmethod
    def from_options(cls, options: Options) -> GradientAdaptation:
        inner = InnerLoop(options.steps, options.lr, options.first_order, options.checkpoint, options.inner_grad_clip)
        return cls(loss=options.loss, inner=inner, **cls.own_settings(options.extra))

    @classmethod
    def own_settings(cls, extra: dict) -> dict:
        """The algorithm's own fields from ``Options.extra`` (its config section); none by default."""
        return {}

    # -- hooks ------------------------------------------------------------------------------------
    def split(self, params: Params) -> tuple[Params, Params]:
        """``(fast, slow)``: the weights the inner loop adapts and the ones it only reads."""
        return params, {}

    def embed(self, model: nn.Module, slow: Params, buffers: Params, x: torch.Tensor) -> torch.Tensor:
        """Inputs as the fast weights see them (ANIL: body features, computed once per task)."""
        return x

    def predict(self, model: nn.Module, fast: Params, slow: Params, buffers: Params, z: torch.Tensor) -> torch.Tensor:
        return forward(model, fast, buffers, z)

    def update(self, fast: Params, slow: Params, grads: Params) -> Params:
        return {k: w - self.inner.lr * grads[k] for k, w in fast.items()}

    def condition(self, model: nn.Module, slow: Params, buffers: Params, support_x, support_y) -> Params:
        """The slow weights as one task's inner loop and prediction read them, from its support
        set, before the inner loop (MMAML: the task's modulation); by default ``slow`` itself."""
        return slow

    # -- shared maths -----------------------------------------------------------------------------
    def merge(self, params: Params, fast: Params, slow: Params) -> Params:
        """Fast and slow entries back in ``params``' order (flattening depends on it)."""
        return {k: fast[k] if k in fast else slow[k] for k in params}

    def inner_step(self, model, fast, slow, buffers, z, y, first_order: bool, mode: Mode = Mode()) -> Params:
        loss = LOSSES[self.loss].fn
        if mode.autograd:
            value = loss(self.predict(model, fast, slow, buffers, z), y)
            got = torch.autograd.grad(value, list(fast.values()), create_graph=not first_order, allow_unused=True)
            g = {k: torch.zeros_like(w) if d is None else d for (k, w), d in zip(fast.items(), got)}
            return self.update(fast, slow, self.clamped(g))
        g = grad(lambda f: loss(self.predict(model, f, slow, buffers, z), y))(fast)
        if first_order:
            g = {k: v.detach() for k, v in g.items()}
        return self.update(fast, slow, self.clamped(g))

    def clamped(self, grads: Params) -> Params:
        """``grads`` with every entry clamped to ``[-clip, clip]`` (``inner.clip`` > 0; MMAML's
        regression code clamps at 10): a steep task's inner step stays finite. The clamp is part
        of the inner step, so second order differentiates it too (zero where it binds)."""
        c = self.inner.clip
        return grads if c <= 0 else {k: v.clamp(-c, c) for k, v in grads.items()}

    def adapt(self, model, fast, slow, buffers, z, y, steps: int, first_order: bool, mode: Mode = Mode()) -> Params:
        for _ in range(steps):
            fast = self.inner_step(model, fast, slow, buffers, z, y, first_order, mode)
        return fast

    def task_objective(self, model, params, buffers, task, mode: Mode = Mode()) -> tuple[torch.Tensor, Metrics]:
        """Query loss after adaptation; metrics: query and pre-adaptation loss (and accuracy)."""
        fast, slow = self.split(params)
        slow = self.condition(model, slow, buffers, task.support_x, task.support_y)
        zs, zq = self.embed(model, slow, buffers, task.support_x), self.embed(model, slow, buffers, task.query_x)
        pre = {}
        if mode.diagnostics:
            with mode.untracked():
                _, pre = self.query_metrics(self.predict(model, fast, slow, buffers, zq).detach(), task.query_y, "preadapt")
        fast = self.adapt(model, fast, slow, buffers, zs, task.support_y, self.inner.steps, self.inner.first_order, mode)
        loss, post = self.query_metrics(self.predict(model, fast, slow, buffers, zq), task.query_y)
        return loss, {**as_objective(post), **pre}

    @property
    def explicit_grad(self) -> bool:
        return self.inner.checkpoint

    def task_grad(self, model, params, buffers, task, mode: Mode = Mode()) -> tuple[Params, Metrics]:
        if not self.inner.checkpoint:
            return super().task_grad(model, params, buffers, task, mode)
        sx, sy, qx, qy = task.support_x, task.support_y, task.query_x, task.query_y
        fast, slow = self.split(params)
        pull_condition = None
        if type(self).condition is not GradientAdaptation.condition:  # the conditioned weights' pullback
            slow, pull_condition = vjp(lambda s: self.condition(model, s, buffers, sx, sy), slow)
        first_order = self.inner.first_order

        def step(f: Params, s: Params) -> Params:  # one inner step, support features recomputed
            return self.inner_step(model, f, s, buffers, self.embed(model, s, buffers, sx), sy, first_order)

        def outer(f: Params, s: Params):
            return self.query_metrics(self.predict(model, f, s, buffers, self.embed(model, s, buffers, qx)), qy)

        trail = [fast]  # no enclosing grad transform: these hold no graph, only the weights
        for _ in range(self.inner.steps):
            trail.append(step(trail[-1], slow))
        (g_fast, g_slow), post = grad(outer, argnums=(0, 1), has_aux=True)(trail[-1], slow)
        for f in reversed(trail[:-1]):
            _, pull = vjp(step, f, slow)
            g_fast, d_slow = pull(g_fast)
            g_slow = {k: g_slow[k] + d_slow[k] for k in g_slow}
        if pull_condition is not None:
            (g_slow,) = pull_condition(g_slow)
        pre = {}
        if mode.diagnostics:
            _, pre = self.query_metrics(
                self.predict(model, fast, slow, buffers, self.embed(model, slow, buffers, qx)), qy, "preadapt"
            )
        return self.merge(params, g_fast, g_slow), {**as_objective(post), **pre}

    def query_outputs(self, model, params, buffers, support_x, support_y, query_x, steps: int) -> torch.Tensor:
        fast, slow = self.split({k: v.detach() for k, v in params.items()})
        slow = self.condition(model, slow, buffers, support_x, support_y)
        zs, zq = self.embed(model, slow, buffers, support_x), self.embed(model, slow, buffers, query_x)
        fast = self.adapt(model, fast, slow, buffers, zs, support_y, steps, first_order=True)
        return self.predict(model, fast, slow, buffers, zq)

    def scores(self, model, params, buffers, task, steps: tuple[int, ...]) -> torch.Tensor:
        """Query score after each of ``steps`` inner steps (first order: nothing to differentiate).
        The query set is scored only at those counts: it is most of the images of an episode."""
        params = {k: v.detach() for k, v in params.items()}
        fast, slow = self.split(params)
        slow = self.condition(model, slow, buffers, task.support_x, task.support_y)
        zs, zq = self.embed(model, slow, buffers, task.support_x), self.embed(model, slow, buffers, task.query_x)
        sy, qy = task.support_y, task.query_y
        at: dict[int, torch.Tensor] = {}
        for j in range(max(steps) + 1):
            if j in steps:
                at[j] = self.score(self.predict(model, fast, slow, buffers, zq), qy)
            if j < max(steps):
                fast = self.inner_step(model, fast, slow, buffers, zs, sy, first_order=True)
        return torch.stack([at[j] for j in steps])


@dataclass(frozen=True)
class MAML(GradientAdaptation):
    """MAML: every weight adapts; ``inner.first_order=True`` is FOMAML."""

    name = "maml"
