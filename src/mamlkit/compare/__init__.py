"""Side-by-side comparison of algorithms: fair runs, measured costs, a report with plots.

Kept outside the core and training: it orchestrates processes and writes reports. A comparison
is a preset (:mod:`.presets`) planned into per-algorithm configs (:mod:`.plan`), each run in a
fresh worker process (:mod:`.worker`) by :mod:`.runner`, which writes ``results.json``, the
report (:mod:`.report`) and the plots (:mod:`.plots`).
"""

from mamlkit.compare.plan import plan_algorithms, require_classification
from mamlkit.compare.presets import COMPARE_PRESETS, ComparePreset
from mamlkit.compare.runner import ComparisonFailed, run_comparison, write_report

__all__ = [
    "COMPARE_PRESETS",
    "ComparePreset",
    "ComparisonFailed",
    "plan_algorithms",
    "require_classification",
    "run_comparison",
    "write_report",
]
