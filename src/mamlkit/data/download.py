"""Fetching dataset archives (Omniglot's, CIFAR-100's), checksummed, without leaving partial
files behind.

Only archives that are missing get downloaded, and only downloads are checksummed: an archive that
is already on disk is trusted as-is (re-packed copies with identical images but different zip
bytes are common, e.g. copies re-zipped by a mirror).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from mamlkit.progress import progress_bar

#: Where the official archives live (Brenden Lake's omniglot repository).
OMNIGLOT_URL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python"

#: Environment variable overriding :data:`OMNIGLOT_URL` (e.g. a ``file://`` mirror).
OMNIGLOT_URL_ENV = "MAMLKIT_OMNIGLOT_URL"

#: MD5 of the official archives, as torchvision publishes them. Looked up at call time, so tests
#: can monkeypatch entries.
OMNIGLOT_MD5: dict[str, str] = {
    "images_background.zip": "68d2efa1b9178cc56df9314c21c6e718",
    "images_evaluation.zip": "6b91aef0f799c5bb55b94e3f2daec811",
}

_CHUNK = 1 << 20


class DownloadError(OSError):
    """A download failed (network, permissions); the message says how to get the file by hand."""


class ChecksumError(DownloadError):
    """A downloaded file's MD5 differs from the expected one; the file has been removed."""


def omniglot_base_url(base_url: str | None = None) -> str:
    """The base URL to fetch archives from: ``base_url``, else ``$MAMLKIT_OMNIGLOT_URL``, else the
    official repository.

    >>> from mamlkit.data.download import omniglot_base_url
    >>> omniglot_base_url("file:///srv/mirror/omniglot/")
    'file:///srv/mirror/omniglot'
    """
    url = base_url or os.environ.get(OMNIGLOT_URL_ENV) or OMNIGLOT_URL
    return url.rstrip("/")


def md5sum(path: str | os.PathLike[str]) -> str:
    """Hex MD5 of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _manual_hint(names: list[str], folder: Path) -> str:
    files = " and ".join(names)
    return (
        f"To get the data by hand, download {files} from {OMNIGLOT_URL}/ (or "
        f"https://github.com/brendenlake/omniglot/tree/master/python) on a machine with network "
        f"access and copy them into {folder}/, or point --data-root / $MAMLKIT_DATA at a folder "
        f"that holds omniglot/{names[0]}"
    )


def download_file(
    url: str,
    dest: str | os.PathLike[str],
    md5: str,
    *,
    progress: bool = True,
    timeout: float = 60,
    hint: str | None = None,
) -> Path:
    """Download ``url`` to ``dest`` atomically and verify its MD5.

    The bytes go to a temporary file next to ``dest`` that replaces ``dest`` only once the checksum
    matches, so an interrupted or corrupt download never leaves a file that looks complete.
    Raises :class:`ChecksumError` on a mismatch and :class:`DownloadError` on any I/O failure;
    both end with ``hint``, how to get the file by hand (default: the Omniglot archives').
    """
    dest = Path(dest)
    hint = hint or _manual_hint([dest.name], dest.parent)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as e:
        raise DownloadError(
            f"cannot write into {dest.parent} to download {dest.name}: {e}. {hint}"
        ) from e
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5()
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    total = response.headers.get("Content-Length")
                    with progress_bar(
                        total=int(total) if total else None,
                        unit="B",
                        unit_scale=True,
                        desc=dest.name,
                        enabled=progress,
                    ) as bar:
                        for chunk in iter(lambda: response.read(_CHUNK), b""):
                            out.write(chunk)
                            digest.update(chunk)
                            bar.update(len(chunk))
            except (urllib.error.URLError, OSError, ValueError) as e:
                reason = getattr(e, "reason", e)
                raise DownloadError(f"could not download {url}: {reason}. {hint}") from e
        actual = digest.hexdigest()
        if actual != md5:
            raise ChecksumError(
                f"checksum mismatch for {dest.name} downloaded from {url}: expected MD5 {md5}, "
                f"got {actual}; the download was deleted. Retry (the transfer may have been "
                f"corrupted, or the file on the server changed). {hint}"
            )
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return dest


def download_omniglot(
    folder: str | os.PathLike[str], *, base_url: str | None = None, progress: bool = True
) -> list[Path]:
    """Download whichever Omniglot archives are missing from ``folder``; returns the ones fetched.

    Archives already present are left alone and not checksummed. ``base_url`` (default
    :func:`omniglot_base_url`) is where ``<base_url>/images_background.zip`` and
    ``images_evaluation.zip`` are fetched from; ``Omniglot(download=True)`` calls this.

    >>> from mamlkit.data import download_omniglot
    >>> download_omniglot("data/omniglot")  # doctest: +SKIP
    [PosixPath('data/omniglot/images_background.zip'),
     PosixPath('data/omniglot/images_evaluation.zip')]
    """
    folder = Path(folder)
    base = omniglot_base_url(base_url)
    fetched = []
    for name, md5 in OMNIGLOT_MD5.items():
        dest = folder / name
        if dest.is_file():
            continue
        fetched.append(download_file(f"{base}/{name}", dest, md5, progress=progress))
    return fetched
