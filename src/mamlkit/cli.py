"""``mamlkit`` command line: ``train``, ``eval``, ``list``.

Options of ``train`` are generated from :class:`mamlkit.config.TrainConfig`, so the CLI, config
files and the saved ``config.yaml`` always agree. Bad arguments end with a one-line error and exit
status 2 (set ``MAMLKIT_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing
from collections.abc import Sequence
from typing import Any

from mamlkit.config import TrainConfig, build_config, load_yaml


def _add_config_options(parser: argparse.ArgumentParser, cls: type) -> None:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        allowed = [a for a in typing.get_args(kind) if a is not type(None)] or [kind]
        help_text = f"{f.metadata.get('help', '')} (default: {f.default})"
        if allowed[0] is bool:
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        else:
            parser.add_argument(
                flag, type=allowed[0], default=None, metavar=f.name.upper(), help=help_text
            )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mamlkit", description="Gradient-based meta-learning: MAML, FOMAML, MAML++."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="meta-train a model into a run folder")
    train.add_argument("--out", required=True, help="run folder to write")
    train.add_argument("--config", help="YAML file of config keys (flags override it)")
    train.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    _add_config_options(train, TrainConfig)

    ev = commands.add_parser("eval", help="evaluate a trained run on test tasks")
    ev.add_argument("run_dir", help="folder written by mamlkit train")
    ev.add_argument("--tasks", type=int, default=600, help="test tasks (default: 600)")
    ev.add_argument(
        "--inner-steps",
        type=int,
        default=None,
        help="inner steps at test time (default: the training value)",
    )
    ev.add_argument(
        "--queries", type=int, default=15, help="query examples per class (default: 15)"
    )
    ev.add_argument("--seed", type=int, default=0, help="seed of the test task stream (default: 0)")
    ev.add_argument(
        "--meta-batch", type=int, default=25, help="tasks evaluated at once (default: 25)"
    )
    ev.add_argument("--split", default="test", help="split to evaluate on (default: test)")
    ev.add_argument("--device", default=None, help="device (default: the run's)")
    ev.add_argument("--data-root", default=None, help="data folder (default: the run's)")
    ev.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    commands.add_parser("list", help="show registered algorithms, datasets and models")
    return parser


def _train(args: argparse.Namespace) -> int:
    from mamlkit.runs import train_run

    file_layer = load_yaml(args.config) if args.config else {}
    flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    config = build_config(
        TrainConfig, file_layer, {k: v for k, v in flags.items() if v is not None}
    )
    summary = train_run(config, args.out, overwrite=args.overwrite)
    print(
        f"trained {summary['algorithm']} for {summary['iterations']} iterations in "
        f"{summary['train_seconds']:.1f} s (final train loss {summary['final_train_loss']:.4f}); "
        f"run folder: {args.out}"
    )
    return 0


def _eval(args: argparse.Namespace) -> int:
    from mamlkit.runs import eval_run

    for name in ("tasks", "queries", "meta_batch", "inner_steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    result = eval_run(
        args.run_dir,
        tasks=args.tasks,
        inner_steps=args.inner_steps,
        queries=args.queries,
        seed=args.seed,
        meta_batch=args.meta_batch,
        split=args.split,
        device=args.device,
        data_root=args.data_root,
        progress=not args.no_progress,
    )
    print(result.summary())
    return 0


def _list(args: argparse.Namespace) -> int:
    from mamlkit.core.algorithms import ALGORITHMS
    from mamlkit.data import DATASETS
    from mamlkit.models import MODELS

    for spec_name in ALGORITHMS:
        spec = ALGORITHMS.get(spec_name)
        print(
            f"algorithm  {spec_name:10s} first_order={spec.first_order} "
            f"update_rule={spec.update_rule} step_loss={spec.step_loss} "
            f"adapt={','.join(spec.adapt)}"
        )
    for name in DATASETS:
        print(f"dataset    {name}")
    for name in MODELS:
        print(f"model      {name}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mamlkit`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    handlers: dict[str, Any] = {"train": _train, "eval": _eval, "list": _list}
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        print("mamlkit: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, KeyError, OSError, FloatingPointError) as error:
        if os.environ.get("MAMLKIT_DEBUG"):
            raise
        message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
        print(f"mamlkit {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
