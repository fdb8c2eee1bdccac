"""Peak memory of one shard's meta-gradient under each memory control.

    python -m distmeta.bench.memory [--device cuda] [--tasks 8] [--steps 5] [--filters 64]

Conv4 on 5-way 1-shot glyph episodes with 15 query images per class, second-order MAML with
``steps`` inner steps, against: first order, the checkpointed inner loop, and vmap chunks of 2.
On CUDA the peak is ``torch.cuda.max_memory_allocated`` above what was allocated before the call;
on CPU each setting runs in a fresh process and the peak is the growth of its resident set
(``ru_maxrss``), so allocator caching across settings cannot blur the numbers.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from distmeta.algorithms import build, meta_grad
from distmeta.models import ModelSpec
from distmeta.tasks import TRAIN, EpisodeFamily, GlyphSource

SETTINGS = {
    "second order": {},
    "first_order": {"first_order": True},
    "checkpoint_inner": {"checkpoint": True},
    "chunk_size=2": {"chunk_size": 2},
    "checkpoint_inner + chunk_size=2": {"checkpoint": True, "chunk_size": 2},
}


def measure(setting: str, device: str, tasks: int, steps: int, filters: int, dtype: torch.dtype = torch.float32) -> dict:
    """Peak extra memory (MiB) and seconds of one meta-gradient call under ``setting``. (In float32
    on a GPU, convolutions may use TF32: gradients then agree across settings only roughly.)"""
    options = dict(SETTINGS[setting])
    chunk = options.pop("chunk_size", 0)
    algo = build("maml", loss="cross_entropy", steps=steps, lr=0.4, **options)
    torch.manual_seed(0)
    model = ModelSpec("conv4", (1, 28, 28), 5, filters=filters).build().to(device, dtype)
    params = {k: p.detach() for k, p in model.named_parameters()}
    family = EpisodeFamily("glyphs", ways=5, shots=1, query=15).with_data(GlyphSource().load("val"))
    batch = family.sample(0, TRAIN, 0, range(tasks), dtype=dtype).to(device)
    if device == "cuda":
        meta_grad(algo, model, params, {}, batch, chunk)  # warm-up: kernels, allocator pools
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:  # no warm-up: its peak would become the high-water mark the call is measured against
        before = _rss_peak()
    start = time.perf_counter()
    grads = meta_grad(algo, model, params, {}, batch, chunk).grads
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = _rss_peak() - before
    seconds = time.perf_counter() - start
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads.values())).item()
    return {"setting": setting, "peak_mib": peak / 2**20, "seconds": seconds, "grad_norm": norm}


def _rss_peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def run(device: str, tasks: int, steps: int, filters: int) -> list[dict]:
    """Every setting; on CPU each in its own process (a fresh high-water mark)."""
    if device == "cuda":
        return [measure(s, device, tasks, steps, filters) for s in SETTINGS]
    rows = []
    for s in SETTINGS:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "distmeta.bench.memory",
                "--one",
                s,
                "--device",
                device,
                "--tasks",
                str(tasks),
                "--steps",
                str(steps),
                "--filters",
                str(filters),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


def table(rows: list[dict]) -> str:
    base = rows[0]
    lines = [f"{'setting':34}{'peak MiB':>10}{'vs 2nd order':>14}{'seconds':>10}{'x time':>8}{'grad norm':>12}"]
    for r in rows:
        lines.append(
            f"{r['setting']:34}{r['peak_mib']:>10.1f}{r['peak_mib'] / base['peak_mib']:>14.2f}"
            f"{r['seconds']:>10.3f}{r['seconds'] / base['seconds']:>8.2f}{r['grad_norm']:>12.5f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m distmeta.bench.memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tasks", type=int, default=8)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--filters", type=int, default=64)
    p.add_argument("--one", choices=list(SETTINGS), help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = p.parse_args(argv)
    torch.set_num_threads(1) if args.device == "cpu" else None
    if args.one:
        print(json.dumps(measure(args.one, args.device, args.tasks, args.steps, args.filters)))
        return 0
    rows = run(args.device, args.tasks, args.steps, args.filters)
    print(
        json.dumps(rows)
        if args.json
        else f"MAML, Conv4 ({args.filters} filters), 5-way 1-shot, 15 query/class, {args.tasks} tasks, "
        f"{args.steps} inner steps, on {args.device}\n" + table(rows)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
