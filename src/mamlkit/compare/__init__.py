"""Side-by-side comparison of algorithms: fair runs, measured costs, a report with plots.

Kept outside :mod:`mamlkit.core`: it orchestrates processes and writes files; the core does not.
"""

from mamlkit.compare.presets import COMPARE_PRESETS, ComparePreset
from mamlkit.compare.runner import ComparisonFailed, plan_algorithms, run_comparison

__all__ = [
    "COMPARE_PRESETS",
    "ComparePreset",
    "ComparisonFailed",
    "plan_algorithms",
    "run_comparison",
]
