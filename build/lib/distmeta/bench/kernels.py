"""``python -m distmeta.bench.kernels``: one meta-step's compute on one device, torch only.

``distmeta bench`` measures whole training (Lightning, Ray, MLflow). This measures the part that
runs on an accelerator, on machines that have nothing but torch (``scripts/gpu_check.sh``): the
per-task loop baseline (:func:`~distmeta.bench.baseline.loop_step`) against distmeta's batched
meta-gradient (``vmap``) and its per-task path (``loop``), each followed by the same Adam step,
in interleaved blocks; tasks per second and the ratio to the baseline, block by block.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable

import torch

from distmeta.algorithms import build, meta_grad, meta_grad_loop
from distmeta.bench.baseline import loop_step
from distmeta.models import ModelSpec
from distmeta.tasks import TRAIN, EpisodeFamily, GlyphSource, SineFamily

WORKLOADS = {
    # the workloads of distmeta.bench.throughput, built without the config layer
    "sine": dict(model=ModelSpec("mlp", (1,), 1, hidden=(40, 40)), loss="mse", lr=0.01, tasks=25),
    "conv4-5w1s": dict(model=ModelSpec("conv4", (1, 28, 28), 5, filters=64), loss="cross_entropy", lr=0.4, tasks=32),
}


def _family(workload: str):
    if workload == "sine":
        return SineFamily(shots=10, query=10)
    return EpisodeFamily("glyphs", ways=5, shots=1, query=15).with_data(GlyphSource().load("train"))


def _steps(w: dict, dev: torch.device) -> dict[str, Callable]:
    """The three modes' meta-steps, each on its own copy of the same initial model."""
    algo = build("maml", loss=w["loss"], steps=1, lr=w["lr"], ways=5)

    def fresh():
        torch.manual_seed(0)
        model = w["model"].build().to(dev)
        return model, torch.optim.Adam(model.parameters(), lr=1e-3)

    def distmeta_step(path):
        model, opt = fresh()
        grad_fn = meta_grad if path == "vmap" else meta_grad_loop

        def step(batch):
            params = dict(model.named_parameters())
            out = grad_fn(algo, model, {k: p.detach() for k, p in params.items()}, dict(model.named_buffers()), batch)
            for k, p in params.items():
                p.grad = out.grads[k] / len(batch)
            opt.step()

        return step

    model, opt = fresh()
    baseline = lambda batch: loop_step(model, opt, batch, w["loss"], w["lr"], 1, False)  # noqa: E731
    return {"loop baseline": baseline, "distmeta vmap": distmeta_step("vmap"), "distmeta loop": distmeta_step("loop")}


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
    modes = _steps(w, dev)
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
    base = rates["loop baseline"]
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
