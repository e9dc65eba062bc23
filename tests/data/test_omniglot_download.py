"""Downloading without network: ``file://`` mirrors of copies of the shared archives."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import mamlkit.data.download as download_module
from mamlkit.data import ChecksumError, DownloadError, Omniglot, download_omniglot
from mamlkit.data.download import OMNIGLOT_MD5, OMNIGLOT_URL, download_file, md5sum
from mamlkit.data.download import omniglot_base_url as base_url

NAMES = ("images_background.zip", "images_evaluation.zip")


@pytest.fixture(scope="module")
def mirror(omniglot_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding copies of the shared archives, served as a file:// "server"."""
    folder = tmp_path_factory.mktemp("mirror")
    for name in NAMES:
        shutil.copy(omniglot_root / "omniglot" / name, folder)
    return folder


@pytest.fixture
def real_md5(mirror: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Make the expected MD5s those of the (re-packed) copies, so a download can succeed."""
    sums = {name: md5sum(mirror / name) for name in NAMES}
    for name, value in sums.items():
        monkeypatch.setitem(OMNIGLOT_MD5, name, value)
    return sums


def test_published_checksums_are_not_those_of_the_shared_copies(mirror: Path) -> None:
    # The shared zips are re-packed; that difference is what the checksum tests rely on.
    assert OMNIGLOT_MD5["images_background.zip"] == "68d2efa1b9178cc56df9314c21c6e718"
    assert OMNIGLOT_MD5["images_evaluation.zip"] == "6b91aef0f799c5bb55b94e3f2daec811"
    assert md5sum(mirror / "images_background.zip") != OMNIGLOT_MD5["images_background.zip"]


def test_wrong_checksum_raises_and_leaves_nothing(mirror: Path, tmp_path: Path) -> None:
    dest = tmp_path / "omniglot" / "images_background.zip"
    url = (mirror / "images_background.zip").as_uri()
    expected = OMNIGLOT_MD5["images_background.zip"]
    with pytest.raises(ChecksumError) as info:
        download_file(url, dest, expected, progress=False)
    message = str(info.value)
    assert "images_background.zip" in message
    assert expected in message and md5sum(mirror / "images_background.zip") in message
    assert list(dest.parent.iterdir()) == []  # no partial or temporary file left behind


def test_download_succeeds_with_matching_checksums(mirror, tmp_path, real_md5) -> None:
    folder = tmp_path / "omniglot"
    fetched = download_omniglot(folder, base_url=mirror.as_uri(), progress=False)
    assert fetched == [folder / name for name in NAMES]
    assert sorted(p.name for p in folder.iterdir()) == list(NAMES)
    for name in NAMES:
        assert md5sum(folder / name) == real_md5[name]
    # Archives already present are neither fetched again nor checksummed.
    for name in NAMES:
        OMNIGLOT_MD5[name] = "0" * 32
    assert download_omniglot(folder, base_url="file:///nonexistent", progress=False) == []


def test_omniglot_download_flag_uses_env_url(
    mirror, tmp_path, real_md5, monkeypatch, data_cache_dir
) -> None:
    monkeypatch.setenv("MAMLKIT_OMNIGLOT_URL", mirror.as_uri())
    # Same archive bytes as the shared copies, so the session cache is reused (no decoding).
    ds = Omniglot(tmp_path, "test", download=True, cache_dir=data_cache_dir)
    assert ds.num_classes == 423
    assert (tmp_path / "omniglot" / "images_evaluation.zip").is_file()


def test_network_failure_says_how_to_get_the_files(tmp_path: Path) -> None:
    folder = tmp_path / "omniglot"
    with pytest.raises(DownloadError) as info:
        download_omniglot(folder, base_url=(tmp_path / "offline").as_uri(), progress=False)
    message = str(info.value)
    assert "could not download" in message and str(folder) in message
    assert "by hand" in message and "MAMLKIT_DATA" in message
    assert not isinstance(info.value, ChecksumError)
    assert list(folder.iterdir()) == []


def test_unwritable_destination(mirror: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DownloadError, match="cannot write into"):
        download_file((mirror / NAMES[0]).as_uri(), blocker / NAMES[0], "0" * 32, progress=False)


def test_base_url_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAMLKIT_OMNIGLOT_URL", raising=False)
    assert base_url() == OMNIGLOT_URL
    monkeypatch.setenv("MAMLKIT_OMNIGLOT_URL", "file:///mirror/")
    assert base_url() == "file:///mirror"
    assert base_url("https://example.org/x") == "https://example.org/x"
    assert download_module.OMNIGLOT_URL.startswith("https://raw.githubusercontent.com/brendenlake")


def test_missing_archive_without_download_names_it(mirror: Path, tmp_path: Path) -> None:
    folder = tmp_path / "omniglot"
    folder.mkdir()
    shutil.copy(mirror / "images_background.zip", folder)
    with pytest.raises(FileNotFoundError) as info:
        Omniglot(tmp_path, "test")
    message = str(info.value)
    assert str(folder / "images_evaluation.zip") in message
    assert "download=True" in message and "--data-root" in message
