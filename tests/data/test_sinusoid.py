"""The sinusoid task generator (Finn et al. 2017, section 5.1): the task distribution, its own
seeded streams, resuming, and clear errors."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from mamlkit.data import Sinusoid, SinusoidSampler


def test_episodes_are_points_of_their_tasks_sinusoids() -> None:
    sampler = Sinusoid(split="train").task_sampler(shots=5, queries=10, meta_batch=4, seed=0)
    episode, tasks = sampler.sample_with_tasks()
    assert episode.support_x.shape == (4, 5, 1) and episode.query_y.shape == (4, 10, 1)
    assert all(t.dtype == torch.float32 for t in episode)
    for x, y in ((episode.support_x, episode.support_y), (episode.query_x, episode.query_y)):
        want = tasks(x.double().numpy())
        np.testing.assert_allclose(y.numpy(), want, rtol=1e-6, atol=1e-6)


def test_task_parameters_and_inputs_follow_the_paper_ranges() -> None:
    sampler = SinusoidSampler(shots=10, queries=10, meta_batch=500, seed=1)
    episode, tasks = sampler.sample_with_tasks()
    assert tasks.amplitude.min() >= 0.1 and tasks.amplitude.max() <= 5.0
    assert tasks.phase.min() >= 0.0 and tasks.phase.max() <= math.pi
    x = torch.cat([episode.support_x, episode.query_x], dim=1)
    assert float(x.min()) >= -5.0 and float(x.max()) <= 5.0
    # uniform, not clustered: every fifth of each range is hit
    assert len(np.unique(np.floor((tasks.amplitude - 0.1) / (4.9 / 5)))) == 5
    assert len(np.unique(np.floor(tasks.phase / (math.pi / 5)))) == 5


def test_streams_follow_seed_and_split_and_leave_global_rngs_alone() -> None:
    torch_state, np_state, py_state = (
        torch.get_rng_state(),
        np.random.get_state(),
        random.getstate(),
    )

    def first(seed: int, split: str) -> torch.Tensor:
        return SinusoidSampler(5, 5, 3, seed=seed, split=split).sample().support_y

    torch.testing.assert_close(first(0, "train"), first(0, "train"))
    assert not torch.equal(first(0, "train"), first(1, "train"))
    assert not torch.equal(first(0, "train"), first(0, "test"))
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state[1])
    assert random.getstate() == py_state


def test_state_dict_resumes_the_stream_exactly() -> None:
    sampler = SinusoidSampler(5, 5, 2, seed=3, batches=6)
    stream = iter(sampler)
    next(stream), next(stream)
    state = sampler.state_dict()
    rest = [e.query_y for e in stream]
    resumed = SinusoidSampler(5, 5, 2, seed=3, batches=4)
    resumed.load_state_dict(state)
    for a, b in zip(rest, (e.query_y for e in resumed), strict=True):
        torch.testing.assert_close(a, b)
    assert len(resumed) == 4
    with pytest.raises(ValueError, match="unsupported sinusoid sampler state version"):
        resumed.load_state_dict({**state, "version": 99})
    with pytest.raises(TypeError, match="infinite"):
        len(SinusoidSampler(5, 5, 2))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split": "validation"}, "unknown sinusoid split 'validation'; valid splits"),
        ({"amplitude": (5.0, 0.1)}, "amplitude must be finite with low <= high"),
        ({"phase": "pi"}, "phase must be a pair"),
        ({"x_range": (0.0, float("inf"))}, "x_range must be finite"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"shots": 0}, "shots must be a positive integer"),
    ],
)
def test_bad_settings_are_clear_errors(kwargs: dict, message: str) -> None:
    settings = {"shots": 5, "queries": 5, "meta_batch": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        SinusoidSampler(**settings)
