"""``mamlkit predict`` / :func:`mamlkit.predict`: a tiny trained run adapted to new support images,
its predictions checked against the learner's own ``adapt`` on the same tensors, the JSON and the
table, the run's dataset preprocessing, and every error."""

from __future__ import annotations

import io
import json
import math
import re
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

import mamlkit
from mamlkit.cli import main
from mamlkit.data import ImageFileError, ImageFolder, ImageFolderError, miniimagenet, omniglot
from mamlkit.errors import ConfigError
from mamlkit.training import TrainConfig, load_run, train_run
from mamlkit.training.prediction import run_image_format
from tests.helpers.image_folders import make_class_folders, write_image

SIZE = 16
CLASSES = ["cat", "dog", "owl"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-way folder run, trained for 2 iterations on 16x16 RGB images."""
    base = tmp_path_factory.mktemp("predict")
    root = make_class_folders(base / "images", classes=10, images=3)
    out = base / "run"
    code = main(
        [
            "train", "--dataset", "folder", "--data-root", str(root), "--image-size", str(SIZE),
            "--ways", "3", "--shots", "1", "--queries", "1", "--meta-batch", "2",
            "--iterations", "2", "--hidden", "4", "--inner-lr", "0.1", "--device", "cpu",
            "--no-progress", "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    return out


@pytest.fixture
def task(tmp_path: Path) -> dict[str, Path]:
    """Support images (2 per class, as ``train/`` of a folder dataset), a flat query folder and
    a labelled one (as ``test/`` of another), of classes the run never saw."""
    support = make_class_folders(tmp_path / "support" / "train", CLASSES, images=2, first=6)
    labelled = make_class_folders(tmp_path / "labelled" / "test", CLASSES, [2, 1, 3], first=6)
    flat = tmp_path / "flat"
    flat.mkdir()
    for name in ("cat/001.jpg", "owl/000.png", "dog/000.png"):
        (flat / name.replace("/", "-")).write_bytes((labelled / name).read_bytes())
    return {"support": support, "labelled": labelled, "flat": flat}


def direct(run: Path, support: Path, query: Path, steps: int | None, batch: int) -> torch.Tensor:
    """The probabilities from the learner's own ``adapt`` on the images as the folder dataset
    decodes them (support and query read as splits of folder datasets)."""
    shots = ImageFolder(support.parent, "train", image_size=SIZE)
    asked = ImageFolder(query.parent, "test", image_size=SIZE)
    assert shots.class_names == CLASSES
    support_y = torch.tensor([c for c, n in enumerate(shots.samples_per_class) for _ in range(n)])
    support_x = shots.get(support_y, [s for n in shots.samples_per_class for s in range(n)])
    query_c = [c for c, n in enumerate(asked.samples_per_class) for _ in range(n)]
    query_x = asked.get(query_c, [s for n in asked.samples_per_class for s in range(n)])
    _, learner = load_run(run, weights="auto")
    learner.eval()
    with torch.no_grad():
        adapted = learner.adapt(support_x[None], support_y[None], steps=steps)
        logits = torch.cat([adapted(chunk[None])[0] for chunk in query_x.split(batch)])
    return logits.softmax(dim=1)


@pytest.mark.parametrize(("steps", "batch"), [(None, 100), (3, 2)])
def test_predictions_equal_the_learners_own_adaptation(
    run: Path, task: dict[str, Path], steps: int | None, batch: int
) -> None:
    result = mamlkit.predict(
        run, task["support"], task["labelled"], inner_steps=steps, query_batch=batch
    )
    expected = direct(run, task["support"], task["labelled"], steps, batch)
    torch.testing.assert_close(result.probabilities, expected)
    assert result.inner_steps == (steps or 1) and result.classes == CLASSES
    assert result.labels == ["cat", "cat", "dog", "owl", "owl", "owl"]
    assert result.files[0] == "cat/000.png"
    assert result.support["dog"] == ["dog/000.png", "dog/001.jpg"]
    hits = (expected.argmax(1) == torch.tensor([0, 0, 1, 2, 2, 2])).double().mean()
    assert result.accuracy == pytest.approx(float(hits))


def test_inner_steps_change_the_predictions(run: Path, task: dict[str, Path]) -> None:
    one = mamlkit.predict(run, task["support"], task["flat"])
    five = mamlkit.predict(run, task["support"], task["flat"], inner_steps=5)
    assert not torch.allclose(one.probabilities, five.probabilities)


def test_the_cli_prints_a_table_and_writes_json(
    run: Path, task: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "predictions.json"
    argv = ["predict", str(run), "--support", str(task["support"]), "--query", str(task["flat"])]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    record = json.loads(out.read_text())
    assert record["run"] == str(run) and record["weights_file"] == "model.safetensors"
    assert record["inner_steps"] == 1 and record["classes"] == CLASSES
    assert record["accuracy"] is None
    assert record["support"] == {c: [f"{c}/000.png", f"{c}/001.jpg"] for c in CLASSES}
    files = sorted(p.name for p in task["flat"].iterdir())
    assert [p["file"] for p in record["predictions"]] == files
    for prediction, line in zip(record["predictions"], printed[1:], strict=False):
        probabilities = prediction["probabilities"]
        assert list(probabilities) == CLASSES
        assert math.isclose(sum(probabilities.values()), 1.0, rel_tol=1e-5)
        assert prediction["predicted"] == max(probabilities, key=probabilities.get)
        assert prediction["confidence"] == max(probabilities.values())
        assert "label" not in prediction
        assert line.split() == [
            prediction["file"], prediction["predicted"], f"{100 * prediction['confidence']:.1f}%"
        ]  # fmt: skip
    assert printed[0].split() == ["file", "predicted", "confidence"]
    assert "3 query images classified into 3 classes after 1 inner step on 2" in printed[4]
    assert printed[-1] == f"wrote {out}"
    again = mamlkit.predict(run, task["support"], task["flat"])
    assert [p["predicted"] for p in record["predictions"]] == again.predicted


def test_labelled_queries_report_the_accuracy(
    run: Path, task: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "predict",
        str(run),
        "--support",
        str(task["support"]),
        "--query",
        str(task["labelled"]),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split() == ["file", "predicted", "confidence", "true"]
    assert printed[1].split()[0] == "cat/000.png" and printed[1].split()[-1] == "cat"
    assert re.search(r"; accuracy \d+\.\d\d% \(\d of 6\)$", printed[-1])


# --- the run's own preprocessing -----------------------------------------------------------------


def test_omniglot_runs_read_images_as_omniglot_decodes_its_archive(tmp_path: Path) -> None:
    drawing = Image.new("L", (105, 105), 255)
    ImageDraw.Draw(drawing).line([(10, 20), (90, 80), (30, 95)], fill=0, width=6)
    png = tmp_path / "drawing.png"
    drawing.save(png)
    archive = tmp_path / "images_tiny.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        buffer = io.BytesIO()
        drawing.save(buffer, format="PNG")
        zf.writestr("images_tiny/Alphabet/character01/drawing.png", buffer.getvalue())
    decoded = omniglot._decode_archive(archive, 28)  # what the Omniglot dataset caches
    fmt = run_image_format(TrainConfig(dataset="omniglot"), (1, 28, 28))
    assert fmt == omniglot.image_format(28) and fmt.invert
    as_in_training = torch.from_numpy(decoded.images[:1]).unsqueeze(1).float() / 255
    torch.testing.assert_close(fmt.load([png]), as_in_training, rtol=0, atol=0)
    assert float(as_in_training.max()) == 1.0  # strokes are 1 after inversion


def test_each_image_dataset_gives_its_format_and_the_shape_is_checked() -> None:
    fmt = run_image_format(TrainConfig(dataset="miniimagenet", image_size=32), (3, 32, 32))
    assert fmt == miniimagenet.image_format(32)
    folder = run_image_format(TrainConfig(dataset="folder", channels="grayscale"), (1, 28, 28))
    assert folder.shape == (1, 28, 28) and folder.photos
    with pytest.raises(ValueError, match=r"reads images as \[3, 84, 84\], but the run was"):
        run_image_format(TrainConfig(dataset="miniimagenet"), (3, 32, 32))
    with pytest.raises(ConfigError, match="does not say how it reads image files"):
        run_image_format(TrainConfig(dataset="sinusoid", model="mlp"), (1,))


# --- errors --------------------------------------------------------------------------------------


def refused(run: Path, support: Path, query: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """The one-line error ``mamlkit predict`` exits with (status 2)."""
    code = main(["predict", str(run), "--support", str(support), "--query", str(query)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    return err


def test_a_wrong_number_of_classes_is_refused(
    run: Path, tmp_path: Path, task: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    two = make_class_folders(tmp_path / "two", ["cat", "dog"], images=1)
    err = refused(run, two, task["flat"], capsys)
    assert f"the support folder {two} has 2 class folders, but the run {run} was trained " in err
    assert "3-way tasks (its model has 3 outputs): give exactly 3 classes" in err


def test_empty_folders_are_refused(
    run: Path, tmp_path: Path, task: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert f"the query folder {empty} holds no images" in refused(
        run, task["support"], empty, capsys
    )
    (task["support"] / "dog" / "000.png").unlink()
    (task["support"] / "dog" / "001.jpg").unlink()
    err = refused(run, task["support"], task["flat"], capsys)
    assert (
        f"the class folder {task['support'] / 'dog'} of the support folder holds no images" in err
    )
    with pytest.raises(ImageFolderError, match="holds no class folders"):
        mamlkit.predict(run, empty, task["flat"])


def test_a_file_that_is_no_image_is_named(
    run: Path, task: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    bad = task["flat"] / "notes.txt"
    bad.write_text("not an image")
    err = refused(run, task["support"], task["flat"], capsys)
    assert f"cannot read {bad} as an image" in err and "remove it or convert it" in err
    bad.unlink()
    bad = task["support"] / "owl" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(ImageFileError, match=re.escape(str(bad))):
        mamlkit.predict(run, task["support"], task["flat"])


def test_query_classes_must_be_support_classes(
    run: Path, task: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    write_image(task["labelled"] / "fox" / "a.png", (8, 8), (1, 2, 3))
    err = refused(run, task["support"], task["labelled"], capsys)
    assert "has a class folder 'fox' that the support folder lacks" in err
    write_image(task["labelled"] / "loose.png", (8, 8), (1, 2, 3))
    assert "mixes image files (e.g. loose.png) with class folders" in refused(
        run, task["support"], task["labelled"], capsys
    )


def test_missing_folders_and_regression_runs_are_refused(
    run: Path, task: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere"
    assert f"support folder not found: {missing}" in refused(run, missing, task["flat"], capsys)
    config = TrainConfig(
        dataset="sinusoid", model="mlp", hidden=4, shots=2, queries=2, meta_batch=2,
        iterations=1, progress=False,
    )  # fmt: skip
    train_run(config, tmp_path / "sine")
    err = refused(tmp_path / "sine", task["support"], task["flat"], capsys)
    assert "is a regression run (dataset 'sinusoid'); predict classifies images" in err
