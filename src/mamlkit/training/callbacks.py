"""The callbacks a training run is made of: the metrics file, checkpoints with the Ctrl-C stop,
and averaging over torchrun's processes. :func:`mamlkit.training.train_run` composes them; each
also works with :func:`mamlkit.fit` on its own."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import torch

from mamlkit.learner import MetaLearner
from mamlkit.training.checkpoints import TrainingState, save_checkpoint
from mamlkit.training.distributed import ProcessGroup, any_rank, average_gradients
from mamlkit.training.interrupts import StopRequest
from mamlkit.training.loggers import MetricsWriter
from mamlkit.training.loop import Callback, LoopState, Record


class MetricsLog(Callback):
    """Keeps every logged record (``records``) and appends it as a JSON line to ``path``
    (``None``: keep only, e.g. on a process that writes no files), and hands every record to
    ``writers`` too (:mod:`mamlkit.training.loggers`: CSV tables, TensorBoard).

    Use it as a context manager, which opens the writers and closes the file and the writers.

    >>> import tempfile
    >>> from pathlib import Path
    >>> from mamlkit.training.callbacks import MetricsLog
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     with MetricsLog(Path(folder) / "metrics.jsonl") as log:
    ...         log.on_log({"iteration": 1, "loss": 0.5})
    ...     print((Path(folder) / "metrics.jsonl").read_text(), end="")
    {"iteration": 1, "loss": 0.5}
    """

    def __init__(
        self,
        path: Path | None,
        records: list[Record] | None = None,
        writers: Sequence[MetricsWriter] = (),
    ) -> None:
        self.records = [] if records is None else records
        self._file: IO[str] | None = None
        self.path = path
        self.writers = list(writers)

    def __enter__(self) -> MetricsLog:
        with contextlib.ExitStack() as opened:  # a writer that fails to open closes the others
            if self.path is not None:
                self._file = opened.enter_context(open(self.path, "a", encoding="utf-8"))
            for writer in self.writers:
                writer.open()
                opened.callback(writer.close)
            opened.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        for writer in self.writers:
            writer.close()

    def on_log(self, record: Record) -> None:
        """Keep ``record``; write and flush it as one line."""
        self.records.append(record)
        self.write(record)

    def write(self, record: Record) -> None:
        """Append ``record`` to the file and the writers only, without keeping it (e.g. a
        validation evaluation's record)."""
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        for writer in self.writers:
            writer.write(record)


class Checkpoints(Callback):
    """Writes ``checkpoint.safetensors`` every ``every`` iterations and at the last, and stops
    training after the current iteration when a stop was requested (Ctrl-C) on any process.

    Args:
        path: the checkpoint file (written by the main process only).
        state: the run objects whose state it holds.
        every: iterations between checkpoints.
        iterations: the run's total (a checkpoint is always written at the end).
        stop: the Ctrl-C flag (:func:`~mamlkit.training.interrupts.stop_on_sigint`).
        group: the processes training together; the stop is agreed by all of them.
        device: where the vote's tensor lives.
        run_facts: JSON-able facts carried across a resume (the initial-weights digest).
        resume_command: the command that continues the run, named when it stops.

    ``saved`` is the iteration of the last checkpoint written (``None`` before any).
    """

    def __init__(
        self,
        path: Path,
        state: TrainingState,
        *,
        every: int,
        iterations: int,
        stop: StopRequest,
        group: ProcessGroup,
        device: torch.device,
        run_facts: dict[str, Any],
        resume_command: str,
        saved: int | None = None,
    ) -> None:
        self.path, self.state, self.every, self.iterations = path, state, every, iterations
        self.stop, self.group, self.device = stop, group, device
        self.run_facts, self.resume_command = run_facts, resume_command
        self.saved = saved

    def on_iteration_end(self, state: LoopState) -> None:
        """Vote on stopping, checkpoint when due (or stopping), then stop if asked."""
        # All stop together. The vote is not stored back into stop.requested: a Ctrl-C that
        # lands during the all-reduce would be overwritten and lost (seen: 1 run in 10 under
        # torchrun then trained on until torchrun killed it); it is seen next iteration.
        stopping = any_rank(self.stop.requested, self.group, self.device)
        # an early stop (patience, time budget) decided on one process ends training on all
        ending = state.stop_reason is not None
        if self.group.distributed:
            ending = any_rank(ending, self.group, self.device)
        if ending and state.stop_reason is None:
            state.stop_reason = "another process stopped"
        done = state.iteration
        if stopping or ending or done % self.every == 0 or done == self.iterations:
            self.write(done, state.train_seconds)
        if stopping:
            raise KeyboardInterrupt(
                f"interrupted after iteration {done} of {self.iterations}; checkpoint saved; "
                f"continue with: {self.resume_command}"
            )

    def write(self, done: int, seconds: float) -> None:
        """The checkpoint after ``done`` iterations (on the main process)."""
        self.saved = done
        if self.group.is_main:
            save_checkpoint(
                self.path, self.state, iteration=done, train_seconds=seconds, run=self.run_facts
            )

    @contextlib.contextmanager
    def naming_the_last_one(self) -> Any:
        """A numerical failure inside says which checkpoint is the last good one (it is kept
        as it is)."""
        try:
            yield
        except FloatingPointError as error:
            if self.saved is None:
                raise FloatingPointError(f"{error}; no checkpoint had been written yet") from None
            raise FloatingPointError(
                f"{error}; the last good checkpoint (iteration {self.saved}) is kept in {self.path}"
            ) from None


class AverageOverProcesses(Callback):
    """Under torchrun: average the meta-gradients and the metrics over every process after the
    backward pass (see :mod:`mamlkit.training.distributed`)."""

    def __init__(self, learner: MetaLearner, group: ProcessGroup) -> None:
        self.learner, self.group = learner, group

    def after_backward(self, metrics: dict[str, float]) -> dict[str, float]:
        """The all-reduced gradients and metrics."""
        return average_gradients(self.learner.parameters(), metrics, self.group)
