"""mamlkit compare: plans, presets, results and reports."""
