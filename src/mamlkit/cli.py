"""``mamlkit`` command line: ``train``, ``eval``, ``predict``, ``compare``, ``report``, ``list``.

Options of ``train`` are generated from :class:`mamlkit.training.TrainConfig`, so the CLI, config
files and the saved ``config.yaml`` always agree. Bad arguments end with a one-line error and exit
status 2 (set ``MAMLKIT_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import re
import shlex
import sys
import textwrap
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mamlkit import __version__
from mamlkit.algorithms import ALGORITHMS
from mamlkit.compare import COMPARE_PRESETS, plan_algorithms, run_comparison, write_report
from mamlkit.data import DATASETS
from mamlkit.errors import run_guarded
from mamlkit.models import MODELS
from mamlkit.registry import PluginError, Registry
from mamlkit.training import (
    EvalConfig,
    TrainConfig,
    build_config,
    eval_run,
    predict,
    train_run,
)
from mamlkit.training.config import TEST_OVERRIDES, load_yaml
from mamlkit.training.distributed import is_main_process, world_size_from_environment
from mamlkit.training.evaluation import evaluated_setting
from mamlkit.training.fits import FITS_FILE, plots_unavailable
from mamlkit.training.run import FREE_ON_RESUME
from mamlkit.training.run_folder import BEST_WEIGHTS_FILE, CONFIG_FILE, EVAL_FILE, load_config


def _add_config_options(
    parser: argparse.ArgumentParser, cls: type, prefix: str = "", skip: Sequence[str] = ()
) -> None:
    """One ``--option`` per field of the config dataclass ``cls`` (``--prefix-option`` if given),
    except the fields named in ``skip``."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
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


def _given(
    args: argparse.Namespace, cls: type, prefix: str = "", skip: Sequence[str] = ()
) -> dict[str, Any]:
    """The config options given on the command line (unset flags are ``None``), except the
    fields named in ``skip`` (which have no flag)."""
    values = {
        f.name: getattr(args, (prefix + f.name).replace("-", "_"))
        for f in dataclasses.fields(cls)
        if f.name not in skip
    }
    return {k: v for k, v in values.items() if v is not None}


class _Parser(argparse.ArgumentParser):
    """Bad arguments end with one line (not the usage text first), like every other error."""

    def error(self, message: str) -> typing.NoReturn:
        if message.endswith("expected one argument"):
            message += "; a value starting with '-' goes after '=', e.g. --inner-lr=-1"
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``mamlkit`` argument parser: commands ``train``, ``eval``, ``predict``, ``compare``,
    ``report`` and ``list``, with one flag per :class:`~mamlkit.training.TrainConfig` /
    ``EvalConfig`` field.

    >>> from mamlkit.cli import build_parser
    >>> args = build_parser().parse_args(["train", "--algorithm", "fomaml", "--out", "runs/a"])
    >>> args.command, args.algorithm
    ('train', 'fomaml')
    """
    parser = _Parser(
        prog="mamlkit",
        description=(
            "Gradient-based meta-learning: MAML, FOMAML, MAML++, ANIL, BOIL, Meta-SGD and Reptile "
            "(`mamlkit list` shows every algorithm and its settings)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"mamlkit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="meta-train a model into a run folder")
    train.add_argument("--out", help="run folder to write (required unless --resume)")
    train.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the run in DIR from its checkpoint, with its own config.yaml (no other "
        "options)",
    )
    train.add_argument("--config", help="YAML file of config keys (flags override it)")
    train.add_argument(
        "--preset",
        default=None,
        help="start from a compare preset's train values for --algorithm (default: the preset's "
        f"first algorithm); --config and flags override them ({', '.join(COMPARE_PRESETS)})",
    )
    train.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    _add_config_options(train, TrainConfig)

    ev = commands.add_parser("eval", help="evaluate a trained run on test tasks")
    ev.add_argument("run_dir", help="folder written by mamlkit train")
    _add_config_options(ev, EvalConfig)
    ev.add_argument("--device", default=None, help="device (default: the run's)")
    ev.add_argument("--data-root", default=None, help="data folder (default: the run's)")
    ev.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    pr = commands.add_parser(
        "predict",
        help="adapt a trained run to your labelled support images; classify query images",
        description="Reads the images as the run's dataset read its own, adapts the run's learner "
        "to the support images with its algorithm and inner steps, and prints each query image's "
        "predicted class and confidence.",
    )
    pr.add_argument("run_dir", help="folder written by mamlkit train")
    pr.add_argument(
        "--support",
        required=True,
        metavar="DIR",
        help="one sub-folder per class, named after the class, holding K >= 1 example images "
        "(as many classes as the run's --ways)",
    )
    pr.add_argument(
        "--query",
        required=True,
        metavar="DIR",
        help="images to classify, directly in DIR or in folders named after support classes "
        "(then the accuracy is reported too)",
    )
    pr.add_argument("--out", metavar="FILE", help="also write the predictions as JSON to FILE")
    pr.add_argument(
        "--inner-steps", type=int, default=None, help="inner steps (default: the training value)"
    )
    pr.add_argument(
        "--weights",
        default="auto",
        help="weights to adapt: best, final, or auto (the best when the run kept them, else the "
        "final ones; default: auto)",
    )
    pr.add_argument(
        "--query-batch",
        type=int,
        default=None,
        help="query images classified together (default: the run's ways x queries)",
    )
    pr.add_argument("--device", default=None, help="device (default: the run's)")

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
    cmp.add_argument(
        "--preset",
        default="quick",
        help=f"{', '.join(COMPARE_PRESETS)} (default: quick; mamlkit list describes them)",
    )
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
    # every algorithm is tested on the tasks it trained on: no --eval-ways/-shots/-inner-lr
    _add_config_options(cmp, EvalConfig, prefix="eval-", skip=TEST_OVERRIDES)

    rep = commands.add_parser(
        "report", help="rewrite report.md and the plots of a comparison from its results.json"
    )
    rep.add_argument("out", help="folder written by mamlkit compare")

    commands.add_parser("list", help="show registered algorithms, datasets, models and presets")
    return parser


def train_config(args: argparse.Namespace) -> tuple[TrainConfig, dict[str, Any] | None]:
    """The config of ``mamlkit train`` and, with ``--preset``, the preset's eval values.

    Layers, low to high: the config's defaults, the preset's values for the algorithm (shared,
    then that algorithm's own), the ``--config`` file, the flags. The algorithm is the one the
    flags or the file name, else the preset's first.
    """
    file_layer = load_yaml(args.config) if args.config else {}
    flags = _given(args, TrainConfig)
    if not args.preset:
        return build_config(TrainConfig, file_layer, flags), None
    preset = COMPARE_PRESETS.get(args.preset)
    algorithm = flags.get("algorithm", file_layer.get("algorithm", preset.algorithms[0]))
    if not isinstance(algorithm, str):  # the file's bad value: build_config names the key
        return build_config(TrainConfig, file_layer, flags), None
    config = build_config(TrainConfig, preset.train_values(algorithm), file_layer, flags)
    evaluation = build_config(EvalConfig, preset.evaluation_values(algorithm))
    return config, evaluation.to_dict()


def _eval_hint(out: str, evaluation: dict[str, Any]) -> str:
    """The ``mamlkit eval`` command with the preset's evaluation settings."""
    options = [
        f"--{key.replace('_', '-')} {value}"
        for key, value in evaluation.items()
        if value is not None and value != getattr(EvalConfig(), key)
    ]
    return shlex.join(["mamlkit", "eval", out]) + "".join(" " + o for o in options)


def _train(args: argparse.Namespace) -> int:
    if args.resume:
        flags = _given(args, TrainConfig)
        free = {k: flags.pop(k) for k in list(flags) if k in FREE_ON_RESUME}
        given = [f"--{k.replace('_', '-')}" for k in flags]
        given += [flag for flag, value in (("--out", args.out), ("--config", args.config),
                  ("--preset", args.preset), ("--overwrite", args.overwrite)) if value]  # fmt: skip
        if given:
            raise ValueError(
                f"--resume continues the run with its own {CONFIG_FILE} (--iterations may "
                f"extend it); drop {', '.join(given)}"
            )
        config = dataclasses.replace(load_config(args.resume), **free)
        summary = train_run(config, args.resume, resume=True)
        args.out = args.resume
        evaluation = None
    else:
        if not args.out:
            raise ValueError("give --out DIR for the run folder (or --resume DIR to continue one)")
        config, evaluation = train_config(args)
        summary = train_run(config, args.out, overwrite=args.overwrite)
    if not is_main_process():
        return 0  # under torchrun, rank 0 reports
    stopped = {
        "patience": " (stopped early: no validation improvement within --patience)",
        "budget": " (stopped by --budget-minutes)",
    }.get(summary.get("stopped_early") or "", "")
    print(
        f"trained {summary['algorithm']} for {summary['iterations']} iterations{stopped} in "
        f"{summary['train_seconds']:.1f} s (final train loss {summary['final_train_loss']:.4f}); "
        f"run folder: {args.out}"
    )
    validation = summary.get("validation")
    if validation:
        best = validation["best"]
        score = (
            f"accuracy {100 * best['val_accuracy']:.2f}%"
            if best.get("val_accuracy") is not None
            else f"MSE {best['val_mse']:.4f}"
        )
        print(
            f"best validation {score} at iteration {best['iteration']} "
            f"({validation['evaluations']} evaluations); kept as {validation['weights_file']}"
        )
    if evaluation is not None:
        print(f"evaluate it as preset {args.preset} does: {_eval_hint(args.out, evaluation)}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    evaluation = build_config(EvalConfig, _given(args, EvalConfig))
    result = eval_run(
        args.run_dir,
        evaluation,
        device=args.device,
        data_root=args.data_root,
        progress=not args.no_progress,
    )
    record = json.loads(Path(args.run_dir, EVAL_FILE).read_text(encoding="utf-8"))
    setting = f"{evaluated_setting(record)}: " if record.get("overrides") else ""
    print(f"{setting}{result.summary()}; {_weights_tested(args.run_dir)}")
    fits = os.path.join(args.run_dir, FITS_FILE)
    skipped = (record.get("fits") or {}).get("skipped")
    if result.mse is not None and (skipped or os.path.isfile(fits)):
        print(
            f"per-step MSE {', '.join(f'{v:.3f}' for v in result.per_step_loss)}; "
            + (skipped or f"fits: {fits}")
        )
    return 0


def _predict(args: argparse.Namespace) -> int:
    result = predict(
        args.run_dir,
        args.support,
        args.query,
        weights=args.weights,
        inner_steps=args.inner_steps,
        device=args.device,
        query_batch=args.query_batch,
    )
    print(result.table())
    print(result.summary())
    if args.out:
        result.save(args.out)
        print(f"wrote {args.out}")
    return 0


def _weights_tested(run_dir: str) -> str:
    """Which weights ``eval.json`` says were tested, in words."""
    record = json.loads(Path(run_dir, EVAL_FILE).read_text(encoding="utf-8"))
    facts = record.get("weights_facts") or {}
    if record.get("weights_file") == BEST_WEIGHTS_FILE:
        score = (
            f"validation accuracy {100 * facts['val_accuracy']:.2f}%"
            if facts.get("val_accuracy") is not None
            else f"validation MSE {facts.get('val_mse', float('nan')):.4f}"
        )
        return f"the best weights (iteration {facts.get('iteration')}, {score})"
    return "the final weights"


def _compare(args: argparse.Namespace) -> int:
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
            _given(args, EvalConfig, prefix="eval-", skip=TEST_OVERRIDES),
        ],
    )
    run_comparison(preset, plans, args.out, resume=args.resume, command=args.command_line)
    skipped = plots_unavailable()
    plots = f"; {skipped}" if skipped else " and the plots"
    print(f"wrote {args.out}/results.json, {args.out}/report.md{plots}")
    return 0


def _report(args: argparse.Namespace) -> int:
    skipped = write_report(args.out)
    print(f"wrote {args.out}/report.md" + (f"; {skipped}" if skipped else " and the plots"))
    return 0


def _setting_text(value: object) -> str:
    """A setting as ``mamlkit list`` prints it: booleans in lower case, patterns joined by |."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return "|".join(str(v) for v in value)
    return str(value)


def _summary(obj: object) -> str:
    """The first paragraph of the docstring of ``obj`` (of the class a factory returns), as text."""
    if not isinstance(obj, type):
        try:
            returned = typing.get_type_hints(obj).get("return")
        except Exception:  # unresolvable annotations: fall back to the factory's own docstring
            returned = None
        obj = returned if isinstance(returned, type) else obj
    doc = inspect.getdoc(obj) or ""
    text = " ".join(doc.split("\n\n")[0].split())
    return re.sub(r":\w+:`~?([^`]*)`", r"\1", text).replace("``", "")


def list_lines(width: int = 100) -> list[str]:
    """What ``mamlkit list`` prints: every registered algorithm, dataset, model and preset.

    An algorithm shows every field of its spec except ``name`` and ``reference`` (so settings added
    to :class:`~mamlkit.AlgorithmSpec` appear without a change here), then its reference.
    Installed plug-ins (entry points) are listed with the built-in entries.
    """
    names = [*ALGORITHMS, *DATASETS, *MODELS, *COMPARE_PRESETS]
    column = max(len(n) for n in names) + 4

    def entry(name: str, text: str) -> list[str]:
        indent = " " * column
        if not text:
            return [f"  {name}"]
        return textwrap.wrap(
            text,
            width=width,
            initial_indent=f"  {name}".ljust(column),
            subsequent_indent=indent,
            break_on_hyphens=False,
        )

    def loaded(registry: Registry[Any], name: str) -> Any:
        """The entry, or the reason a plug-in failed to load (listed, not raised)."""
        try:
            return registry.get(name)
        except PluginError as error:
            return error

    lines = ["algorithms (mamlkit train --algorithm NAME):"]
    for name in ALGORITHMS:
        spec = loaded(ALGORITHMS, name)
        if isinstance(spec, PluginError):
            lines += entry(name, f"(failed to load: {spec})")
            continue
        settings = " ".join(f"{k}={_setting_text(v)}" for k, v in spec.settings().items())
        lines += entry(name, settings)
        reference = getattr(spec, "reference", "")
        if reference:
            lines += entry("", reference)
    for title, registry in (
        ("datasets (--dataset NAME):", DATASETS),
        ("models (--model NAME):", MODELS),
    ):
        lines.append(title)
        for name in registry:
            factory = loaded(registry, name)
            text = f"(failed to load: {factory})" if isinstance(factory, PluginError) else ""
            lines += entry(name, text or _summary(factory))
    lines.append("presets (mamlkit compare --preset NAME; mamlkit train --preset NAME):")
    for name in COMPARE_PRESETS:
        preset = COMPARE_PRESETS.get(name)
        text = f"{preset.description} [algorithms: {', '.join(preset.algorithms)}]"
        lines += entry(name, text)
    return lines


def _list(args: argparse.Namespace) -> int:
    print("\n".join(list_lines()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mamlkit`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command_line = "mamlkit " + shlex.join(argv)
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "train": _train,
        "eval": _eval,
        "predict": _predict,
        "compare": _compare,
        "report": _report,
        "list": _list,
    }
    return run_guarded(args.command, lambda: _single_process_unless_train(args, handlers))


def _single_process_unless_train(
    args: argparse.Namespace, handlers: dict[str, Callable[[argparse.Namespace], int]]
) -> int:
    """Only ``train`` splits its work over torchrun's processes; the others would each redo it
    and write the same files at once, so they are refused there."""
    if args.command != "train" and world_size_from_environment() > 1:
        raise ValueError(
            f"only mamlkit train runs under torchrun; run mamlkit {args.command} as one process "
            "(python -m mamlkit ..., without torchrun)"
        )
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
