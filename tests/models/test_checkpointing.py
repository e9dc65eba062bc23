"""Gradient (activation) checkpointing of ResNet-12's blocks: the same meta-gradients and
BatchNorm statistics as without it, on both execution strategies, with fewer activations kept;
and a training run from the command line."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
import torch
import yaml
from torch import Tensor, nn

from mamlkit import MetaLearner
from mamlkit.backends import NotBatchable, TaskBatchedProgram, make_task_forward
from mamlkit.cli import main
from mamlkit.models import ResNet12, parse_model
from mamlkit.models.checkpointing import checkpointed
from tests.helpers.miniimagenet import make_miniimagenet
from tests.helpers.tiny_models import WAYS, episode

TINY = {"in_channels": 3, "num_classes": WAYS, "hidden": 2, "image_size": 16}
SHAPE = (3, 16, 16)


def resnet(checkpointing: bool, **options: object) -> nn.Module:
    torch.manual_seed(0)
    return ResNet12(**TINY, gradient_checkpointing=checkpointing, **options).double()


def meta_gradients(learner: MetaLearner, data: tuple[Tensor, ...]) -> dict[str, Tensor]:
    loss, _ = learner.meta_loss(*data)
    named = list(learner.named_parameters())
    grads = torch.autograd.grad(
        loss, [p for _, p in named], allow_unused=True, materialize_grads=True
    )
    return {name: g for (name, _), g in zip(named, grads, strict=True)}


@pytest.mark.parametrize("algorithm", ["maml", "fomaml"])
@pytest.mark.parametrize("execution", ["loop", "batched"])
def test_meta_gradients_equal_with_and_without_checkpointing(
    algorithm: str, execution: str
) -> None:
    data = episode(SHAPE)
    grads = {}
    for checkpointing in (False, True):
        learner = MetaLearner(
            resnet(checkpointing), algorithm, inner_lr=0.2, inner_steps=2, execution=execution
        ).double()
        assert learner.execution_strategy == execution
        grads[checkpointing] = meta_gradients(learner, data)
    assert grads[True].keys() == grads[False].keys()
    assert len(grads[True]) == len(list(resnet(False).parameters()))
    for name, grad in grads[False].items():
        torch.testing.assert_close(grads[True][name], grad, msg=name)
    assert any(g.abs().sum() > 0 for g in grads[True].values())


@pytest.mark.parametrize("algorithm", ["maml", "mamlpp[bn_per_step_stats=true]"])
def test_batch_norm_running_statistics_are_updated_once(algorithm: str) -> None:
    """In training mode, BatchNorm with running statistics updates them in every forward pass;
    the recomputations in the backward passes must not update them again."""
    data = episode(SHAPE)
    grads, stats = {}, {}
    for checkpointing in (False, True):
        model = resnet(checkpointing, track_running_stats=True)
        learner = MetaLearner(model, algorithm, inner_lr=0.2, inner_steps=2).double()
        start = {name: b.clone() for name, b in learner.named_buffers()}
        grads[checkpointing] = meta_gradients(learner, data)
        stats[checkpointing] = dict(learner.named_buffers())
        changed = [n for n, b in stats[checkpointing].items() if not torch.equal(b, start[n])]
        assert "model.features.block1.norm1.running_mean" in changed
    for name, buffer in stats[False].items():
        torch.testing.assert_close(stats[True][name], buffer, msg=name, rtol=0, atol=0)
    for name, grad in grads[False].items():
        torch.testing.assert_close(grads[True][name], grad, msg=name)


def test_evaluation_with_running_statistics_is_unchanged() -> None:
    """At evaluation BatchNorm normalises with its running statistics; the adapted predictions
    (which differentiate through checkpointed blocks) are the same."""
    sx, sy, qx, _ = episode(SHAPE)
    outputs = {}
    for checkpointing in (False, True):
        model = resnet(checkpointing, track_running_stats=True)
        learner = MetaLearner(model, "maml", inner_lr=0.2, inner_steps=2).double()
        learner.meta_loss(*episode(SHAPE))  # collect some running statistics first
        learner.eval()
        outputs[checkpointing] = learner.adapt(sx, sy)(qx)
    torch.testing.assert_close(outputs[True], outputs[False])


def saved_bytes(forward: Callable[[], object]) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of ``forward()``, outside
    checkpointed regions (those keep only their inputs)."""
    total = 0

    def pack(t: Tensor) -> Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        forward()
    return total


@pytest.mark.parametrize("execution", ["loop", "batched"])
def test_checkpointing_keeps_fewer_activations(execution: str) -> None:
    x = torch.rand(2, 6, *SHAPE, dtype=torch.float64)
    kept = {}
    for checkpointing in (False, True):
        model = resnet(checkpointing)
        params = {
            n: p.detach().expand(2, *p.shape).requires_grad_() for n, p in model.named_parameters()
        }
        forward = make_task_forward(model, execution)
        kept[checkpointing] = saved_bytes(partial(forward, params, x))
    assert kept[True] < kept[False] / 5, kept


def test_checkpointed_runs_the_module_with_the_tensors_it_held_in_the_forward_pass() -> None:
    """Under ``functional_call`` the recomputation happens after the model's own parameters are
    back; it must use the weights of the forward pass (``checkpoint(block, x)`` would not)."""
    layer = nn.Linear(3, 2).double()
    weight = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)

    def forward(ckpt: bool) -> tuple[Tensor, ...]:
        class Wrapper(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.layer = layer

            def forward(self, inputs: Tensor) -> Tensor:
                return checkpointed(self.layer, inputs) if ckpt else self.layer(inputs)

        wrapper = Wrapper()
        out = torch.func.functional_call(wrapper, {"layer.weight": weight}, (x,))
        (grad_x,) = torch.autograd.grad(torch.tanh(out).sum(), x, create_graph=True)
        return torch.autograd.grad(grad_x.pow(2).sum(), (weight, x))

    for got, want in zip(forward(True), forward(False), strict=True):
        torch.testing.assert_close(got, want)


def test_the_model_option_and_a_bad_declaration() -> None:
    factory, options = parse_model("resnet12[gradient_checkpointing=true]")
    model = factory(**TINY, **options)
    assert model.checkpoint_modules == tuple(f"features.block{i}" for i in range(1, 5))
    assert ResNet12(**TINY).checkpoint_modules == ()
    model.checkpoint_modules = ("features.block9",)
    with pytest.raises(NotBatchable, match=r"features\.block9"):
        TaskBatchedProgram(model)


def test_train_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_miniimagenet(tmp_path / "data", classes=3, images=3)
    run = tmp_path / "run"
    argv = [
        "train", "--dataset", "miniimagenet", "--data-root", str(tmp_path / "data"),
        "--model", "resnet12[gradient_checkpointing=true]", "--hidden", "2",
        "--image-size", "16", "--ways", "3", "--shots", "1", "--queries", "1",
        "--meta-batch", "2", "--inner-steps", "2", "--iterations", "2", "--log-every", "1",
        "--out", str(run), "--no-progress",
    ]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    assert yaml.safe_load((run / "config.yaml").read_text())["model"] == (
        "resnet12[gradient_checkpointing=true]"
    )
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [1, 2]
    assert all(r["loss"] > 0 for r in records)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["execution"] == "batched"
