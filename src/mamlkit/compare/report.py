"""``report.md``: the comparison table, ratios and recommendations, all computed from results.

Nothing here is canned: every sentence is derived from the measured numbers in ``results.json``.
"""

from __future__ import annotations

import math
from typing import Any

from mamlkit.algorithms import resolve_algorithm


def _mib(value: int | None) -> str:
    return "not measured" if value is None else f"{value / 2**20:.0f} MiB"


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 10 else f"{value:.2f} s"


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def difference_is_significant(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two accuracies differ beyond their combined 95% interval (independent tasks)."""
    return abs(a["test_accuracy"] - b["test_accuracy"]) > math.hypot(a["test_ci95"], b["test_ci95"])


#: A curve has plateaued when its last third of evaluations improves on the best accuracy before
#: them by less than this many points (on 2026-12-04 H200 runs, MAML's Omniglot curve still
#: gained 0.9 points in its last third while rising steadily; a plateaued one gained 0.2).
PLATEAU_POINTS = 0.5


def convergence(algorithm: dict[str, Any]) -> dict[str, Any]:
    """Whether ``algorithm``'s accuracy curve had plateaued by the end of training.

    The curve is its validation evaluations when it has them, else its test-accuracy curve
    points. Converged: the best accuracy of the last third of the evaluations is less than
    :data:`PLATEAU_POINTS` above the best before them (a curve that fell counts: more training
    would not help, and the best weights are what is tested; ``peak`` says where it was).
    Fewer than 3 evaluations: unknown.

    >>> from mamlkit.compare.report import convergence
    >>> flat = [{"val_accuracy": v, "val_ci95": 0.01} for v in (0.90, 0.95, 0.953, 0.951)]
    >>> convergence({"validation_curve": flat})["converged"]
    True
    >>> rising = [{"test_accuracy": v, "test_ci95": 0.01} for v in (0.6, 0.7, 0.8)]
    >>> result = convergence({"test_curve": rising})
    >>> result["converged"], round(result["late_gain_points"], 1)
    (False, 10.0)
    >>> convergence({"test_curve": rising[:2]})["converged"] is None
    True
    """
    if algorithm.get("validation_curve"):
        scores = [p.get("val_accuracy") for p in algorithm["validation_curve"]]
        source = "validation"
    else:
        scores = [p["test_accuracy"] for p in algorithm.get("test_curve") or []]
        source = "test curve"
    scores = [s for s in scores if s is not None]
    if len(scores) < 3:
        return {"converged": None, "source": source, "evaluations": len(scores)}
    late = max(1, len(scores) // 3)
    gain = 100 * (max(scores[-late:]) - max(scores[:-late]))
    return {
        "converged": gain < PLATEAU_POINTS,
        "source": source,
        "evaluations": len(scores),
        "late_gain_points": gain,
        "peak": scores.index(max(scores)) + 1,  # which evaluation scored best (1-based)
    }


def _converged_text(algorithm: dict[str, Any]) -> str:
    state = convergence(algorithm)
    if state["converged"] is None:
        return f"unknown ({state['evaluations']} evaluations)"
    if not state["converged"]:
        return f"**no** ({state['late_gain_points']:+.1f} points late)"
    if state["late_gain_points"] <= -PLATEAU_POINTS:
        return f"past its peak (best at evaluation {state['peak']} of {state['evaluations']})"
    return f"yes ({state['late_gain_points']:+.1f} points late)"


def ratio_sentence(base: dict[str, Any], other: dict[str, Any]) -> str:
    """E.g. "fomaml is 2.9x faster and uses 41% less memory than maml, and is 1.2 points less
    accurate (within the 95% CIs)"."""
    speed = base["train_seconds"] / other["train_seconds"]
    speed_text = f"{speed:.1f}x faster" if speed >= 1 else f"{1 / speed:.1f}x slower"
    if base["peak_memory_bytes"] and other["peak_memory_bytes"] is not None:
        change = other["peak_memory_bytes"] / base["peak_memory_bytes"] - 1
        memory_text = f"uses {abs(100 * change):.0f}% {'less' if change < 0 else 'more'} memory"
    else:
        memory_text = "has no comparable memory figure"
    points = 100 * (other["test_accuracy"] - base["test_accuracy"])
    accuracy_text = f"{abs(points):.1f} points {'more' if points >= 0 else 'less'} accurate"
    verdict = "beyond" if difference_is_significant(base, other) else "within"
    return (
        f"**{other['name']}** is {speed_text} and {memory_text} than **{base['name']}**, and is "
        f"{accuracy_text} ({verdict} the 95% confidence intervals)."
    )


def recommendations(algorithms: list[dict[str, Any]]) -> list[str]:
    """Advice derived from the measurements: best accuracy, ties, cost, stability, overshooting.

    Only algorithms whose accuracy curve had plateaued (:func:`convergence`) are ranked: an
    unconverged accuracy is a snapshot of a run cut short, not the algorithm's result.
    """
    lines = []
    states = {a["name"]: convergence(a)["converged"] for a in algorithms}
    unconverged = [a["name"] for a in algorithms if states[a["name"]] is False]
    unknown = [a["name"] for a in algorithms if states[a["name"]] is None]
    if unconverged:
        lines.append(
            f"Not converged (still improving at the end, so not ranked): {', '.join(unconverged)}; "
            "train longer (more --iterations or --budget-minutes) before choosing by accuracy."
        )
    if unknown:
        lines.append(
            f"Convergence unknown (fewer than 3 curve evaluations), ranked with that caveat: "
            f"{', '.join(unknown)}."
        )
    ranked = [a for a in algorithms if states[a["name"]] is not False]
    if not ranked:
        lines.append(
            "No algorithm had converged, so none is recommended: these accuracies compare runs "
            "cut short at the same budget, not the algorithms' final results."
        )
        return lines
    algorithms = ranked
    best = max(algorithms, key=lambda a: a["test_accuracy"])
    tied = [a for a in algorithms if not difference_is_significant(a, best)]
    cheapest_tied = min(tied, key=lambda a: a["train_seconds"])
    lines.append(
        f"Highest test accuracy: **{best['name']}** ({_pct(best['test_accuracy'])} +- "
        f"{_pct(best['test_ci95'])})."
    )
    others = [a["name"] for a in tied if a is not best]
    if others and cheapest_tied is best:
        lines.append(
            f"Statistically tied with it (difference within the combined 95% CI): "
            f"{', '.join(others)}; **{best['name']}** is also the fastest of them to train."
        )
    elif others:
        lines.append(
            f"Statistically tied with it (difference within the combined 95% CI): "
            f"{', '.join(others)}. Among the tied algorithms, **{cheapest_tied['name']}** trains "
            f"fastest ({_seconds(cheapest_tied['train_seconds'])} vs "
            f"{_seconds(best['train_seconds'])}): the better choice for this setting when compute "
            "matters."
        )
    else:
        lines.append("No other algorithm is within its 95% confidence interval.")
    measured = [a for a in algorithms if a["peak_memory_bytes"] is not None]
    if measured:
        lean = min(measured, key=lambda a: a["peak_memory_bytes"])
        lines.append(f"Least peak memory: **{lean['name']}** ({_mib(lean['peak_memory_bytes'])}).")
    # An algorithm at chance is "stable" only in being uniformly wrong: it is named as such.
    at_chance = [
        a
        for a in algorithms
        if a.get("chance") is not None and a["test_accuracy"] - a["test_ci95"] <= a["chance"] + 0.02
    ]
    for a in at_chance:
        lines.append(
            f"**{a['name']}** did not learn in this setting: its test accuracy "
            f"({_pct(a['test_accuracy'])}) is within 2 points of chance ({_pct(a['chance'])})."
        )
    learned = [a for a in algorithms if a not in at_chance] or algorithms
    steady = min(learned, key=lambda a: a["test_std"])
    lines.append(
        f"Most stable across test tasks (lowest standard deviation of per-task accuracy"
        f"{', among those that learned' if at_chance else ''}): "
        f"**{steady['name']}** ({_pct(steady['test_std'])})."
    )
    for a in algorithms:
        curve = a["per_step_test_accuracy"]
        peak = max(range(len(curve)), key=curve.__getitem__)
        if peak < len(curve) - 1 and curve[peak] - curve[-1] > 0.005:
            lines.append(
                f"{a['name']} overshoots: test accuracy peaks after inner step {peak} "
                f"({_pct(curve[peak])}) and falls to {_pct(curve[-1])} at step {len(curve) - 1}."
            )
    return lines


SETTING_KEYS = (
    "dataset",
    "ways",
    "shots",
    "queries",
    "meta_batch",
    "iterations",
    "inner_steps",
    "inner_lr",
    "outer_lr",
    "outer_lr_schedule",
    "msl_anneal_iterations",
    "first_order_iterations",
    "seed",
)


def setting(algorithm: dict[str, Any], key: str) -> Any:
    """A training setting of ``algorithm`` as it ran: an unset outer-LR schedule is the
    algorithm's own (cosine for the MAML++ presets), a key older results lack is "-"."""
    value = algorithm["config"].get(key, "-")
    if key == "outer_lr_schedule" and value is None:
        value = resolve_algorithm(algorithm["name"]).outer_lr_schedule
    return value


def settings_table(algorithms: list[dict[str, Any]]) -> list[str]:
    """Markdown lines: the training settings shared by all algorithms, then those that differ."""
    if not algorithms:
        return []
    shared = [k for k in SETTING_KEYS if len({repr(setting(a, k)) for a in algorithms}) == 1]
    lines = [
        "Training settings shared by all algorithms: "
        + ", ".join(f"{k} {setting(algorithms[0], k)}" for k in shared)
        + "."
    ]
    lines.append("")
    differing = [k for k in SETTING_KEYS if k not in shared]
    if differing:
        for a in algorithms:
            lines.append(f"- {a['name']}: " + ", ".join(f"{k} {setting(a, k)}" for k in differing))
        lines.append("")
    steps = {
        a["name"]: a["evaluation"]["inner_steps"] or a["config"]["inner_steps"] for a in algorithms
    }
    lines.append("Test-time inner steps: " + ", ".join(f"{n} {s}" for n, s in steps.items()) + ".")
    return lines


def render_report(
    results: dict[str, Any], plots: dict[str, str], *, skipped: str | None = None
) -> str:
    """The Markdown report of a comparison, linking ``plots`` (``{title: file name}``);
    ``skipped``: why there are none (matplotlib missing), said under Plots with the way to draw
    them later."""
    algorithms = results["algorithms"]
    config, env = results["config"], results["environment"]
    out = ["# Meta-learning comparison", ""]
    out += [f"Preset `{config['preset']}`: {config['preset_description']}.", ""]
    if config.get("command"):
        out += ["Command:", "", "```", config["command"], "```", ""]
    total = sum(a.get("process_seconds") or 0.0 for a in algorithms)
    if total:
        out += [
            f"Wall time of the whole comparison (every process: start-up, data, training, "
            f"evaluation): {total / 60:.1f} minutes.",
            "",
        ]
    budgets = {a.get("budget_minutes") for a in algorithms}
    if len(budgets) == 1 and None not in budgets:
        out += [
            f"Equal wall-clock budget: every algorithm trained for {budgets.pop():g} minutes of "
            "training time (evaluations excluded). The iterations each reached are in the table; "
            "rerunning with `--iterations N` and no budget reproduces a row exactly when the "
            "outer learning rate is constant (a cosine schedule follows `--iterations`, so it "
            "would anneal over N instead).",
            "",
        ]
    out += [
        "| algorithm | test accuracy (95% CI) | converged | std across tasks | "
        "worst-decile tasks | over chance | iterations | training time | s / iteration | "
        "peak memory | final train loss |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for a in algorithms:
        out.append(
            f"| {a['name']} | {_pct(a['test_accuracy'])} +- {_pct(a['test_ci95'])} | "
            f"{_converged_text(a)} | "
            f"{_pct(a['test_std'])} | {_pct(a['test_worst_decile_accuracy'])} | "
            f"+{100 * a['improvement_over_chance']:.1f} points | {a.get('iterations', '-')} | "
            f"{_seconds(a['train_seconds'])} | "
            f"{a['seconds_per_iteration']:.3f} | {_mib(a['peak_memory_bytes'])} | "
            f"{a['final_train_loss']:.3f} |"
        )
    first = algorithms[0] if algorithms else None
    out += ["", *settings_table(algorithms)]
    out += [
        "",
        f"Test accuracy: mean over {first['test_tasks']} test tasks "
        f"({first['evaluation']['queries']} queries per class, classes never seen in training); "
        "95% CI = 1.96 std / sqrt(tasks); worst decile = mean accuracy of the 10% hardest "
        "tasks. Training time sums the outer iterations only (evaluations excluded). "
        f"Converged: the last third of the accuracy curve's evaluations (validation, else test "
        f"curve) improved on the best before them by less than {PLATEAU_POINTS:g} points "
        "(the gain is shown); a curve that fell is past its peak, and its best weights are "
        "tested."
        if first
        else "",
        "",
    ]
    if len(algorithms) > 1:
        out += ["## Ratios", ""]
        out += [f"- {ratio_sentence(algorithms[0], other)}" for other in algorithms[1:]]
        out.append("")
    if algorithms:
        out += ["## Recommendations (derived from the numbers above)", ""]
        out += [f"- {line}" for line in recommendations(algorithms)]
        out.append("")
        same = {
            key: len({a[key] for a in algorithms}) == 1
            for key in ("task_stream_sha256", "initial_weights_sha256", "test_tasks_sha256")
        }
        out += ["## Fairness", ""]
        out.append(
            "- Identical training task stream: "
            + (
                "yes (same SHA-256 of every episode)"
                if same["task_stream_sha256"]
                else "no (the algorithms were given different stream settings)"
            )
        )
        out.append(
            "- Identical initial weights: " + ("yes" if same["initial_weights_sha256"] else "no")
        )
        out.append("- Identical test tasks: " + ("yes" if same["test_tasks_sha256"] else "no"))
        out.append("- Each algorithm ran in its own fresh process, one after the other.")
        out.append("")
    out += ["## Plots", ""]
    out += [f"![{title}]({name})" for title, name in plots.items()]
    if skipped:
        out.append(
            f"{skipped[0].upper()}{skipped[1:]}; then `mamlkit report DIR` draws them from "
            "`results.json`."
        )
    out += ["", "## Environment", ""]
    memory_method = first["peak_memory_method"] if first else "not measured"
    keys = ("commit", "date", "cpu", "processor", "cuda", "torch_threads", "torch", "python")
    for key in (*keys, "platform"):
        if env.get(key) is not None:
            out.append(f"- {key}: {env[key]}")
    out += [f"- device: {first['device']}" if first else "", f"- peak memory: {memory_method}", ""]
    return "\n".join(out)
