"""CIFAR-FS and FC100 from a tiny archive in the official CIFAR-100 binary format: the class
splits, the decoding of the records, the errors for foreign or damaged archives, the checksummed
download (from a ``file://`` mirror) and a tiny ``mamlkit train`` / ``eval``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mamlkit.cli import main
from mamlkit.data import (
    DATASETS,
    ChecksumError,
    CifarArchiveError,
    CifarFewShot,
    EpisodeSampler,
    cifar,
    dataset_image_format,
)
from mamlkit.data.cifar import CIFAR_FS_SPLITS, FC100_SPLITS, SUPERCLASSES, split_classes
from mamlkit.data.download import md5sum
from tests.helpers.cifar import (
    FINE_NAMES,
    class_records,
    make_cifar100,
    official_members,
    pixels,
    record,
    write_archive,
)

SPLITS = ("train", "val", "test")
PER_CLASS, IN_TEST = 6, 2


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cifar-data")
    make_cifar100(root, per_class=PER_CLASS, in_test=IN_TEST)
    return root


def test_the_splits_have_the_published_sizes_and_disjoint_classes() -> None:
    every_class = {c for members in SUPERCLASSES.values() for c in members}
    assert len(every_class) == 100 and len(SUPERCLASSES) == 20
    assert all(len(members) == 5 for members in SUPERCLASSES.values())
    sizes = {
        "cifar-fs": {"train": 64, "val": 16, "test": 20},
        "fc100": {"train": 60, "val": 20, "test": 20},
    }
    for dataset, expected in sizes.items():
        classes = {split: set(split_classes(dataset, split)) for split in SPLITS}
        assert {split: len(c) for split, c in classes.items()} == expected
        assert set().union(*classes.values()) == every_class
        assert not classes["train"] & classes["val"]
        assert not classes["train"] & classes["test"]
        assert not classes["val"] & classes["test"]
    assert {s: len(CIFAR_FS_SPLITS[s]) for s in SPLITS} == sizes["cifar-fs"]
    assert [len(FC100_SPLITS[s]) for s in SPLITS] == [12, 4, 4]
    superclasses = [set(FC100_SPLITS[s]) for s in SPLITS]
    assert set().union(*superclasses) == set(SUPERCLASSES)
    assert sum(len(s) for s in superclasses) == 20  # no superclass in two splits
    # FC100's splits are whole superclasses: a test class never shares one with a train class.
    for split in SPLITS:
        fine = set(split_classes("fc100", split))
        assert fine == {c for s in FC100_SPLITS[split] for c in SUPERCLASSES[s]}


@pytest.mark.parametrize("name", ["cifar-fs", "fc100"])
@pytest.mark.parametrize("split", SPLITS)
def test_each_split_loads_its_classes_with_all_their_images(
    cifar_root: Path, name: str, split: str
) -> None:
    ds = DATASETS.get(name)(cifar_root, split)
    assert isinstance(ds, CifarFewShot)
    assert ds.class_names == sorted(split_classes(name, split))
    assert ds.num_classes == len(ds.class_names)
    assert ds.image_shape == (3, 32, 32)
    assert ds.samples_per_class.tolist() == [PER_CLASS] * ds.num_classes
    assert not ds.samples_per_class.flags.writeable
    by_class = {c: s for s, members in SUPERCLASSES.items() for c in members}
    assert ds.class_superclasses == [by_class[c] for c in ds.class_names]
    assert ds.description == f"the {name} {split!r} split"


def test_images_are_a_class_s_train_then_test_records_decoded_as_rgb(cifar_root: Path) -> None:
    ds = CifarFewShot("cifar-fs", cifar_root, "test")
    classes = torch.tensor([c for c in range(ds.num_classes) for _ in range(PER_CLASS)])
    samples = torch.arange(PER_CLASS).repeat(ds.num_classes)
    images = ds.get(classes, samples)
    assert images.dtype == torch.float32 and images.shape == (len(classes), 3, 32, 32)
    expected = np.stack(
        [
            pixels(FINE_NAMES.index(ds.class_names[int(c)]), int(s))
            for c, s in zip(classes, samples, strict=True)
        ]
    ).reshape(-1, 3, 32, 32)
    torch.testing.assert_close(images, torch.from_numpy(expected).float() / 255, rtol=0, atol=0)


def test_a_record_with_known_bytes_decodes_to_planes_of_red_green_blue(tmp_path: Path) -> None:
    rows, cols = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    planes = np.stack([np.full((32, 32), 200), rows * 8, cols * 4]).astype(np.uint8)  # R, G, B
    apple = FINE_NAMES.index("apple")
    train, test = class_records(per_class=2, in_test=1)
    train = [record(apple, planes.reshape(-1)), *train]  # apple's first image
    write_archive(tmp_path / "cifar100" / "cifar-100-binary.tar.gz", official_members(train, test))
    ds = CifarFewShot("cifar-fs", tmp_path, "train")
    image = ds.get([ds.class_names.index("apple")], [0])[0]
    torch.testing.assert_close(image[0], torch.full((32, 32), 200 / 255))
    torch.testing.assert_close(image[1], torch.from_numpy(rows * 8 / 255).float())  # by row
    torch.testing.assert_close(image[2], torch.from_numpy(cols * 4 / 255).float())  # by column
    assert ds.samples_per_class[ds.class_names.index("apple")] == 3
    assert dataset_image_format(DATASETS.get("cifar-fs"), {}).shape == (3, 32, 32)


def test_sampled_episodes_hold_the_split_s_images(cifar_root: Path) -> None:
    ds = DATASETS.get("fc100")(cifar_root, "val")
    episode = EpisodeSampler(ds, ways=5, shots=2, queries=3, meta_batch=2, seed=0).sample()
    assert episode.support_x.shape == (2, 10, 3, 32, 32)
    assert episode.query_x.shape == (2, 15, 3, 32, 32)
    assert float(episode.support_x.min()) >= 0.0 and float(episode.support_x.max()) <= 1.0


def test_get_refuses_indices_out_of_range(cifar_root: Path) -> None:
    ds = CifarFewShot("fc100", cifar_root, "test")
    with pytest.raises(IndexError, match="class index 20 out of range: the fc100 'test' split"):
        ds.get([20], [0])
    with pytest.raises(IndexError, match=r"sample index 6 out of range for class 0 \(baby\)"):
        ds.get([0], [6])


def expect_foreign(path: Path, problem: str) -> None:
    """Opening ``path`` as the archive fails naming it, its MD5, the official MD5 and why."""
    with pytest.raises(CifarArchiveError) as caught:
        CifarFewShot("cifar-fs", path.parent.parent, "test")
    message = str(caught.value)
    assert str(path) in message and problem in message
    assert md5sum(path) in message and cifar.ARCHIVE_MD5 in message
    assert "--download" in message and "\n" not in message


def test_a_file_that_is_no_tar_gz_is_named_with_its_md5(tmp_path: Path) -> None:
    path = tmp_path / "cifar100" / "cifar-100-binary.tar.gz"
    path.parent.mkdir()
    path.write_bytes(b"<html>Not found</html>")
    expect_foreign(path, "cannot be read as a tar.gz")


def test_a_truncated_archive_is_named(tmp_path: Path) -> None:
    path = make_cifar100(tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    expect_foreign(path, "cannot be read as a tar.gz")


def test_another_archive_is_named_with_what_it_lacks(tmp_path: Path) -> None:
    path = tmp_path / "cifar100" / "cifar-100-binary.tar.gz"
    train, test = class_records(1, 0)
    members = {
        name.replace("cifar-100-binary", "cifar-10-batches-bin"): data
        for name, data in official_members(train, test).items()
    }
    write_archive(path, members)
    expect_foreign(path, "lacks cifar-100-binary/train.bin")


def test_records_of_the_wrong_size_are_named(tmp_path: Path) -> None:
    path = tmp_path / "cifar100" / "cifar-100-binary.tar.gz"
    train, test = class_records(2, 1)
    write_archive(path, official_members(train, [*test, b"\x00" * 100]))
    expect_foreign(path, "test.bin holds")


def test_labels_that_contradict_cifar_100_are_named(tmp_path: Path) -> None:
    path = tmp_path / "cifar100" / "cifar-100-binary.tar.gz"
    train, test = class_records(2, 1)
    baby = FINE_NAMES.index("baby")
    write_archive(path, official_members([record(baby, pixels(0, 0), coarse=3), *train], test))
    expect_foreign(path, "record 0 of train.bin is class baby with coarse label 3")
    names = [name.upper() for name in FINE_NAMES]
    write_archive(path, official_members(train, test, fine_names=names))
    expect_foreign(path, "fine_label_names.txt lacks baby")


def test_a_class_without_images_is_named(tmp_path: Path) -> None:
    path = tmp_path / "cifar100" / "cifar-100-binary.tar.gz"
    train, test = class_records(2, 1)
    worm = FINE_NAMES.index("worm")
    keep = [r for r in train + test if r[1] != worm]
    write_archive(path, official_members(keep[:10], keep[10:]))
    expect_foreign(path, "holds no image of class worm")


def test_a_missing_archive_says_where_it_looked_and_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as caught:
        CifarFewShot("cifar-fs", tmp_path, "train")
    message = str(caught.value)
    assert str(tmp_path / "cifar100" / "cifar-100-binary.tar.gz") in message
    assert "--download" in message and cifar.CIFAR100_URL in message
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        CifarFewShot("cifar-fs", tmp_path / "file", "train")


def test_a_folder_holding_the_archive_itself_works(tmp_path: Path) -> None:
    path = make_cifar100(tmp_path / "data", per_class=2, in_test=1)
    ds = CifarFewShot("fc100", path.parent, "train")
    assert ds.archive == path and ds.num_classes == 60


def test_unknown_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown fc100 split 'validation'"):
        CifarFewShot("fc100", "/nowhere", "validation")
    with pytest.raises(ValueError, match="use cifar-fs or fc100"):
        CifarFewShot("cifar10", "/nowhere", "train")


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``file://`` mirror holding a fixture archive, as ``$MAMLKIT_CIFAR100_URL``."""
    archive = make_cifar100(tmp_path / "mirror", per_class=2, in_test=1)
    monkeypatch.setenv(cifar.CIFAR100_URL_ENV, archive.parent.as_uri())
    return archive


def test_download_fetches_the_archive_and_checks_its_md5(
    mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cifar, "ARCHIVE_MD5", md5sum(mirror))
    ds = CifarFewShot("cifar-fs", tmp_path / "root", "val", download=True, progress=False)
    assert ds.archive == tmp_path / "root" / "cifar100" / "cifar-100-binary.tar.gz"
    assert ds.archive.read_bytes() == mirror.read_bytes() and ds.num_classes == 16


def test_a_download_with_the_wrong_md5_is_deleted_and_named(mirror: Path, tmp_path: Path) -> None:
    folder = tmp_path / "root" / "cifar100"
    with pytest.raises(ChecksumError) as caught:
        CifarFewShot("cifar-fs", tmp_path / "root", "val", download=True, progress=False)
    message = str(caught.value)
    assert "cifar-100-binary.tar.gz" in message and cifar.ARCHIVE_MD5 in message
    assert md5sum(mirror) in message and "cs.toronto.edu" in message
    assert list(folder.iterdir()) == []  # nothing that looks complete is left behind


def test_tiny_train_and_eval_from_the_command_line(cifar_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    common = ["--no-progress", "--device", "cpu"]
    train = [
        "train", "--dataset", "cifar-fs", "--data-root", str(cifar_root), "--out", str(out),
        "--iterations", "2", "--ways", "3", "--shots", "1", "--queries", "2", "--meta-batch", "2",
        "--hidden", "4", "--augment", "flip,crop", *common,
    ]  # fmt: skip
    assert main(train) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["iterations"] == 2
    assert "augment: flip,crop" in (out / "config.yaml").read_text()
    evaluate = ["eval", str(out), "--tasks", "4", "--queries", "3", "--meta-batch", "2", *common]
    assert main(evaluate) == 0
    assert json.loads((out / "eval.json").read_text())["tasks"] == 4
