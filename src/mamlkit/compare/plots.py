"""The comparison's figures as PNG files (matplotlib, headless; optional: without it
:func:`~mamlkit.compare.write_report` writes the report without them and says how to get them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _smooth(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def write_plots(results: dict[str, Any], out: Path) -> dict[str, str]:
    """Write the figures into ``out``; returns ``{title: file name}`` of those written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    algorithms = results["algorithms"]
    written: dict[str, str] = {}

    def save(fig: Any, name: str, title: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written[title] = name

    fig, ax = plt.subplots(figsize=(7, 4))
    for a in algorithms:
        iters = [r["iteration"] for r in a["train_curve"]]
        losses = [r["loss"] for r in a["train_curve"]]
        window = max(1, len(losses) // 30)
        ax.plot(iters, _smooth(losses, window), label=a["name"])
    ax.set(
        xlabel="outer iteration",
        ylabel="meta-training loss (moving average)",
        title="Training loss",
    )
    ax.legend()
    save(fig, "training_loss.png", "Training loss vs iteration")

    def accuracy_vs_time(curve: str, score: str, what: str, name: str, marker: str) -> None:
        """One figure of every algorithm's ``curve`` points (``score`` +- its 95% CI) against
        training time; nothing when no algorithm has such points."""
        curves = {
            a["name"]: [p for p in a.get(curve) or [] if p.get(score) is not None]
            for a in algorithms
        }
        if not any(curves.values()):
            return
        fig, ax = plt.subplots(figsize=(7, 4))
        for label, pts in curves.items():
            if pts:
                ax.errorbar(
                    [p["train_seconds"] for p in pts],
                    [100 * p[score] for p in pts],
                    yerr=[100 * p[score.replace("accuracy", "ci95")] for p in pts],
                    marker=marker,
                    capsize=3 if marker == "o" else 2,
                    label=label,
                )
        ax.set(
            xlabel="training time (s)",
            ylabel=f"{what.lower()} accuracy (%)",
            title=f"{what} accuracy vs training time",
        )
        ax.legend()
        save(fig, name, f"{what} accuracy vs wall time")

    accuracy_vs_time("test_curve", "test_accuracy", "Test", "accuracy_vs_time.png", "o")
    accuracy_vs_time(
        "validation_curve", "val_accuracy", "Validation", "validation_vs_time.png", "."
    )

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for a in algorithms:
        steps = list(range(len(a["per_step_test_accuracy"])))
        left.plot(
            steps, [100 * v for v in a["per_step_test_accuracy"]], marker="o", label=a["name"]
        )
        right.plot(steps, a["per_step_test_loss"], marker="o", label=a["name"])
    left.set(
        xlabel="inner step (0 = before adaptation)",
        ylabel="test query accuracy (%)",
        title="Adaptation: accuracy per inner step",
    )
    right.set(
        xlabel="inner step (0 = before adaptation)",
        ylabel="test query loss",
        title="Adaptation: loss per inner step",
    )
    left.legend()
    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    save(fig, "adaptation_curves.png", "Per-step adaptation curves")

    fig, ax = plt.subplots(figsize=(7, 4))
    data = [[100 * v for v in a["task_accuracies"]] for a in algorithms]
    ax.violinplot(data, showmedians=True)
    ax.boxplot(data, widths=0.15, showfliers=False)
    ax.set_xticks(range(1, len(algorithms) + 1), [a["name"] for a in algorithms])
    ax.set(ylabel="per-task test accuracy (%)", title="Distribution of per-task test accuracy")
    save(fig, "task_accuracy_distribution.png", "Per-task test accuracy distribution")

    learners = [a for a in algorithms if a.get("learned_inner_lrs")]
    if learners:
        fig, axes = plt.subplots(1, len(learners), figsize=(9 * len(learners), 4), squeeze=False)
        for ax, a in zip(axes[0], learners, strict=True):
            for tensor, rates in a["learned_inner_lrs"].items():
                if tensor.endswith("weight"):
                    ax.plot(range(1, len(rates) + 1), rates, marker="o", label=tensor)
            ax.set(
                xlabel="inner step",
                ylabel="learned inner learning rate",
                title=f"{a['name']}: learned LRs of the weight tensors",
            )
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
        save(fig, "learned_lrs.png", "Learned inner learning rates")
    return written
