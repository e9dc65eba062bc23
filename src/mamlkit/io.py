"""Files written so that a crash never leaves a half-written one: temp file + ``os.replace``.

Also the only way mamlkit reads and writes tensors: safetensors files, which never execute code
when loaded (pickles and ``torch.save`` files are refused, with a message saying why).

>>> import tempfile
>>> from pathlib import Path
>>> import torch
>>> from mamlkit.io import atomic_write_json, load_tensors, save_tensors
>>> with tempfile.TemporaryDirectory() as folder:
...     path = save_tensors(Path(folder) / "w.safetensors", {"w": torch.ones(2)}, {"kind": "demo"})
...     print(load_tensors(path))
...     print(atomic_write_json(Path(folder) / "summary.json", {"loss": 0.5}).read_text(), end="")
({'w': tensor([1., 1.])}, {'kind': 'demo'})
{
  "loss": 0.5
}
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(handle)`` on a temp file in ``path``'s folder, then rename it to ``path``.

    For content too large to hold in memory twice (it is streamed into the file); a failure
    removes the temp file and leaves any previous ``path`` untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same folder and an atomic rename."""
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` as UTF-8 to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (keys in their order, a final newline) atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_tensors(
    path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]
) -> Path:
    """Atomically save tensors as safetensors (contiguous CPU copies) with string metadata;
    returns ``path``. See the module docstring for an example."""
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    return atomic_write_bytes(path, save(cpu, metadata=metadata))


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Load a safetensors file (never executes code): ``(tensors, metadata)``.

    A missing file is a ``FileNotFoundError``; anything else unreadable a ``ValueError`` that
    names the file and says what it looks like (truncated, a pickle, a ``torch.save`` archive).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(
            f"{path} is not a readable safetensors file: {_why_unreadable(path, error)}"
        ) from None
    return tensors, metadata


#: How files that are not safetensors start: a pickle (protocol 2+ starts with PROTO, 0x80) or a
#: zip archive (what ``torch.save`` writes: a pickle plus tensor data).
_PICKLE_PROTOCOLS = range(2, 6)
_ZIP_MAGIC = b"PK\x03\x04"
#: A safetensors file starts with the length of its JSON header (little-endian uint64).
_MAX_HEADER = 100_000_000


def _why_unreadable(path: Path, error: Exception) -> str:
    """Why ``path`` is not a readable safetensors file, in one line, from its first bytes (read as
    plain bytes: nothing in the file is ever unpickled or run)."""
    detail = " ".join(str(error).split())
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(9)
    except OSError:
        return f"{detail}; check that it is readable"
    header = int.from_bytes(head[:8], "little")
    # A safetensors header length, then (if anything follows) its JSON header's opening brace.
    safetensors_start = len(head) >= 8 and 0 < header < _MAX_HEADER and head[8:9] in (b"", b"{")
    if size < 8 or "incomplete" in detail or (safetensors_start and 8 + header > size):
        return (
            f"it is truncated or damaged ({size} bytes; {detail}); restore it from a copy or "
            "write it again"
        )
    pickle = head[:1] == b"\x80" and len(head) > 1 and head[1] in _PICKLE_PROTOCOLS
    if not safetensors_start and (pickle or head.startswith(_ZIP_MAGIC)):
        kind = "a pickle" if pickle else "a torch.save archive"
        return (
            f"it is {kind}, which mamlkit never loads (unpickling can run arbitrary code); use "
            "a file mamlkit wrote, or convert trusted weights with safetensors.torch.save_file"
        )
    return f"{detail}; it does not look like a safetensors file"
