"""A run on disk: build everything a :class:`TrainConfig` names, train into a folder, evaluate it.

Run folder contents: ``config.yaml`` (the resolved config), ``metrics.jsonl`` (one JSON record per
logged iteration), ``model.safetensors`` (the learner's state: model weights and learned inner
learning rates), ``checkpoint.safetensors`` (everything to resume exactly, see
:mod:`mamlkit.checkpoint`), ``summary.json`` (written at the end), and ``eval.json`` after
``mamlkit eval`` (for a regression dataset such as ``sinusoid`` also ``fits.png``, the fits to a
few test tasks).

A dataset whose ``task`` is ``"regression"`` (a :class:`~mamlkit.data.TaskDistribution`) makes
its own sampler and trains a ``MetaLearner(..., task="regression")`` with one model output per
target (``num_outputs``); ``ways`` does not apply to it and must be left at its default.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import inspect
import json
import platform
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from mamlkit.checkpoint import CHECKPOINT_FILE, TrainingState, load_checkpoint, save_checkpoint
from mamlkit.config import ConfigError, EvalConfig, TrainConfig, build_config, dump_yaml, load_yaml
from mamlkit.core.algorithms import resolve_algorithm
from mamlkit.core.learner import MetaLearner
from mamlkit.distributed import (
    ProcessGroup,
    any_rank,
    average_gradients,
    barrier,
    check_divisible,
    process_device,
    process_group,
    shard,
    world_size_from_environment,
)
from mamlkit.fingerprint import TensorDigest, digest_state, digesting
from mamlkit.io import atomic_write_json, atomic_write_text, load_tensors, save_tensors
from mamlkit.memory import PeakMemory
from mamlkit.models import MODELS
from mamlkit.plots import FITS_FILE, write_regression_fits
from mamlkit.training import EvalResult, RegressionEvalResult, evaluate, fit, median_or_nan

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.yaml"
WEIGHTS_FORMAT = "mamlkit-learner-v1"


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available else cpu; an unavailable CUDA device is an error.

    >>> from mamlkit.runs import resolve_device
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> resolve_device("gpu")
    Traceback (most recent call last):
        ...
    mamlkit.config.ConfigError: unknown device 'gpu'; use cpu, cuda, cuda:N or auto
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return device


def build_dataset(config: TrainConfig, split: str) -> Any:
    """The dataset ``config.dataset`` for ``split``.

    Every factory gets ``root``, ``split`` and ``download``; ``validation`` and ``split_seed`` go
    to factories that take them, and setting them for one that does not is an error (never a
    silently ignored flag).

    >>> from mamlkit.config import TrainConfig
    >>> from mamlkit.runs import build_dataset
    >>> build_dataset(TrainConfig(dataset="sinusoid", model="mlp"), "test")
    Sinusoid(split='test', amplitude=(0.1, 5.0), phase=(0.0, 3.14159...), x_range=(-5.0, 5.0))
    >>> build_dataset(TrainConfig(dataset="sinusoid", model="mlp", validation=True), "test")
    Traceback (most recent call last):
        ...
    mamlkit.config.ConfigError: dataset 'sinusoid' has fixed splits: validation cannot be set
    (got True)
    """
    from mamlkit.data import DATASETS

    factory = DATASETS.get(config.dataset)
    accepted = inspect.signature(factory).parameters
    defaults = {"validation": False, "split_seed": 0}
    options = {}
    for key, default in defaults.items():
        value = getattr(config, key)
        if key in accepted:
            options[key] = value
        elif value != default:
            raise ConfigError(
                f"dataset {config.dataset!r} has fixed splits: {key} cannot be set (got {value!r})"
            )
    if "progress" in accepted:
        options["progress"] = config.progress
    return factory(root=config.data_root, split=split, download=config.download, **options)


def dataset_task(dataset: Any) -> str:
    """``"regression"`` for a :class:`~mamlkit.data.TaskDistribution` of regression tasks, else
    ``"classification"`` (an N-way dataset for :class:`~mamlkit.data.EpisodeSampler`)."""
    from mamlkit.data import TaskDistribution

    if isinstance(dataset, TaskDistribution) and dataset.task == "regression":
        return "regression"
    return "classification"


def registered_task(name: str) -> str:
    """The task of the registered dataset ``name``, without building it (the factory's ``task``
    attribute; factories without one are classification).

    >>> from mamlkit.runs import registered_task
    >>> registered_task("sinusoid"), registered_task("omniglot")
    ('regression', 'classification')
    """
    from mamlkit.data import DATASETS

    return str(getattr(DATASETS.get(name), "task", "classification"))


def _default(cls: type, key: str) -> Any:
    return next(f.default for f in dataclasses.fields(cls) if f.name == key)


def build_sampler(
    config: TrainConfig, dataset: Any, *, queries: int, meta_batch: int, seed: int
) -> Any:
    """The task stream of ``dataset``: an :class:`~mamlkit.data.EpisodeSampler` of ``ways``-way
    tasks, or for a regression dataset its own ``task_sampler`` (then ``ways`` must be left at its
    default: it does not apply, and is refused rather than ignored)."""
    from mamlkit.data import EpisodeSampler

    if dataset_task(dataset) == "regression":
        if config.ways != _default(TrainConfig, "ways"):
            raise ConfigError(
                f"{config.dataset} is a regression dataset: --ways does not apply (got "
                f"{config.ways}); leave it unset and give the points per task with --shots"
            )
        return dataset.task_sampler(config.shots, queries, meta_batch, seed=seed)
    return EpisodeSampler(dataset, config.ways, config.shots, queries, meta_batch, seed=seed)


def build_learner(
    config: TrainConfig,
    image_shape: tuple[int, ...],
    *,
    task: str = "classification",
    num_outputs: int | None = None,
) -> MetaLearner:
    """The model (initialised from ``config.seed`` without touching the global RNG) + algorithm.

    An image shape ``[C, H, W]`` is passed to the model factory as ``in_channels=C,
    image_size=W``; a model that declares ``input_ndim`` refuses inputs of another rank. The
    model gets ``num_outputs`` outputs (default ``config.ways``, one logit per class); ``task``
    is the learner's (``"regression"``: float targets, MSE loss). An algorithm with per-step
    running statistics (BNRS) gets a model built with ``track_running_stats=True`` where the
    factory takes it.

    >>> from mamlkit.config import TrainConfig
    >>> from mamlkit.runs import build_learner
    >>> learner = build_learner(TrainConfig(model="conv4", ways=20), (1, 28, 28))
    >>> learner.model.head.out_features, learner.algorithm.name
    (20, 'maml')
    >>> build_learner(TrainConfig(model="conv4", dataset="sinusoid"), (1,))
    Traceback (most recent call last):
        ...
    mamlkit.config.ConfigError: model 'conv4' takes inputs of rank 3 but dataset 'sinusoid' gives
    inputs of shape [1]; choose another --model, e.g. --model mlp
    """
    factory = MODELS.get(config.model)
    input_ndim = getattr(factory, "input_ndim", None)
    if input_ndim is not None and len(image_shape) != input_ndim:
        fitting = [
            name
            for name in MODELS
            if getattr(MODELS.get(name), "input_ndim", None) in (None, len(image_shape))
        ]
        hint = f", e.g. --model {fitting[0]}" if fitting else ""
        raise ConfigError(
            f"model {config.model!r} takes inputs of rank {input_ndim} but dataset "
            f"{config.dataset!r} gives inputs of shape {list(image_shape)}; choose another "
            f"--model{hint}"
        )
    spec = resolve_algorithm(config.algorithm)
    options = {}
    if spec.bn_per_step_stats and "track_running_stats" in inspect.signature(factory).parameters:
        options["track_running_stats"] = True  # MAML++ BNRS collects per-step running stats
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = factory(
            in_channels=image_shape[0],
            num_classes=config.ways if num_outputs is None else num_outputs,
            hidden=config.hidden,
            image_size=image_shape[-1],
            **options,
        )
    return MetaLearner(
        model,
        spec,
        inner_lr=config.inner_lr,
        inner_steps=config.inner_steps,
        msl_anneal_iterations=config.msl_anneal_iterations,
        first_order_iterations=config.first_order_iterations,
        execution=config.execution,
        tasks_per_backward=config.tasks_per_backward,
        task=task,
    )


def environment() -> dict[str, Any]:
    """Where a run ran: versions, CPU, threads, GPU (recorded in ``summary.json``).

    >>> from mamlkit.runs import environment
    >>> sorted(environment())  # doctest: +ELLIPSIS
    [...'date', 'platform', 'processor', 'python', 'torch', 'torch_threads']
    """
    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                env["cpu"] = line.split(":", 1)[1].strip()
                break
    return env


def save_learner(
    path: Path,
    learner: MetaLearner,
    config: TrainConfig,
    image_shape: tuple[int, ...],
    *,
    num_outputs: int | None = None,
) -> None:
    """The learner's state (weights + learned inner LRs) as safetensors, with what rebuilds it
    (``num_outputs``: the model's outputs when they are not ``config.ways``)."""
    metadata = {
        "format": WEIGHTS_FORMAT,
        "algorithm": learner.algorithm.name,
        "image_shape": json.dumps(list(image_shape)),
        "config": json.dumps(config.to_dict()),
        "task": learner.task,
    }
    if num_outputs is not None:
        metadata["num_outputs"] = str(num_outputs)
    save_tensors(path, learner.state_dict(), metadata)


def prepare_out_dir(out: str | Path, overwrite: bool) -> Path:
    """Create the run folder ``out``, or clear the files of an earlier run in it.

    A folder that already holds a run is refused unless ``overwrite``; then only the files a
    run writes are deleted (anything else there is kept). Returns ``out`` as a ``Path``.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for the run")
    if any((out / name).exists() for name in (WEIGHTS_FILE, "metrics.jsonl", CHECKPOINT_FILE)):
        if not overwrite:
            raise ConfigError(
                f"{out} already holds a run; choose another --out, pass --overwrite, or continue "
                f"it with mamlkit train --resume {out}"
            )
        for name in (
            WEIGHTS_FILE,
            "metrics.jsonl",
            "summary.json",
            "eval.json",
            FITS_FILE,
            CONFIG_FILE,
            CHECKPOINT_FILE,
        ):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    return out


def outer_lr_schedule(config: TrainConfig) -> str:
    """The schedule a run uses: the config's, else its algorithm's default.

    >>> from mamlkit.config import TrainConfig
    >>> from mamlkit.runs import outer_lr_schedule
    >>> outer_lr_schedule(TrainConfig(algorithm="mamlpp")), outer_lr_schedule(TrainConfig())
    ('cosine', 'constant')
    >>> outer_lr_schedule(TrainConfig(algorithm="maml", outer_lr_schedule="cosine"))
    'cosine'
    """
    return config.outer_lr_schedule or resolve_algorithm(config.algorithm).outer_lr_schedule


def make_scheduler(
    config: TrainConfig, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The outer learning-rate schedule: constant, or cosine annealing to ``outer_lr_min``
    (``outer_lr_schedule`` unset: the algorithm's own, cosine for the MAML++ presets)."""
    if outer_lr_schedule(config) == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=config.iterations, eta_min=config.outer_lr_min
        )
    return None


RecordHook = Callable[[dict[str, Any], MetaLearner], None]


def _records_up_to(path: Path, iteration: int) -> list[dict[str, Any]]:
    """The metrics records of iterations ``<= iteration``; the file is rewritten to hold only
    them (a run stopped after its checkpoint logged iterations that resuming redoes)."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    kept = [json.loads(line) for line in lines if line.strip()]
    kept = [record for record in kept if record["iteration"] <= iteration]
    atomic_write_text(path, "".join(json.dumps(record) + "\n" for record in kept))
    return kept


@contextlib.contextmanager
def _naming_the_last_checkpoint(out: Path, saved: dict[str, int | None]) -> Iterator[None]:
    """A numerical failure says which checkpoint is the last good one (it is kept as it is)."""
    try:
        yield
    except FloatingPointError as error:
        if saved["iteration"] is None:
            raise FloatingPointError(f"{error}; no checkpoint had been written yet") from None
        raise FloatingPointError(
            f"{error}; the last good checkpoint (iteration {saved['iteration']}) is kept in "
            f"{out / CHECKPOINT_FILE}"
        ) from None


@contextlib.contextmanager
def _stop_on_sigint(stop: dict[str, bool], *, grace: float = 0.0) -> Iterator[None]:
    """First Ctrl-C: ask training to stop after the current iteration (``stop["requested"]``);
    a second one more than ``grace`` seconds later interrupts at once (under torchrun each worker
    gets the terminal's SIGINT and the one torchrun forwards, which count as one). Only in the
    main thread, where signals can be handled."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    first = {"at": 0.0}

    def request(signum: int, frame: object) -> None:
        if stop["requested"] and time.monotonic() - first["at"] < grace:
            return
        if stop["requested"]:
            raise KeyboardInterrupt(
                "interrupted again: stopped at once; the last checkpoint is kept"
            )
        stop["requested"] = True
        first["at"] = time.monotonic()
        print("\nstopping after this iteration (Ctrl-C again to stop at once)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, request)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _dataset_rank_0_first(config: TrainConfig, group: ProcessGroup) -> Any:
    """The training split; under torchrun rank 0 builds it first (downloading, decoding and
    caching as needed), so the other ranks read its files instead of writing them too."""
    if group.is_main:
        dataset = build_dataset(config, "train")
        barrier(group)
        return dataset
    barrier(group)
    return build_dataset(config, "train")


def train_run(
    config: TrainConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    on_record: RecordHook | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Meta-train as ``config`` says, writing the run folder; returns ``summary.json``'s content.

    ``on_record(record, learner)`` is called after each logged iteration (its time is not counted
    as training time). Peak memory is measured over training only, after the data is loaded.
    A checkpoint (:mod:`mamlkit.checkpoint`) is written every ``checkpoint_every`` iterations and
    at the end; ``resume=True`` continues the run in ``out`` from its checkpoint, exactly (the
    weights after N + M iterations are bit-identical to those of an uninterrupted run). Ctrl-C
    stops after the current iteration, writes a checkpoint and raises ``KeyboardInterrupt``
    with the command that resumes; a second Ctrl-C stops at once, keeping the last checkpoint.

    Launched by ``torchrun --nproc_per_node=P``, the P processes split each meta-batch and
    average their meta-gradients (:mod:`mamlkit.distributed`); only rank 0 writes files, and P
    must divide ``meta_batch``.

    Sinusoid regression needs no data, so a complete (tiny) run takes a moment:

    >>> import tempfile
    >>> from pathlib import Path
    >>> from mamlkit.config import EvalConfig, TrainConfig
    >>> from mamlkit.runs import eval_run, train_run
    >>> config = TrainConfig(
    ...     dataset="sinusoid", model="mlp", hidden=40, shots=10, queries=10, inner_lr=0.01,
    ...     meta_batch=4, iterations=3, log_every=1, progress=False,
    ... )
    >>> folder = tempfile.TemporaryDirectory()
    >>> run = Path(folder.name) / "run"
    >>> summary = train_run(config, run)
    >>> summary["iterations"], summary["task"]
    (3, 'regression')
    >>> sorted(path.name for path in run.iterdir())  # doctest: +NORMALIZE_WHITESPACE
    ['checkpoint.safetensors', 'config.yaml', 'metrics.jsonl', 'model.safetensors',
     'summary.json']
    >>> result = eval_run(run, EvalConfig(tasks=8, meta_batch=4), progress=False)
    >>> type(result).__name__, (run / "eval.json").is_file(), (run / "fits.png").is_file()
    ('RegressionEvalResult', True, True)
    >>> folder.cleanup()
    """
    device = resolve_device(config.device)
    world_size = world_size_from_environment()
    check_divisible(config.meta_batch, world_size)
    if world_size > 1 and resolve_algorithm(config.algorithm).bn_per_step_stats:
        raise ConfigError(
            f"{config.algorithm} collects per-step BatchNorm running statistics "
            "(bn_per_step_stats), which processes cannot share; train it without torchrun"
        )
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    with process_group(device) as group:
        return _train_in_group(
            config,
            Path(out),
            group,
            process_device(device, group),
            overwrite=overwrite,
            on_record=on_record,
            resume=resume,
        )


def _train_in_group(
    config: TrainConfig,
    out: Path,
    group: ProcessGroup,
    device: torch.device,
    *,
    overwrite: bool,
    on_record: RecordHook | None,
    resume: bool,
) -> dict[str, Any]:
    """:func:`train_run` in one process of ``group`` (the only one without torchrun)."""
    dataset = _dataset_rank_0_first(config, group)
    sampler = build_sampler(
        config, dataset, queries=config.queries, meta_batch=config.meta_batch, seed=config.seed
    )
    task = dataset_task(dataset)
    num_outputs = dataset.num_outputs if task == "regression" else None
    learner = build_learner(config, dataset.image_shape, task=task, num_outputs=num_outputs).to(
        device
    )
    optimizer = torch.optim.Adam(learner.parameters(), lr=config.outer_lr)
    scheduler = make_scheduler(config, optimizer)
    records: list[dict[str, Any]] = []
    start, seconds_so_far = 0, 0.0
    state = TrainingState(learner, config.algorithm, optimizer, scheduler, sampler)
    if resume:
        if not (out / CHECKPOINT_FILE).is_file():
            raise ConfigError(f"{out} has no {CHECKPOINT_FILE} to resume from")
        start, seconds_so_far, facts = load_checkpoint(out / CHECKPOINT_FILE, state)
        if start >= config.iterations:
            raise ConfigError(
                f"{out} already finished its {config.iterations} iterations; nothing to resume"
            )
        initial_weights = facts.get("initial_weights_sha256")
        records = _records_up_to(out / "metrics.jsonl", start) if group.is_main else []
    else:
        if group.is_main:
            prepare_out_dir(out, overwrite)
            atomic_write_text(out / CONFIG_FILE, dump_yaml(config))
        barrier(group)  # the other ranks write nothing, but stop here if rank 0 failed
        initial_weights = digest_state(dict(learner.model.named_parameters()))
    stream = TensorDigest()
    stop = {"requested": False}
    saved = {"iteration": start if resume else None}

    def checkpoint(done: int, seconds: float) -> None:
        saved["iteration"] = done
        if not group.is_main:
            return
        save_checkpoint(
            out / CHECKPOINT_FILE,
            state,
            iteration=done,
            train_seconds=seconds,
            run={"initial_weights_sha256": initial_weights},
        )

    def on_iteration(done: int, seconds: float) -> None:
        # all stop together. The result is not stored back into stop["requested"]: a Ctrl-C
        # that lands during the all-reduce would be overwritten and lost (seen: 1 run in 10
        # under torchrun then trained on until torchrun killed it); it is seen next iteration.
        stopping = any_rank(stop["requested"], group, device)
        if stopping or done % config.checkpoint_every == 0 or done == config.iterations:
            checkpoint(done, seconds)
        if stopping:
            raise KeyboardInterrupt(
                f"interrupted after iteration {done} of {config.iterations}; checkpoint saved; "
                f"continue with: mamlkit train --resume {out}"
            )

    metrics_file = (
        open(out / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115 (closed by the with)
        if group.is_main
        else contextlib.nullcontext()
    )
    with _stop_on_sigint(stop, grace=2.0 if group.distributed else 0.0), metrics_file as log:

        def on_log(record: dict[str, Any]) -> None:
            records.append(record)
            if not group.is_main:
                return
            log.write(json.dumps(record) + "\n")
            log.flush()
            if on_record is not None:
                on_record(record, learner)

        with PeakMemory(device) as peak, _naming_the_last_checkpoint(out, saved):
            losses = fit(
                learner,
                shard(digesting(sampler, stream), group),
                optimizer,
                iterations=config.iterations,
                scheduler=scheduler,
                device=device,
                progress=config.progress and group.is_main,
                log_every=config.log_every,
                on_log=on_log,
                description=f"train {config.algorithm}",
                start=start,
                train_seconds=seconds_so_far,
                on_iteration=on_iteration,
                after_backward=(
                    (lambda metrics: average_gradients(learner.parameters(), metrics, group))
                    if group.distributed
                    else None
                ),
            )
    tail = losses[-max(1, len(losses) // 10) :]
    summary = {
        "algorithm": config.algorithm,
        "task": task,
        "iterations": start + len(losses),
        "resumed_from_iteration": start or None,  # task_stream_sha256 covers the rest only
        "train_seconds": records[-1]["train_seconds"],
        "seconds_per_iteration": median_or_nan([r["iteration_seconds"] for r in records]),
        "peak_memory_bytes": peak.bytes,
        "peak_memory_method": peak.method,
        "final_train_loss": sum(tail) / len(tail),
        "final_train_accuracy": records[-1].get("accuracy"),  # None for regression
        "learned_inner_lrs": learner.learned_inner_lrs(),
        "initial_weights_sha256": initial_weights,
        "task_stream_sha256": stream.hexdigest(),
        "device": str(device),
        "processes": group.world_size,  # peak memory is rank 0's
        "execution": learner.execution_strategy,
        "outer_lr_schedule": outer_lr_schedule(config),
        "environment": environment(),
    }
    if group.is_main:
        save_learner(
            out / WEIGHTS_FILE, learner, config, dataset.image_shape, num_outputs=num_outputs
        )
        atomic_write_json(out / "summary.json", summary)
    return summary


def load_run(
    run_dir: str | Path, *, device: torch.device | None = None
) -> tuple[TrainConfig, MetaLearner]:
    """Rebuild the config and the trained learner of a run folder.

    The learner is built from ``config.yaml`` and the shape and task recorded in
    ``model.safetensors``, then loaded strictly; a folder that is not a run, or weights that do
    not fit the config, are errors naming the file. ``device``: where to move the learner.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no run folder at {run_dir}")
    if not (run_dir / CONFIG_FILE).is_file():
        raise FileNotFoundError(
            f"{run_dir} has no {CONFIG_FILE}; is it a folder written by mamlkit train?"
        )
    config = build_config(TrainConfig, load_yaml(run_dir / CONFIG_FILE))
    tensors, metadata = load_tensors(run_dir / WEIGHTS_FILE)
    if metadata.get("format") != WEIGHTS_FORMAT:
        raise ValueError(f"{run_dir / WEIGHTS_FILE} is not a mamlkit learner file")
    if metadata.get("algorithm") != config.algorithm:
        raise ValueError(
            f"{run_dir / WEIGHTS_FILE} holds a {metadata.get('algorithm')!r} learner but "
            f"{CONFIG_FILE} says {config.algorithm!r}"
        )
    image_shape = tuple(json.loads(metadata.get("image_shape", "[]")))
    if not image_shape:
        raise ValueError(
            f"{run_dir / WEIGHTS_FILE} does not record the input shape it was trained on"
        )
    task = metadata.get("task", "classification")
    outputs = metadata.get("num_outputs")
    learner = build_learner(
        config, image_shape, task=task, num_outputs=int(outputs) if outputs else None
    )
    try:
        learner.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        raise ValueError(
            f"{run_dir / WEIGHTS_FILE} does not fit the configured model: {error}"
        ) from None
    if device is not None:
        learner.to(device)
    return config, learner


def evaluation_sampler(config: TrainConfig, dataset: Any, evaluation: EvalConfig) -> Any:
    """The test-task stream ``evaluation`` describes (its queries, meta-batch and seed)."""
    return build_sampler(
        config,
        dataset,
        queries=evaluation.queries,
        meta_batch=evaluation.meta_batch,
        seed=evaluation.seed,
    )


def eval_run(
    run_dir: str | Path,
    evaluation: EvalConfig | None = None,
    *,
    device: str | None = None,
    data_root: str | None = None,
    progress: bool = True,
) -> EvalResult | RegressionEvalResult:
    """Evaluate a trained run as ``evaluation`` says; writes ``eval.json`` into the run folder.

    A regression run (e.g. ``sinusoid``) gives a :class:`RegressionEvalResult` (MSE) and also
    writes ``fits.png``: the true function, the support points and the predictions before
    adaptation, after one step and after K steps for the first 4 test tasks (when its sampler
    has ``sample_with_tasks``, as the sinusoid's does). ``device`` and ``data_root`` replace the
    run's own (e.g. to evaluate on another machine); see :func:`train_run` for an example.
    """
    evaluation = evaluation or EvalConfig()
    run_dir = Path(run_dir)
    config, learner = load_run(run_dir)
    if data_root is not None:
        config.data_root = data_root
    target = resolve_device(device or config.device)
    learner.to(target)
    dataset = build_dataset(config, evaluation.split)
    sampler = evaluation_sampler(config, dataset, evaluation)
    tasks_digest = TensorDigest()
    result = evaluate(
        learner,
        digesting(sampler, tasks_digest),
        tasks=evaluation.tasks,
        inner_steps=evaluation.inner_steps,
        device=target,
        progress=progress,
    )
    record = {
        **evaluation.to_dict(),
        **result.to_dict(),  # its inner_steps: the steps used, also when the config's is None
        "shots": config.shots,
        "test_tasks_sha256": tasks_digest.hexdigest(),
    }
    if isinstance(result, RegressionEvalResult):
        if hasattr(sampler, "sample_with_tasks"):
            record["fits"] = write_fits(run_dir / FITS_FILE, learner, config, evaluation, dataset)
    else:
        record["ways"] = config.ways
    atomic_write_json(run_dir / "eval.json", record)
    return result


def write_fits(
    path: Path,
    learner: MetaLearner,
    config: TrainConfig,
    evaluation: EvalConfig,
    dataset: Any,
    *,
    tasks: int = 4,
) -> dict[str, Any]:
    """``fits.png`` of a regression run: its fits to the first ``tasks`` evaluated test tasks
    (the first meta-batch of the evaluation stream, redrawn), after 1 and K inner steps. Returns
    what ``eval.json`` records of it (file name, steps, MSE against the true functions)."""
    sampler = evaluation_sampler(config, dataset, evaluation)
    episode, truth = sampler.sample_with_tasks()
    steps = evaluation.inner_steps or config.inner_steps
    errors = write_regression_fits(
        path,
        learner,
        episode,
        truth,
        steps=steps,
        x_range=getattr(sampler, "x_range", None),
        tasks=tasks,
    )
    return {"file": path.name, "tasks": len(errors["before"]), "steps": steps, **errors}
