"""The example notebooks are stored clean and run top to bottom on a tiny setting (no rot).

Each notebook reads its size from ``MAMLKIT_NB_*`` environment variables in its first code cell;
the kernel (``python3``, from ipykernel in this environment) inherits them from this process.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbclient
import nbformat
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
#: Notebooks that generate their data; every other one reads Omniglot.
NO_DATA = {"sinusoid_regression.ipynb"}
#: What the last code cell prints: the test result of the run.
FINAL_LINE = {
    "sinusoid_regression.ipynb": re.compile(r"test MSE \d+\.\d+ \+- \d+\.\d+ \(4 tasks\)"),
}
#: Plots (``plt.show()`` calls) each notebook makes.
MIN_PLOTS = {
    "maml_on_omniglot.ipynb": 4,
    "anil_adaptive_on_omniglot.ipynb": 2,
    "sinusoid_regression.ipynb": 4,
}
ACCURACY_LINE = re.compile(r"test accuracy \d+\.\d+% \+- \d+\.\d+% \(4 tasks\)")
TINY = {
    "MAMLKIT_NB_ITERATIONS": "3",
    "MAMLKIT_NB_META_BATCH": "2",
    "MAMLKIT_NB_HIDDEN": "8",
    "MAMLKIT_NB_EVAL_TASKS": "4",
}
#: Appended to the executed copy (never to the stored file): the run's key variables as JSON.
PROBE = """
import json
probe = {"iterations": ITERATIONS}
if "losses" in globals():
    probe["losses"] = [float(v) for v in losses]
if "result" in globals():
    probe["result"] = result.to_dict()
if "results" in globals():
    probe["results"] = {name: r.to_dict() for name, r in results.items()}
if "history" in globals():
    probe["history"] = history
print("PROBE " + json.dumps(probe))
"""


def test_there_are_notebooks() -> None:
    assert len(NOTEBOOKS) >= 3, NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code, "no code cell"
    for index, cell in enumerate(code):
        assert cell.get("outputs") == [], f"code cell {index} has stored outputs"
        assert cell.get("execution_count") is None, f"code cell {index} has an execution count"
    # The size of the run comes from the environment, in the first code cell.
    assert "MAMLKIT_NB_ITERATIONS" in code[0].source
    # Markdown quotes no measured result (e.g. "89.2%"): no stored output could back it up.
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            assert not re.search(r"\d\.\d+\s*%", cell.source), cell.source[:200]


def _outputs(cell: dict) -> str:
    text = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            text.append(output["text"])
        elif "data" in output:
            text.append(output["data"].get("text/plain", ""))
    return "".join(text)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_on_a_tiny_setting(
    path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if path.name not in NO_DATA:
        monkeypatch.setenv("MAMLKIT_DATA", str(request.getfixturevalue("omniglot_root")))
    else:
        monkeypatch.delenv("MAMLKIT_DATA", raising=False)
    for name, value in TINY.items():
        monkeypatch.setenv(name, value)
    # No MPLBACKEND: the kernel's own inline backend, as in Jupyter, so plt.show() gives images.
    monkeypatch.delenv("MPLBACKEND", raising=False)
    # Keep IPython's profile and the kernel's connection file out of the home folder.
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    work = tmp_path / "work"
    work.mkdir()

    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(work)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on an error

    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    outputs = [output for cell in code for output in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    # Every notebook shows its plots, and nothing warns (e.g. a progress bar wanting ipywidgets).
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= MIN_PLOTS[path.name], f"{len(images)} plots shown"
    stderr = [o["text"] for o in outputs if o.get("name") == "stderr"]
    assert not stderr, stderr
    final = _outputs(code[-2])  # the notebook's own last cell, before the probe
    assert FINAL_LINE.get(path.name, ACCURACY_LINE).search(final), final
    probe = json.loads(_outputs(code[-1]).split("PROBE ", 1)[1])

    assert probe["iterations"] == 3
    assert len(probe["losses"]) == 3
    results = probe.get("results") or {"result": probe["result"]}
    for result in results.values():
        assert result["tasks"] == 4
        if "accuracy" in result:  # classification
            steps = result["per_step_accuracy"]
            assert all(0.0 <= a <= 1.0 for a in steps)
            assert result["accuracy"] == pytest.approx(steps[-1])
        else:  # regression
            steps = result["per_step_loss"]
            assert result["mse"] == pytest.approx(steps[-1]) and result["mse"] > 0
        assert len(steps) == result["inner_steps"] + 1 > 1
    if "history" in probe:  # learned inner rates, recorded by fit's on_log
        iterations = [iteration for iteration, _ in probe["history"]]
        assert iterations[0] == 0 and iterations[-1] == 3
        first, last = probe["history"][0][1], probe["history"][-1][1]
        assert set(first) == {"head.weight", "head.bias"}
        assert first != last, "the learned inner rates did not change"
