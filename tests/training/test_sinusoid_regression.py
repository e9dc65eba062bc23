"""Sinusoid regression end to end: the learner on an MLP, its meta-gradient, the CLI, the errors."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from mamlkit import ALGORITHMS, EvalResult, MetaLearner, evaluate, fit
from mamlkit.cli import main
from mamlkit.compare import plan_algorithms
from mamlkit.compare.presets import COMPARE_PRESETS
from mamlkit.data import DATASETS, Sinusoid, SinusoidSampler
from mamlkit.errors import ConfigError
from mamlkit.models import MLP


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """The tensors here are tiny: one torch thread is fastest and immune to busy cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def mlp(hidden: int = 40, seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    return MLP(in_channels=1, num_classes=1, hidden=hidden)


def test_sinusoid_is_a_registered_regression_dataset() -> None:
    dataset = DATASETS.get("sinusoid")(root=None, split="test", download=False)
    assert isinstance(dataset, Sinusoid)
    assert dataset.task == "regression" and dataset.num_outputs == 1
    episode = dataset.task_sampler(5, 7, 3, seed=0).sample()
    assert episode.support_x.shape == (3, 5, 1) and episode.query_y.shape == (3, 7, 1)


def test_fit_lowers_the_query_mse() -> None:
    learner = MetaLearner(mlp(), "maml", inner_lr=0.01, task="regression")

    def test_mse() -> EvalResult:
        tasks = SinusoidSampler(10, 10, 50, seed=1, split="test")
        result = evaluate(learner, tasks, tasks=100, progress=False)
        assert result.task == "regression" and result.accuracy is None
        return result

    before = test_mse()
    optimizer = torch.optim.Adam(learner.parameters(), lr=0.01)
    records: list[dict] = []
    losses = fit(
        learner,
        SinusoidSampler(10, 10, 8, seed=0),
        optimizer,
        iterations=30,
        progress=False,
        log_every=10,
        callbacks=[records.append],
    )
    after = test_mse()
    assert len(losses) == 30 and all(r.keys() >= {"loss"} for r in records)
    assert not any("accuracy" in r for r in records)
    assert after.mse < 0.9 * before.mse, (before.mse, after.mse)
    assert len(after.per_step_loss) == 2 and after.per_step_loss[-1] == pytest.approx(after.mse)
    assert after.ci95 == pytest.approx(1.96 * after.std / 100**0.5)
    assert re.fullmatch(r"MSE \d+\.\d{3} \+- \d+\.\d{3} \(100 tasks\)", after.summary())


def double_episode(meta_batch: int = 2, shots: int = 5, queries: int = 6) -> list[torch.Tensor]:
    episode = SinusoidSampler(shots, queries, meta_batch, seed=3).sample()
    return [t.double() for t in episode]


def test_maml_meta_gradient_matches_central_differences() -> None:
    learner = MetaLearner(
        mlp(hidden=6), "maml", inner_lr=0.05, inner_steps=2, task="regression"
    ).double()
    episode = double_episode()
    params = list(learner.parameters())
    loss, _ = learner.meta_loss(*episode)
    grads = torch.autograd.grad(loss, params)
    eps = 1e-6
    with torch.no_grad():
        for param, grad in zip(params, grads, strict=True):
            flat, numeric = param.view(-1), torch.empty_like(grad).view(-1)
            for i in range(flat.numel()):
                saved = float(flat[i])
                flat[i] = saved + eps
                up = float(learner.meta_loss(*episode)[0])
                flat[i] = saved - eps
                down = float(learner.meta_loss(*episode)[0])
                flat[i] = saved
                numeric[i] = (up - down) / (2 * eps)
            torch.testing.assert_close(grad.view(-1), numeric, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_every_learnable_gets_a_gradient(algorithm: str) -> None:
    learner = MetaLearner(mlp(hidden=8), algorithm, inner_lr=0.05, task="regression").double()
    metrics = learner.meta_backward(*double_episode(meta_batch=3))
    assert set(metrics) == {"loss"}
    for name, param in learner.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0, name


def test_label_dtypes_must_match_the_task() -> None:
    sx, sy, qx, qy = SinusoidSampler(5, 5, 2, seed=0).sample()
    regression = MetaLearner(mlp(hidden=8), "maml", task="regression")
    with pytest.raises(ValueError, match="float regression targets"):
        regression.meta_loss(sx, sy.round().long()[..., 0], qx, qy)
    classification = MetaLearner(MLP(num_classes=3, hidden=8), "maml")
    with pytest.raises(ValueError, match=r"int64 class labels.*task='regression'"):
        classification.meta_loss(sx, sy[..., 0], qx, qy[..., 0])


TINY = [
    "--dataset",
    "sinusoid",
    "--model",
    "mlp",
    "--hidden",
    "8",
    "--shots",
    "5",
    "--queries",
    "5",
    "--meta-batch",
    "4",
    "--iterations",
    "3",
    "--inner-lr",
    "0.01",
    "--device",
    "cpu",
    "--no-progress",
]


def test_cli_trains_and_evaluates_sinusoid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    code, out, err = run_cli(["train", *TINY, "--out", str(run)], capsys)
    assert code == 0, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "regression" and summary["final_train_accuracy"] is None
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records and all("accuracy" not in r and r["loss"] > 0 for r in records)

    code, out, err = run_cli(
        ["eval", str(run), "--tasks", "20", "--inner-steps", "3", "--no-progress"], capsys
    )
    assert code == 0, err
    assert re.match(r"MSE \d+\.\d{3} \+- \d+\.\d{3} \(20 tasks\); the final weights\n", out)
    result = json.loads((run / "eval.json").read_text())
    assert result["task"] == "regression" and "accuracy" not in result and "ways" not in result
    assert result["tasks"] == 20 and len(result["task_mse"]) == 20 and result["inner_steps"] == 3
    assert result["mse"] == pytest.approx(sum(result["task_mse"]) / 20)
    assert len(result["per_step_loss"]) == 4  # before adaptation, after steps 1..3
    assert result["fits"]["file"] == "fits.png" and result["fits"]["steps"] == 3
    assert len(result["fits"]["before"]) == len(result["fits"]["step_K"]) == 4
    assert (run / "fits.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ways", "3"], "sinusoid is a regression dataset: --ways does not apply"),
        (["--model", "conv4"], "choose another --model, e.g. --model mlp"),
        (["--split-seed", "2"], "split_seed cannot be set"),
    ],
)
def test_bad_sinusoid_arguments_fail_in_one_line(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(["train", *TINY, *args, "--out", str(tmp_path / "r")], capsys)
    assert code == 2, err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_default_ways_passes_for_regression(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(["train", *TINY, "--ways", "5", "--out", str(tmp_path / "r")], capsys)
    assert code == 0, err


def test_compare_refuses_regression_datasets_when_planning() -> None:
    with pytest.raises(ConfigError, match="compare supports classification datasets only"):
        plan_algorithms(
            COMPARE_PRESETS.get("quick"), ["maml"], train_layers=[{"dataset": "sinusoid"}]
        )


def test_downloading_the_generated_sinusoid_is_refused() -> None:
    from mamlkit.data import Sinusoid

    with pytest.raises(ValueError, match="nothing to download"):
        Sinusoid(split="train", download=True)
