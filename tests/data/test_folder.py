"""The folder dataset on tiny folders of PNG and JPEG images of mixed sizes: decoding, resizing,
the automatic and the given splits, every error, and a ``mamlkit train`` + ``eval`` run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mamlkit.cli import main
from mamlkit.data import (
    DATASETS,
    EpisodeSampler,
    ImageFileError,
    ImageFolder,
    ImageFolderError,
    dataset_image_format,
)
from mamlkit.data.folder import split_classes
from mamlkit.errors import ConfigError
from mamlkit.training import TrainConfig, build_dataset, build_sampler
from tests.helpers.image_folders import colour, make_class_folders, write_image

SIZE = 16  # small images keep the tests fast; one test checks the defaults


def load(root: Path, split: str = "train", **options) -> ImageFolder:
    options.setdefault("image_size", SIZE)
    return ImageFolder(root, split, **options)


def mean_colours(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(2, 3))


# --- decoding and resizing ---------------------------------------------------------------------


def test_images_of_any_size_and_format_are_resized_and_served_in_0_1(tmp_path: Path) -> None:
    root = make_class_folders(tmp_path / "own" / "train", classes=3, images=[4, 5, 3]).parent
    ds = load(root)
    assert ds.class_names == ["class00", "class01", "class02"]
    assert ds.samples_per_class.tolist() == [4, 5, 3] and not ds.samples_per_class.flags.writeable
    assert ds.image_shape == (3, SIZE, SIZE) and ds.num_classes == 3
    assert [p.name for p in ds.files[1]] == ["000.png", "001.jpg", "002.png", "003.jpg", "004.png"]
    classes = [c for c in range(3) for _ in range(ds.samples_per_class[c])]
    samples = [s for c in range(3) for s in range(ds.samples_per_class[c])]
    x = ds.get(classes, samples)
    assert x.shape == (12, 3, SIZE, SIZE) and x.dtype == torch.float32
    expected = torch.tensor([colour(c, s) for c, s in zip(classes, samples, strict=True)]) / 255
    png = torch.tensor([s % 2 == 0 for s in samples])
    torch.testing.assert_close(mean_colours(x)[png], expected[png], atol=1e-6, rtol=0)
    torch.testing.assert_close(mean_colours(x), expected, atol=4 / 255, rtol=0)  # JPEG


def test_defaults_are_84_rgb_and_28_grayscale(tmp_path: Path) -> None:
    root = make_class_folders(tmp_path / "train", classes=2, images=2).parent
    rgb = ImageFolder(root, "train")
    gray = ImageFolder(root, "train", channels="grayscale")
    assert rgb.image_shape == (3, 84, 84) and gray.image_shape == (1, 28, 28)
    value = gray.get([1], [0])[0, 0, 0, 0] * 255
    r, g, b = colour(1, 0)
    assert abs(float(value) - (r * 299 + g * 587 + b * 114) / 1000) <= 1  # Pillow's "L"


def test_sixteen_bit_grayscale_images_are_scaled_not_clipped(tmp_path: Path) -> None:
    levels = np.array([0, 128 * 257, 65535], dtype=np.uint16)  # black, mid grey, white
    folder = tmp_path / "train" / "deep"
    folder.mkdir(parents=True)
    for index, level in enumerate(levels):
        Image.fromarray(np.full((SIZE, SIZE), level, dtype=np.uint16)).save(folder / f"{index}.png")
        Image.fromarray(np.full((SIZE, SIZE), level, dtype=np.int32)).save(folder / f"{index}.tif")
    with Image.open(folder / "2.png") as image:
        assert image.mode.startswith("I")  # Pillow decodes it as 16-bit, not as "L"
    ds = load(tmp_path, channels="grayscale")
    assert ds.samples_per_class.tolist() == [6]
    names = [path.name for path in ds.files[0]]
    x = ds.get([0] * 6, list(range(6)))[:, 0, 0, 0] * 255
    expected = {"0": 0.0, "1": 128.0, "2": 255.0}
    torch.testing.assert_close(
        x, torch.tensor([expected[name[0]] for name in names]), atol=1e-4, rtol=0
    )


def test_transparency_is_laid_on_white_and_hidden_files_are_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "train" / "clear"
    folder.mkdir(parents=True)
    Image.new("RGBA", (10, 10), (0, 0, 0, 0)).save(folder / "a.png")
    (folder / ".DS_Store").write_bytes(b"\x00junk")
    (folder / "Thumbs.db").write_bytes(b"\x00junk")
    write_image(tmp_path / "train" / "red" / "r.jpg", (12, 9), (255, 0, 0))
    (tmp_path / "train" / ".cache").mkdir()
    ds = load(tmp_path)
    assert ds.class_names == ["clear", "red"] and ds.samples_per_class.tolist() == [1, 1]
    torch.testing.assert_close(ds.get([0], [0]), torch.ones(1, 3, SIZE, SIZE))


def test_photos_are_turned_upright_by_their_exif_orientation(tmp_path: Path) -> None:
    photo = Image.new("RGB", (40, 20), (0, 0, 255))
    photo.paste((255, 0, 0), (0, 0, 20, 20))  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    for name in ("plain", "turned"):
        (tmp_path / "train" / name).mkdir(parents=True)
    photo.save(tmp_path / "train" / "plain" / "a.jpg")
    photo.save(tmp_path / "train" / "turned" / "a.jpg", exif=exif)
    red = load(tmp_path).get([0, 1], [0, 0])[:, 0]  # classes: plain, turned
    assert float(red[0, :, :6].mean()) > 0.9 and float(red[0, :, -6:].mean()) < 0.1  # left|right
    assert float(red[1, :6].mean()) > 0.9 and float(red[1, -6:].mean()) < 0.1  # top/bottom


def test_registry_entry_builds_it_from_the_train_config(tmp_path: Path) -> None:
    root = make_class_folders(tmp_path / "data", classes=10, images=3)
    config = TrainConfig(dataset="folder", data_root=str(root), image_size=20, channels="grayscale")
    ds = build_dataset(config, "test")
    assert isinstance(ds, ImageFolder) and ds.image_shape == (1, 20, 20)
    assert ds.num_classes == 2  # 20% of 10 classes
    options = {"image_size": 20, "channels": "grayscale"}
    assert dataset_image_format(DATASETS.get("folder"), options) == ds.image_format


@pytest.mark.parametrize(
    ("dataset", "option", "message"),
    [
        ("sinusoid", {"image_size": 20}, "dataset 'sinusoid' takes no image_size option"),
        ("omniglot", {"channels": "rgb"}, "dataset 'omniglot' takes no channels option"),
    ],
)
def test_dataset_options_are_refused_by_datasets_without_them(
    dataset: str, option: dict, message: str
) -> None:
    model = "mlp" if dataset == "sinusoid" else "conv4"
    config = TrainConfig(dataset=dataset, model=model, data_root="/nonexistent", **option)
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_dataset(config, "train")


# --- splits ------------------------------------------------------------------------------------


def test_automatic_split_is_deterministic_disjoint_and_complete(tmp_path: Path) -> None:
    root = make_class_folders(tmp_path / "data", classes=12, images=2)
    names = {s: load(root, s).class_names for s in ("train", "val", "test")}
    assert [len(names[s]) for s in ("train", "val", "test")] == [8, 2, 2]  # 20% each, rounded
    every = sorted(name for split in names.values() for name in split)
    assert every == [f"class{c:02d}" for c in range(12)]
    np.random.seed(123)  # the global random state plays no part
    torch.manual_seed(123)
    assert load(root, "test").class_names == names["test"]
    other = {s: load(root, s, split_seed=1).class_names for s in ("train", "test")}
    assert other["test"] != names["test"] and len(other["train"]) == 8
    listed = [f"class{c:02d}" for c in range(12)]
    assert [listed[i] for i in split_classes(listed, "test")] == names["test"]


def test_given_split_folders_are_the_splits(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "train", classes=3, images=2)
    make_class_folders(tmp_path / "test", classes=2, images=2, first=3)
    assert load(tmp_path, "train").class_names == ["class00", "class01", "class02"]
    test = load(tmp_path, "test")
    assert test.class_names == ["class03", "class04"]
    torch.testing.assert_close(
        mean_colours(test.get([1], [0]))[0], torch.tensor(colour(4, 0)) / 255, atol=1e-6, rtol=0
    )
    with pytest.raises(ImageFolderError, match=r"has no val/ folder \(it has test/, train/\)"):
        load(tmp_path, "val")
    with pytest.raises(ConfigError, match="split_seed applies only to an automatic split"):
        load(tmp_path, "train", split_seed=3)


def test_split_folders_must_hold_different_classes(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "train", classes=["cat", "dog"], images=2)
    make_class_folders(tmp_path / "test", classes=["dog", "owl"], images=2)
    with pytest.raises(ImageFolderError, match=r"share 1 classes \(e.g. 'dog'\)"):
        load(tmp_path, "test")


def test_split_folders_mixed_with_class_folders_are_refused(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "train", classes=2, images=2)
    make_class_folders(tmp_path, classes=["cats"], images=2)
    with pytest.raises(ImageFolderError, match=r"mixes split folders \(train\) with other .*cats"):
        load(tmp_path)


# --- errors ------------------------------------------------------------------------------------


def test_a_missing_folder_or_none_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"image folder .*not found: {tmp_path / 'nope'}"):
        load(tmp_path / "nope")
    with pytest.raises(ConfigError, match="the folder dataset needs --data-root DIR"):
        ImageFolder(None)
    with pytest.raises(ConfigError, match="nothing to download: drop --download"):
        load(tmp_path, download=True)
    with pytest.raises(ConfigError, match="channels must be one of rgb, grayscale, got 'rbg'"):
        load(tmp_path, channels="rbg")


def test_a_folder_without_class_folders_is_refused(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", (5, 5), (1, 2, 3))
    message = r"holds no class folders \(it holds 1 files directly\)"
    with pytest.raises(ImageFolderError, match=message):
        load(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImageFolderError, match=f"{empty} holds no class folders; it needs"):
        load(empty)


def test_an_empty_class_folder_is_named(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "train", classes=2, images=2)
    (tmp_path / "train" / "ghosts").mkdir()
    with pytest.raises(ImageFolderError, match=f"class folder {tmp_path / 'train' / 'ghosts'} "):
        load(tmp_path)


def test_a_nested_folder_inside_a_class_folder_is_refused(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "train", classes=2, images=2)
    write_image(tmp_path / "train" / "class00" / "more" / "x.png", (5, 5), (1, 2, 3))
    with pytest.raises(ImageFolderError, match="is a folder inside the image folder"):
        load(tmp_path)


@pytest.mark.parametrize("name", ["notes.txt", "broken.png"])
def test_a_file_that_is_no_image_is_named(tmp_path: Path, name: str) -> None:
    make_class_folders(tmp_path / "train", classes=2, images=2)
    bad = tmp_path / "train" / "class01" / name
    bad.write_text("not an image")
    with pytest.raises(ImageFileError, match=f"cannot read {re.escape(str(bad))} as an image"):
        load(tmp_path)


def test_a_truncated_image_is_named(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "train", classes=2, images=2)
    good = tmp_path / "train" / "class00" / "000.png"
    good.write_bytes(good.read_bytes()[:40])
    with pytest.raises(ImageFileError, match=re.escape(str(good))):
        load(tmp_path)


def test_too_small_classes_and_splits_are_named_before_sampling(tmp_path: Path) -> None:
    root = make_class_folders(tmp_path / "train", classes=["ant", "bee", "cow"], images=[5, 2, 5])
    config = TrainConfig(dataset="folder", data_root=str(tmp_path), ways=3, shots=1, queries=2)
    ds = build_dataset(config, "train")
    pattern = (
        f"class 'bee' of the folder dataset's 'train' split ({root}) has only 2 images, but a "
        f"task takes shots=1 + queries=2 = 3 images of each class: add images to {root / 'bee'}"
        f", remove it, or lower --shots / --queries"
    )
    with pytest.raises(ConfigError, match=re.escape(pattern)):
        build_sampler(config, ds, queries=2, meta_batch=2, seed=0)
    build_sampler(config, ds, queries=1, meta_batch=2, seed=0)  # 1 + 1 images fit
    wide = TrainConfig(dataset="folder", data_root=str(tmp_path), ways=4, shots=1, queries=1)
    with pytest.raises(ConfigError, match=r"'train' split .* has 3 classes, fewer than ways=4"):
        build_sampler(wide, ds, queries=1, meta_batch=2, seed=0)


def test_an_automatic_split_without_classes_says_so(tmp_path: Path) -> None:
    root = make_class_folders(tmp_path / "data", classes=2, images=2)
    with pytest.raises(ImageFolderError, match="leaves the 'test' split no class"):
        load(root, "test")


def test_episodes_come_from_the_decoded_images(tmp_path: Path) -> None:
    root = make_class_folders(tmp_path / "train", classes=4, images=[3, 4, 3, 5]).parent
    ds = load(root)
    episode = EpisodeSampler(ds, ways=3, shots=1, queries=2, meta_batch=2, seed=0).sample()
    assert episode.support_x.shape == (2, 3, 3, SIZE, SIZE)
    assert episode.query_x.shape == (2, 6, 3, SIZE, SIZE)

    def classes(x: torch.Tensor) -> torch.Tensor:  # colour(c, s)[0] = 20 + 23 c
        return torch.round((x.mean(dim=(3, 4))[..., 0] * 255 - 20) / 23).long()

    support, query = classes(episode.support_x), classes(episode.query_x)
    for task in range(2):
        assert len(set(support[task].tolist())) == 3  # three distinct classes
        for label in range(3):
            shown = support[task][episode.support_y[task] == label]
            asked = query[task][episode.query_y[task] == label]
            assert shown.tolist() == [int(asked[0])] and len(set(asked.tolist())) == 1


# --- the command line ----------------------------------------------------------------------------


def test_train_and_eval_on_a_folder_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_class_folders(tmp_path / "images", classes=10, images=3)
    run = tmp_path / "run"
    code = main(
        [
            "train", "--dataset", "folder", "--data-root", str(root), "--image-size", "16",
            "--ways", "2", "--shots", "1", "--queries", "1", "--meta-batch", "2",
            "--iterations", "2", "--hidden", "4", "--device", "cpu", "--no-progress",
            "--out", str(run),
        ]
    )  # fmt: skip
    assert code == 0
    assert "trained maml for 2 iterations" in capsys.readouterr().out
    code = main(["eval", str(run), "--tasks", "4", "--queries", "2", "--meta-batch", "2",
                 "--no-progress"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    record = json.loads((run / "eval.json").read_text())
    assert record["tasks"] == 4 and record["ways"] == 2 and 0 <= record["accuracy"] <= 1
    assert re.match(r"accuracy \d+\.\d\d% \+- ", out)
    code = main(["eval", str(run), "--tasks", "4", "--no-progress"])  # 15 queries: too many
    assert code == 2
    assert "has only 3 images, but a task takes shots=1 + queries=15" in capsys.readouterr().err
