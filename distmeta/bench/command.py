"""``distmeta bench``: its options and what each asks for (throughput against the per-task loop,
time to accuracy, scaling across shards). Only argparse and the error type at import: the CLI
builds this parser on every command."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

from distmeta.errors import UserError


def add_parser(sub) -> None:
    b = sub.add_parser(
        "bench",
        help="meta-training throughput against a per-task loop baseline, time to accuracy, scaling",
        description="Interleaved blocks of meta-steps: a plain per-task loop (the learn2learn/higher way), "
        "distmeta in-process, and distmeta on 1 and N Ray shard actors; tasks/s and ratios to "
        "the loop, block by block (docs/performance.md).",
    )
    b.add_argument("overrides", nargs="*", help="dot-list overrides of the workload's config, e.g. algorithm.meta_batch_size=50")
    b.add_argument(
        "--workload", default="sine", help="sine (default), conv4-5w1s, resnet12-cfs-5w1s, navigation2d or halfcheetah-dir"
    )
    b.add_argument("--blocks", type=int, default=5, help="measured blocks after one warm-up block (default 5)")
    b.add_argument("--steps", type=int, default=10, help="meta-steps per block and mode (default 10)")
    b.add_argument("--shards", type=int, default=2, help="N for the ray-N mode (0: no Ray modes; default 2)")
    b.add_argument("--json", action="store_true", help="print the report as one JSON object")
    b.add_argument("--mlflow", metavar="URI", help="also log the report as a run of experiment distmeta-bench")
    t = b.add_argument_group(
        "time to accuracy",
        "instead of throughput: training time until a held-out score is reached, "
        "loop vs distmeta synchronous vs pipelined (trainer.staleness=1)",
    )
    t.add_argument("--time-to-accuracy", action="store_true", help="race the modes to --target")
    t.add_argument("--config", default="configs/sine_maml.yaml", help="the run to race (default configs/sine_maml.yaml)")
    t.add_argument("--target", type=float, default=0.40, help="the meta/val_mse (or meta/val_acc) to reach (default 0.40)")
    t.add_argument("--eval-every", type=int, default=500, help="meta-steps between scorings (default 500)")
    t.add_argument("--max-seconds", type=float, default=1200.0, help="give up on a mode after this much training (default 1200)")
    t.add_argument("--modes", default="loop,sync,pipelined", help="comma-separated subset of loop,sync,pipelined")
    s = b.add_argument_group(
        "scaling",
        "instead of throughput: the learner's and each actor's bytes and time split per step in both "
        "aggregation modes at 1, 2 and 4 shards, the all-reduce against its payload, and the cost model "
        "fitted to them projected to 8-256 GPUs",
    )
    s.add_argument("--scaling", action="store_true", help="measure and model scaling (docs/performance.md)")
    s.add_argument("--scaling-workloads", default="conv4-5w1s,resnet12-cfs-5w1s", help="comma-separated bench workloads")
    s.add_argument("--scaling-steps", type=int, default=3, help="measured meta-steps per mode and shard count (default 3)")
    s.add_argument("--plot", metavar="PNG", help="write the projected efficiency figure here")


def run(args) -> int:
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    if args.scaling:
        return _scaling(args, log)
    from distmeta.bench import accuracy, throughput

    if args.time_to_accuracy:
        modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
        if not modes or any(m not in accuracy.MODES for m in modes):
            raise UserError(f"--modes {args.modes!r}: choose from {', '.join(accuracy.MODES)}")
        if args.eval_every < 1 or args.max_seconds <= 0:
            raise UserError("--eval-every must be at least 1 and --max-seconds positive")
        with _report_alone_on_stdout():
            report = accuracy.run(args.config, args.overrides, args.target, args.eval_every, args.max_seconds, modes, log=log)
        if args.mlflow:
            report["mlflow_run_id"] = throughput.log_to_mlflow(report, args.mlflow)
        print(json.dumps(report, sort_keys=True) if args.json else accuracy.table(report))
        return 0
    if args.workload not in throughput.WORKLOADS:
        raise UserError(f"--workload {args.workload!r} is not one of {', '.join(throughput.WORKLOADS)}")
    if args.blocks < 1 or args.steps < 1 or args.shards < 0:
        raise UserError("--blocks and --steps must be at least 1, --shards at least 0")
    with _report_alone_on_stdout():
        report = throughput.run(args.workload, args.overrides, args.blocks, args.steps, args.shards, log=log)
    if args.mlflow:
        report["mlflow_run_id"] = throughput.log_to_mlflow(report, args.mlflow)
    print(json.dumps(report, sort_keys=True) if args.json else throughput.table(report))
    return 0


@contextlib.contextmanager
def _report_alone_on_stdout():
    """While a bench measures, whatever writes to file descriptor 1 (Ray's raylet warnings, the
    processes it starts) goes to stderr, so stdout carries the report alone (``--json | jq``)."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


SCALING_SETS = ("cluster.num_shards", "cluster.aggregation", "trainer.max_steps", "trainer.log_every_n_steps",
                "trainer.val_every_n_steps", "checkpoint.every_n_steps")  # fmt: skip
"""What ``--scaling`` sets itself for each of its runs: an override of these would mislabel the rows."""


def _scaling(args, log) -> int:
    from distmeta import config
    from distmeta.bench import projection, scaling, throughput

    names = tuple(w.strip() for w in args.scaling_workloads.split(",") if w.strip())
    unknown = [w for w in names if w not in throughput.WORKLOADS]
    if not names or unknown:
        raise UserError(f"--scaling-workloads {args.scaling_workloads!r}: choose from {', '.join(throughput.WORKLOADS)}")
    if args.scaling_steps < 1:
        raise UserError("--scaling-steps must be at least 1")
    if args.mlflow or args.time_to_accuracy:
        raise UserError(
            "--scaling makes its own report: it does not combine with --mlflow or --time-to-accuracy (save it with --json)"
        )
    taken = [o for o in args.overrides if o.split("=", 1)[0].strip() in SCALING_SETS]
    if taken:
        raise UserError(f"--scaling sets {', '.join(SCALING_SETS)} for each of its runs; drop {' '.join(taken)}")
    for name in names:  # a bad override stops here, before Ray starts (the bench writes the datasets later)
        written = [f"tasks.root={Path.cwd()}"] if name in throughput.DATA else []
        config.load(None, [*throughput.WORKLOADS[name], *written, *args.overrides])
    plot = Path(args.plot) if args.plot else None
    if plot is not None and plot.suffix.lower() != ".png":
        raise UserError(f"--plot {args.plot}: the figure is a PNG; name it something.png")
    with _report_alone_on_stdout():
        report = scaling.run(names, args.scaling_steps, args.overrides, log=log)
    if plot is not None:
        try:
            report["plot"] = str(projection.plot(report["projection"], plot))
        except (OSError, ValueError) as exc:  # the measurements are still reported
            log(f"distmeta bench: --plot {plot}: {exc}")
            report["plot_error"] = str(exc)
    print(json.dumps(report, sort_keys=True) if args.json else scaling.table(report))
    return 1 if "plot_error" in report else 0
