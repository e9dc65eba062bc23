"""Shared fixtures: where the real Omniglot archives are, and a per-session decoded-image cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

# The shared helpers assert too: give their asserts pytest's detailed failure messages.
pytest.register_assert_rewrite("tests.helpers")

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The read-only shared copy of the Omniglot archives (never write here).
OMNIGLOT_DIR = REPO_ROOT.parent / "shared" / "data" / "omniglot"
OMNIGLOT_ARCHIVES = ("images_background.zip", "images_evaluation.zip")


@pytest.fixture(scope="session")
def data_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One decoded-image cache for the whole session, so Omniglot is decoded at most once."""
    return tmp_path_factory.mktemp("decoded")


@pytest.fixture(scope="session", autouse=True)
def _cache_outside_home(data_cache_dir: Path) -> Iterator[None]:
    """Point $MAMLKIT_CACHE at the session cache, so no test writes into ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MAMLKIT_CACHE", str(data_cache_dir))
        yield


@pytest.fixture(scope="session")
def omniglot_root() -> Path:
    """The data root to pass as ``Omniglot(root=...)``: it holds ``omniglot/images_*.zip``."""
    missing = [name for name in OMNIGLOT_ARCHIVES if not (OMNIGLOT_DIR / name).is_file()]
    if missing:
        pytest.skip(f"Omniglot archives {missing} not found in {OMNIGLOT_DIR}")
    return OMNIGLOT_DIR.parent
