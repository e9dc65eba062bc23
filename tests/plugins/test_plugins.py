"""Plug-ins from another package: a dataset, a model and an algorithm that every command sees.

``examples/plugin_package`` (the package docs/plugins.md shows) is installed with pip into a
temporary folder, and every command runs in a fresh process that has only that folder added to
its path: ``list``, ``train`` (fresh and ``--resume``), ``eval`` and ``compare`` (whose workers
are processes of their own) must all find the plug-ins by their entry point names, and the
``package.module:attribute`` form must work from an installed package and from a module file in
the folder the command runs in.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PLUGIN_PACKAGE = REPO / "examples" / "plugin_package"
FAST = ["--meta-batch", "4", "--queries", "5", "--no-progress"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example package installed by pip into a temporary folder (no network, no index)."""
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("source") / "plugin_package"
    shutil.copytree(PLUGIN_PACKAGE, source)  # pip builds in place; keep the checkout clean
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "--target", str(target), str(source)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    assert (target / "mamlkit_blobs").is_dir()
    assert any(target.glob("mamlkit_blobs-*.dist-info/entry_points.txt"))
    return target


def mamlkit(
    args: list[str], site: Path | None, cwd: Path, *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """``python -m mamlkit ARGS`` in a fresh process whose path has ``site`` added."""
    env = {**os.environ, "PYTHONPATH": str(site) if site else ""}
    result = subprocess.run(
        [sys.executable, "-m", "mamlkit", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_list_shows_the_installed_plugins(site: Path, tmp_path: Path) -> None:
    listing = mamlkit(["list"], site, tmp_path).stdout
    for line in (
        "anil-lr            first_order=false update_rule=per_tensor",
        "blobs              Gaussian blobs as few-shot classes",
        "tinymlp            One hidden layer.",
    ):
        assert line in listing
    assert "blobs" not in mamlkit(["list"], None, tmp_path).stdout  # not installed: not listed


def test_train_eval_and_resume_find_the_plugins_by_name(site: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    names = ["--algorithm", "anil-lr", "--dataset", "blobs", "--model", "tinymlp"]
    trained = mamlkit(
        ["train", *names, "--iterations", "20", "--out", str(run), *FAST], site, tmp_path
    )
    assert "trained anil-lr for 20 iterations" in trained.stdout
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert (config["algorithm"], config["dataset"], config["model"]) == (
        "anil-lr",
        "blobs",
        "tinymlp",
    )
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary["learned_inner_lrs"]) == {"head.weight", "head.bias"}  # only the head adapts
    evaluated = mamlkit(["eval", str(run), "--tasks", "50", "--no-progress"], site, tmp_path)
    accuracy = json.loads((run / "eval.json").read_text())["accuracy"]
    assert evaluated.stdout.startswith("accuracy") and accuracy > 0.4  # 5-way chance is 0.2
    # Without the plug-in package, the run's names cannot be found, and the error says which.
    missing = mamlkit(["eval", str(run), "--no-progress"], None, tmp_path, check=False)
    assert missing.returncode == 2 and "unknown dataset 'blobs'" in missing.stderr


def test_an_interrupted_plugin_run_resumes_in_a_new_process(site: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    command = [sys.executable, "-m", "mamlkit", "train", "--algorithm", "anil-lr", "--dataset",
               "blobs", "--model", "tinymlp", "--iterations", "100000", "--log-every", "1",
               "--checkpoint-every", "1000", "--out", str(run), *FAST]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(site)}
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "continue with: mamlkit train --resume" in stderr
    stopped = json.loads(metrics.read_text().splitlines()[-1])["iteration"]
    assert 2 <= stopped < 100000
    # Resuming needs only the run folder: the plug-in names come back from its config.yaml.
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["iterations"] = stopped + 5  # a short remainder
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    resumed = mamlkit(["train", "--resume", str(run)], site, tmp_path)
    assert f"trained anil-lr for {stopped + 5} iterations" in resumed.stdout


def test_compare_workers_see_the_plugins(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "comparison"
    args = ["compare", "--algorithms", "anil-lr,maml", "--dataset", "blobs", "--model",
            "tinymlp", "--iterations", "10", "--eval-tasks", "20", "--curve-points", "2",
            "--curve-tasks", "10", "--out", str(out), *FAST]  # fmt: skip
    mamlkit(args, site, tmp_path)
    results = json.loads((out / "results.json").read_text())
    assert [a["name"] for a in results["algorithms"]] == ["anil-lr", "maml"]
    assert all(a["config"]["model"] == "tinymlp" for a in results["algorithms"])
    assert all(len(a["test_curve"]) == 2 for a in results["algorithms"])


def test_references_name_a_factory_in_a_package_or_in_the_current_folder(
    site: Path, tmp_path: Path
) -> None:
    run = tmp_path / "by-reference"
    args = ["train", "--algorithm", "mamlkit_blobs.algorithms:ANIL_LR", "--dataset",
            "mamlkit_blobs.data:Blobs", "--model", "mamlkit_blobs.models:TinyMLP",
            "--iterations", "3", "--out", str(run), *FAST]  # fmt: skip
    assert "trained mamlkit_blobs.algorithms:ANIL_LR" in mamlkit(args, site, tmp_path).stdout
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"] == "mamlkit_blobs.models:TinyMLP"  # saved as given, found again:
    mamlkit(["eval", str(run), "--tasks", "10", "--no-progress"], site, tmp_path)
    # A module file in the folder the console script runs in, with nothing installed.
    folder = tmp_path / "project"
    folder.mkdir()
    shutil.copy(PLUGIN_PACKAGE / "src" / "mamlkit_blobs" / "models.py", folder / "mymodels.py")
    script = Path(sys.executable).with_name("mamlkit")
    result = subprocess.run(
        [str(script), "train", "--dataset", "sinusoid", "--model", "mymodels:TinyMLP",
         "--inner-lr", "0.01", "--iterations", "3", "--out", "run", "--no-progress"],
        cwd=folder, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load((folder / "run" / "config.yaml").read_text())["model"] == (
        "mymodels:TinyMLP"
    )


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--model", "tinymlpp", "unknown model 'tinymlpp'; did you mean 'tinymlp'?"),
        ("--model", "mamlkit_blobs.models:Tiny", "module mamlkit_blobs.models has no attribute"),
        ("--model", "nosuchpackage:Net", "no module named 'nosuchpackage'"),
        ("--algorithm", "mamlkit_blobs.models:TinyMLP", "is a type, not a mamlkit.AlgorithmSpec"),
        ("--dataset", "mamlkit_blobs.algorithms:ANIL_LR", "not a dataset factory"),
    ],
)
def test_a_plugin_that_cannot_be_used_is_a_one_line_error(
    site: Path, tmp_path: Path, flag: str, value: str, message: str
) -> None:
    args = ["train", "--dataset", "blobs", "--model", "tinymlp", flag, value, "--out", "run"]
    result = mamlkit(args, site, tmp_path, check=False)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()  # refused before any work


def test_a_broken_plugin_is_listed_with_its_error_and_named_when_used(
    site: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken-site"
    shutil.copytree(site, broken)
    (broken / "mamlkit_blobs" / "models.py").write_text(
        "raise ImportError('a missing dependency')\n"
    )
    listing = mamlkit(["list"], broken, tmp_path).stdout
    assert (
        "tinymlp" in listing and "failed to load" in listing and "a missing dependency" in listing
    )
    result = mamlkit(["train", "--model", "tinymlp", "--dataset", "blobs", "--out", "r"], broken,
                     tmp_path, check=False)  # fmt: skip
    assert result.returncode == 2 and "model 'tinymlp' from the entry point" in result.stderr
