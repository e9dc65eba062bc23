"""API documentation: every public name has a docstring, and every example in one runs.

Public names: the ``__all__`` of the packages users import from, plus every function and class
defined at module level without a leading underscore in any module of :mod:`mamlkit`, and the
public methods and properties those classes define (dunder methods and what they inherit from
``torch.nn.Module`` and other non-mamlkit bases are skipped). A method that overrides a documented
mamlkit method may inherit its docstring. A constant in an ``__all__`` is documented by a ``#:``
comment above its assignment (the Sphinx convention the package uses).

The doctests of every module run here, with the global RNGs restored afterwards, the working
directory and the data and cache folders pointed at a temporary folder, and no network. Examples
that need downloaded data are marked ``# doctest: +SKIP``.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
import random
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

import mamlkit

#: Every module of the package (``mamlkit.__main__`` would run the command line on import).
MODULE_NAMES = sorted(
    ["mamlkit"]
    + [
        info.name
        for info in pkgutil.walk_packages(mamlkit.__path__, "mamlkit.")
        if info.name != "mamlkit.__main__"
    ]
)

#: The packages whose ``__all__`` is the public API users import from.
EXPORTING = (
    "mamlkit",
    "mamlkit.algorithms",
    "mamlkit.algorithms.hooks",
    "mamlkit.backends",
    "mamlkit.compare",
    "mamlkit.core",
    "mamlkit.data",
    "mamlkit.learner",
    "mamlkit.models",
    "mamlkit.training",
)

#: The main user-facing names: their docstrings must show a ``>>>`` example.
NEED_EXAMPLES = (
    "mamlkit.MetaLearner",
    "mamlkit.MAML",
    "mamlkit.AlgorithmSpec",
    "mamlkit.register_algorithm",
    "mamlkit.algorithms.parse_algorithm",
    "mamlkit.algorithms.resolve_algorithm",
    "mamlkit.algorithms.AlgorithmHooks",
    "mamlkit.core.make_update_rule",
    "mamlkit.core.InnerUpdate",
    "mamlkit.core.adapt",
    "mamlkit.data.EpisodeSampler",
    "mamlkit.data.Omniglot",
    "mamlkit.data.Sinusoid",
    "mamlkit.data.SinusoidSampler",
    "mamlkit.Conv4",
    "mamlkit.models.MLP",
    "mamlkit.models.ResNet12",
    "mamlkit.fit",
    "mamlkit.evaluate",
    "mamlkit.train_maml",
    "mamlkit.training.TrainConfig",
    "mamlkit.training.EvalConfig",
    "mamlkit.training.build_config",
    "mamlkit.training.train_run",
    "mamlkit.EvalResult",
    "mamlkit.registry.Registry",
    "mamlkit.training.distributed.check_divisible",
    "mamlkit.registry.import_reference",
)

#: Fewer examples than this means doctests were dropped (e.g. a module no longer found).
MIN_EXAMPLES = 340

MIN_DOC_CHARS = 20


def _modules() -> list[ModuleType]:
    return [importlib.import_module(name) for name in MODULE_NAMES]


def _resolve(dotted: str) -> object:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _own_doc(obj: object) -> str | None:
    """The object's own docstring; a dataclass's generated signature does not count."""
    if isinstance(obj, property):
        obj = obj.fget
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    doc = getattr(obj, "__doc__", None)
    if inspect.isclass(obj) and doc and doc.startswith(f"{obj.__name__}("):
        return None
    return doc


def _member_doc(cls: type, name: str, member: object) -> str | None:
    """A method's docstring, or the one of the mamlkit method it overrides."""
    doc = _own_doc(member)
    if doc:
        return doc
    for base in cls.__mro__[1:]:
        if name in vars(base):
            if base.__module__.split(".")[0] != "mamlkit":
                return None
            return _own_doc(vars(base)[name])
    return None


def _is_member(value: object) -> bool:
    return isinstance(value, (property, staticmethod, classmethod)) or inspect.isfunction(value)


def _exported() -> Iterator[tuple[str, str, object]]:
    """``(package, name, object)`` for every name in the ``__all__`` of the exporting packages."""
    for package in EXPORTING:
        module = importlib.import_module(package)
        for name in module.__all__:
            yield package, name, getattr(module, name)


def public_names() -> Iterator[tuple[str, str | None]]:
    """``(qualified name, docstring)`` of every public module, function, class and method."""
    seen: set[int] = set()

    def visit(qualname: str, obj: object) -> Iterator[tuple[str, str | None]]:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        yield qualname, _own_doc(obj)
        if inspect.isclass(obj):
            for name, member in vars(obj).items():
                if not name.startswith("_") and _is_member(member):
                    yield f"{qualname}.{name}", _member_doc(obj, name, member)

    for module in _modules():
        yield module.__name__, module.__doc__
        for name, obj in vars(module).items():
            if name.startswith("_") or not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if getattr(obj, "__module__", None) == module.__name__:
                yield from visit(f"{module.__name__}.{name}", obj)
    for package, name, obj in _exported():
        if inspect.isclass(obj) or inspect.isfunction(obj):
            yield from visit(f"{package}.{name}", obj)


def _constant_documented(name: str, sources: list[str]) -> bool:
    """Whether some module source assigns ``name`` at top level right below a ``#:`` comment."""
    pattern = re.compile(rf"^#:.*\n(?:#.*\n)*{re.escape(name)}\b[^\n=]*=", re.MULTILINE)
    return any(pattern.search(source) for source in sources)


def test_every_public_name_has_a_docstring() -> None:
    names = list(public_names())
    assert len(names) > 250, "the walk over the package found too few public names"
    missing = [
        qualname for qualname, doc in names if doc is None or len(doc.strip()) < MIN_DOC_CHARS
    ]
    assert not missing, "public names without a docstring:\n" + "\n".join(missing)


def test_every_exported_constant_is_documented() -> None:
    sources = [
        Path(module.__file__).read_text(encoding="utf-8")
        for module in _modules()
        if module.__file__
    ]
    missing = []
    for package, name, obj in _exported():
        if name == "__version__" or inspect.isclass(obj) or inspect.isfunction(obj):
            continue
        if not _constant_documented(name, sources):
            missing.append(f"{package}.{name}")
    assert not missing, "exported constants without a #: comment:\n" + "\n".join(missing)


def test_exported_names_are_defined_in_mamlkit() -> None:
    foreign = []
    for package, name, obj in _exported():
        defined_in = getattr(obj, "__module__", None) or ""
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and not defined_in.startswith(
            "mamlkit"
        ):
            foreign.append(f"{package}.{name}")
    assert not foreign, f"__all__ re-exports names from outside mamlkit: {foreign}"


@pytest.mark.parametrize("dotted", NEED_EXAMPLES)
def test_main_names_show_an_example(dotted: str) -> None:
    assert ">>>" in (inspect.getdoc(_resolve(dotted)) or ""), f"{dotted} has no >>> example"


def _run_doctests() -> dict[str, tuple[int, int, str]]:
    """``module -> (failed, attempted, report)`` for the doctests of every module."""
    finder = doctest.DocTestFinder(exclude_empty=True)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    results = {}
    for module in _modules():
        runner = doctest.DocTestRunner(optionflags=flags)
        report: list[str] = []
        for test in finder.find(module, module.__name__):
            runner.run(test, out=report.append)
        outcome = runner.summarize(verbose=False)
        results[module.__name__] = (outcome.failed, outcome.attempted, "".join(report))
    return results


@pytest.fixture(scope="module")
def doctest_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, int, str]]:
    """Run every doctest once, in a temporary folder, leaving the global RNGs as they were."""
    workdir = tmp_path_factory.mktemp("doctests")
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with pytest.MonkeyPatch.context() as mp, torch.random.fork_rng(devices=[]):
        mp.chdir(workdir)
        mp.setenv("MAMLKIT_DATA", str(workdir / "data"))
        mp.setenv("MAMLKIT_CACHE", str(workdir / "cache"))
        mp.setenv("MAMLKIT_OMNIGLOT_URL", "file:///nonexistent")  # never the network
        mp.delenv("WORLD_SIZE", raising=False)
        try:
            return _run_doctests()
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


@pytest.mark.parametrize("module", MODULE_NAMES)
def test_doctests_pass(module: str, doctest_results: dict[str, tuple[int, int, str]]) -> None:
    failed, _, report = doctest_results[module]
    assert failed == 0, f"{failed} doctest example(s) of {module} failed:\n{report}"


def test_doctests_ran(doctest_results: dict[str, tuple[int, int, str]]) -> None:
    attempted = sum(ran for _, ran, _ in doctest_results.values())
    assert attempted >= MIN_EXAMPLES, (
        f"only {attempted} doctest examples ran, expected at least {MIN_EXAMPLES}: were some "
        "dropped?"
    )
