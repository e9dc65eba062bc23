"""Figures of a run folder: ``fits.png``, the fits of a regression learner to a few test tasks.

matplotlib is optional (``pip install 'mamlkit[plots]'``): :func:`plots_unavailable` tells
whether figures can be drawn, and what a user without it is told instead. It is imported only
when a figure is drawn, and only through its object API
(:class:`matplotlib.figure.Figure`, rendered by the Agg canvas): no GUI backend is needed and the
global pyplot state is left alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mamlkit.learner import MetaLearner

FITS_FILE = "fits.png"

#: The command that installs what the figures need (matplotlib, the ``plots`` extra).
PLOTS_INSTALL = "pip install 'mamlkit[plots]'"


def plots_unavailable() -> str | None:
    """``None`` when matplotlib can be imported; else the one-line note that says the figures
    were skipped and how to get them (matplotlib is an optional dependency: the ``plots`` extra).
    ``mamlkit eval`` of a regression run and ``mamlkit compare``/``report`` write everything
    else without it, and print this note."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return f"plots skipped: matplotlib is not installed ({PLOTS_INSTALL} adds it)"
    return None


def fit_curves(
    learner: MetaLearner,
    support_x: Tensor,
    support_y: Tensor,
    grid: Tensor,
    steps: Sequence[int],
) -> dict[int, np.ndarray]:
    """The learner's outputs on ``grid`` (``[B, G, ...]``, one row of inputs per task) before
    adaptation (key 0) and after adapting to each task's support set for each of ``steps``.

    Values are float64 arrays ``[B, G, outputs]``; no meta-graph is kept, and the learner's
    train/eval mode is restored.

    >>> import torch
    >>> from mamlkit import MetaLearner
    >>> from mamlkit.data import SinusoidSampler
    >>> from mamlkit.models import MLP
    >>> from mamlkit.training.fits import fit_curves
    >>> learner = MetaLearner(MLP(), "maml", inner_lr=0.01, task="regression")
    >>> episode = SinusoidSampler(shots=5, queries=5, meta_batch=2).sample()
    >>> grid = torch.linspace(-5, 5, 50).reshape(1, 50, 1).expand(2, 50, 1)
    >>> curves = fit_curves(learner, episode.support_x, episode.support_y, grid, steps=[1, 5])
    >>> sorted(curves), curves[5].shape
    ([0, 1, 5], (2, 50, 1))
    """
    tasks, points = grid.shape[:2]
    was_training = learner.training
    learner.eval()
    try:
        with torch.no_grad():
            before = learner(grid.reshape(tasks * points, *grid.shape[2:]))
            curves = {0: before.reshape(tasks, points, -1)}
            for k in steps:
                curves[k] = learner.adapt(support_x, support_y, steps=k)(grid).reshape(
                    tasks, points, -1
                )
    finally:
        learner.train(was_training)
    return {k: v.double().cpu().numpy() for k, v in curves.items()}


def write_regression_fits(
    path: str | Path,
    learner: MetaLearner,
    episode: Any,
    truth: Callable[[np.ndarray], np.ndarray],
    *,
    steps: int,
    x_range: tuple[float, float] | None = None,
    tasks: int = 4,
    points: int = 200,
) -> dict[str, list[float]]:
    """Plot the fits of a 1-D regression learner to the first ``tasks`` tasks of ``episode``.

    Each panel shows the true function (``truth(x)`` for ``x`` of shape ``[B, points]``, e.g. a
    :class:`~mamlkit.data.SinusoidTasks`), the K support points, and the learner's prediction
    before adaptation, after one inner step and after ``steps`` steps, on ``points`` inputs
    spread over ``x_range`` (default: the support inputs' range). Writes a PNG to ``path`` and
    returns the mean squared error against the true function on those inputs, per task, under
    ``"before"``, ``"step_1"`` and ``"step_K"`` (K = ``steps``). :func:`mamlkit.training.eval_run`
    draws ``fits.png`` of a regression run with it (its docstring has an example).
    """
    from matplotlib.figure import Figure

    support_x, support_y = episode[0], episode[1]
    if support_x.shape[2:] != (1,) or support_y.shape[2:] != (1,):
        raise ValueError(
            "fits can only be drawn for one input and one output per example, got inputs "
            f"{list(support_x.shape[2:])} and targets {list(support_y.shape[2:])}"
        )
    shown = min(tasks, support_x.shape[0])
    device = next(learner.parameters()).device
    sx = support_x[:shown].to(device)
    sy = support_y[:shown].to(device)
    if x_range is None:
        x_range = (float(support_x.min()), float(support_x.max()))
    xs = np.linspace(x_range[0], x_range[1], points)
    true_y = np.asarray(truth(np.broadcast_to(xs, (support_x.shape[0], points))))[:shown]
    grid = torch.as_tensor(xs, dtype=sx.dtype, device=device).reshape(1, points, 1)
    wanted = sorted({1, steps})
    curves = fit_curves(learner, sx, sy, grid.expand(shown, points, 1), wanted)
    curves = {k: v[..., 0] for k, v in curves.items()}
    errors = {k: ((v - true_y) ** 2).mean(axis=1).tolist() for k, v in curves.items()}

    columns = min(shown, 2)
    rows = -(-shown // columns)
    fig = Figure(figsize=(5.2 * columns, 3.6 * rows))
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    styles = {0: ("pre-update", "tab:gray", "--")}
    styles[1] = ("after 1 step", "tab:blue", "-")
    if steps != 1:
        styles[steps] = (f"after {steps} steps", "tab:red", "-")
    for b, ax in enumerate(axes):
        if b >= shown:
            ax.set_visible(False)
            continue
        ax.plot(xs, true_y[b], color="black", linewidth=2, label="true function")
        for k, (label, color, style) in styles.items():
            ax.plot(xs, curves[k][b], color=color, linestyle=style, label=label)
        ax.scatter(
            sx[b, :, 0].cpu().numpy(),
            sy[b, :, 0].cpu().numpy(),
            color="black",
            marker="^",
            zorder=3,
            label=f"{sx.shape[1]} support points",
        )
        title = f"task {b + 1}"
        if hasattr(truth, "amplitude") and hasattr(truth, "phase"):
            title += f": A={truth.amplitude[b]:.2f}, phase={truth.phase[b]:.2f}"
        ax.set_title(
            f"{title}\nMSE vs true: {errors[0][b]:.3f} before, {errors[steps][b]:.3f} after "
            f"{steps} step{'s' if steps != 1 else ''}",
            fontsize=9,
        )
        ax.set_xlabel("x")
        ax.set_ylabel("y")
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle(f"{learner.algorithm.name}: fits to {shown} test tasks")
    fig.tight_layout()
    fig.savefig(Path(path), dpi=110)
    return {
        "before": errors[0],
        "step_1": errors[1],
        "step_K": errors[steps],
    }
