"""Bad inputs: each gets a clear one-line error (its type and message are asserted) that names the
problem and the fix, raised before any work is done or lost.

CLI cases go through :func:`mamlkit.cli.main`, as users meet them: exit status 2 and one line
``mamlkit train: error: ...`` on stderr. Omniglot cases use a tiny synthetic copy of the official
archives (1623 characters of 4 blank 4x4 drawings, decoded in about a second), never the real data.
Set ``MAMLKIT_BAD_INPUT_LOG=FILE`` to write every message the tests saw to ``FILE`` as JSON.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import pickle
import re
import shutil
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from mamlkit import Conv4, MetaLearner
from mamlkit.cli import main
from mamlkit.data import (
    ChecksumError,
    EpisodeSampler,
    Omniglot,
    OmniglotArchiveError,
    download_omniglot,
)
from mamlkit.data.download import OMNIGLOT_MD5, md5sum
from mamlkit.data.omniglot import ARCHIVES
from mamlkit.io import load_tensors
from mamlkit.training import train_run
from mamlkit.training.config import TrainConfig, dump_yaml
from tests.helpers.blobs import Flat, linear_tasks
from tests.helpers.fake_dataset import FakeDataset

SEEN: list[tuple[str, str]] = []  # (test id, message), for MAMLKIT_BAD_INPUT_LOG


@pytest.fixture(scope="module", autouse=True)
def _own_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A decoded-image cache of this module's own, so the tiny archives' cache file does not join
    the real Omniglot's in the session cache that other modules inspect."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MAMLKIT_CACHE", str(tmp_path_factory.mktemp("bad-input-cache")))
        yield


@pytest.fixture(scope="module", autouse=True)
def _log_messages() -> Iterator[None]:
    yield
    if os.environ.get("MAMLKIT_BAD_INPUT_LOG"):
        Path(os.environ["MAMLKIT_BAD_INPUT_LOG"]).write_text(json.dumps(SEEN, indent=1))


def _seen(message: str) -> str:
    assert "\n" not in message, f"not one line: {message!r}"
    test = os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" ", 1)[0].split("::")[-1]
    SEEN.append((test, message))
    return message


@contextlib.contextmanager
def refused(error: type[BaseException], pattern: str) -> Iterator[None]:
    """Like ``pytest.raises(error, match=pattern)``, and the message must be one line."""
    with pytest.raises(error, match=pattern) as info:
        yield
    _seen(str(info.value))


def cli_error(argv: list[str], capsys: pytest.CaptureFixture[str], pattern: str) -> str:
    """Run ``mamlkit ARGV``: exit status 2 and one line ``mamlkit CMD: error: ...`` matching."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith(f"mamlkit {argv[0]}: error: "), err
    message = _seen(err.rstrip("\n"))
    assert re.search(pattern, message), message
    return message


# --- fixtures ------------------------------------------------------------------------------------


def write_omniglot(root: Path, samples: int = 4) -> Path:
    """``root/omniglot/images_*.zip`` in the official layout (964 + 659 characters) with
    ``samples`` identical blank drawings each; returns ``root``."""
    folder = root / "omniglot"
    folder.mkdir(parents=True)
    png = io.BytesIO()
    Image.new("L", (4, 4), 255).save(png, format="PNG")
    for archive, characters in ARCHIVES.items():
        top = archive.removesuffix(".zip")
        with zipfile.ZipFile(folder / archive, "w") as zf:
            for c in range(characters):
                for s in range(samples):
                    name = f"{top}/{top[7:]}{c // 20:02d}/character{c % 20 + 1:02d}/{s + 1:02d}.png"
                    zf.writestr(name, png.getvalue())
    return root


@pytest.fixture(scope="module")
def tiny_omniglot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with the synthetic archives (read-only by convention: copy to damage it)."""
    return write_omniglot(tmp_path_factory.mktemp("tiny-omniglot"))


TINY_RUN = {"ways": 2, "shots": 1, "queries": 1, "meta_batch": 1, "hidden": 2, "iterations": 1}


def train_argv(data_root: Path, out: Path, *extra: str, **changes: object) -> list[str]:
    """``mamlkit train`` of a valid tiny run, with flags ``changes`` (``None`` drops one)."""
    options = {k: v for k, v in {**TINY_RUN, **changes}.items() if v is not None}
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in options.items()]
    root = ["--data-root", str(data_root), "--out", str(out), "--device", "cpu", "--no-progress"]
    return ["train", *root, *flags, *extra]


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


@pytest.fixture
def train(tiny_omniglot: Path, run_dir: Path) -> Callable[..., list[str]]:
    """``train(*extra, **changes)``: :func:`train_argv` on the tiny Omniglot."""
    return functools.partial(train_argv, tiny_omniglot, run_dir)


def assert_no_run(run_dir: Path) -> None:
    """Nothing was started: the run folder holds no config, metrics, weights or checkpoint."""
    assert not run_dir.exists() or not any(run_dir.iterdir()), list(run_dir.iterdir())


def yaml_config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return str(path)


# --- N-way larger than the classes in the split ---------------------------------------------------


def test_more_ways_than_classes_are_refused_by_the_api() -> None:
    dataset = FakeDataset(num_classes=12)
    with refused(ValueError, r"^ways=13 but FakeDataset has only 12 classes$"):
        EpisodeSampler(dataset, ways=13, shots=1, queries=1, meta_batch=2)
    assert dataset.calls == 0


def test_more_ways_than_classes_are_refused_by_the_cli(train, run_dir, capsys) -> None:
    cli_error(
        train(ways=4801),
        capsys,
        r"ways=4801 but the omniglot 'train' split has only 4800 classes$",
    )
    assert_no_run(run_dir)


# --- zero or negative ways / shots / queries / inner steps / meta-batch ---------------------------


@pytest.mark.parametrize("value", [0, -1])
@pytest.mark.parametrize("key", ["ways", "shots", "queries", "meta_batch"])
def test_non_positive_episode_sizes_are_refused_by_the_sampler(key: str, value: int) -> None:
    args = {"ways": 2, "shots": 1, "queries": 1, "meta_batch": 1, key: value}
    with refused(ValueError, rf"^{key} must be a positive integer, got {value}$"):
        EpisodeSampler(FakeDataset(), **args)


@pytest.mark.parametrize("value", [0, -3])
def test_non_positive_inner_steps_are_refused_by_the_learner(value: int) -> None:
    with refused(ValueError, rf"^inner_steps must be a positive integer, got {value}$"):
        MetaLearner(Flat(), inner_steps=value)
    with refused(ValueError, rf"^steps must be a positive integer, got {value}$"):
        MetaLearner(Flat()).adapt(*linear_tasks(1)[:2], steps=value)


@pytest.mark.parametrize(
    ("cut", "pattern"),
    [
        ("tasks", r"support_x of shape \(0, 8, 1, 8\) holds no tasks .*; pass at least one task"),
        ("shots", r"support_x .* holds no examples per task; .*ways and shots must be >= 1"),
        ("queries", r"query_x .* holds no examples per task; .*ways and queries must be >= 1"),
    ],
    ids=["no tasks", "no shots", "no queries"],
)
@pytest.mark.parametrize("method", ["meta_loss", "meta_backward", "score_tasks"])
def test_empty_episodes_are_refused_by_the_learner(method: str, cut: str, pattern: str) -> None:
    sx, sy, qx, qy = linear_tasks(2)
    if cut == "tasks":
        sx, sy, qx, qy = sx[:0], sy[:0], qx[:0], qy[:0]
    elif cut == "shots":
        sx, sy = sx[:, :0], sy[:, :0]
    else:
        qx, qy = qx[:, :0], qy[:, :0]
    with refused(ValueError, pattern):
        getattr(MetaLearner(Flat()), method)(sx, sy, qx, qy)


def test_non_positive_tasks_per_backward_is_refused_before_any_gradient() -> None:
    learner = MetaLearner(Flat())
    for value in (0, -1):
        with refused(ValueError, rf"^tasks_per_backward must be a positive integer, got {value}$"):
            learner.meta_backward(*linear_tasks(2), tasks_per_backward=value)
    assert all(p.grad is None for p in learner.parameters())


@pytest.mark.parametrize("value", ["0", "-1"])
@pytest.mark.parametrize("key", ["ways", "shots", "queries", "inner_steps", "meta_batch"])
@pytest.mark.parametrize("where", ["flag", "config file"])
def test_non_positive_sizes_are_refused_by_the_cli(
    where, key, value, run_dir, tmp_path, capsys
) -> None:
    no_data = tmp_path / "no-data"  # checked before any data is looked for
    if where == "flag":
        argv = train_argv(no_data, run_dir, **{key: value})
    else:
        config = yaml_config(tmp_path, f"{key}: {value}\n")
        argv = train_argv(no_data, run_dir, "--config", config, **{key: None})
    cli_error(argv, capsys, rf"error: {key} must be >= 1, got {value}$")
    assert_no_run(run_dir)


# --- K + Q larger than the samples per class ------------------------------------------------------


def test_more_shots_plus_queries_than_samples_per_class_are_refused_by_the_api() -> None:
    dataset = FakeDataset(num_classes=10, samples=20)  # as many as an Omniglot character has
    pattern = (
        r"^shots=10 \+ queries=15 = 25 samples per class are needed but FakeDataset has only 20 "
        r"samples in its smallest class$"
    )
    with refused(ValueError, pattern):
        EpisodeSampler(dataset, ways=5, shots=10, queries=15, meta_batch=2)
    assert dataset.calls == 0


def test_more_shots_plus_queries_than_samples_per_class_are_refused_by_the_cli(
    train, run_dir, capsys
) -> None:
    cli_error(
        train(shots=2, queries=3),
        capsys,
        r"shots=2 \+ queries=3 = 5 samples per class are needed but the omniglot 'train' split "
        r"has only 4 samples in its smallest class$",
    )
    assert_no_run(run_dir)


# --- labels outside 0..N-1 ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("relabel", "pattern"),
    [
        ("support+2", r"^support_y: label 3 is out of range: the model predicts 2 classes, so "
                      r"labels must be 0\.\.1 \(relabel each task's classes 0\.\.N-1\)$"),
        ("query=2", r"^query_y: label 2 is out of range: the model predicts 2 classes"),
        ("support-1", r"^support_y has a negative label \(-1\); labels are 0\.\.N-1$"),
        ("query-1", r"^query_y has a negative label \(-1\); labels are 0\.\.N-1$"),
    ],
    ids=["support+2", "query=2", "support-1", "query-1"],
)  # fmt: skip
@pytest.mark.parametrize("method", ["meta_loss", "meta_backward", "score_tasks"])
def test_labels_out_of_range_are_refused(method: str, relabel: str, pattern: str) -> None:
    sx, sy, qx, qy = linear_tasks(2)
    sy, qy = {
        "support+2": (sy + 2, qy),
        "query=2": (sy, torch.full_like(qy, 2)),
        "support-1": (sy - 1, qy),
        "query-1": (sy, qy - 1),
    }[relabel]
    learner = MetaLearner(Flat(ways=2))
    with refused(ValueError, pattern):
        getattr(learner, method)(sx, sy, qx, qy)
    assert all(p.grad is None for p in learner.parameters())


# --- support and query of different shapes or channels --------------------------------------------


@pytest.mark.parametrize(
    ("query_shape", "pattern"),
    [
        ((3, 8), r"^support inputs have shape \(1, 8\) per example but query inputs have \(3, 8\)"),
        ((1, 4), r"^support inputs have shape \(1, 8\) per example but query inputs have \(1, 4\)"),
    ],
    ids=["channels", "height and width"],
)
@pytest.mark.parametrize("method", ["meta_loss", "meta_backward", "score_tasks"])
def test_support_and_query_of_different_shapes_are_refused(method, query_shape, pattern) -> None:
    sx, sy, qx, qy = linear_tasks(2)
    qx = torch.randn(*qx.shape[:2], *query_shape)
    with refused(ValueError, pattern + r"; both must match the model's input$"):
        getattr(MetaLearner(Flat()), method)(sx, sy, qx, qy)


def test_inputs_the_model_cannot_take_are_refused_with_their_shape() -> None:
    learner = MetaLearner(Conv4(in_channels=1, num_classes=2, hidden=2, image_size=28))
    sx, sy = torch.rand(1, 2, 3, 28, 28), torch.tensor([[0, 1]])
    pattern = (
        r"^the model cannot take inputs of shape \[3, 28, 28\] per example \(Conv4: .*expected "
        r"input.*to have 1 channels, but got 3 channels.*\); check the model's input size"
    )
    with refused(ValueError, pattern):
        learner.meta_loss(sx, sy, sx, sy)


# --- NaN, inf or negative inner learning rate -----------------------------------------------------

BAD_LRS = ["nan", "inf", "-inf", "-0.1", "0"]


@pytest.mark.parametrize("algorithm", ["maml", "metasgd", "mamlpp"])
@pytest.mark.parametrize("lr", BAD_LRS)
def test_nan_inf_or_non_positive_inner_lr_is_refused_by_the_api(lr: str, algorithm: str) -> None:
    with refused(ValueError, rf"^inner_lr must be a finite number > 0, got {float(lr)}$"):
        MetaLearner(Flat(), algorithm, inner_lr=float(lr))


@pytest.mark.parametrize("lr", BAD_LRS)
def test_nan_inf_or_non_positive_inner_lr_is_refused_by_the_cli(
    lr: str, train, run_dir, capsys
) -> None:
    cli_error(train(inner_lr=lr), capsys, rf"inner_lr must be a finite number > 0, got {lr}")
    assert_no_run(run_dir)


# --- unknown algorithm, dataset or config key, with "did you mean" --------------------------------


@pytest.mark.parametrize(
    ("flag", "pattern"),
    [
        (["--algorithm", "mmal"], r"unknown algorithm 'mmal'; did you mean 'maml'\? \(known: "),
        (["--dataset", "omniglto"], r"unknown dataset 'omniglto'; did you mean 'omniglot'\?"),
        (["--model", "conv5"], r"unknown model 'conv5'; did you mean 'conv4'\?"),
        (["--algorithm", "maml[first_ordr=true]"], r"unknown setting 'first_ordr'; did you mean "),
    ],
    ids=["algorithm", "dataset", "model", "algorithm setting"],
)
def test_unknown_names_are_refused_with_a_suggestion(
    flag, pattern, tmp_path, run_dir, capsys
) -> None:
    # No data root exists: the name is checked before any data is looked for or read.
    argv = ["train", "--data-root", str(tmp_path / "no-data"), "--out", str(run_dir), *flag]
    cli_error(argv, capsys, pattern)
    assert_no_run(run_dir)


def test_an_unknown_config_key_is_refused_with_a_suggestion(
    train, run_dir, tmp_path, capsys
) -> None:
    config = yaml_config(tmp_path, "inner_lrr: 0.1\n")
    cli_error(
        train("--config", config),
        capsys,
        r"error: unknown config key 'inner_lrr'; did you mean 'inner_lr'\?$",
    )
    assert_no_run(run_dir)


# --- a wrong type in the YAML config --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("iterations: ten", r"config key 'iterations' must be int, got 'ten'$"),
        ("shots: 1.5", r"config key 'shots' must be int, got 1\.5$"),
        ('progress: "yes"', r"'progress' must be bool, got 'yes' \(write true/false without"),
        ("download: 'false'", r"'download' must be bool, got 'false' \(write true/false without"),
        ("inner_lr: '0.1'", r"config key 'inner_lr' must be float, got '0\.1'$"),
        ("ways: [5]", r"config key 'ways' must be int, got \[5\]$"),
        ("ways: 5\nshots: [", r"yaml is not valid YAML \(line 3, column 1: expected the node"),
        ("- ways", r"config\.yaml must hold a mapping of config keys, got list$"),
    ],
    ids=["iterations: ten", "shots: 1.5", 'progress: "yes"', "download: 'false'",
         "inner_lr: '0.1'", "ways: [5]", "syntax error", "not a mapping"],
)  # fmt: skip
def test_wrong_types_in_the_config_file_are_refused(
    text, pattern, tmp_path, run_dir, capsys
) -> None:
    argv = ["train", "--config", yaml_config(tmp_path, text + "\n"), "--out", str(run_dir)]
    cli_error(argv, capsys, pattern)
    assert_no_run(run_dir)


def test_a_bad_file_value_is_refused_even_when_a_flag_overrides_it(
    train, run_dir, tmp_path, capsys
) -> None:
    config = yaml_config(tmp_path, "iterations: ten\n")  # and --iterations=1 on the command line
    cli_error(train("--config", config), capsys, r"'iterations' must be int, got 'ten'$")
    assert_no_run(run_dir)


@pytest.mark.parametrize(
    ("flags", "pattern"),
    [
        (["--shots", "1.5"], r"argument --shots: invalid int value: '1\.5' \(see mamlkit train"),
        (["--inner-lr", "-inf"], r"expected one argument; a value starting with '-' goes after"),
        (["--progress", "yes"], r"unrecognized arguments: yes \(see mamlkit --help\)$"),
    ],
)
def test_wrong_types_as_flags_are_refused_in_one_line(flags, pattern, run_dir, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["train", *flags, "--out", str(run_dir)])
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert err.count("\n") == 1 and err.startswith("mamlkit"), err  # no usage text before it
    assert re.search(pattern, err.rstrip("\n")), err
    assert_no_run(run_dir)


# --- a data root that is a file, or unreadable ----------------------------------------------------


def test_a_data_root_that_is_a_file_is_refused(tmp_path, run_dir, capsys) -> None:
    root = tmp_path / "data.zip"
    root.write_bytes(b"not a folder")
    pattern = (
        r"the data root .*data\.zip \(from the root argument\) is a file, not a folder; pass the "
        r"folder that holds omniglot/images_background\.zip \(--data-root / \$MAMLKIT_DATA\)$"
    )
    with refused(NotADirectoryError, pattern):
        Omniglot(root, "test")
    cli_error(["train", "--data-root", str(root), "--out", str(run_dir)], capsys, pattern)
    assert_no_run(run_dir)


@pytest.mark.parametrize("unreadable", [".", "omniglot", "omniglot/images_background.zip"])
def test_unreadable_data_is_refused_with_how_to_make_it_readable(
    unreadable, tiny_omniglot, tmp_path, run_dir, capsys
) -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root: chmod 000 does not stop root from reading")
    root = tmp_path / "root"
    shutil.copytree(tiny_omniglot, root)
    locked = root / unreadable
    locked.chmod(0)
    try:
        pattern = r"cannot read .*: permission denied \(Omniglot data root .*\); make it readable"
        with refused(PermissionError, pattern):
            Omniglot(root, "test", cache_dir=tmp_path / "cache")
        cli_error(
            ["train", "--data-root", str(root), "--out", str(run_dir), "--no-progress"],
            capsys,
            pattern + r" \(chmod -R u\+rX .*\) or point --data-root / \$MAMLKIT_DATA at",
        )
    finally:
        locked.chmod(0o755)
    assert_no_run(run_dir)


# --- a truncated or corrupt archive ---------------------------------------------------------------


def damaged_root(tiny_omniglot: Path, tmp_path: Path, damage: str) -> Path:
    """A copy of the tiny root whose background archive is truncated, garbage or has a member
    whose bytes are zeroed."""
    root = tmp_path / "root"
    shutil.copytree(tiny_omniglot, root)
    path = root / "omniglot" / "images_background.zip"
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = bytearray(b"<html>404 not found</html>" * 10)
    else:
        with zipfile.ZipFile(path) as zf:
            info = zf.infolist()[123]
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        data[start : start + info.compress_size] = bytes(info.compress_size)
    path.write_bytes(bytes(data))
    return root


@pytest.mark.parametrize(
    ("damage", "pattern"),
    [
        ("truncated", r"images_background\.zip is not a readable zip archive \(.*\); it is "
                      r"truncated or corrupt: delete it and download it again \(download=True / "
                      r"--download\)$"),
        ("garbage", r"images_background\.zip is not a readable zip archive"),
        ("member", r"images_background\.zip: cannot decode images_background/.*\.png \(.*\); the "
                   r"archive is corrupt: delete it and download it again$"),
    ],
    ids=["truncated", "garbage", "damaged member"],
)  # fmt: skip
def test_a_truncated_or_corrupt_archive_is_refused(
    damage, pattern, tiny_omniglot, tmp_path, run_dir, capsys
) -> None:
    root = damaged_root(tiny_omniglot, tmp_path, damage)
    with refused(OmniglotArchiveError, pattern):
        Omniglot(root, "test", cache_dir=tmp_path / "cache")
    argv = ["train", "--data-root", str(root), "--out", str(run_dir), "--no-progress"]
    cli_error(argv, capsys, pattern)
    assert_no_run(run_dir)


# --- a zip member that would escape the target folder ---------------------------------------------


@pytest.mark.parametrize(
    "member", ["../x.png", "images_background/../../x.png", "/tmp/x.png", "\\x.png"]
)
def test_a_zip_member_escaping_its_folder_is_refused(member, tiny_omniglot, tmp_path) -> None:
    root = tmp_path / "root"
    shutil.copytree(tiny_omniglot, root)
    with zipfile.ZipFile(root / "omniglot" / "images_background.zip", "a") as zf:
        zf.writestr(member, b"x")
    pattern = (
        rf"images_background\.zip has a member {re.escape(repr(member))} that would escape the "
        r"folder it is extracted to \(an absolute path or '\.\.'\); refusing this archive"
    )
    with refused(OmniglotArchiveError, pattern):
        Omniglot(root, "test", cache_dir=tmp_path / "cache")


# --- a downloaded archive with the wrong checksum -------------------------------------------------


@pytest.fixture
def mirror(tiny_omniglot: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A file:// "server" with the tiny archives, which do not have the official MD5s."""
    folder = tiny_omniglot / "omniglot"
    monkeypatch.setenv("MAMLKIT_OMNIGLOT_URL", folder.as_uri())
    return folder


def checksum_pattern(mirror: Path) -> str:
    expected = OMNIGLOT_MD5["images_background.zip"]
    got = md5sum(mirror / "images_background.zip")
    return (
        rf"checksum mismatch for images_background\.zip downloaded from file://.*: expected MD5 "
        rf"{expected}, got {got}; the download was deleted\. Retry .* To get the data by hand"
    )


def test_a_download_with_the_wrong_checksum_is_deleted_and_refused_by_the_api(
    mirror: Path, tmp_path: Path
) -> None:
    with refused(ChecksumError, checksum_pattern(mirror)):
        download_omniglot(tmp_path / "omniglot", progress=False)
    assert list((tmp_path / "omniglot").iterdir()) == []  # no partial or temporary file


def test_a_download_with_the_wrong_checksum_is_deleted_and_refused_by_the_cli(
    mirror: Path, tmp_path: Path, run_dir: Path, capsys
) -> None:
    data = tmp_path / "data"
    argv = ["train", "--data-root", str(data), "--download", "--out", str(run_dir), "--no-progress"]
    cli_error(argv, capsys, checksum_pattern(mirror))
    assert list((data / "omniglot").iterdir()) == []
    assert_no_run(run_dir)


# --- a truncated checkpoint, or one carrying a pickle payload -------------------------------------


class Payload:
    """Unpickling this creates ``marker``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def sinusoid_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-iteration run (no data files needed) with its checkpoint and weights."""
    run = tmp_path_factory.mktemp("sinusoid") / "run"
    config = TrainConfig(
        dataset="sinusoid", model="mlp", hidden=4, shots=2, queries=2, meta_batch=2,
        iterations=2, checkpoint_every=1, progress=False, device="cpu",
    )  # fmt: skip
    train_run(config, run)
    (run / "config.yaml").write_text(
        dump_yaml(TrainConfig(**{**config.to_dict(), "iterations": 4}))
    )
    return run


def bad_file(payload: str, good: bytes, marker: Path) -> bytes:
    if payload == "truncated":
        return good[: len(good) // 2]
    if payload == "pickle":
        return pickle.dumps({"learner/model.weight": Payload(marker)})
    buffer = io.BytesIO()  # torch.save: a zip archive holding a pickle
    torch.save({"weights": torch.zeros(2), "payload": Payload(marker)}, buffer)
    return buffer.getvalue()


PAYLOAD_PATTERNS = {
    "truncated": r"is not a readable safetensors file: it is truncated or damaged \(\d+ bytes; "
    r".*\); restore it from a copy or write it again$",
    "pickle": r"is not a readable safetensors file: it is a pickle, which mamlkit never loads "
    r"\(unpickling can run arbitrary code\); use a file mamlkit wrote, or convert trusted weights "
    r"with safetensors\.torch\.save_file$",
    "torch.save": r"is not a readable safetensors file: it is a torch\.save archive, which "
    r"mamlkit never loads",
}


@pytest.mark.parametrize("payload", list(PAYLOAD_PATTERNS))
@pytest.mark.parametrize(
    ("name", "command"), [("checkpoint.safetensors", "train"), ("model.safetensors", "eval")]
)
def test_truncated_or_pickled_checkpoints_and_weights_are_refused_without_running_code(
    name, command, payload, sinusoid_run, tmp_path, capsys
) -> None:
    run = tmp_path / "run"
    shutil.copytree(sinusoid_run, run)
    marker = tmp_path / "code-ran"
    (run / name).write_bytes(bad_file(payload, (run / name).read_bytes(), marker))
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    pattern = re.escape(str(run / name)) + " " + PAYLOAD_PATTERNS[payload]
    with refused(ValueError, pattern):
        load_tensors(run / name)
    argv = ["train", "--resume", str(run)] if command == "train" else ["eval", str(run)]
    cli_error(argv, capsys, pattern)
    assert not marker.exists(), "loading ran code from the file"
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # nothing lost or written
    if payload != "truncated":  # the payload is live: a pickle loader would have run it
        if payload == "pickle":
            pickle.loads((run / name).read_bytes())
        else:
            torch.load(io.BytesIO((run / name).read_bytes()), weights_only=False)
        assert marker.exists()


def test_the_config_yaml_of_a_run_is_never_loaded_as_python(sinusoid_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(sinusoid_run, run)
    marker = tmp_path / "code-ran"
    tag = f"!!python/object/apply:pathlib.Path.touch [{yaml.safe_dump(str(marker)).strip()}]"
    (run / "config.yaml").write_text(f"seed: {tag}\n")
    cli_error(["eval", str(run)], capsys, r"config\.yaml is not valid YAML \(.*could not determine")
    assert not marker.exists()
