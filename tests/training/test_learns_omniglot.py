"""Meta-training on real Omniglot must learn: a bar that chance (20% for 5-way) cannot pass."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mamlkit import Conv4, evaluate, train_maml
from mamlkit.data import EpisodeSampler, Omniglot


@pytest.mark.slow
@pytest.mark.parametrize("first_order", [False, True])
def test_maml_learns_omniglot_5way_1shot(omniglot_root: Path, first_order: bool) -> None:
    train = Omniglot(omniglot_root, "train")
    test = Omniglot(omniglot_root, "test")
    torch.manual_seed(0)
    model = Conv4(in_channels=1, num_classes=5, hidden=32)
    tasks = EpisodeSampler(train, ways=5, shots=1, queries=5, meta_batch=8, seed=0)
    _, learner, losses = train_maml(
        model,
        tasks,
        inner_lr=0.4,
        outer_lr=0.003,
        inner_steps=1,
        first_order=first_order,
        iterations=100,
        progress=False,
    )
    test_tasks = EpisodeSampler(test, ways=5, shots=1, queries=5, meta_batch=25, seed=1)
    result = evaluate(learner, test_tasks, tasks=100, inner_steps=3, progress=False)
    # 100 tasks x 25 queries: at chance the mean accuracy is 0.2 with a std of about 0.008.
    assert result.accuracy > 0.5, result.summary()
    assert result.per_step_accuracy[-1] > result.per_step_accuracy[0] + 0.2
    assert sum(losses[-10:]) < sum(losses[:10])
