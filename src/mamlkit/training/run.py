"""A training run: a config trained into its run folder, from the first iteration or resumed.

:func:`train_run` builds everything the config names (:mod:`.build`), prepares the run folder
(:mod:`.run_folder`), and runs :func:`~mamlkit.fit` with the run's callbacks (:mod:`.callbacks`):
the metrics file (and the loggers of ``--logger``, :mod:`.loggers`), checkpoints with the Ctrl-C
stop, and gradient averaging under torchrun.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from mamlkit.algorithms import resolve_algorithm
from mamlkit.errors import ConfigError
from mamlkit.io import atomic_write_json, atomic_write_text
from mamlkit.training.build import (
    build_dataset,
    build_learner,
    build_sampler,
    dataset_task,
    make_scheduler,
    outer_lr_schedule,
    resolve_device,
)
from mamlkit.training.callbacks import AverageOverProcesses, Checkpoints, MetricsLog
from mamlkit.training.checkpoints import CHECKPOINT_FILE, TrainingState, load_checkpoint
from mamlkit.training.config import TrainConfig, dump_yaml, validation_interval
from mamlkit.training.distributed import (
    ProcessGroup,
    barrier,
    check_divisible,
    process_device,
    process_group,
    shard,
    world_size_from_environment,
)
from mamlkit.training.interrupts import StopRequest, stop_on_sigint
from mamlkit.training.loggers import check_loggers, metrics_writers
from mamlkit.training.loop import Callback, LoopState, fit
from mamlkit.training.run_folder import (
    BEST_WEIGHTS_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    SUMMARY_FILE,
    WEIGHTS_FILE,
    load_config,
    prepare_out_dir,
    records_up_to,
    save_learner,
)
from mamlkit.training.telemetry import (
    PeakMemory,
    TensorDigest,
    digest_state,
    digesting,
    environment,
    median_or_nan,
)
from mamlkit.training.validation import (
    TimeBudget,
    Validation,
    is_validation_record,
    validation_score,
)
from mamlkit.vocabulary import TaskKind


def train_run(
    config: TrainConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    callbacks: Sequence[Callback] = (),
    resume: bool = False,
) -> dict[str, Any]:
    """Meta-train as ``config`` says, writing the run folder; returns ``summary.json``'s content.

    ``callbacks`` (:class:`~mamlkit.training.Callback`) run in the main process after the run's
    own (their time is not counted as training time). Peak memory is measured over training
    only, after the data is loaded. A checkpoint (:mod:`mamlkit.training.checkpoints`) is
    written every ``checkpoint_every`` iterations and at the end; ``resume=True`` continues the
    run in ``out`` from its checkpoint, exactly (the weights after N + M iterations are
    bit-identical to those of an uninterrupted run). Ctrl-C stops after the current iteration,
    writes a checkpoint and raises ``KeyboardInterrupt`` with the command that resumes; a second
    Ctrl-C stops at once, keeping the last checkpoint.

    Launched by ``torchrun --nproc_per_node=P``, the P processes split each meta-batch and
    average their meta-gradients (:mod:`mamlkit.training.distributed`); only rank 0 writes
    files, and P must divide ``meta_batch``.

    Sinusoid regression needs no data, so a complete (tiny) run takes a moment:

    >>> import tempfile
    >>> from pathlib import Path
    >>> from mamlkit.training import EvalConfig, TrainConfig, eval_run, train_run
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
    >>> str(result.task), (run / "eval.json").is_file(), (run / "fits.png").is_file()
    ('regression', True, True)
    >>> folder.cleanup()
    """
    check_loggers(config.logger)
    device = resolve_device(config.device)
    world_size = world_size_from_environment()
    check_divisible(config.meta_batch, world_size)
    if world_size > 1:
        hooks = resolve_algorithm(config.algorithm).hooks()
        refusal = hooks.refusal("processes")
        if refusal:
            raise ConfigError(refusal)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    with process_group(device) as group:
        return _train_in_group(
            config,
            Path(out),
            group,
            process_device(device, group),
            overwrite=overwrite,
            callbacks=callbacks,
            resume=resume,
        )


def _dataset_rank_0_first(config: TrainConfig, group: ProcessGroup) -> Any:
    """The training split; under torchrun rank 0 builds it first (downloading, decoding and
    caching as needed), so the other ranks read its files instead of writing them too."""
    if group.is_main:
        dataset = build_dataset(config, "train")
        barrier(group)
        return dataset
    barrier(group)
    return build_dataset(config, "train")


def _train_in_group(
    config: TrainConfig,
    out: Path,
    group: ProcessGroup,
    device: torch.device,
    *,
    overwrite: bool,
    callbacks: Sequence[Callback],
    resume: bool,
) -> dict[str, Any]:
    """:func:`train_run` in one process of ``group`` (the only one without torchrun)."""
    dataset = _dataset_rank_0_first(config, group)
    sampler = build_sampler(
        config,
        dataset,
        queries=config.queries,
        meta_batch=config.meta_batch,
        seed=config.seed,
        augment=True,
    )
    task = dataset_task(dataset)
    num_outputs = dataset.num_outputs if task == TaskKind.REGRESSION else None
    learner = build_learner(config, dataset.image_shape, task=task, num_outputs=num_outputs).to(
        device
    )
    optimizer = torch.optim.Adam(learner.parameters(), lr=config.outer_lr)
    scheduler = make_scheduler(config, optimizer)
    records: list[dict[str, Any]] = []
    logged: list[dict[str, Any]] = []  # every record of the iterations done (when resuming)
    history: list[dict[str, Any]] = []  # validation records of the iterations done
    done = LoopState()
    state = TrainingState(learner, config.algorithm, optimizer, scheduler, sampler)
    if resume:
        if not (out / CHECKPOINT_FILE).is_file():
            raise ConfigError(f"{out} has no {CHECKPOINT_FILE} to resume from")
        extended = _check_extension(out, config)
        done.iteration, done.train_seconds, facts = load_checkpoint(out / CHECKPOINT_FILE, state)
        stopped = _stopped_early(out, done.iteration)
        if stopped:
            raise ConfigError(
                f"{out} stopped early ({stopped}) after {done.iteration} iterations; its "
                "final and best weights are in place (train a new run to train longer)"
            )
        if done.iteration >= config.iterations:
            raise ConfigError(
                f"{out} already finished its {config.iterations} iterations; nothing to resume "
                f"(train it further with mamlkit train --resume {out} --iterations N, N > "
                f"{done.iteration})"
            )
        if extended and group.is_main:
            atomic_write_text(out / CONFIG_FILE, dump_yaml(config))
        initial_weights = facts.get("initial_weights_sha256")
        logged = records_up_to(out / METRICS_FILE, done.iteration) if group.is_main else []
        history = [r for r in logged if is_validation_record(r)]
        records = [r for r in logged if not is_validation_record(r)]
    else:
        if group.is_main:
            prepare_out_dir(out, overwrite)
            atomic_write_text(out / CONFIG_FILE, dump_yaml(config))
        barrier(group)  # the other ranks write nothing, but stop here if rank 0 failed
        initial_weights = digest_state(dict(learner.model.named_parameters()))
    stream = TensorDigest()
    stop = StopRequest()
    checkpoints = Checkpoints(
        out / CHECKPOINT_FILE,
        state,
        every=config.checkpoint_every,
        iterations=config.iterations,
        stop=stop,
        group=group,
        device=device,
        run_facts={"initial_weights_sha256": initial_weights},
        resume_command=f"mamlkit train --resume {out}",
        saved=done.iteration if resume else None,
    )
    log = MetricsLog(
        out / METRICS_FILE if group.is_main else None,
        records,
        writers=metrics_writers(config.logger, out, logged) if group.is_main else (),
    )
    run_callbacks: list[Callback] = []
    if group.distributed:
        run_callbacks.append(AverageOverProcesses(learner, group))
    run_callbacks.append(log)
    validation = _validation(config, learner, out, group, log, history, dataset.image_shape)
    if validation is not None:
        run_callbacks.append(validation)
    if config.budget_minutes is not None:
        run_callbacks.append(TimeBudget(60.0 * config.budget_minutes))
    if group.is_main:
        run_callbacks += callbacks
    run_callbacks.append(checkpoints)  # last: it sees every callback's request to stop
    started_at = done.iteration
    with (
        stop_on_sigint(stop, grace=2.0 if group.distributed else 0.0),
        log,
        PeakMemory(device) as peak,
        checkpoints.naming_the_last_one(),
    ):
        losses = fit(
            learner,
            shard(digesting(sampler, stream), group),
            optimizer,
            iterations=config.iterations,
            scheduler=scheduler,
            device=device,
            callbacks=run_callbacks,
            log_every=config.log_every,
            progress=config.progress and group.is_main,
            description=f"train {config.algorithm}",
            state=done,
        )
    tail = losses[-max(1, len(losses) // 10) :]
    summary = {
        "algorithm": config.algorithm,
        "task": task.value,
        "iterations": done.iteration,
        "stopped_early": done.stop_reason,  # "patience", "budget", or None: ran every iteration
        "resumed_from_iteration": started_at or None,  # task_stream_sha256 covers the rest
        "train_seconds": done.train_seconds,
        "seconds_per_iteration": median_or_nan([r["iteration_seconds"] for r in records]),
        "peak_memory_bytes": peak.bytes,
        "peak_memory_method": peak.method,
        "final_train_loss": sum(tail) / len(tail),
        "final_train_accuracy": records[-1].get("accuracy"),  # None for regression
        "learned_inner_lrs": learner.learned_inner_lrs(),
        "validation": _validation_summary(config, validation),
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
        atomic_write_json(out / SUMMARY_FILE, summary)
    return summary


#: Settings that may differ when a run is resumed: they change where and how it runs, not what
#: it computes (the iteration count is checked on its own).
FREE_ON_RESUME = (
    "iterations", "data_root", "download", "device", "threads", "progress", "log_every",
    "checkpoint_every", "logger",
)  # fmt: skip


def _check_extension(out: Path, config: TrainConfig) -> bool:
    """Whether resuming ``out`` with ``config`` changes its length (``--resume --iterations N``).

    Only the iteration count may differ from the run's own config. A new length is refused
    when something already trained depends on it: a cosine outer-LR schedule anneals over the
    whole run, so its learning rates so far would have been different. Every other schedule
    (MAML++'s multi-step loss and derivative-order annealing count absolute iterations) is
    unaffected, so the extended run is exactly the run that was asked for N iterations.
    """
    saved = load_config(out)
    changed = [
        key
        for key, value in config.to_dict().items()
        if key not in FREE_ON_RESUME and saved.to_dict()[key] != value
    ]
    if changed:
        raise ConfigError(
            f"resuming {out} with other settings ({', '.join(changed)}) would not continue the "
            "same run; only --iterations may change"
        )
    if config.iterations == saved.iterations:
        return False
    if outer_lr_schedule(config) == "cosine":
        raise ConfigError(
            f"{out} uses a cosine outer-LR schedule annealed over its {saved.iterations} "
            "iterations; changing its length would change the learning rates it already "
            "trained with, so it cannot be extended exactly (train a new run instead)"
        )
    return True


def _stopped_early(out: Path, iteration: int) -> str | None:
    """Why the run in ``out`` ended before its last iteration, if it finished that way."""
    path = out / SUMMARY_FILE
    if not path.is_file():
        return None
    summary = json.loads(path.read_text(encoding="utf-8"))
    if summary.get("iterations") == iteration:
        return summary.get("stopped_early")
    return None


def _validation(
    config: TrainConfig,
    learner: Any,
    out: Path,
    group: ProcessGroup,
    log: MetricsLog,
    history: list[dict[str, Any]],
    image_shape: tuple[int, ...],
) -> Validation | None:
    """The validation callback of a run with ``--validation`` (main process only): the same
    validation tasks every time, records appended to ``metrics.jsonl``, the best weights saved."""
    if not config.validation or not group.is_main:
        return None
    val_set = build_dataset(config, "val")
    task = dataset_task(val_set)
    num_outputs = val_set.num_outputs if task == TaskKind.REGRESSION else None

    def episodes() -> Any:
        return build_sampler(
            config,
            val_set,
            queries=15 if task == TaskKind.CLASSIFICATION else config.queries,
            meta_batch=25,
            seed=config.seed + 1,
        )

    def save_best(learner: Any, record: dict[str, Any]) -> None:
        facts = {"weights": "best", **record}
        save_learner(
            out / BEST_WEIGHTS_FILE,
            learner,
            config,
            image_shape,
            num_outputs=num_outputs,
            facts=facts,
        )

    return Validation(
        episodes,
        tasks=config.validation_tasks,
        every=validation_interval(config),
        iterations=config.iterations,
        inner_steps=config.validation_steps,
        write=log.write,
        save_best=save_best,
        patience=config.patience,
        history=history,
    )


def _validation_summary(
    config: TrainConfig, validation: Validation | None
) -> dict[str, Any] | None:
    """What ``summary.json`` records of the validation: the best evaluation and the settings."""
    if validation is None or validation.best is None:
        return None
    best = validation.best
    return {
        "best_iteration": best["iteration"],
        "best_score": validation_score(best),
        "best": best,
        "evaluations": len(validation.records),
        "every": validation.every,
        "tasks": validation.tasks,
        "patience": config.patience,
        "weights_file": BEST_WEIGHTS_FILE,
    }
