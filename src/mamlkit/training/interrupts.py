"""Ctrl-C during training: the first one stops after the current iteration (with a checkpoint),
a second one stops at once."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Iterator


class StopRequest:
    """Whether a stop has been asked for (``requested``), set by :func:`stop_on_sigint`.

    >>> from mamlkit.training.interrupts import StopRequest
    >>> StopRequest().requested
    False
    """

    def __init__(self) -> None:
        self.requested = False


@contextlib.contextmanager
def stop_on_sigint(stop: StopRequest, *, grace: float = 0.0) -> Iterator[None]:
    """First Ctrl-C: ask training to stop after the current iteration (``stop.requested``);
    a second one more than ``grace`` seconds later interrupts at once (under torchrun each worker
    gets the terminal's SIGINT and the one torchrun forwards, which count as one). Only in the
    main thread, where signals can be handled."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    first = {"at": 0.0}

    def request(signum: int, frame: object) -> None:
        if stop.requested and time.monotonic() - first["at"] < grace:
            return
        if stop.requested:
            raise KeyboardInterrupt(
                "interrupted again: stopped at once; the last checkpoint is kept"
            )
        stop.requested = True
        first["at"] = time.monotonic()
        print("\nstopping after this iteration (Ctrl-C again to stop at once)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, request)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
