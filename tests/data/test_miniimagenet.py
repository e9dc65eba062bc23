"""mini-ImageNet on a tiny generated fixture in the standard layout: loading, resizing, splits,
cache, errors and episodes."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from mamlkit.data import DATASETS, EpisodeSampler, MiniImageNet, MiniImageNetError
from tests.helpers.miniimagenet import SIZES, colour, label_of, make_miniimagenet

SIZE = 16  # small images keep the tests fast; one test checks the default 84


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mini")
    make_miniimagenet(root, classes=5, images=[4, 6, 4, 5, 4])
    return root


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def load(root: Path, split: str = "train", **options) -> MiniImageNet:
    options.setdefault("image_size", SIZE)
    return MiniImageNet(root, split, **options)


def test_loads_classes_in_sorted_order_with_their_images(data_root: Path, cache: Path) -> None:
    ds = load(data_root, cache_dir=cache)
    assert ds.num_classes == 5 and ds.image_shape == (3, SIZE, SIZE)
    assert ds.class_names == [label_of("train", c) for c in range(5)]
    np.testing.assert_array_equal(ds.samples_per_class, [4, 6, 4, 5, 4])
    assert not ds.samples_per_class.flags.writeable
    assert ds.filenames[1] == sorted(ds.filenames[1]) and len(ds.filenames[1]) == 6
    assert not ds.is_standard and "'train'" in ds.description
    classes = [c for c in range(5) for _ in range(int(ds.samples_per_class[c]))]
    samples = [s for c in range(5) for s in range(int(ds.samples_per_class[c]))]
    x = ds.get(classes, samples)
    assert x.shape == (len(classes), 3, SIZE, SIZE) and x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    expected = (
        torch.tensor([colour("train", c, s) for c, s in zip(classes, samples, strict=True)]) / 255.0
    )
    # solid colours survive JPEG and resizing up to a few levels
    torch.testing.assert_close(x.mean(dim=(2, 3)), expected, atol=4 / 255, rtol=0)
    assert float((x - x.mean(dim=(2, 3), keepdim=True)).abs().max()) < 6 / 255


def test_images_of_any_size_are_resized_to_84_by_default(data_root: Path, cache: Path) -> None:
    ds = MiniImageNet(data_root, "test", cache_dir=cache)
    assert ds.image_shape == (3, 84, 84)
    x = ds.get(torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 2, 3]))
    assert x.shape == (4, 3, 84, 84)
    assert {SIZES[i % len(SIZES)] for i in range(4)} >= {(20, 30), (97, 61)}


def test_splits_are_disjoint_and_accept_the_folder_itself(data_root: Path, cache: Path) -> None:
    splits = {s: load(data_root, s, cache_dir=cache) for s in ("train", "val", "test")}
    names = [set(ds.class_names) for ds in splits.values()]
    assert sum(map(len, names)) == len(set().union(*names)) == 15
    direct = load(data_root / "miniimagenet", "val", cache_dir=cache)
    assert direct.class_names == splits["val"].class_names
    via_registry = DATASETS.get("miniimagenet")(
        root=data_root, split="val", image_size=SIZE, cache_dir=cache
    )
    torch.testing.assert_close(via_registry.get([0, 4], [1, 3]), direct.get([0, 4], [1, 3]))


def test_normalize_uses_imagenet_statistics(data_root: Path, cache: Path) -> None:
    raw = load(data_root, cache_dir=cache).get([2], [1])
    normed = load(data_root, cache_dir=cache, normalize=True).get([2], [1])
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(normed, (raw - mean) / std)


def test_cache_is_reused_memory_mapped_and_rebuilt_when_stale(data_root: Path, cache: Path) -> None:
    first = load(data_root, cache_dir=cache)
    assert not first.from_cache and first.cache_path is not None
    assert first.cache_path.parent == cache and first.cache_path.suffix == ".npy"
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]
    second = load(data_root, cache_dir=cache)
    assert second.from_cache and second.cache_path == first.cache_path
    assert isinstance(second._images, np.memmap)
    idx = (list(range(5)), [0, 1, 2, 3, 0])
    torch.testing.assert_close(second.get(*idx), first.get(*idx))
    # a different image size is another cache file
    assert load(data_root, cache_dir=cache, image_size=SIZE + 2).cache_path != first.cache_path
    # a corrupt cache file is ignored with a warning and rebuilt
    first.cache_path.write_bytes(b"not an npy file")
    with pytest.warns(RuntimeWarning, match="ignoring unreadable mini-ImageNet cache"):
        rebuilt = load(data_root, cache_dir=cache)
    assert not rebuilt.from_cache
    torch.testing.assert_close(rebuilt.get(*idx), first.get(*idx))


def test_unwritable_cache_warns_and_still_works(data_root: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    with pytest.warns(RuntimeWarning, match="could not write the decoded mini-ImageNet cache"):
        ds = load(data_root, "val", cache_dir=blocker / "cache")
    assert ds.cache_path is None and ds.get([0], [0]).shape == (1, 3, SIZE, SIZE)


def test_episodes_through_the_sampler(data_root: Path, cache: Path) -> None:
    ds = load(data_root, cache_dir=cache)
    sampler = EpisodeSampler(ds, ways=3, shots=2, queries=2, meta_batch=4, seed=7)
    ep = sampler.sample()
    assert ep.support_x.shape == (4, 6, 3, SIZE, SIZE) and ep.query_x.shape == (4, 6, 3, SIZE, SIZE)
    assert ep.support_y.tolist()[0] == [0, 0, 1, 1, 2, 2]
    again = EpisodeSampler(ds, ways=3, shots=2, queries=2, meta_batch=4, seed=7).sample()
    for a, b in zip(ep, again, strict=True):
        torch.testing.assert_close(a, b)
    other = EpisodeSampler(ds, ways=3, shots=2, queries=2, meta_batch=4, seed=8).sample()
    assert not torch.equal(ep.support_x, other.support_x)
    with pytest.raises(ValueError, match="only 4 samples in its smallest class"):
        EpisodeSampler(ds, ways=3, shots=3, queries=2, meta_batch=1)


def test_get_rejects_bad_indices(data_root: Path, cache: Path) -> None:
    ds = load(data_root, cache_dir=cache)
    with pytest.raises(IndexError, match="class index 5 out of range"):
        ds.get([5], [0])
    with pytest.raises(IndexError, match=r"sample index 4 out of range for class 0 \(n0000000"):
        ds.get([0], [4])
    with pytest.raises(TypeError, match="must hold integers"):
        ds.get([0.5], [0])
    with pytest.raises(ValueError, match="same length"):
        ds.get([0, 1], [0])
    assert ds.get([], []).shape == (0, 3, SIZE, SIZE)


# --- errors ------------------------------------------------------------------------------------


def test_missing_dataset_explains_how_to_get_it(tmp_path: Path) -> None:
    for download in (False, True):
        with pytest.raises(FileNotFoundError, match="cannot download mini-ImageNet") as info:
            MiniImageNet(tmp_path / "nothing", "train", download=download)
        assert str(tmp_path / "nothing" / "miniimagenet" / "images") in str(info.value)
        assert "meta-learning-lstm" in str(info.value)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        MiniImageNet(tmp_path / "afile", "train")


def test_unknown_split_is_rejected_before_touching_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown mini-ImageNet split 'valid'; valid splits"):
        MiniImageNet(tmp_path / "nothing", "valid")
    with pytest.raises(ValueError, match="image_size must be a positive integer"):
        MiniImageNet(tmp_path / "nothing", "train", image_size=0)


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    """A writable fixture copy each test may damage."""
    return make_miniimagenet(tmp_path / "data", classes=3, images=3)


def _expect(folder: Path, pattern: str, error: type[Exception] = MiniImageNetError) -> None:
    with pytest.raises(error, match=pattern):
        MiniImageNet(folder.parent, "train", image_size=SIZE, cache_dir=folder.parent / "c")


def test_csv_problems_name_the_file(broken: Path) -> None:
    csv = broken / "train.csv"
    good = csv.read_text()
    csv.unlink()
    _expect(broken, f"split file not found: {csv}", FileNotFoundError)
    csv.write_text("image,class\n" + good.split("\n", 1)[1])
    _expect(broken, f"{csv} must start with the header line 'filename,label'")
    csv.write_text("")
    _expect(broken, "found 'an empty file'")
    csv.write_text("filename,label\n")
    _expect(broken, "lists no images")
    csv.write_text(good + "oops\n")
    _expect(broken, r"line 11: expected 'filename,label', got 'oops'")
    csv.write_text(good + "../escape.jpg,n0000000\n")
    _expect(broken, "not a plain file name inside images/")
    first = good.splitlines()[1]
    csv.write_text(good + first + "\n")
    _expect(broken, f"lists {first.split(',')[0]} more than once")
    csv.write_text(good.replace("filename,label", " filename , label "))
    assert MiniImageNet(broken.parent, "train", image_size=SIZE, cache_dir=broken / "c").num_classes


def test_missing_and_corrupt_images_name_the_file(broken: Path) -> None:
    victim = broken / "images" / f"{label_of('train', 1)}00000002.jpg"
    data = victim.read_bytes()
    victim.unlink()
    listed = broken / "train.csv"
    _expect(broken, rf"1 image\(s\) listed in {listed} are missing .* e\.g\. {victim}")
    victim.write_bytes(data[:40])
    _expect(broken, f"cannot decode {victim}")


def test_overlapping_splits_are_rejected(broken: Path) -> None:
    val = broken / "val.csv"
    val.write_text(val.read_text() + f"{label_of('train', 0)}00000001.jpg,{label_of('train', 0)}\n")
    _expect(broken, "share 1 classes")


def test_never_unpickles(monkeypatch: pytest.MonkeyPatch, data_root: Path, cache: Path) -> None:
    import pickle

    def refuse(*args, **kwargs):
        raise AssertionError("pickle.load called")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    load(data_root, cache_dir=cache)
    assert load(data_root, cache_dir=cache).from_cache


def test_does_not_write_into_the_data_folder(data_root: Path, cache: Path) -> None:
    before = sorted(os.listdir(data_root / "miniimagenet"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load(data_root, "test", cache_dir=cache)
    assert sorted(os.listdir(data_root / "miniimagenet")) == before


def test_cli_trains_and_evaluates_conv4_on_miniimagenet(data_root: Path, tmp_path: Path, capsys):
    """`mamlkit train --dataset miniimagenet` end to end on the fixture (84x84 RGB, Conv4-32)."""
    from mamlkit.cli import main

    out = tmp_path / "run"
    args = ["train", "--dataset", "miniimagenet", "--data-root", str(data_root), "--ways", "3"]
    args += ["--shots", "1", "--queries", "1", "--meta-batch", "2", "--iterations", "2"]
    args += ["--hidden", "32", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    config = (out / "config.yaml").read_text()
    assert "dataset: miniimagenet" in config and "hidden: 32" in config
    code = main(["eval", str(out), "--tasks", "2", "--queries", "1", "--no-progress"])
    assert code == 0 and (out / "eval.json").is_file()
    assert (
        main([*args[:-3], "--split-seed", "1", "--out", str(tmp_path / "v"), "--no-progress"]) == 2
    )
    assert (
        "dataset 'miniimagenet' has fixed splits: split_seed cannot be set"
        in capsys.readouterr().err
    )
