"""What a user installing mamlkit gets: one version everywhere, the license, the project's links,
the extras, the typing marker, and no plotting library unless asked for."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata, resources
from pathlib import Path

import pytest
import torch

import mamlkit
from mamlkit.cli import main

ROOT = Path(__file__).resolve().parents[1]
DIST = metadata.distribution("mamlkit")
HOME = "https://github.com/mamlkit/mamlkit"


def requirements(extra: str | None = None) -> dict[str, str]:
    """Requirement name -> its version specifier, of the required dependencies or of ``extra``."""
    found = {}
    for line in DIST.requires or []:
        requirement, _, marker = line.partition(";")
        in_extra = re.search(r"""extra == ["']([\w-]+)["']""", marker)
        if (in_extra.group(1) if in_extra else None) == extra:
            name, specifier = re.match(r"([A-Za-z0-9_.-]+)\s*(.*)", requirement.strip()).groups()
            found[name.lower()] = specifier.strip()
    return found


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.match(r"\d+(\.\d+)*", text).group(0).split("."))


def test_the_version_is_the_installed_metadata_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert mamlkit.__version__ == metadata.version("mamlkit")
    tomllib = pytest.importorskip("tomllib")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["version"] == mamlkit.__version__  # the install is current
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out == f"mamlkit {mamlkit.__version__}\n"


def test_the_version_is_written_once() -> None:
    quoted = re.compile(rf"""["']{re.escape(mamlkit.__version__)}["']""")
    copies = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "src" / "mamlkit").rglob("*.py")
        if quoted.search(path.read_text(encoding="utf-8"))
    ]
    assert not copies, f"the version is written in pyproject.toml only, also found in {copies}"


def test_license_is_mit_and_shipped() -> None:
    assert DIST.metadata["License-Expression"] == "MIT"
    assert DIST.metadata.get_all("License-File") == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License") and "Copyright (c) 2026 the mamlkit authors" in text


def test_the_project_links_and_classifiers() -> None:
    urls = dict(entry.split(", ", 1) for entry in DIST.metadata.get_all("Project-URL"))
    assert set(urls) == {"Homepage", "Documentation", "Source", "Issues"}
    assert all(url.startswith(HOME) for url in urls.values())
    classifiers = set(DIST.metadata.get_all("Classifier"))
    assert {"Typing :: Typed", "Operating System :: OS Independent"} <= classifiers
    pythons = sorted(
        version_tuple(c.rsplit(" :: ", 1)[1])
        for c in classifiers
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    )
    assert pythons == [(3, 10), (3, 11), (3, 12), (3, 13)]
    assert DIST.metadata["Requires-Python"] == f">={pythons[0][0]}.{pythons[0][1]}"
    assert DIST.metadata["Keywords"]


def test_matplotlib_is_an_extra_not_a_requirement() -> None:
    assert "matplotlib" not in requirements()
    assert "matplotlib" in requirements("plots")
    assert "matplotlib" in requirements("dev")  # so the tests draw the plots


def test_the_torch_floor_is_met_and_documented() -> None:
    floor = requirements()["torch"]
    assert floor.startswith(">=")
    assert version_tuple(torch.__version__) >= version_tuple(floor[2:])
    for page in ("README.md", "docs/getting-started.md"):
        assert f"torch {floor[:2]} {floor[2:]}" in (ROOT / page).read_text(encoding="utf-8"), page


def test_ruff_is_pinned_to_the_version_installed() -> None:
    assert requirements("dev")["ruff"] == f"=={metadata.version('ruff')}"


def test_the_typing_marker_is_installed() -> None:
    assert resources.files("mamlkit").joinpath("py.typed").is_file()


def test_a_wheel_holds_the_license_and_the_typing_marker(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    ignored = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "src", source / "src", ignore=ignored)
    offline = ["--no-deps", "--no-build-isolation", "--no-index"]  # the build backend installed
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", ".", *offline, "-w", str(tmp_path / "wheel"), "-q"],
        cwd=source,
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "wheel").glob("mamlkit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "mamlkit/py.typed" in names
    assert any(re.fullmatch(r"mamlkit-[^/]+\.dist-info/licenses/LICENSE", n) for n in names)
