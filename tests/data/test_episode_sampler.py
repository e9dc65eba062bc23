"""EpisodeSampler on a tiny in-memory dataset whose pixels encode (class, sample)."""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter

import numpy as np
import pytest
import torch

from mamlkit.data import Episode, EpisodeSampler, FewShotDataset
from tests.helpers.fake_dataset import FakeDataset, decode


def test_fake_dataset_satisfies_the_protocol() -> None:
    assert isinstance(FakeDataset(), FewShotDataset)


def test_shapes_dtypes_and_labels() -> None:
    ep = EpisodeSampler(FakeDataset(), ways=5, shots=2, queries=3, meta_batch=4).sample()
    assert isinstance(ep, Episode)
    assert ep.support_x.shape == (4, 10, 1, 2, 3) and ep.query_x.shape == (4, 15, 1, 2, 3)
    assert ep.support_x.dtype == ep.query_x.dtype == torch.float32
    assert ep.support_y.dtype == ep.query_y.dtype == torch.int64
    expected_support = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 4, 4]).expand(4, -1)
    torch.testing.assert_close(ep.support_y, expected_support)
    torch.testing.assert_close(ep.query_y, torch.arange(5).repeat_interleave(3).expand(4, -1))


def test_tasks_are_valid_few_shot_tasks() -> None:
    sampler = EpisodeSampler(FakeDataset(num_classes=12, samples=8), 5, 2, 3, meta_batch=16)
    unsorted_seen = False
    for _ in range(5):
        ep = sampler.sample()
        s_cls, s_smp = decode(ep.support_x)
        q_cls, q_smp = decode(ep.query_x)
        for b in range(16):
            support_classes = s_cls[b].reshape(5, 2)
            query_classes = q_cls[b].reshape(5, 3)
            # one class per label, the same class in support and query, N distinct classes
            assert (support_classes == support_classes[:, :1]).all()
            assert (query_classes == support_classes[:, :1]).all()
            order = support_classes[:, 0]
            assert len(set(order)) == 5
            unsorted_seen |= bool((np.diff(order) < 0).any())
            # K+Q distinct samples per class
            samples = np.concatenate([s_smp[b].reshape(5, 2), q_smp[b].reshape(5, 3)], axis=1)
            assert all(len(set(row)) == 5 for row in samples)
    assert unsorted_seen, "labels should follow a random class order, not sorted class ids"


def test_classes_and_samples_are_covered_roughly_uniformly() -> None:
    sampler = EpisodeSampler(FakeDataset(num_classes=10, samples=6), 3, 1, 1, meta_batch=200)
    ep = sampler.sample()
    cls, smp = decode(ep.support_x)
    class_counts = np.bincount(cls.ravel(), minlength=10)  # 600 draws, expected 60 each
    sample_counts = np.bincount(smp.ravel(), minlength=6)  # expected 100 each
    assert class_counts.min() > 30 and sample_counts.min() > 50


def test_uneven_samples_per_class_stay_in_range() -> None:
    counts = [4, 9, 5, 30, 4, 7]
    dataset = FakeDataset(num_classes=6, samples=counts)
    sampler = EpisodeSampler(dataset, ways=4, shots=1, queries=3, meta_batch=50)
    ep = sampler.sample()  # FakeDataset.get asserts every sample index is in range
    cls, smp = decode(torch.cat([ep.support_x, ep.query_x], dim=1))
    assert (smp < np.array(counts)[cls]).all()
    assert smp[cls == 3].max() >= 4  # the big class is not truncated to the smallest count
    with pytest.raises(ValueError, match=r"shots=2 \+ queries=3 = 5 .* only 4 samples"):
        EpisodeSampler(dataset, ways=2, shots=2, queries=3, meta_batch=1)


def _disturb_global_rngs(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def test_same_seed_same_episodes_whatever_the_global_rngs() -> None:
    dataset = FakeDataset()
    _disturb_global_rngs(1)
    a = EpisodeSampler(dataset, 5, 1, 2, 3, seed=7).sample()
    _disturb_global_rngs(2)
    b = EpisodeSampler(dataset, 5, 1, 2, 3, seed=7).sample()
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y)
    c = EpisodeSampler(dataset, 5, 1, 2, 3, seed=8).sample()
    assert not torch.equal(a.support_x, c.support_x)


def test_global_rngs_are_left_untouched() -> None:
    sampler = EpisodeSampler(FakeDataset(), 5, 1, 2, 3)
    np_state, py_state = np.random.get_state(), random.getstate()
    torch_state = torch.get_rng_state()
    sampler.sample()
    assert np.array_equal(np.random.get_state()[1], np_state[1])
    torch.testing.assert_close(torch.get_rng_state(), torch_state)
    assert random.getstate() == py_state


def test_state_dict_round_trip_continues_the_stream() -> None:
    dataset = FakeDataset()
    original = EpisodeSampler(dataset, 5, 2, 2, 4, seed=3)
    for _ in range(3):
        original.sample()
    state = json.loads(json.dumps(original.state_dict()))
    expected = [original.sample() for _ in range(3)]
    resumed = EpisodeSampler(dataset, 5, 2, 2, 4, seed=999)
    resumed.load_state_dict(state)
    for want, got in zip(expected, (resumed.sample() for _ in range(3)), strict=True):
        for x, y in zip(want, got, strict=True):
            torch.testing.assert_close(x, y)
    assert resumed.seed == 3


def test_load_state_dict_rejects_foreign_states() -> None:
    sampler = EpisodeSampler(FakeDataset(), 5, 1, 1, 1)
    state = sampler.state_dict()
    with pytest.raises(ValueError, match="version"):
        sampler.load_state_dict({**state, "version": 99})
    mt_state = np.random.Generator(np.random.MT19937(0)).bit_generator.state
    other = {**state, "bit_generator": mt_state}
    with pytest.raises(ValueError, match="MT19937"):
        sampler.load_state_dict(other)


def test_iteration_and_len() -> None:
    finite = EpisodeSampler(FakeDataset(), 5, 1, 1, 2, batches=3)
    assert len(finite) == 3
    episodes = list(finite)
    assert len(episodes) == 3 and all(isinstance(e, Episode) for e in episodes)
    assert not torch.equal(episodes[0].support_x, episodes[1].support_x)
    infinite = EpisodeSampler(FakeDataset(), 5, 1, 1, 2)
    with pytest.raises(TypeError, match="infinite"):
        len(infinite)
    assert len(list(itertools.islice(infinite, 7))) == 7


def test_iteration_matches_sample() -> None:
    a = EpisodeSampler(FakeDataset(), 5, 1, 1, 2, seed=4, batches=2)
    b = EpisodeSampler(FakeDataset(), 5, 1, 1, 2, seed=4)
    for x, y in zip(a, [b.sample(), b.sample()], strict=True):
        torch.testing.assert_close(x.query_x, y.query_x)


def test_episode_to_device_keeps_the_type() -> None:
    ep = EpisodeSampler(FakeDataset(), 5, 1, 1, 2).sample()
    moved = ep.to("cpu")
    assert isinstance(moved, Episode)
    for x, y in zip(ep, moved, strict=True):
        torch.testing.assert_close(x, y)
    assert moved.to(torch.device("cpu")).support_y.device.type == "cpu"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ways": 30}, r"ways=30 but FakeDataset has only 12 classes"),
        ({"ways": 0}, r"ways must be a positive integer, got 0"),
        ({"shots": True}, r"shots must be a positive integer, got True"),
        ({"queries": 1.0}, r"queries must be a positive integer, got 1.0"),
        ({"meta_batch": -2}, r"meta_batch must be a positive integer, got -2"),
        ({"batches": 0}, r"batches must be a positive integer, got 0"),
        ({"seed": -1}, r"seed must be a non-negative integer"),
        ({"shots": 5, "queries": 4}, r"shots=5 \+ queries=4 = 9 .* only 8 samples"),
    ],
)
def test_constructor_rejects_bad_arguments_before_any_work(kwargs, message) -> None:
    dataset = FakeDataset(num_classes=12, samples=8)
    args = {"ways": 5, "shots": 1, "queries": 1, "meta_batch": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        EpisodeSampler(dataset, **args)
    assert dataset.calls == 0


def test_numpy_integers_are_accepted() -> None:
    sampler = EpisodeSampler(FakeDataset(), np.int64(5), np.int32(1), 1, 2, seed=np.int64(3))
    assert sampler.sample().support_x.shape == (2, 5, 1, 2, 3)


# --- tasks within groups -----------------------------------------------------------------------


def _reference_stream(dataset: FakeDataset, ways: int, shots: int, queries: int, b: int, seed: int):
    """The documented default draws, written out: per task ``rng.choice`` of the classes, then
    per class the first K+Q of an argsort of random keys (+inf past the class's count)."""
    rng = np.random.default_rng(seed)
    counts = dataset.samples_per_class
    while True:
        classes = np.stack([rng.choice(len(counts), ways, replace=False) for _ in range(b)])
        if bool(np.all(counts == counts[0])):
            keys = rng.random((*classes.shape, int(counts[0])))
        else:
            width = int(counts[classes].max())
            keys = rng.random((*classes.shape, width))
            keys[np.arange(width) >= counts[classes][..., None]] = np.inf
        yield classes, np.argsort(keys, axis=-1)[..., : shots + queries]


@pytest.mark.parametrize("samples", [8, [8, 9, 10, 8, 8, 12, 8, 8, 8, 8, 8, 11]])
def test_the_default_stream_is_unchanged(samples) -> None:
    dataset = FakeDataset(num_classes=12, samples=samples)
    explicit = EpisodeSampler(dataset, 5, 2, 3, 4, seed=11, groups=None, sources=None)
    reference = _reference_stream(dataset, 5, 2, 3, 4, seed=11)
    for _ in range(5):
        episode = explicit.sample()
        classes, picked = next(reference)
        cls, smp = decode(torch.cat([episode.support_x, episode.query_x], dim=1))
        support_cls, query_cls = cls[:, :10].reshape(4, 5, 2), cls[:, 10:].reshape(4, 5, 3)
        support_smp, query_smp = smp[:, :10].reshape(4, 5, 2), smp[:, 10:].reshape(4, 5, 3)
        np.testing.assert_array_equal(support_cls[:, :, 0], classes)
        np.testing.assert_array_equal(query_cls[:, :, 0], classes)
        np.testing.assert_array_equal(np.concatenate([support_smp, query_smp], -1), picked)
    assert not explicit.grouped and set(explicit.state_dict()) == {
        "version",
        "seed",
        "bit_generator",
    }


#: 16 classes: group "a" holds sources 0-2 (2 variants each), "b" sources 3-4, "c" source 5 x4.
GROUPS = ["a"] * 6 + ["b"] * 6 + ["c"] * 4
SOURCES = [0, 0, 1, 1, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 5]


def _tasks(sampler: EpisodeSampler, batches: int) -> np.ndarray:
    """[batches * B, N] classes of the tasks of ``batches`` meta-batches."""
    out = []
    for _ in range(batches):
        support_cls, _ = decode(sampler.sample().support_x)
        out.append(support_cls[:, :: sampler.shots])
    return np.concatenate(out)


def test_grouped_tasks_share_a_group_and_hold_distinct_sources() -> None:
    dataset = FakeDataset(num_classes=16, samples=8)
    sampler = EpisodeSampler(
        dataset, 2, 2, 1, meta_batch=50, seed=3, groups=GROUPS, sources=SOURCES
    )
    assert sampler.grouped and "groups=2" in repr(sampler)  # "c" has 1 source: skipped
    tasks = _tasks(sampler, 8)  # 400 tasks
    groups, sources = np.array(GROUPS), np.array(SOURCES)
    assert (groups[tasks] == groups[tasks[:, :1]]).all()
    assert (sources[tasks[:, 0]] != sources[tasks[:, 1]]).all()
    assert not np.isin(tasks, np.flatnonzero(groups == "c")).any()
    # Groups are equally likely (200 expected each); every class of an eligible group appears.
    per_group = Counter(groups[tasks[:, 0]].tolist())
    assert per_group.keys() == {"a", "b"} and min(per_group.values()) > 160
    np.testing.assert_array_equal(np.unique(tasks), np.arange(12))
    # Both label orders occur: labels follow the random order of the drawn sources.
    assert (tasks[:, 0] < tasks[:, 1]).any() and (tasks[:, 0] > tasks[:, 1]).any()


def test_groups_without_sources_and_sources_without_groups() -> None:
    dataset = FakeDataset(num_classes=16, samples=8)
    by_group = EpisodeSampler(dataset, 4, 1, 1, 100, groups=np.array(GROUPS), seed=1)
    tasks = _tasks(by_group, 2)
    groups = np.array(GROUPS)
    assert (groups[tasks] == groups[tasks[:, :1]]).all()
    assert {"a", "b", "c"} == set(groups[tasks[:, 0]].tolist())  # "c" has 4 classes: eligible
    assert all(len(set(t)) == 4 for t in tasks.tolist())
    by_source = EpisodeSampler(dataset, 6, 1, 1, 100, sources=torch.tensor(SOURCES), seed=1)
    tasks = _tasks(by_source, 2)
    assert all(len(set(np.array(SOURCES)[t].tolist())) == 6 for t in tasks)


def test_grouped_stream_is_seeded_resumable_and_leaves_global_rngs_alone() -> None:
    dataset = FakeDataset(num_classes=16, samples=8)
    options = {"groups": GROUPS, "sources": SOURCES}
    _disturb_global_rngs(1)
    original = EpisodeSampler(dataset, 2, 1, 2, 6, seed=9, **options)
    np_state, torch_state = np.random.get_state(), torch.get_rng_state()
    original.sample()
    assert np.array_equal(np.random.get_state()[1], np_state[1])
    torch.testing.assert_close(torch.get_rng_state(), torch_state)
    state = json.loads(json.dumps(original.state_dict()))
    assert state["groups"] == [[3, 6], [2, 6]]
    expected = [original.sample() for _ in range(3)]
    _disturb_global_rngs(2)
    resumed = EpisodeSampler(dataset, 2, 1, 2, 6, seed=0, **options)
    resumed.load_state_dict(state)
    for want in expected:
        for x, y in zip(want, resumed.sample(), strict=True):
            torch.testing.assert_close(y, x, rtol=0, atol=0)
    again = EpisodeSampler(dataset, 2, 1, 2, 6, seed=9, **options)
    again.sample()
    torch.testing.assert_close(again.sample().query_x, expected[0].query_x, rtol=0, atol=0)


def test_states_of_another_grouping_are_refused() -> None:
    dataset = FakeDataset(num_classes=16, samples=8)
    grouped = EpisodeSampler(dataset, 2, 1, 1, 2, groups=GROUPS, sources=SOURCES)
    plain = EpisodeSampler(dataset, 2, 1, 1, 2)
    before = plain.state_dict()
    with pytest.raises(ValueError, match="within 2 groups, but this one draws them without"):
        plain.load_state_dict(grouped.state_dict())
    assert plain.state_dict() == before  # nothing was restored
    with pytest.raises(ValueError, match="without groups, but this one draws them within 2"):
        grouped.load_state_dict(before)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"groups": ["a"] * 15}, ValueError, r"groups must hold one label per class of "),
        ({"sources": list(range(17))}, ValueError, r"sources .* \(16\), got 17"),
        ({"groups": [[1]] * 16}, TypeError, r"groups must hold hashable labels"),
        (
            {"groups": GROUPS, "sources": SOURCES, "ways": 4},
            ValueError,
            r"ways=4 but no group of FakeDataset has 4 distinct sources \(the largest has 3\)",
        ),
        ({"groups": GROUPS, "ways": 7}, ValueError, r"has 7 classes \(the largest has 6\)"),
        ({"sources": SOURCES, "ways": 7}, ValueError, r"FakeDataset has only 6 distinct sources"),
    ],
)
def test_bad_groupings_are_refused_at_construction(kwargs, error, message) -> None:
    dataset = FakeDataset(num_classes=16, samples=8)
    args = {"ways": 2, "shots": 1, "queries": 1, "meta_batch": 2, **kwargs}
    with pytest.raises(error, match=message):
        EpisodeSampler(dataset, **args)
    assert dataset.calls == 0
