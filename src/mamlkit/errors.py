"""Errors a user can fix, and how the command line reports them: one line and exit status 2.

Every layer raises ordinary exceptions (``ValueError``, ``FileNotFoundError`` ...) with messages
that say what is wrong and what to do; :class:`ConfigError` marks a bad run configuration. The
``mamlkit`` command and the comparison's worker processes turn them into one line on stderr with
:func:`run_guarded`, so no user ever reads a traceback from deep inside torch.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable


class ConfigError(ValueError):
    """A config file or value that cannot be used; the message says which key and why."""


def run_guarded(command: str, action: Callable[[], int]) -> int:
    """Run ``action``; an expected failure becomes one line on stderr and exit status 2.

    Ctrl-C gives status 130. ``MAMLKIT_DEBUG=1`` re-raises, for the full traceback.

    >>> from mamlkit.errors import run_guarded
    >>> def bad() -> int:
    ...     raise ValueError("ways must be >= 1, got 0")
    >>> run_guarded("train", bad)  # prints "mamlkit train: error: ways must be ..." on stderr
    2
    """
    try:
        return action()
    except KeyboardInterrupt as error:
        detail = f": {error}" if str(error) else ""
        print(f"mamlkit {command}: interrupted{detail}", file=sys.stderr)
        return 130
    except (ValueError, TypeError, KeyError, OSError, FloatingPointError) as error:
        if os.environ.get("MAMLKIT_DEBUG"):
            raise
        message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
        print(f"mamlkit {command}: error: {message}", file=sys.stderr)
        return 2
