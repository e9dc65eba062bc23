"""A tiny CIFAR-100 in the official binary format: ``cifar100/cifar-100-binary.tar.gz``.

The archive has the official member names and record layout (coarse label, fine label, 1024 red,
1024 green, 1024 blue bytes, row-major), a few records per class, the classes of each file
interleaved as in the official shuffled files. Sample ``s`` of fine class ``f`` holds the
pixels of :func:`pixels` ``(f, s)``, so tests can check which image the loader returned.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np

from mamlkit.data.cifar import SUPERCLASSES

#: The 100 fine label names in label order (alphabetical) and the 20 coarse ones.
FINE_NAMES: list[str] = sorted(c for members in SUPERCLASSES.values() for c in members)
COARSE_NAMES: list[str] = list(SUPERCLASSES)
COARSE_OF: dict[str, int] = {
    c: i for i, members in enumerate(SUPERCLASSES.values()) for c in members
}


def pixels(fine: int, sample: int) -> np.ndarray:
    """The 3072 pixel bytes of sample ``sample`` of fine class ``fine`` (train then test)."""
    return np.random.default_rng([fine, sample]).integers(0, 256, 3072, dtype=np.uint8)


def record(fine: int, pixel_bytes: np.ndarray, coarse: int | None = None) -> bytes:
    """One 3074-byte record of fine class ``fine`` (its coarse label unless ``coarse``)."""
    label = COARSE_OF[FINE_NAMES[fine]] if coarse is None else coarse
    return bytes([label, fine]) + pixel_bytes.astype(np.uint8).tobytes()


def class_records(per_class: int, in_test: int) -> tuple[list[bytes], list[bytes]]:
    """The train.bin and test.bin records: each class's first ``per_class - in_test`` samples
    in train.bin, the rest in test.bin, classes interleaved (sample-major)."""
    train = [
        record(f, pixels(f, s)) for s in range(per_class - in_test) for f in range(len(FINE_NAMES))
    ]
    test = [
        record(f, pixels(f, per_class - in_test + s))
        for s in range(in_test)
        for f in range(len(FINE_NAMES))
    ]
    return train, test


def write_archive(path: Path, members: dict[str, bytes]) -> Path:
    """A ``.tar.gz`` at ``path`` holding ``members`` (name -> bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def official_members(
    train: list[bytes], test: list[bytes], fine_names: list[str] | None = None
) -> dict[str, bytes]:
    """The four members of the binary archive, holding these records."""
    return {
        "cifar-100-binary/coarse_label_names.txt": ("\n".join(COARSE_NAMES) + "\n").encode(),
        "cifar-100-binary/fine_label_names.txt": (
            "\n".join(fine_names or FINE_NAMES) + "\n"
        ).encode(),
        "cifar-100-binary/train.bin": b"".join(train),
        "cifar-100-binary/test.bin": b"".join(test),
    }


def make_cifar100(root: Path, per_class: int = 6, in_test: int = 2) -> Path:
    """Write ``root/cifar100/cifar-100-binary.tar.gz`` with ``per_class`` images of each of the
    100 classes (the last ``in_test`` of them in test.bin) and return its path."""
    train, test = class_records(per_class, in_test)
    return write_archive(
        root / "cifar100" / "cifar-100-binary.tar.gz", official_members(train, test)
    )
