"""``distmeta train | eval | submit | jobs | bench``: a thin layer over :mod:`distmeta.api`,
:mod:`distmeta.jobs` and :mod:`distmeta.bench.command`.

Exit codes: 0 success, 1 a failure during the run (message printed), 2 bad input (one paragraph,
no traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import textwrap

from distmeta.bench import command as bench_command
from distmeta.errors import NonFiniteGradientError, ShardsFailedError, UserError
from distmeta.interrupts import Interrupted


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="distmeta", description="Distributed multi-task meta-training.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="meta-train a config", description="Meta-train CONFIG with key=value overrides.")
    t.add_argument("config", help="YAML config, e.g. configs/sine_maml.yaml")
    t.add_argument("overrides", nargs="*", help="dot-list overrides, e.g. trainer.max_steps=100 cluster.num_shards=0")
    t.add_argument("--resume", metavar="PATH|last", help="continue a run from its checkpoint (same run, same task stream)")

    e = sub.add_parser("eval", help="run the meta-test protocol on a checkpoint")
    e.add_argument("--checkpoint", required=True, help="a .ckpt written by distmeta train, or its run folder")
    e.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    e.add_argument("--no-mlflow", action="store_true", help="do not log the results to the checkpoint's MLflow run")
    e.add_argument("overrides", nargs="*", help="dot-list overrides of the checkpoint's config, e.g. evaluation.num_tasks=1000")

    _submit_parser(sub)
    bench_command.add_parser(sub)
    _jobs_parser(sub)
    return p


def _submit_parser(sub) -> None:
    s = sub.add_parser(
        "submit",
        help="run a config on a Ray cluster as a Ray job",
        description="Submit `distmeta train CONFIG overrides` to a Ray cluster through the Jobs API, with this "
        "folder as the job's working directory and the pinned lock file as its pip requirements; "
        "then follow its logs and exit with its status.",
    )
    s.add_argument("config", help="YAML config inside this folder, e.g. configs/sine_maml.yaml")
    s.add_argument("overrides", nargs="*", help="dot-list overrides, as for train")
    _address(s)
    s.add_argument("--no-wait", action="store_true", help="return after submission instead of following the job")
    s.add_argument(
        "--no-pip", action="store_true", help="the cluster's image already holds the pinned stack: send no pip requirements"
    )
    s.add_argument("--submission-id", help="the job's id (default distmeta-<time>-<random>)")


def _jobs_parser(sub) -> None:
    j = sub.add_parser("jobs", help="list, inspect, follow or stop Ray jobs")
    jsub = j.add_subparsers(dest="action", required=True)
    _address(jsub.add_parser("list", help="all jobs of the cluster"))
    for action, text in [
        ("status", "a job's status"),
        ("logs", "a job's logs (--follow to stream them)"),
        ("stop", "stop a job"),
    ]:
        a = jsub.add_parser(action, help=text)
        a.add_argument("id", help="the submission id distmeta submit printed")
        _address(a)
        if action == "logs":
            a.add_argument("--follow", action="store_true", help="stream until the job ends")


def _address(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", help="the Ray dashboard, e.g. http://HEAD:8265 (default: RAY_API_SERVER_ADDRESS, RAY_ADDRESS)")


COMMANDS = {"train": "_train", "eval": "_eval", "submit": "_submit", "jobs": "_jobs", "bench": "_bench"}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and not any(e.startswith("-") for e in extra):
        args.overrides += extra  # overrides after an option: `train C --resume last trainer.max_steps=200`
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return globals()[COMMANDS[args.command]](args)
    except UserError as exc:
        print(_paragraph(f"distmeta {args.command}: error: {exc}"), file=sys.stderr)
        return 2
    except (NonFiniteGradientError, ShardsFailedError) as exc:
        print(_paragraph(f"distmeta {args.command}: stopped: {exc}"), file=sys.stderr)
        return 1
    except Interrupted as exc:
        print(_paragraph(f"distmeta {args.command}: {_stopped(args, exc)}"), file=sys.stderr, flush=True)
        return exc.exit_code


def _stopped(args, exc: Interrupted) -> str:
    """Where a signal stopped the command, and how to go on."""
    if args.command != "train":
        return f"stopped by {exc.name}."
    if exc.checkpoint is None:
        return f"stopped by {exc.name} before training started; nothing was written."
    if exc.step is not None:
        where = f" at step {exc.step}; checkpoint {exc.checkpoint} holds that step"
    else:  # during the final evaluation: the training had ended
        where = f" after training; checkpoint {exc.checkpoint} holds its last step"
    again = shlex.join(["distmeta", "train", args.config, *args.overrides, "--resume", str(exc.checkpoint)])
    return f"stopped by {exc.name}{where} and its MLflow run is marked KILLED. Continue it with: {again}"


def _train(args) -> int:
    from distmeta import api, jobs

    cfg = api.load_config(args.config, args.overrides)
    result = api.train(cfg, resume=args.resume)
    minutes, seconds = divmod(round(result.train_seconds), 60)
    print(f"\ntraining time:     {minutes} min {seconds} s" + (" (this start)" if args.resume else ""))
    print(f"MLflow run id:     {result.run_id}")
    print(f"tracking URI:      {result.tracking_uri}")
    for label, text in jobs.ui_lines(result.run_id, result.experiment_id, result.tracking_uri):
        print(f"{label + ':':<19}{text}")
    print(f"checkpoint folder: {result.checkpoint_dir}")
    print(f"final model:       {result.model_uri} (meta-parameters: mlflow.pytorch.load_model)")
    if result.adaptive_model_uri:
        print(f"adaptive model:    {result.adaptive_model_uri} (mlflow.pyfunc.load_model: adapts to support sets)")
    print(f"\nevaluation of the final weights ({result.last_checkpoint}):")
    print(result.evaluation.table())
    print(f"adaptation figure: {result.figure}")
    return 0


def _eval(args) -> int:
    from distmeta import api, checkpoints

    def show(report, figure, record) -> None:  # also when logging failed: the numbers are never lost
        if args.json:
            where = {"run_id": record.run_id, "evaluation_id": record.evaluation_id} if record else {}
            print(json.dumps({**report.values, "num_tasks": report.num_tasks, "figure": str(figure),
                              "checkpoint": str(checkpoints.find(args.checkpoint)), **where}, sort_keys=True))  # fmt: skip
        else:
            print(report.table())
            print(f"adaptation figure: {figure}")
            if record is not None:
                print(f"logged to MLflow at {record.uri}: evaluation run {record.evaluation_id}, nested under the "
                      f"training run {record.run_id} (whose own results are unchanged)")  # fmt: skip
            elif args.no_mlflow:
                print("not logged to MLflow (--no-mlflow)")
        sys.stdout.flush()

    api.evaluate(args.checkpoint, args.overrides, log_to_mlflow=not args.no_mlflow, on_report=show)
    return 0


def _submit(args) -> int:
    from pathlib import Path

    from distmeta import jobs

    job = jobs.prepare(args.config, args.overrides, Path.cwd(), pip=not args.no_pip, submission_id=args.submission_id)
    client = jobs.client(args.address)
    job_id = jobs.submit(client, job)
    print(f"submitted Ray job {job_id}", flush=True)
    if args.no_wait:
        print(f"follow it with: distmeta jobs logs {job_id} --follow" + (f" --address {args.address}" if args.address else ""))
        return 0

    def on_run(run_id: str, experiment_id: str, uri: str) -> None:
        print(f"[distmeta submit] MLflow run {run_id}: {jobs.run_url(run_id, experiment_id, uri)}", flush=True)

    status = jobs.follow(client, job_id, on_run=on_run)
    print(f"[distmeta submit] job {job_id} {status}", flush=True)
    return 0 if status == "SUCCEEDED" else 1


def _bench(args) -> int:
    return bench_command.run(args)


def _jobs(args) -> int:
    from distmeta import jobs

    client = jobs.client(args.address)
    if args.action == "list":
        for info in sorted(client.list_jobs(), key=lambda i: i.start_time or 0):
            print(f"{info.submission_id or info.job_id}\t{info.status.value}\t{info.entrypoint}")
        return 0
    try:
        if args.action == "status":
            print(client.get_job_status(args.id).value)
        elif args.action == "stop":
            print("stopping" if client.stop_job(args.id) else "already finished")
        elif args.follow:
            status = jobs.follow(client, args.id)
            print(f"[distmeta jobs] job {args.id} {status}")
        else:
            print(client.get_job_logs(args.id), end="")
    except RuntimeError as exc:  # the job server answers 404 for an unknown id
        raise UserError(f"job {args.id}: {exc}") from None
    return 0


def run() -> None:
    """The console entry point: :func:`main`, then exit; after a run whose Ray died under it
    (a signal to the whole process group), without Ray's exit hook, which would wait a minute."""
    code = main()
    from distmeta import runtime

    if runtime.abandoned():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _paragraph(text: str) -> str:
    return textwrap.fill(" ".join(text.split()), width=100, break_on_hyphens=False, break_long_words=False)  # paths stay whole


if __name__ == "__main__":
    run()
