"""Omniglot on the real (shared, read-only) archives: protocol, decoding, cache and bad inputs."""

from __future__ import annotations

import io
import random
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import mamlkit.data.omniglot as omniglot_module
from mamlkit.data import (
    DATASETS,
    EpisodeSampler,
    Omniglot,
    OmniglotArchiveError,
    resolve_cache_dir,
    resolve_data_root,
    split_characters,
)
from mamlkit.registry import UnknownNameError


def _archive_characters(path: Path) -> dict[str, list[str]]:
    """Character -> sorted PNG members, read from the archive independently of the loader."""
    chars: dict[str, list[str]] = {}
    name = path.name
    with zipfile.ZipFile(path) as zf:
        for member in zf.namelist():
            if member.endswith(".png"):
                top, alphabet, character, _ = member.split("/")
                assert top == name.removesuffix(".zip")
                chars.setdefault(f"{alphabet}/{character}", []).append(member)
    return {k: sorted(v) for k, v in chars.items()}


@pytest.fixture(scope="module")
def archive_dir(omniglot_root: Path) -> Path:
    """The shared folder holding the two zips (read-only)."""
    return omniglot_root / "omniglot"


@pytest.fixture(scope="module")
def archive_chars(archive_dir: Path) -> dict[str, dict[str, list[str]]]:
    names = ("images_background.zip", "images_evaluation.zip")
    return {n: _archive_characters(archive_dir / n) for n in names}


@pytest.fixture(scope="module")
def train(omniglot_root: Path, data_cache_dir: Path) -> Omniglot:
    return Omniglot(omniglot_root, "train", cache_dir=data_cache_dir)


@pytest.fixture(scope="module")
def test_split(omniglot_root: Path, data_cache_dir: Path, train: Omniglot) -> Omniglot:
    return Omniglot(omniglot_root, "test", cache_dir=data_cache_dir)


@pytest.fixture
def fake_decode(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Replace PNG decoding by blank images (real archive listing), to test cache logic fast."""
    calls: list[Path] = []

    def decode(path: Path, image_size: int) -> omniglot_module._Decoded:
        calls.append(path)
        with zipfile.ZipFile(path) as zf:
            chars = omniglot_module._list_characters(zf, path, path.name.removesuffix(".zip"))
        counts = [len(m) for m in chars.values()]
        images = np.full((sum(counts), image_size, image_size), 7, dtype=np.uint8)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return omniglot_module._Decoded(images, offsets, list(chars))

    monkeypatch.setattr(omniglot_module, "_decode_archive", decode)
    return calls


# --- the archives and the protocol -------------------------------------------------------------


def test_archives_hold_1623_characters_of_20_drawings(archive_chars) -> None:
    background, evaluation = archive_chars.values()
    assert (len(background), len(evaluation)) == (964, 659)
    assert {len(m) for m in background.values()} == {20}
    assert {len(m) for m in evaluation.values()} == {20}
    assert len(background.keys() | evaluation.keys()) == 1623


def test_split_sizes_and_coverage(omniglot_root, data_cache_dir, train, test_split, archive_chars):
    all_chars = set().union(*(chars.keys() for chars in archive_chars.values()))
    assert (train.num_characters, test_split.num_characters) == (1200, 423)
    assert (train.num_classes, test_split.num_classes) == (4800, 423)
    assert set(train.characters).isdisjoint(test_split.characters)
    assert set(train.characters) | set(test_split.characters) == all_chars
    np.testing.assert_array_equal(train.samples_per_class, np.full(4800, 20))
    np.testing.assert_array_equal(test_split.samples_per_class, np.full(423, 20))

    val_mode = {
        s: Omniglot(omniglot_root, s, validation=True, cache_dir=data_cache_dir)
        for s in ("train", "val", "test")
    }
    assert [ds.num_characters for ds in val_mode.values()] == [1100, 100, 423]
    sets = [set(ds.characters) for ds in val_mode.values()]
    assert sum(len(s) for s in sets) == len(set().union(*sets)) == 1623
    assert set().union(*sets) == all_chars
    # Same test characters with and without a validation split; val + train = the 1200.
    assert val_mode["test"].characters == test_split.characters
    assert sets[0] | sets[1] == set(train.characters)
    assert val_mode["val"].rotations is False and val_mode["train"].num_classes == 4400


def test_split_follows_the_seed_and_ignores_global_rngs(omniglot_root, data_cache_dir, train):
    def construct(seed: int) -> Omniglot:
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        return Omniglot(omniglot_root, "train", cache_dir=data_cache_dir)

    assert construct(1).characters == construct(12345).characters == train.characters
    other = split_characters("test", split_seed=1)
    assert len(other) == 423
    assert not np.array_equal(other, split_characters("test", split_seed=0))


def test_class_names_and_layout(train, test_split) -> None:
    assert train.rotations and not test_split.rotations
    assert train.class_names[:4] == [
        train.characters[0],
        f"{train.characters[0]}@rot90",
        f"{train.characters[0]}@rot180",
        f"{train.characters[0]}@rot270",
    ]
    assert test_split.class_names == test_split.characters
    assert train.characters == sorted(train.characters)
    assert train.image_shape == (1, 28, 28)


# --- images ------------------------------------------------------------------------------------


def test_images_are_inverted_float_in_unit_range(test_split) -> None:
    classes = np.repeat(np.arange(0, 423, 10), 20)
    samples = np.tile(np.arange(20), len(classes) // 20)
    x = test_split.get(classes, samples)
    assert x.shape == (len(classes), 1, 28, 28) and x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    # Strokes are bright on a dark background: the mean is low, the stroke pixels near 1.
    assert float(x.mean()) < 0.25
    peaks = x.amax(dim=(1, 2, 3))
    assert float(peaks.min()) > 0.5 and float(peaks.median()) > 0.95


def test_pixels_match_an_independent_decode(test_split, archive_chars, archive_dir) -> None:
    from PIL import Image

    members = {**archive_chars["images_background.zip"], **archive_chars["images_evaluation.zip"]}
    for cls, sample in [(0, 0), (200, 13), (422, 19)]:
        member = members[test_split.characters[cls]][sample]
        archive = member.split("/")[0] + ".zip"
        with zipfile.ZipFile(archive_dir / archive) as zf:
            image = Image.open(io.BytesIO(zf.read(member))).convert("L")
        expected = 1 - np.asarray(image.resize((28, 28), Image.LANCZOS), np.float32) / 255
        torch.testing.assert_close(
            test_split.get([cls], [sample])[0, 0], torch.from_numpy(expected), atol=1e-6, rtol=0
        )


def test_rotated_classes_are_rotations_of_their_source(train) -> None:
    for char in (0, 517, 1199):
        base = train.get([4 * char] * 20, list(range(20)))
        for k in (1, 2, 3):
            rotated = train.get([4 * char + k] * 20, list(range(20)))
            assert not torch.equal(rotated, base)
            expected = torch.from_numpy(np.rot90(base.numpy(), k, axes=(2, 3)).copy())
            torch.testing.assert_close(rotated, expected, atol=0, rtol=0)


def test_get_mixed_rotations_in_one_call(train) -> None:
    classes = [5, 0, 7, 4, 2, 6]
    samples = [3, 1, 19, 0, 2, 8]
    together = train.get(classes, samples)
    one_by_one = torch.cat([train.get([c], [s]) for c, s in zip(classes, samples, strict=True)])
    torch.testing.assert_close(together, one_by_one, atol=0, rtol=0)


def test_get_rejects_bad_indices(test_split) -> None:
    with pytest.raises(IndexError, match=r"class index 423 .* 423 classes"):
        test_split.get([0, 423], [0, 0])
    with pytest.raises(IndexError, match=r"class index -1"):
        test_split.get([-1], [0])
    with pytest.raises(IndexError, match=r"sample index 20 .*class 3 .* 20 samples"):
        test_split.get([3], [20])
    with pytest.raises(ValueError, match="same length, got 2 and 1"):
        test_split.get([0, 1], [0])
    with pytest.raises(TypeError, match="integers"):
        test_split.get([0.5], [0])
    assert test_split.get([], []).shape == (0, 1, 28, 28)


def test_registry_and_sampler_on_real_data(omniglot_root, data_cache_dir, test_split) -> None:
    ds = DATASETS.get("omniglot")(omniglot_root, "test", cache_dir=data_cache_dir)
    assert isinstance(ds, Omniglot) and ds.characters == test_split.characters
    with pytest.raises(UnknownNameError, match="did you mean 'omniglot'"):
        DATASETS.get("omniglott")
    with pytest.raises(ValueError, match="ways=500 but the omniglot 'test' split has only 423"):
        EpisodeSampler(ds, ways=500, shots=1, queries=1, meta_batch=1)
    with pytest.raises(ValueError, match=r"shots=5 \+ queries=16 = 21 .* only 20 samples"):
        EpisodeSampler(ds, ways=5, shots=5, queries=16, meta_batch=1)
    episode = EpisodeSampler(ds, ways=5, shots=1, queries=15, meta_batch=4).sample()
    assert episode.support_x.shape == (4, 5, 1, 28, 28)
    assert episode.query_x.shape == (4, 75, 1, 28, 28)


# --- root, cache and environment ---------------------------------------------------------------


def test_root_from_environment_and_folder_of_zips(monkeypatch, omniglot_root, test_split) -> None:
    monkeypatch.setenv("MAMLKIT_DATA", str(omniglot_root))
    assert resolve_data_root() == omniglot_root
    assert Omniglot(split="test").characters == test_split.characters  # cache from $MAMLKIT_CACHE
    # Pointing straight at the folder that holds the zips works too.
    assert Omniglot(omniglot_root / "omniglot", "test").characters == test_split.characters


def test_default_locations_are_under_home(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("MAMLKIT_DATA", raising=False)
    monkeypatch.delenv("MAMLKIT_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_data_root() == tmp_path / ".cache" / "mamlkit"
    assert resolve_cache_dir() == tmp_path / ".cache" / "mamlkit" / "decoded"
    assert resolve_cache_dir("/x") == Path("/x")


def test_second_construction_loads_the_cache(
    omniglot_root, data_cache_dir, test_split, monkeypatch
) -> None:
    files = list(data_cache_dir.glob("omniglot-28px-*.npz"))
    assert files == [test_split.cache_path]

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although a valid cache exists")

    monkeypatch.setattr(omniglot_module, "_decode_archive", no_decoding)
    again = Omniglot(omniglot_root, "test", cache_dir=data_cache_dir)
    assert again.from_cache
    classes = np.repeat(np.arange(423), 20)
    samples = np.tile(np.arange(20), 423)
    torch.testing.assert_close(again.get(classes, samples), test_split.get(classes, samples))


def test_corrupt_cache_is_ignored_and_rebuilt(omniglot_root, tmp_path, test_split, fake_decode):
    cache = tmp_path / "cache"
    cache.mkdir()
    target = cache / test_split.cache_path.name
    target.write_bytes(test_split.cache_path.read_bytes()[:5000])  # truncated copy
    with pytest.warns(RuntimeWarning, match="ignoring unreadable Omniglot cache"):
        rebuilt = Omniglot(omniglot_root, "test", cache_dir=cache)
    assert not rebuilt.from_cache and len(fake_decode) == 2
    assert rebuilt.cache_path == target
    assert float(rebuilt.get([0], [0]).max()) == pytest.approx(7 / 255)
    assert Omniglot(omniglot_root, "test", cache_dir=cache).from_cache
    assert sorted(p.name for p in cache.iterdir()) == [target.name]  # no temp files left


def test_unwritable_cache_dir_warns_and_still_works(omniglot_root, tmp_path, fake_decode) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.warns(RuntimeWarning, match="could not write the decoded Omniglot cache") as record:
        ds = Omniglot(omniglot_root, "test", cache_dir=blocker / "cache")
    assert len(record) == 1
    assert ds.cache_path is None and not ds.from_cache and ds.num_classes == 423


def test_cache_key_depends_on_image_size(omniglot_root, tmp_path, fake_decode) -> None:
    small = Omniglot(omniglot_root, "test", image_size=14, cache_dir=tmp_path)
    assert small.get([0], [0]).shape == (1, 1, 14, 14)
    assert "14px" in small.cache_path.name
    Omniglot(omniglot_root, "test", image_size=20, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2


# --- bad inputs --------------------------------------------------------------------------------


def test_unknown_split_names() -> None:
    needs_flag = r"'val' exists only with validation=True; valid splits without it: 'train', 'test'"
    with pytest.raises(ValueError, match=needs_flag):
        Omniglot("/nonexistent", "val")
    with pytest.raises(ValueError, match=r"unknown omniglot split 'valid'.*'train', 'val', 'test'"):
        Omniglot("/nonexistent", "valid", validation=True)
    with pytest.raises(ValueError, match="image_size"):
        Omniglot("/nonexistent", image_size=0)


def test_missing_archive_names_the_path(tmp_path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        Omniglot(tmp_path, "test")
    message = str(info.value)
    assert str(tmp_path / "omniglot" / "images_background.zip") in message
    assert "download=True" in message and "MAMLKIT_DATA" in message


def test_root_that_is_a_file(tmp_path) -> None:
    root = tmp_path / "data.txt"
    root.write_text("x")
    with pytest.raises(NotADirectoryError, match=r"data\.txt.*is a file"):
        Omniglot(root, "test")


def _root_with(tmp_path: Path, archive_dir: Path, background: bytes) -> Path:
    """A data root holding ``background`` as its background archive and the real evaluation one."""
    folder = tmp_path / "root" / "omniglot"
    folder.mkdir(parents=True)
    (folder / "images_background.zip").write_bytes(background)
    shutil.copy(archive_dir / "images_evaluation.zip", folder)
    return folder.parent


def test_garbage_archive(archive_dir, tmp_path) -> None:
    root = _root_with(tmp_path, archive_dir, b"this is not a zip file" * 100)
    with pytest.raises(OmniglotArchiveError, match=r"images_background\.zip is not a readable zip"):
        Omniglot(root, "test", cache_dir=tmp_path / "cache")


def test_truncated_archive(archive_dir, tmp_path) -> None:
    data = (archive_dir / "images_background.zip").read_bytes()
    root = _root_with(tmp_path, archive_dir, data[: len(data) // 2])
    with pytest.raises(OmniglotArchiveError, match="truncated or corrupt"):
        Omniglot(root, "test", cache_dir=tmp_path / "cache")


def test_archive_with_damaged_member(archive_dir, tmp_path) -> None:
    data = bytearray((archive_dir / "images_background.zip").read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = zf.infolist()[10]
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start : start + info.compress_size] = bytes(info.compress_size)  # zero the payload
    root = _root_with(tmp_path, archive_dir, bytes(data))
    with pytest.raises(OmniglotArchiveError, match=rf"cannot decode {info.filename}"):
        Omniglot(root, "test", cache_dir=tmp_path / "cache")


def test_archive_without_the_layout(archive_dir, tmp_path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("readme.txt", "hello")
        zf.writestr("images_background/Latin/character01.png", "flat")
    root = _root_with(tmp_path, archive_dir, buffer.getvalue())
    with pytest.raises(OmniglotArchiveError, match="lacks the Omniglot layout"):
        Omniglot(root, "test", cache_dir=tmp_path / "cache")


def test_archive_with_too_few_characters(archive_dir, tmp_path) -> None:
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(archive_dir / "images_background.zip") as src,
        zipfile.ZipFile(buffer, "w") as dst,
    ):
        for member in src.namelist()[:40]:
            dst.writestr(member, src.read(member))
    root = _root_with(tmp_path, archive_dir, buffer.getvalue())
    with pytest.raises(OmniglotArchiveError, match=r"holds 2 characters .* expected 964"):
        Omniglot(root, "test", cache_dir=tmp_path / "cache")


@pytest.mark.parametrize(
    "member",
    ["../escape.png", "images_background/../../escape.png", "/etc/escape.png", "\\abs.png"],
)
def test_archive_with_a_member_escaping_its_folder_is_refused(
    archive_dir, tmp_path, member: str
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("images_background/Latin/character01/0001_01.png", "flat")
        zf.writestr(member, "x")
    root = _root_with(tmp_path, archive_dir, buffer.getvalue())
    with pytest.raises(OmniglotArchiveError, match="would escape the folder"):
        Omniglot(root, "test", cache_dir=tmp_path / "cache")
