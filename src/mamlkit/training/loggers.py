"""Where a run's metrics go besides ``metrics.jsonl``: CSV tables and TensorBoard event files.

``metrics.jsonl`` is the run's record (resume and ``mamlkit compare`` read it), so it is always
written (:class:`~mamlkit.training.callbacks.MetricsLog`). ``--logger csv`` and
``--logger tensorboard`` add writers that receive the same records:

- ``csv``: training records as the rows of ``metrics.csv``, validation records as those of
  ``validation.csv`` (two tables without holes, each ready for ``pandas.read_csv``; the columns
  are the records' keys, in the order they first appear);
- ``tensorboard``: every number of a record as a scalar (:func:`scalar_tags`: ``train/loss``,
  ``validation/accuracy``, ...) at step ``iteration``, in ``tensorboard/`` of the run folder,
  through ``torch.utils.tensorboard`` (the ``mamlkit[tensorboard]`` extra).

Each writer starts from the records a run already has (none for a new run; when resuming, those
up to the checkpoint that ``metrics.jsonl`` keeps), rewriting its files from them, so a resumed
run never repeats a row or a step, and a logger added on resume holds the whole history.
"""

from __future__ import annotations

import csv
import importlib.util
import io
from collections.abc import Iterable, Sequence
from numbers import Real
from pathlib import Path
from typing import Any

from mamlkit.errors import ConfigError
from mamlkit.io import atomic_write_text
from mamlkit.training.config import logger_names
from mamlkit.training.loop import Record
from mamlkit.training.run_folder import (
    EVENT_FILES,
    METRICS_CSV_FILE,
    TENSORBOARD_DIR,
    VALIDATION_CSV_FILE,
)
from mamlkit.training.validation import is_validation_record

#: The install command named when TensorBoard is asked for but missing.
TENSORBOARD_INSTALL = "pip install 'mamlkit[tensorboard]'"


class MetricsWriter:
    """One destination of a run's records: :meth:`open` before the first, :meth:`write` each
    record (training and validation ones alike), :meth:`close` at the end."""

    def open(self) -> None:
        """Start writing (e.g. rewrite the files from the records the run already has)."""

    def write(self, record: Record) -> None:
        """Write one more record (a training or a validation one)."""

    def close(self) -> None:
        """Finish writing: flush and close what is open."""


class _CsvTable:
    """A CSV file of records: one row each, a column per key. A record with a key the header
    lacks (rare: records of one kind share their keys) rewrites the file with the wider header."""

    def __init__(self, path: Path, rows: Iterable[Record]) -> None:
        self.path = path
        self.rows = list(rows)
        self.columns: list[str] = []

    def rewrite(self) -> None:
        """The file from ``rows`` (no file while there are none)."""
        self.columns = list(dict.fromkeys(key for row in self.rows for key in row))
        if not self.rows:
            self.path.unlink(missing_ok=True)
            return
        text = io.StringIO()
        writer = csv.DictWriter(text, self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, text.getvalue())

    def append(self, record: Record) -> None:
        self.rows.append(record)
        if not self.columns or not record.keys() <= set(self.columns):
            self.rewrite()
            return
        with open(self.path, "a", encoding="utf-8", newline="") as file:
            csv.DictWriter(file, self.columns, lineterminator="\n").writerow(record)


class CsvLog(MetricsWriter):
    """Training records as the rows of ``metrics.csv``, validation records as those of
    ``validation.csv`` (written with the first validation evaluation), in ``folder``.

    Numbers are written as Python prints them, so they read back exactly; ``history``: the
    records the run already has (the files are rewritten from them on :meth:`open`).

    >>> import csv, tempfile
    >>> from pathlib import Path
    >>> from mamlkit.training.loggers import CsvLog
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     log = CsvLog(Path(folder))
    ...     log.open()
    ...     log.write({"iteration": 10, "loss": 0.5, "train_seconds": 1.25})
    ...     log.write({"iteration": 10, "train_seconds": 1.25, "val_accuracy": 0.75,
    ...                "val_ci95": 0.02, "val_loss": 0.6, "val_tasks": 200})
    ...     print((Path(folder) / "metrics.csv").read_text(), end="")
    ...     print((Path(folder) / "validation.csv").read_text(), end="")
    iteration,loss,train_seconds
    10,0.5,1.25
    iteration,train_seconds,val_accuracy,val_ci95,val_loss,val_tasks
    10,1.25,0.75,0.02,0.6,200
    """

    def __init__(self, folder: Path, history: Sequence[Record] = ()) -> None:
        self.training = _CsvTable(
            folder / METRICS_CSV_FILE, (r for r in history if not is_validation_record(r))
        )
        self.validation = _CsvTable(
            folder / VALIDATION_CSV_FILE, (r for r in history if is_validation_record(r))
        )

    def open(self) -> None:
        self.training.rewrite()
        self.validation.rewrite()

    def write(self, record: Record) -> None:
        (self.validation if is_validation_record(record) else self.training).append(record)


def scalar_tags(record: Record) -> dict[str, float]:
    """A record's numbers by TensorBoard tag: ``train/KEY`` for a training record,
    ``validation/KEY`` (``val_`` dropped) for a validation record; the iteration is the step.

    >>> from mamlkit.training.loggers import scalar_tags
    >>> scalar_tags({"iteration": 5, "loss": 0.5, "accuracy": 0.8, "train_seconds": 2.0})
    {'train/loss': 0.5, 'train/accuracy': 0.8, 'train/train_seconds': 2.0}
    >>> scalar_tags({"iteration": 5, "train_seconds": 2.0, "val_accuracy": 0.9,
    ...              "val_ci95": 0.01, "val_loss": 0.3, "val_tasks": 200})
    {'validation/train_seconds': 2.0, 'validation/accuracy': 0.9, 'validation/ci95': 0.01,
     'validation/loss': 0.3, 'validation/tasks': 200.0}
    """
    validation = is_validation_record(record)
    return {
        (f"validation/{key.removeprefix('val_')}" if validation else f"train/{key}"): float(value)
        for key, value in record.items()
        if key != "iteration" and isinstance(value, Real) and not isinstance(value, bool)
    }


class TensorBoardLog(MetricsWriter):
    """Every record's numbers as TensorBoard scalars (:func:`scalar_tags`) at step
    ``iteration``, in event files under ``folder``; flushed after each record, so TensorBoard
    shows a run as it trains. :meth:`open` replaces the event files already there with one
    written from ``history`` (the records the run already has)."""

    def __init__(self, folder: Path, history: Sequence[Record] = ()) -> None:
        self.folder = folder
        self.history = list(history)
        self.writer: Any = None

    def open(self) -> None:
        require_tensorboard()
        # torch.utils.tensorboard imports the optional tensorboard package: only when asked for
        from torch.utils.tensorboard import SummaryWriter

        for events in self.folder.glob(EVENT_FILES):
            events.unlink()
        self.writer = SummaryWriter(str(self.folder))
        for record in self.history:
            self._add(record)
        self.writer.flush()

    def _add(self, record: Record) -> None:
        for tag, value in scalar_tags(record).items():
            self.writer.add_scalar(tag, value, global_step=record["iteration"])

    def write(self, record: Record) -> None:
        self._add(record)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def require_tensorboard() -> None:
    """A :class:`ConfigError` naming the install command when TensorBoard is not installed."""
    if importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(
            f"--logger tensorboard needs the tensorboard package, which is not installed: "
            f"{TENSORBOARD_INSTALL} (or drop tensorboard from --logger)"
        )


def check_loggers(logger: str) -> None:
    """Check that every logger ``logger`` names can write: an unknown name, or TensorBoard
    without its package, is a :class:`ConfigError` (before any data is read). The package is
    checked here, not when the config is built, so a run logged to TensorBoard can still be
    evaluated where TensorBoard is not installed."""
    if "tensorboard" in logger_names(logger):
        require_tensorboard()


def metrics_writers(
    logger: str, folder: Path, history: Sequence[Record] = ()
) -> list[MetricsWriter]:
    """The writers ``logger`` names besides ``metrics.jsonl`` (e.g. ``"jsonl,csv"``), writing
    into the run folder ``folder`` and starting from ``history``."""
    names = logger_names(logger)
    writers: list[MetricsWriter] = []
    if "csv" in names:
        writers.append(CsvLog(folder, history))
    if "tensorboard" in names:
        writers.append(TensorBoardLog(folder / TENSORBOARD_DIR, history))
    return writers
