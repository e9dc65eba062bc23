"""The README's Python API example runs as written (with a tiny loop and the shared data)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_api_example_runs(omniglot_root: Path) -> None:
    text = README.read_text(encoding="utf-8")
    code = re.search(r"## The Python API\n\n```python\n(.*?)```", text, re.S).group(1)
    replacements = {
        'root="data", split="train", download=True': f'root={str(omniglot_root)!r}, split="train"',
        "range(100)": "range(2)",
        "iterations=100": "iterations=2, progress=False",
    }
    for old, new in replacements.items():
        assert old in code, f"README example changed: {old!r} not found; update this test"
        code = code.replace(old, new)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    assert namespace["predictions"].shape == (32, 5)
    assert len(namespace["losses"]) == 2
    assert set(namespace["metrics"]) >= {"loss", "accuracy"}
