"""The documentation holds together: links resolve, every page is reachable, commands parse.

Checked over README.md and docs/**/*.md (fenced code blocks and inline code are not prose):

* every relative link points to a file or folder that exists, and every ``#anchor`` to a
  heading of the target page (GitHub's heading slugs);
* every docs page can be reached from README.md by following links;
* every ``mamlkit ...`` command line in a fenced code block names a subcommand and only options
  that subcommand's parser (``mamlkit.cli.build_parser()``) knows; a complete command (no
  ``...`` or ``[optional]`` placeholders) must parse as a whole.

Nothing here runs a command or reads data: the whole file takes well under a second.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from functools import cache
from pathlib import Path
from urllib.parse import unquote

import pytest

from mamlkit.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = sorted([README, *(ROOT / "docs").rglob("*.md")])

FENCE = re.compile(r"^(```|~~~)")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def split_fences(text: str) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """The prose lines (fenced blocks blanked) and the fenced blocks as (info string, lines)."""
    prose: list[str] = []
    blocks: list[tuple[str, list[str]]] = []
    fence: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        match = FENCE.match(stripped)
        if fence is None and match:
            fence = match.group(1)
            blocks.append((stripped[3:].strip(), []))
            prose.append("")
        elif fence is not None and stripped.startswith(fence):
            fence = None
            prose.append("")
        elif fence is not None:
            blocks[-1][1].append(line)
            prose.append("")
        else:
            prose.append(line)
    return prose, blocks


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text in lower case, punctuation dropped
    (letters, digits, ``_``, ``-`` and spaces kept), spaces turned into ``-``."""
    text = INLINE_CODE.sub(lambda m: m.group(2).strip(), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links: their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = re.sub(r"(\*+)(.+?)\1", r"\2", text)  # emphasis
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    """Every heading anchor of ``path`` (repeated headings get -1, -2, ... as on GitHub)."""
    prose, _ = split_fences(path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    found = set()
    for line in prose:
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return frozenset(found)


@cache
def links(path: Path) -> tuple[tuple[int, str], ...]:
    """(line number, target) of every link in the prose of ``path`` (not in code)."""
    prose, _ = split_fences(path.read_text(encoding="utf-8"))
    found = []
    for number, line in enumerate(prose, start=1):
        line = INLINE_CODE.sub("", line)
        found += [(number, m.group(1)) for m in LINK.finditer(line)]
    return tuple(found)


def resolve(page: Path, target: str) -> tuple[Path, str] | None:
    """The file and anchor a relative link points to; ``None`` for external links."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("//"):
        return None  # http:, https:, mailto:, ...
    path_part, _, anchor = target.partition("#")
    path = page if not path_part else (page.parent / unquote(path_part)).resolve()
    return path, unquote(anchor)


ALGORITHM_PAGES = ("maml", "fomaml", "mamlpp", "anil", "metasgd", "reptile")


def test_the_docs_exist() -> None:
    names = {_rel(p) for p in PAGES}
    expected = [
        "docs/README.md",
        "docs/getting-started.md",
        "docs/concepts.md",
        "docs/cli.md",
        "docs/reproducibility.md",
        "docs/implementation.md",
        "docs/algorithms.md",
        *(f"docs/algorithms/{name}.md" for name in ALGORITHM_PAGES),
    ]
    missing = [name for name in expected if name not in names]
    assert not missing, f"missing docs pages: {missing}"


def test_relative_links_and_anchors_resolve() -> None:
    problems = []
    for page in PAGES:
        for number, target in links(page):
            resolved = resolve(page, target)
            if resolved is None:
                continue
            path, anchor = resolved
            where = f"{_rel(page)}:{number}: {target}"
            if not path.exists():
                problems.append(f"{where}: no such file")
            elif anchor:
                if path.suffix != ".md":
                    problems.append(f"{where}: an anchor into a non-Markdown file")
                elif anchor not in anchors(path):
                    problems.append(f"{where}: {_rel(path)} has no heading #{anchor}")
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_every_docs_page_is_reachable_from_the_readme() -> None:
    reached = {README}
    todo = [README]
    while todo:
        page = todo.pop()
        for _, target in links(page):
            resolved = resolve(page, target)
            if resolved is None:
                continue
            path = resolved[0]
            if path.suffix == ".md" and path.is_file() and path not in reached:
                reached.add(path)
                todo.append(path)
    unreached = [_rel(p) for p in PAGES if p not in reached]
    assert not unreached, f"not reachable from README.md by links: {unreached}"


def test_slugs_follow_github() -> None:
    assert slug("MAML++ (`mamlpp`, `fomamlpp`)") == "maml-mamlpp-fomamlpp"
    assert slug("The cost of MAML++'s multi-step loss") == "the-cost-of-mamls-multi-step-loss"
    assert slug("Install and a first run") == "install-and-a-first-run"
    assert slug("BNRS: `bn_per_step_stats`") == "bnrs-bn_per_step_stats"


# -- command lines ------------------------------------------------------------------------------

SHELL_BLOCKS = ("", "bash", "sh", "shell", "console", "text")
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def command_lines(path: Path) -> list[tuple[int, str]]:
    """(block number, text) of every ``mamlkit`` command in the shell-like fenced blocks of
    ``path``: continuation lines joined, comments dropped, a leading ``$ `` prompt removed. A
    command starts a line, follows ``&&`` or ``;``, or follows ``-m`` (``python -m mamlkit``,
    ``torchrun ... -m mamlkit``); ``mamlkit train: error: ...`` is output, not a command."""
    _, blocks = split_fences(path.read_text(encoding="utf-8"))
    found = []
    for index, (info, lines) in enumerate(blocks, start=1):
        language = info.split()[0] if info else ""
        if language not in SHELL_BLOCKS:
            continue
        joined: list[str] = []
        for line in lines:
            if joined and joined[-1].endswith("\\"):
                joined[-1] = joined[-1][:-1].rstrip() + " " + line.strip()
            else:
                joined.append(line.strip())
        for line in joined:
            line = re.sub(r"(^|\s)#.*$", "", line.removeprefix("$ ")).strip()  # a comment
            match = re.search(r"(?:^|&&\s*|;\s*|-m\s+)mamlkit\s+(.*)$", line)
            if match and not match.group(1).split()[0].endswith(":"):  # not output
                found.append((index, match.group(1)))
    return found


def refusal(argv: list[str]) -> str:
    """What ``mamlkit``'s parser says about ``argv`` ("" when it parses)."""
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors), contextlib.suppress(SystemExit):
        build_parser().parse_args(argv)
    return errors.getvalue().strip()


@cache
def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_commands_in_the_docs_name_real_subcommands_and_options() -> None:
    problems = []
    checked = 0
    for page in PAGES:
        for block, command in command_lines(page):
            where = f"{_rel(page)} (code block {block}): mamlkit {command}"
            name = command.split()[0]
            if name not in subparsers():
                problems.append(f"{where}: no subcommand {name!r}")
                continue
            known = set(subparsers()[name]._option_string_actions)
            unknown = [o for o in OPTION.findall(command) if o not in known]
            if unknown:
                problems.append(f"{where}: mamlkit {name} has no option {', '.join(unknown)}")
                continue
            checked += 1
            if "..." in command:
                continue  # a sketch: option names only
            try:
                argv = shlex.split(command)
            except ValueError:
                problems.append(f"{where}: not valid shell quoting")
                continue
            if any(word.startswith("[") for word in argv):
                continue  # a synopsis with [--optional] parts: option names only
            message = refusal(argv)
            if message:
                problems.append(f"{where}: {message}")
    assert checked > 20, f"only {checked} mamlkit commands found; is the extraction broken?"
    assert not problems, "commands that mamlkit would refuse:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("command", "ok"),
    [
        ("train --algorithm maml --iterations 500 --out runs/x", True),
        ("train --algorithmm maml --out runs/x", False),
        ("eval runs/x --tasks 600", True),
        ("eval runs/x --tasks many", False),
    ],
)
def test_the_parser_check_tells_good_from_bad(command: str, ok: bool) -> None:
    assert (refusal(shlex.split(command)) == "") == ok


def test_command_extraction(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```bash\n"
        "mamlkit train --ways 5 \\\n    --out runs/x   # a comment\n"
        "pip install -e . && mamlkit list\n"
        "torchrun --nproc_per_node=2 -m mamlkit train --out y\n"
        "```\n\n```\nmamlkit train: error: output, not a command\n"
        "eval.json   written by mamlkit eval\n```\n"
        "```python\nmamlkit = 1\n```\n",
        encoding="utf-8",
    )
    assert command_lines(page) == [
        (1, "train --ways 5 --out runs/x"),
        (1, "list"),
        (1, "train --out y"),
    ]


def test_yaml_examples_are_valid_train_configs() -> None:
    """Every ``yaml`` block of the docs is a config file ``mamlkit train --config`` accepts."""
    import yaml

    from mamlkit.training import TrainConfig, build_config

    found = 0
    for page in PAGES:
        for info, lines in split_fences(page.read_text(encoding="utf-8"))[1]:
            if info.split()[0:1] != ["yaml"]:
                continue
            found += 1
            build_config(TrainConfig, yaml.safe_load("\n".join(lines)))  # raises on a bad key
    assert found >= 2


def test_preset_settings_quoted_in_the_docs_are_the_registry_s() -> None:
    """A ``mamlkit list`` excerpt in a docs page shows a preset's settings exactly."""
    from mamlkit.algorithms import ALGORITHMS
    from mamlkit.cli import _setting_text

    quoted = 0
    for page in PAGES:
        for _, lines in split_fences(page.read_text(encoding="utf-8"))[1]:
            text = " ".join(" ".join(lines).split())
            for name in ALGORITHMS:
                if re.search(rf"(^| ){re.escape(name)} first_order=", text) is None:
                    continue
                quoted += 1
                settings = ALGORITHMS.get(name).settings().items()
                expected = " ".join([name, *(f"{k}={_setting_text(v)}" for k, v in settings)])
                assert expected in text, f"{_rel(page)}: {name}'s settings differ from the registry"
    assert quoted >= len(ALGORITHMS), "every preset's settings are quoted on its page"
