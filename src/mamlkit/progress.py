"""Progress bars: tqdm's, picked so that a disabled bar never touches the notebook machinery.

``tqdm.auto`` gives a widget bar in Jupyter, but importing it there without ``ipywidgets``
warns ("IProgress not found") even when the bar is disabled. A disabled bar is therefore the
plain ``tqdm.std`` one (it prints nothing either way), and an enabled one falls back to the
text bar, without the warning, where widgets are unavailable.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any


def progress_bar(iterable: Iterable[Any] | None = None, *, enabled: bool, **kwargs: Any) -> Any:
    """A tqdm bar over ``iterable`` (or a manual one, ``total=...``), shown only if ``enabled``.

    Args:
        iterable: what to iterate over, or None for a bar advanced with ``update``.
        enabled: show the bar; False gives a silent bar with the same interface.
        **kwargs: passed to ``tqdm`` (``total``, ``desc``, ``unit``, ...).

    >>> with progress_bar(total=3, enabled=False, desc="demo") as bar:  # prints nothing
    ...     bar.update(3)
    >>> list(progress_bar("ab", enabled=False))
    ['a', 'b']
    """
    if not enabled:
        from tqdm.std import tqdm

        return tqdm(iterable, disable=True, **kwargs)
    with warnings.catch_warnings():
        # tqdm.autonotebook warns once, at import, when Jupyter lacks ipywidgets, then uses
        # the text bar: the fallback is what we want, the warning is noise.
        warnings.filterwarnings("ignore", message="IProgress not found")
        from tqdm.auto import tqdm
    return tqdm(iterable, **kwargs)
