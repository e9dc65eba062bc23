"""Progress bars: a disabled one stays silent and never loads tqdm's notebook machinery."""

from __future__ import annotations

import subprocess
import sys

from mamlkit.progress import progress_bar


def test_disabled_bar_is_silent(capsys) -> None:
    with progress_bar(total=4, enabled=False, desc="x") as bar:
        bar.update(3)
        bar.set_postfix({"loss": 1.0})
    assert list(progress_bar([1, 2], enabled=False)) == [1, 2]
    captured = capsys.readouterr()
    assert captured.out == captured.err == ""


def test_enabled_bar_shows_progress(capsys) -> None:
    assert list(progress_bar([1, 2, 3], enabled=True, desc="demo", file=sys.stderr)) == [1, 2, 3]
    assert "demo" in capsys.readouterr().err


def test_progress_false_does_not_import_tqdm_auto() -> None:
    """In Jupyter without ipywidgets, importing tqdm.auto warns even for a disabled bar."""
    code = (
        "import sys, torch, mamlkit\n"
        "from mamlkit.data import SinusoidSampler\n"
        "torch.manual_seed(0)\n"
        "model = mamlkit.MODELS.get('mlp')(in_channels=1, num_classes=1, hidden=8, image_size=1)\n"
        "learner = mamlkit.MetaLearner(model, 'maml', inner_lr=0.01, task='regression')\n"
        "opt = torch.optim.Adam(learner.parameters())\n"
        "tasks = SinusoidSampler(shots=5, queries=5, meta_batch=2, seed=0)\n"
        "mamlkit.fit(learner, tasks, opt, iterations=2, progress=False)\n"
        "mamlkit.evaluate(learner, tasks, tasks=2, progress=False)\n"
        "print(sorted(m for m in sys.modules if m.startswith('tqdm.a')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
