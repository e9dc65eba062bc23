"""The architecture holds: imports point one way, and algorithms stay in their own files.

The layers of ``src/mamlkit``, from the bottom (docs/architecture.md draws them):

0. foundation: ``vocabulary``, ``errors``, ``registry``, ``checks``, ``io``, ``progress``,
   ``episodes``;
1. the functional core (``core``), the execution backends (``backends``), ``data``, ``models``:
   four independent packages, none imports another;
2. ``algorithms``;
3. ``learner``;
4. ``training`` (and the package's own ``mamlkit/__init__.py``, the public facade);
5. ``compare``;
6. ``cli`` (and ``__main__``, which runs it).

A module may import its own layer and the layers below, never above; nothing but ``__main__``
imports ``cli``. Imports inside functions are kept for optional dependencies (listed below, each
with its reason); every other import is at the top of its module, where a reader sees it.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

#: The package's sources, read as text: the import rules are checked without importing mamlkit,
#: so an upward import that makes ``import mamlkit`` fail (a cycle) is still reported by name.
PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mamlkit"

#: The layer of each top-level module or package of mamlkit (the facade ``mamlkit`` itself is
#: given as "").
LAYERS: dict[str, int] = {
    "vocabulary": 0,
    "errors": 0,
    "registry": 0,
    "checks": 0,
    "io": 0,
    "progress": 0,
    "episodes": 0,
    "core": 1,
    "backends": 1,
    "data": 1,
    "models": 1,
    "algorithms": 2,
    "learner": 3,
    "training": 4,
    "": 4,
    "compare": 5,
    "cli": 6,
    "__main__": 6,
}

#: The independent packages of layer 1: none of them imports another.
SIBLINGS = {"core", "backends", "data", "models"}

#: What may be imported inside a function, and why (an optional or deliberately late import).
LATE_IMPORTS = {
    "matplotlib": "plotting: heavy, and only needed when a figure is drawn",
    "torch.distributed": "absent from some torch builds; only needed under torchrun",
    "tqdm.std": "progress bars: tqdm.auto probes for notebook widgets, so it is chosen late",
    "tqdm.auto": "progress bars: tqdm.auto probes for notebook widgets, so it is chosen late",
    "torch.utils.tensorboard": "--logger tensorboard: needs the optional tensorboard package",
}


@dataclass(frozen=True)
class Import:
    """One import statement: which module has it, what it names, whether it is in a function."""

    module: str  # e.g. "mamlkit.training.run"
    target: str  # e.g. "mamlkit.algorithms.spec"
    line: int
    late: bool  # inside a function (or method)


def unit(module: str) -> str:
    """The top-level module or package of ``mamlkit.x.y`` (``x``), or "" for ``mamlkit``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str) -> list[Import]:
    """Every import in ``source`` (a module of mamlkit), except those only for type checkers."""
    tree = ast.parse(source)
    found: list[Import] = []

    def visit(node: ast.AST, late: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue  # annotations only, never executed
            if isinstance(child, ast.Import):
                found.extend(Import(module, a.name, child.lineno, late) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # a relative import: resolve it against this module
                    package = module.split(".")
                    if not source_is_package(module):
                        package = package[:-1]
                    base = ".".join([*package[: len(package) - child.level + 1], base])
                found.append(Import(module, base.rstrip("."), child.lineno, late))
            inner = late or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            visit(child, inner)

    visit(tree, False)
    return found


def source_is_package(module: str) -> bool:
    return (PACKAGE.parent / Path(*module.split(".")) / "__init__.py").is_file()


def violations(imports: list[Import]) -> list[str]:
    """The rules above, broken: upward imports, siblings importing each other, imports of the
    CLI, and late imports of anything not in :data:`LATE_IMPORTS`."""
    problems = []
    for imp in imports:
        where = f"{imp.module}:{imp.line} imports {imp.target}"
        if imp.late and not any(
            imp.target == name or imp.target.startswith(name + ".") for name in LATE_IMPORTS
        ):
            problems.append(f"{where} inside a function; import it at the top of the module")
        if imp.target != "mamlkit" and not imp.target.startswith("mamlkit."):
            continue
        source, target = unit(imp.module), unit(imp.target)
        if source not in LAYERS or target not in LAYERS:
            problems.append(f"{where}: no layer is assigned to it (add it to LAYERS)")
            continue
        if target in ("cli",) and source != "__main__":
            problems.append(f"{where}: nothing imports the command line")
        elif LAYERS[target] > LAYERS[source]:
            problems.append(
                f"{where}: an upward import (layer {LAYERS[source]} -> {LAYERS[target]})"
            )
        elif source in SIBLINGS and target in SIBLINGS and source != target:
            problems.append(f"{where}: {source} and {target} are independent packages")
    return problems


def package_imports() -> list[Import]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found += imports_of(path.read_text(encoding="utf-8"), module_name(path))
    return found


def test_every_module_has_a_layer() -> None:
    units = {unit(module_name(path)) for path in PACKAGE.rglob("*.py")}
    assert units <= set(LAYERS), f"modules without a layer: {sorted(units - set(LAYERS))}"


def test_imports_point_one_way() -> None:
    problems = violations(package_imports())
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("module", "source", "message"),
    [
        ("mamlkit.learner.meta_learner", "from mamlkit.training import fit", "upward import"),
        ("mamlkit.compare.worker", "from mamlkit.cli import main", "nothing imports the command"),
        ("mamlkit.core.inner_loop", "import mamlkit.backends.loop", "independent packages"),
        ("mamlkit.data.omniglot", "def f():\n    import mamlkit.io\n", "inside a function"),
        ("mamlkit.algorithms.maml", "from ..learner import MetaLearner", "upward import"),
        ("mamlkit.training.run", "def f():\n    import yaml\n", "inside a function"),
    ],
)
def test_the_checker_catches_each_broken_rule(module: str, source: str, message: str) -> None:
    problems = violations(imports_of(source, module))
    assert len(problems) == 1 and message in problems[0], problems


def test_the_checker_accepts_what_the_rules_allow() -> None:
    allowed = (
        "from mamlkit.algorithms import ALGORITHMS\n"
        "from mamlkit.core import adapt\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from mamlkit.training import fit\n"
        "def plot():\n    import matplotlib.pyplot as plt\n"
    )
    assert violations(imports_of(allowed, "mamlkit.learner.meta_learner")) == []


def test_each_built_in_algorithm_is_one_file_under_algorithms() -> None:
    """Every registered built-in spec is defined in exactly one of the algorithm files, and every
    file of mamlkit/algorithms but the shared spec and hooks is one of them."""
    from mamlkit.algorithms import ALGORITHMS, BUILT_IN

    for name in ALGORITHMS.names():
        spec = ALGORITHMS.get(name)
        owners = [m for m in BUILT_IN if any(v is spec for v in vars(m).values())]
        assert len(owners) == 1, f"{name} is defined in {len(owners)} algorithm files"
        assert Path(owners[0].__file__).parent == PACKAGE / "algorithms"
    files = {Path(module.__file__).stem for module in BUILT_IN}
    shared = {"__init__", "spec", "hooks"}
    assert files == {p.stem for p in (PACKAGE / "algorithms").glob("*.py")} - shared


def _code_words(path: Path) -> set[str]:
    """String constants (docstrings excluded) and attribute names used in a module's code."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    words = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings:
                words.add(node.value)
        elif isinstance(node, ast.Attribute):
            words.add(node.attr)
    return words


@pytest.mark.parametrize(
    "path",
    [
        PACKAGE / "learner" / "meta_learner.py",
        PACKAGE / "learner" / "results.py",
        *sorted((PACKAGE / "core").glob("*.py")),
        *sorted((PACKAGE / "backends").glob("*.py")),
        *sorted((PACKAGE / "training").glob("*.py")),
    ],
    ids=lambda path: str(path.relative_to(PACKAGE)),
)
def test_the_learner_core_and_training_never_name_an_algorithm_or_its_own_settings(
    path: Path,
) -> None:
    """They call hooks: an algorithm's name, a setting value one algorithm introduced, or a
    switch only MAML++ has never appear in their code (docstrings may mention them)."""
    from mamlkit.algorithms import ALGORITHMS
    from mamlkit.algorithms.hooks import OUTER_GRADIENTS, STEP_LOSSES, SWITCHES

    own = set(ALGORITHMS.names()) | set(SWITCHES.names())
    own |= {name for name in STEP_LOSSES.names() if name != "last"}
    own |= {name for name in OUTER_GRADIENTS.names() if name != "meta"}
    own |= {"step_loss", "outer_gradient"}
    found = sorted(_code_words(path) & own)
    assert not found, f"{path.name} names {found}; ask the algorithm's hooks instead"
