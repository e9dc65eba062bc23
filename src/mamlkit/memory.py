"""Peak memory of a stretch of work: what training costs beyond what was already resident.

On CPU: the process's peak resident set size (Linux ``VmHWM``) above its resident size when the
measurement started; the peak counter is reset at the start (``/proc/self/clear_refs``) so data
loading before it does not count. Where the reset is not allowed, the lifetime peak is used and
``method`` says so. On CUDA: ``torch.cuda.max_memory_allocated`` after resetting the peak stats.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import torch

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
    >>> from mamlkit.memory import PeakMemory
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
