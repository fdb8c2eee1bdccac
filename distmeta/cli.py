"""``distmeta train | eval``: a thin layer over :mod:`distmeta.api`.

Exit codes: 0 success, 1 a failure during the run (message printed), 2 bad input (one paragraph,
no traceback).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import textwrap

from distmeta.errors import NonFiniteGradientError, UserError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="distmeta", description="Distributed multi-task meta-training.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="meta-train a config", description="Meta-train CONFIG with key=value overrides.")
    t.add_argument("config", help="YAML config, e.g. configs/sine_maml.yaml")
    t.add_argument("overrides", nargs="*", help="dot-list overrides, e.g. trainer.max_steps=100 cluster.num_shards=0")
    t.add_argument("--resume", metavar="PATH|last", help="continue a run from its checkpoint (same run, same task stream)")

    e = sub.add_parser("eval", help="run the meta-test protocol on a checkpoint")
    e.add_argument("--checkpoint", required=True, help="a .ckpt written by distmeta train")
    e.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    e.add_argument("--no-mlflow", action="store_true", help="do not log the results to the checkpoint's MLflow run")
    e.add_argument("overrides", nargs="*", help="dot-list overrides of the checkpoint's config, e.g. evaluation.num_tasks=1000")
    return p




def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "train":
            return _train(args)
        return _eval(args)
    except UserError as exc:
        print(_paragraph(f"distmeta {args.command}: error: {exc}"), file=sys.stderr)
        return 2
    except NonFiniteGradientError as exc:
        print(_paragraph(f"distmeta {args.command}: stopped: {exc}"), file=sys.stderr)
        return 1


def _train(args) -> int:
    from distmeta import api

    cfg = api.load_config(args.config, args.overrides)
    result = api.train(cfg, resume=args.resume)
    print(f"\nMLflow run id:     {result.run_id}")
    print(f"tracking URI:      {result.tracking_uri}")
    print(f"checkpoint folder: {result.checkpoint_dir}")
    print(f"final model:       {result.model_uri}")
    print("\nevaluation:")
    print(result.evaluation.table())
    print(f"adaptation figure: {result.figure}")
    return 0


def _eval(args) -> int:
    from distmeta import api

    report, figure = api.evaluate(args.checkpoint, args.overrides, log_to_mlflow=not args.no_mlflow)
    if args.json:
        print(json.dumps({**report.values, "num_tasks": report.num_tasks, "figure": str(figure)}, sort_keys=True))
    else:
        print(report.table())
        print(f"adaptation figure: {figure}")
    return 0


def _paragraph(text: str) -> str:
    return textwrap.fill(" ".join(text.split()), width=100)


if __name__ == "__main__":
    sys.exit(main())
