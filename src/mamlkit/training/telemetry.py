"""What a run records about itself: fingerprints of what it saw, the memory it used, where it ran.

* SHA-256 **fingerprints** of tensors and episode streams: a comparison is fair only if every
  algorithm trains on the same episodes from the same initial weights and is tested on the same
  tasks; runs record these digests so anyone can check it.
* **Peak memory** of a stretch of work, what training costs beyond what was already resident. On
  CPU: the process's peak resident set size (Linux ``VmHWM``) above its resident size when the
  measurement started; the peak counter is reset at the start (``/proc/self/clear_refs``) so data
  loading before it does not count. Where the reset is not allowed, the lifetime peak is used and
  ``method`` says so. On CUDA: ``torch.cuda.max_memory_allocated`` after resetting the peak stats.
* The **environment**: versions, CPU, threads and GPU, in every ``summary.json``.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import platform
import re
import statistics
import subprocess
from collections.abc import Iterable, Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch


class TensorDigest:
    """Incremental SHA-256 over the dtype, shape and bytes of a sequence of tensors.

    Equal digests mean the same tensors in the same order (same dtypes, shapes and values);
    the device does not matter.

    >>> import torch
    >>> from mamlkit.training.telemetry import TensorDigest
    >>> a, b = TensorDigest(), TensorDigest()
    >>> a.update(torch.zeros(2), torch.ones(3))
    >>> b.update(torch.zeros(2))
    >>> b.update(torch.ones(3))
    >>> a.hexdigest() == b.hexdigest()
    True
    """

    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def update(self, *tensors: torch.Tensor) -> None:
        """Add ``tensors``, in order, to the digest."""
        for tensor in tensors:
            data = tensor.detach().to("cpu").contiguous()
            self._hash.update(f"{data.dtype}{tuple(data.shape)}".encode())
            # reshape(-1): a 0-dim tensor (e.g. BatchNorm's step counter) cannot be viewed as bytes
            raw = data.reshape(-1).view(torch.uint8) if data.numel() else None
            self._hash.update(raw.numpy().tobytes() if raw is not None else b"")

    def hexdigest(self) -> str:
        """The SHA-256 so far, as 64 hex digits (more updates may follow)."""
        return self._hash.hexdigest()


def digest_state(state: dict[str, torch.Tensor]) -> str:
    """Fingerprint of a state dict (names and tensors, in name order).

    >>> import torch
    >>> from mamlkit.training.telemetry import digest_state
    >>> digest_state({"w": torch.zeros(2)}) == digest_state({"w": torch.zeros(2)})
    True
    >>> digest_state({"w": torch.zeros(2)}) == digest_state({"w": torch.zeros(2).double()})
    False
    """
    digest = TensorDigest()
    for name in sorted(state):
        digest._hash.update(name.encode())
        digest.update(state[name])
    return digest.hexdigest()


def digesting(batches: Iterable[Any], digest: TensorDigest) -> Iterator[Any]:
    """Yield ``batches`` unchanged while adding every tensor of each batch to ``digest``.

    How a run fingerprints the task stream it trains on (non-tensor items are skipped).

    >>> import torch
    >>> from mamlkit.training.telemetry import TensorDigest, digesting
    >>> digest = TensorDigest()
    >>> list(digesting([(torch.zeros(2), "label")], digest))
    [(tensor([0., 0.]), 'label')]
    """
    for batch in batches:
        digest.update(*(t for t in batch if isinstance(t, torch.Tensor)))
        yield batch


_STATUS = Path("/proc/self/status")


def _status_kib(key: str) -> int | None:
    try:
        match = re.search(rf"^{key}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


class PeakMemory:
    """``with PeakMemory(device) as peak: ...`` then ``peak.bytes`` and ``peak.method``.

    ``bytes`` is the peak above what was resident at the start (``None`` where it cannot be
    measured); ``method`` says how it was measured (see the module docstring), so reports can
    say what their numbers mean.

    >>> import torch
    >>> from mamlkit.training.telemetry import PeakMemory
    >>> with PeakMemory("cpu") as peak:
    ...     x = torch.ones(1_000_000)
    >>> peak.bytes is None or peak.bytes >= 0
    True
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.bytes: int | None = None
        self.method = "not measured"
        self._baseline = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.method = "torch.cuda.max_memory_allocated"
            return self
        self._baseline = _status_kib("VmRSS") or 0
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.method = "peak RSS (VmHWM, reset at start) minus RSS at start"
        except OSError:
            self.method = "lifetime peak RSS (VmHWM) minus RSS at start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.bytes = int(torch.cuda.max_memory_allocated(self.device))
            return
        peak = _status_kib("VmHWM")
        if peak is None:
            self.method = "not measured (no /proc/self/status on this system)"
            return
        self.bytes = max(0, peak - self._baseline) * 1024


def current_rss_bytes() -> int | None:
    """Resident set size of this process now (Linux), or ``None``."""
    with contextlib.suppress(TypeError):
        return _status_kib("VmRSS") * 1024  # type: ignore[operator]
    return None


def source_commit() -> str | None:
    """The git commit of the mamlkit source that runs, with ``+local changes`` when tracked files
    differ from it; ``None`` for an installed copy outside a git checkout (then the package
    version identifies it).

    >>> from mamlkit.training.telemetry import source_commit
    >>> commit = source_commit()
    >>> commit is None or len(commit.split()[0]) == 40
    True
    """
    checkout = Path(__file__).resolve().parents[3]
    if not (checkout / ".git").exists():
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "-C", str(checkout), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head} +local changes" if changes else head


def environment() -> dict[str, Any]:
    """Where and with what a run ran: the mamlkit version and commit, versions, CPU, threads,
    GPU (recorded in ``summary.json``, ``eval.json`` and comparison results).

    >>> from mamlkit.training.telemetry import environment
    >>> sorted(environment())  # doctest: +ELLIPSIS
    [...'commit', ...'date', 'mamlkit', 'platform', 'processor', 'python', 'torch', 'torch_threads']
    """
    env = {
        "mamlkit": _version(),
        "commit": source_commit(),
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


def _version() -> str:
    try:
        return version("mamlkit")
    except PackageNotFoundError:
        return "unknown"


def median_or_nan(values: list[float]) -> float:
    """The median of ``values``, or NaN for none (e.g. per-iteration times of an empty run).

    >>> from mamlkit.training.telemetry import median_or_nan
    >>> median_or_nan([3.0, 1.0, 2.0]), median_or_nan([])
    (2.0, nan)
    """
    return statistics.median(values) if values else float("nan")
