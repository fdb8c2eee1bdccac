"""``python -m distmeta.bench.kernels``: one meta-step's compute on one device, torch only.

``distmeta bench`` measures whole training (Lightning, Ray, MLflow). This measures the part that
runs on an accelerator, on machines that have nothing but torch (``scripts/gpu_check.sh``): the
per-task loop baseline (:func:`~distmeta.bench.baseline.loop_step`) against distmeta's batched
meta-gradient (``vmap``) and its per-task path (``loop``), each followed by the same Adam step,
in interleaved blocks; tasks per second and the ratio to the baseline, block by block. Algorithms
without a written-out baseline (MMAML) take distmeta's per-task loop as theirs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable

import torch

from distmeta.algorithms import Mode, build, meta_grad, meta_grad_grouped, meta_grad_loop
from distmeta.bench.baseline import loop_step, protonet_loop_step
from distmeta.bench.synthetic import class_images
from distmeta.models import ModelSpec
from distmeta.tasks import TRAIN, EpisodeFamily, FunctionFamily, GlyphSource, SineFamily, TaskBatch

MULTIMODAL = dict(model=ModelSpec("mlp", (1,), 1, hidden=(100, 100, 100)), loss="mse", lr=0.001, tasks=125, inner_steps=5,
                  families=("sine", "linear", "parabola", "tanh", "l1"))  # fmt: skip
WORKLOADS = {
    # the workloads of distmeta.bench.throughput, built without the config layer
    "sine": dict(model=ModelSpec("mlp", (1,), 1, hidden=(40, 40)), loss="mse", lr=0.01, tasks=25),
    "conv4-5w1s": dict(model=ModelSpec("conv4", (1, 28, 28), 5, filters=64), loss="cross_entropy", lr=0.4, tasks=32),
    # ResNet-12 on CIFAR-FS-shaped episodes (32x32 RGB, synthetic): narrow widths for a CPU, then
    # the default widths as a GPU runs them, under first-order MAML and ProtoNets
    "resnet12-cfs-5w1s": dict(
        model=ModelSpec("resnet12", (3, 32, 32), 5, widths=(16, 32, 64, 128)), loss="cross_entropy", lr=0.01, tasks=8
    ),
    "resnet12-cfs-5w1s-fo": dict(model=ModelSpec("resnet12", (3, 32, 32), 5), loss="cross_entropy", lr=0.01, tasks=8,
                                 first_order=True),
    "protonet-resnet12-cfs-5w1s": dict(model=ModelSpec("resnet12", (3, 32, 32), 0, norm="running", dropblock=0.1),
                                       loss="cross_entropy", lr=0.0, tasks=8, algorithm="protonet"),  # as its configs
    # ResNet-12 at its default widths on 84x84 images (mini-ImageNet's shape), second-order MAML
    "resnet12-84-5w1s": dict(model=ModelSpec("resnet12", (3, 84, 84), 5), loss="cross_entropy", lr=0.01, tasks=4),
    # MMAML's 5-mode regression (configs/multimodal_5modes.yaml): 25 tasks of each family, 5 inner
    # steps; distmeta's families one call each (vmap) or all in one call (grouped)
    "multimodal-5": MULTIMODAL,
    # the same under MMAML, its configs' set encoder (on standardised targets) and a 128-wide LSTM
    # one (a network 6x larger: where one call per task's copy of the weights costs more than the
    # calls it saves)
    "multimodal-5-mmaml": MULTIMODAL | dict(algorithm="mmaml", settings=dict(encoder="set", hidden=128, standardize=True)),
    "multimodal-5-mmaml-lstm": MULTIMODAL | dict(algorithm="mmaml", settings=dict(encoder="lstm", hidden=128)),
}  # fmt: skip
LOOP_BASELINES = ("maml", "protonet")
"""The algorithms :mod:`distmeta.bench.baseline` writes out; the others' baseline is distmeta's own
per-task loop (``distmeta loop``)."""


class _Families:
    """Equal shares of a meta-batch from several families, family after family (as a shard
    holds a stratified meta-batch's tasks)."""

    def __init__(self, kinds: tuple[str, ...]):
        self.families = tuple(FunctionFamily(k, shots=5, query=5, noise=0.3) for k in kinds)

    def sample(self, seed: int, stream: int, step: int, indices):
        share = len(indices) // len(self.families)
        return TaskBatch.cat([f.sample(seed, stream, step, range(share)) for f in self.families])


def _family(workload: str):
    if "families" in WORKLOADS[workload]:
        return _Families(WORKLOADS[workload]["families"])
    if workload == "sine":
        return SineFamily(shots=10, query=10)
    if workload == "conv4-5w1s":
        return EpisodeFamily("glyphs", ways=5, shots=1, query=15).with_data(GlyphSource().load("train"))
    shape = WORKLOADS[workload]["model"].input_shape
    return EpisodeFamily("synthetic", ways=5, shots=1, query=15).with_data(class_images(64, 20, shape[-1], shape[0]))


def _steps(w: dict, dev: torch.device, tasks: int) -> dict[str, Callable]:
    """The modes' meta-steps, each on its own copy of the same initial model."""
    name, first_order, inner_steps = w.get("algorithm", "maml"), w.get("first_order", False), w.get("inner_steps", 1)
    algo = build(name, loss=w["loss"], steps=inner_steps, lr=w["lr"], first_order=first_order, ways=5, **w.get("settings", {}))
    count = len(w.get("families", ("one",)))
    groups = torch.arange(count, device=dev).repeat_interleave(tasks // count)
    # no diagnostics (the pre-adaptation forward): the baseline does not compute them, and
    # training asks for them on logged steps only
    quiet = Mode(diagnostics=False)

    def fresh():
        torch.manual_seed(0)
        model = algo.meta_model(w["model"].build()).to(dev)
        return model, torch.optim.Adam(model.parameters(), lr=1e-3)

    def grads(path, model, params, buffers, batch):
        if path == "grouped":
            per_group, _ = meta_grad_grouped(algo, model, params, buffers, batch, groups, count, mode=quiet)
            return {k: sum(g[k] for g in per_group) for k in params}
        fn = meta_grad if path == "vmap" else meta_grad_loop
        share = len(batch) // count
        outs = [fn(algo, model, params, buffers, batch.slice(i * share, (i + 1) * share), mode=quiet).grads for i in range(count)]
        return {k: sum(o[k] for o in outs) for k in params}

    def distmeta_step(path):
        model, opt = fresh()

        def step(batch):
            params = dict(model.named_parameters())
            out = grads(path, model, {k: p.detach() for k, p in params.items()}, dict(model.named_buffers()), batch)
            for k, p in params.items():
                p.grad = out[k] / len(batch)
            opt.step()

        return step

    modes = {"distmeta vmap": distmeta_step("vmap"), "distmeta loop": distmeta_step("loop")}
    if name in LOOP_BASELINES:
        model, opt = fresh()
        if name == "protonet":
            baseline = lambda batch: protonet_loop_step(model, opt, batch, 5)  # noqa: E731
        else:
            baseline = lambda batch: loop_step(model, opt, batch, w["loss"], w["lr"], inner_steps, first_order)  # noqa: E731
        modes = {"loop baseline": baseline} | modes
    return modes | ({"distmeta grouped": distmeta_step("grouped")} if count > 1 else {})


def run(
    workload: str,
    device: str = "cpu",
    blocks: int = 5,
    steps: int = 5,
    tasks: int = 0,
    log: Callable[[str], None] = lambda s: None,
) -> dict:
    if workload not in WORKLOADS:
        raise ValueError(f"unknown workload '{workload}'; known: {', '.join(WORKLOADS)}")
    w = WORKLOADS[workload]
    tasks = tasks or w["tasks"]
    dev = torch.device(device)
    family = _family(workload)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    modes = _steps(w, dev, tasks)
    rates: dict[str, list[float]] = {m: [] for m in modes}
    counter = 0
    for block in range(blocks + 1):  # block 0 warms up (kernels, allocator)
        for name, step in modes.items():
            batches = [family.sample(0, TRAIN, counter + i, range(tasks)).to(dev) for i in range(steps)]
            sync()
            start = time.perf_counter()
            for b in batches:
                step(b)
            sync()
            if block:
                rates[name].append(steps * tasks / (time.perf_counter() - start))
        counter += steps
        if block:
            log(f"block {block}: " + ", ".join(f"{n} {r[-1]:,.0f} tasks/s" for n, r in rates.items()))
    base = rates["loop baseline" if "loop baseline" in rates else "distmeta loop"]
    return {
        "workload": workload, "device": str(dev), "tasks_per_step": tasks, "blocks": blocks, "steps_per_block": steps,
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", "torch": torch.__version__,
        "modes": {
            n: {"tasks_per_s": statistics.median(r), "ratio_to_loop": statistics.median(a / b for a, b in zip(r, base))}
            for n, r in rates.items()
        },
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m distmeta.bench.kernels", description=__doc__.split("\n\n")[0])
    p.add_argument("--workload", default="conv4-5w1s", choices=sorted(WORKLOADS))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--blocks", type=int, default=5)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--tasks", type=int, default=0, help="tasks per meta-step (default: the workload's)")
    args = p.parse_args(argv)
    report = run(args.workload, args.device, args.blocks, args.steps, args.tasks, log=lambda s: print(s, file=sys.stderr))
    print(json.dumps(report))
    for n, m in report["modes"].items():
        print(f"{n:<16}{m['tasks_per_s']:>12,.1f} tasks/s{m['ratio_to_loop']:>8.2f}x loop", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
