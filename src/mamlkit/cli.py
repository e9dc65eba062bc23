"""``mamlkit`` command line: ``train``, ``eval``, ``list``.

Options of ``train`` are generated from :class:`mamlkit.config.TrainConfig`, so the CLI, config
files and the saved ``config.yaml`` always agree. Bad arguments end with a one-line error and exit
status 2 (set ``MAMLKIT_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
import typing
from collections.abc import Callable, Sequence
from typing import Any

from mamlkit.config import EvalConfig, TrainConfig, build_config, load_yaml


def _add_config_options(parser: argparse.ArgumentParser, cls: type, prefix: str = "") -> None:
    """One ``--option`` per field of the config dataclass ``cls`` (``--prefix-option`` if given)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + prefix + f.name.replace("_", "-")
        kind = hints[f.name]
        allowed = [a for a in typing.get_args(kind) if a is not type(None)] or [kind]
        help_text = f.metadata.get("help", "")
        if f.default is not None:
            help_text += f" (default: {f.default})"
        dest = (prefix + f.name).replace("-", "_")
        if allowed[0] is bool:
            parser.add_argument(
                flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        else:
            parser.add_argument(
                flag,
                dest=dest,
                type=allowed[0],
                default=None,
                metavar=f.name.upper(),
                help=help_text,
            )


def _given(args: argparse.Namespace, cls: type, prefix: str = "") -> dict[str, Any]:
    """The config options given on the command line (unset flags are ``None``)."""
    values = {
        f.name: getattr(args, (prefix + f.name).replace("-", "_")) for f in dataclasses.fields(cls)
    }
    return {k: v for k, v in values.items() if v is not None}


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
    _add_config_options(ev, EvalConfig)
    ev.add_argument("--device", default=None, help="device (default: the run's)")
    ev.add_argument("--data-root", default=None, help="data folder (default: the run's)")
    ev.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    cmp = commands.add_parser(
        "compare",
        help="train and evaluate several algorithms on identical tasks; write a report",
        description="Each algorithm trains in its own process on the identical task stream from "
        "the same initial weights and is tested on the identical tasks. Train options (e.g. "
        "--iterations) and --eval-* options override the preset for every algorithm.",
    )
    cmp.add_argument(
        "--algorithms", default=None, help="comma-separated algorithm names (default: the preset's)"
    )
    cmp.add_argument("--preset", default="quick", help="quick (CPU, minutes) or paper (GPU, hours)")
    cmp.add_argument("--out", required=True, help="folder for results.json, report.md and plots")
    cmp.add_argument(
        "--resume",
        action="store_true",
        help="continue a comparison in --out, skipping finished algorithms",
    )
    cmp.add_argument("--config", help="YAML of train keys (and eval_* keys) overriding the preset")
    cmp.add_argument(
        "--curve-points",
        type=int,
        default=None,
        help="test evaluations during training, for accuracy vs time (0: none)",
    )
    cmp.add_argument("--curve-tasks", type=int, default=None, help="test tasks per curve point")
    _add_config_options(cmp, TrainConfig)
    _add_config_options(cmp, EvalConfig, prefix="eval-")

    rep = commands.add_parser(
        "report", help="rewrite report.md and the plots of a comparison from its results.json"
    )
    rep.add_argument("out", help="folder written by mamlkit compare")

    commands.add_parser("list", help="show registered algorithms, datasets, models and presets")
    return parser


def _train(args: argparse.Namespace) -> int:
    from mamlkit.runs import train_run

    file_layer = load_yaml(args.config) if args.config else {}
    config = build_config(TrainConfig, file_layer, _given(args, TrainConfig))
    summary = train_run(config, args.out, overwrite=args.overwrite)
    print(
        f"trained {summary['algorithm']} for {summary['iterations']} iterations in "
        f"{summary['train_seconds']:.1f} s (final train loss {summary['final_train_loss']:.4f}); "
        f"run folder: {args.out}"
    )
    return 0


def _eval(args: argparse.Namespace) -> int:
    from mamlkit.runs import eval_run

    evaluation = build_config(EvalConfig, _given(args, EvalConfig))
    result = eval_run(
        args.run_dir,
        evaluation,
        device=args.device,
        data_root=args.data_root,
        progress=not args.no_progress,
    )
    print(result.summary())
    return 0


def _compare(args: argparse.Namespace) -> int:
    from mamlkit.compare.presets import COMPARE_PRESETS
    from mamlkit.compare.runner import plan_algorithms, run_comparison

    preset = COMPARE_PRESETS.get(args.preset)
    if args.curve_points is not None or args.curve_tasks is not None:
        if (args.curve_points or 0) < 0 or (args.curve_tasks is not None and args.curve_tasks < 1):
            raise ValueError("--curve-points must be >= 0 and --curve-tasks >= 1")
        preset = dataclasses.replace(
            preset,
            curve_points=preset.curve_points if args.curve_points is None else args.curve_points,
            curve_tasks=preset.curve_tasks if args.curve_tasks is None else args.curve_tasks,
        )
    names = (
        [n.strip() for n in args.algorithms.split(",") if n.strip()] if args.algorithms else None
    )
    file_layer = load_yaml(args.config) if args.config else {}
    plans = plan_algorithms(
        preset,
        names,
        train_layers=[
            {k: v for k, v in file_layer.items() if not str(k).startswith("eval_")},
            _given(args, TrainConfig),
        ],
        eval_layers=[
            {str(k)[5:]: v for k, v in file_layer.items() if str(k).startswith("eval_")},
            _given(args, EvalConfig, prefix="eval-"),
        ],
    )
    run_comparison(preset, plans, args.out, resume=args.resume, command=args.command_line)
    print(f"wrote {args.out}/results.json, {args.out}/report.md and the plots")
    return 0


def _report(args: argparse.Namespace) -> int:
    from mamlkit.compare.runner import write_report

    write_report(args.out)
    print(f"wrote {args.out}/report.md and the plots")
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
    from mamlkit.compare.presets import COMPARE_PRESETS

    for name in COMPARE_PRESETS:
        print(f"preset     {name:10s} {COMPARE_PRESETS.get(name).description}")
    return 0


def run_guarded(command: str, action: Callable[[], int]) -> int:
    """Run ``action``; an expected failure becomes one line on stderr and exit status 2.

    Ctrl-C gives status 130. ``MAMLKIT_DEBUG=1`` re-raises, for the full traceback.
    """
    try:
        return action()
    except KeyboardInterrupt:
        print(f"mamlkit {command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, KeyError, OSError, FloatingPointError) as error:
        if os.environ.get("MAMLKIT_DEBUG"):
            raise
        message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
        print(f"mamlkit {command}: error: {message}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mamlkit`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command_line = "mamlkit " + shlex.join(argv)
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "train": _train,
        "eval": _eval,
        "compare": _compare,
        "report": _report,
        "list": _list,
    }
    return run_guarded(args.command, lambda: handlers[args.command](args))


if __name__ == "__main__":
    sys.exit(main())
