"""``mamlkit list`` shows every registry entry: every setting and the paper of each algorithm (new
settings included, with no change to the listing), and the description of everything else."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

import pytest

from mamlkit.algorithms import ALGORITHMS, AlgorithmSpec
from mamlkit.cli import list_lines, main
from mamlkit.compare import COMPARE_PRESETS
from mamlkit.data import DATASETS
from mamlkit.models import MODELS


def entries(lines: list[str]) -> dict[str, str]:
    """``mamlkit list`` lines -> {entry name: its text}, headings left out."""
    found: dict[str, str] = {}
    name = ""
    for line in lines:
        match = re.match(r"  (\S+)(.*)", line)
        if match:
            name = match.group(1)
            found[name] = match.group(2).strip()
        elif line.startswith("   ") and name:
            found[name] += " " + line.strip()
    return found


REGISTERED = [
    (kind, name)
    for kind, registry in [
        ("algorithms", ALGORITHMS),
        ("datasets", DATASETS),
        ("models", MODELS),
        ("presets", COMPARE_PRESETS),
    ]
    for name in registry
]


@pytest.fixture(scope="module")
def listed() -> dict[str, dict[str, str]]:
    sections: dict[str, list[str]] = {}
    for line in list_lines():
        if not line.startswith(" "):
            sections[line.split()[0]] = []
        else:
            sections[list(sections)[-1]].append(line)
    return {kind: entries(lines) for kind, lines in sections.items()}


@pytest.mark.parametrize(("kind", "name"), REGISTERED)
def test_list_shows_every_registry_entry(
    kind: str, name: str, listed: dict[str, dict[str, str]]
) -> None:
    text = listed[kind][name]
    if kind == "algorithms":
        spec = ALGORITHMS.get(name)
        for f in dataclasses.fields(spec):
            if f.name not in ("name", "reference"):
                assert f"{f.name}=" in text
        assert " ".join(spec.reference.split()) in text
    elif kind == "presets":
        assert " ".join(COMPARE_PRESETS.get(name).description.split()) in text
    else:
        assert text  # a one-line description


def test_list_prints_new_algorithm_settings_without_a_change(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    @dataclasses.dataclass(frozen=True)
    class NewSpec(AlgorithmSpec):
        brand_new_setting: int = 7

    spec = NewSpec("zz-new", adapt=("head.*", "features.block4.*"), reference="Someone 2031.")
    monkeypatch.setitem(ALGORITHMS._entries, "zz-new", spec)
    assert main(["list"]) == 0
    text = entries(capsys.readouterr().out.splitlines())["zz-new"]
    assert "brand_new_setting=7" in text and "adapt=head.*|features.block4.*" in text
    assert "first_order=false" in text and "Someone 2031." in text


def test_python_dash_m_lists_the_registries() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mamlkit", "list"], capture_output=True, text=True, check=True
    )
    for name in ("maml", "fomaml", "mamlpp", "fomamlpp", "omniglot", "conv4"):
        assert re.search(rf"\b{name}\b", result.stdout)
