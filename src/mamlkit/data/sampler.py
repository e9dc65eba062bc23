"""N-way K-shot episode sampling over any few-shot dataset, reproducible from one seed.

Each task of a meta-batch picks ``ways`` distinct classes uniformly at random; a class's label is
its position in that random order (0..N-1), so labels carry no information across tasks. From each
class it draws ``shots + queries`` distinct samples: the first ``shots`` form the support set, the
rest the query set. Support and query are ordered by label (label-major).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from mamlkit.checks import positive_int
from mamlkit.episodes import Episode

STATE_VERSION = 1


@runtime_checkable
class FewShotDataset(Protocol):
    """What :class:`EpisodeSampler` needs from a dataset: ``num_classes`` classes of
    ``samples_per_class[c]`` examples each, served as float tensors of ``image_shape`` by
    :meth:`get`. :class:`~mamlkit.data.Omniglot` and :class:`~mamlkit.data.MiniImageNet` are
    such datasets; any object with these attributes works (see :class:`EpisodeSampler`)."""

    num_classes: int
    image_shape: tuple[int, ...]
    samples_per_class: np.ndarray  # int [num_classes]

    def get(self, class_indices: Any, sample_indices: Any) -> Tensor:
        """Float images ``[n, *image_shape]`` for paired 1-D class and sample indices."""
        ...


class SeededStream:
    """A stream of meta-batches from a private ``numpy.random.default_rng`` (never the global
    RNGs): ``batches`` of them per iteration (forever when ``None``), and a JSON-able state to
    resume it exactly. Subclasses draw with ``self._rng`` in :meth:`sample`.

    The base of :class:`EpisodeSampler` and :class:`~mamlkit.data.SinusoidSampler`; its
    :meth:`state_dict` is what a checkpoint saves, so a resumed run sees the same episodes as an
    uninterrupted one.
    """

    #: How ``len()`` and state errors name the sampler.
    _noun = "a sampler"
    _state_kind = "sampler"

    def _init_stream(self, seed: int, batches: int | None, *stream_keys: int) -> None:
        """Check ``seed`` and ``batches``; seed the generator with ``seed`` (and ``stream_keys``,
        which select independent streams of one seed, e.g. a split)."""
        self.batches = None if batches is None else positive_int("batches", batches)
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        self._rng = np.random.default_rng([self.seed, *stream_keys] if stream_keys else self.seed)

    def sample(self) -> Episode:
        """Draw the next meta-batch (subclasses implement it)."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[Episode]:
        """Yield meta-batches: ``batches`` of them, or forever when ``batches`` is ``None``.

        The RNG state carries over between iterations; it is not reset.
        """
        if self.batches is None:
            while True:
                yield self.sample()
        for _ in range(self.batches):
            yield self.sample()

    def __len__(self) -> int:
        if self.batches is None:
            raise TypeError(f"{self._noun} without batches= is infinite and has no len()")
        return self.batches

    def _extra_state(self) -> dict[str, Any]:
        """What a subclass adds to :meth:`state_dict` (restored by :meth:`_load_extra_state`)."""
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        """The RNG state as plain JSON-serialisable data, to resume the same stream."""
        return {
            "version": STATE_VERSION,
            "seed": self.seed,
            "bit_generator": self._rng.bit_generator.state,
            **self._extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; later meta-batches continue its stream exactly."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(
                f"unsupported {self._state_kind} state version {state.get('version')!r}, "
                f"expected {STATE_VERSION}"
            )
        bit_state = state["bit_generator"]
        expected = type(self._rng.bit_generator).__name__
        if bit_state.get("bit_generator") != expected:
            raise ValueError(
                f"sampler state is for bit generator {bit_state.get('bit_generator')!r}, "
                f"expected {expected!r}"
            )
        self._rng.bit_generator.state = bit_state
        self.seed = int(state.get("seed", self.seed))
        self._load_extra_state(state)


class EpisodeSampler(SeededStream):
    """Draws meta-batches of N-way K-shot tasks from ``dataset`` with its own RNG.

    Args:
        dataset: any :class:`FewShotDataset`.
        ways: N, classes per task.
        shots: K, support samples per class.
        queries: Q, query samples per class.
        meta_batch: B, tasks per episode batch.
        seed: seed of the sampler's ``numpy.random.default_rng``; global RNGs are never used.
        batches: number of meta-batches one iteration yields; ``None`` iterates forever.

    Impossible requests (more ways than classes, more shots + queries than the smallest class
    holds) fail at construction with a message naming the dataset.

    An in-memory dataset of 10 classes with 6 "images" ``[1, 2, 2]`` each:

    >>> import numpy as np
    >>> import torch
    >>> from mamlkit.data import EpisodeSampler, FewShotDataset
    >>> class Toy:
    ...     num_classes = 10
    ...     image_shape = (1, 2, 2)
    ...     samples_per_class = np.full(10, 6)
    ...     def get(self, class_indices, sample_indices):
    ...         x = (10 * class_indices + sample_indices).float()
    ...         return x.view(-1, 1, 1, 1).expand(-1, 1, 2, 2)
    >>> isinstance(Toy(), FewShotDataset)
    True
    >>> sampler = EpisodeSampler(Toy(), ways=5, shots=1, queries=2, meta_batch=4, seed=0)
    >>> episode = sampler.sample()
    >>> [tuple(t.shape) for t in episode]
    [(4, 5, 1, 2, 2), (4, 5), (4, 10, 1, 2, 2), (4, 10)]
    >>> episode.query_y[0]
    tensor([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    >>> state = sampler.state_dict()
    >>> upcoming = sampler.sample()
    >>> sampler.load_state_dict(state)  # resume: the same stream from here on
    >>> torch.equal(sampler.sample().query_x, upcoming.query_x)
    True
    >>> len(EpisodeSampler(Toy(), 5, 1, 2, meta_batch=4, batches=3))
    3
    >>> EpisodeSampler(Toy(), ways=5, shots=3, queries=5, meta_batch=4)
    Traceback (most recent call last):
        ...
    ValueError: shots=3 + queries=5 = 8 samples per class are needed but Toy has only 6 samples
    in its smallest class
    """

    _noun = "an EpisodeSampler"

    def __init__(
        self,
        dataset: FewShotDataset,
        ways: int,
        shots: int,
        queries: int,
        meta_batch: int,
        *,
        seed: int = 0,
        batches: int | None = None,
    ) -> None:
        self.ways = positive_int("ways", ways)
        self.shots = positive_int("shots", shots)
        self.queries = positive_int("queries", queries)
        self.meta_batch = positive_int("meta_batch", meta_batch)
        self._init_stream(seed, batches)

        name = getattr(dataset, "description", type(dataset).__name__)
        num_classes = int(dataset.num_classes)
        counts = np.asarray(dataset.samples_per_class, dtype=np.int64)
        if counts.shape != (num_classes,):
            raise ValueError(
                f"{name}: samples_per_class has shape {counts.shape}, expected ({num_classes},)"
            )
        if self.ways > num_classes:
            raise ValueError(f"ways={self.ways} but {name} has only {num_classes} classes")
        per_class = self.shots + self.queries
        smallest = int(counts.min())
        if per_class > smallest:
            raise ValueError(
                f"shots={self.shots} + queries={self.queries} = {per_class} samples per class are "
                f"needed but {name} has only {smallest} samples in its smallest class"
            )
        self.dataset = dataset
        self._counts = counts
        self._uniform = bool(np.all(counts == counts[0]))

    def _choose_classes(self) -> np.ndarray:
        """[B, N] distinct classes per task, in random order."""
        rng, num_classes = self._rng, len(self._counts)
        tasks = [rng.choice(num_classes, self.ways, replace=False) for _ in range(self.meta_batch)]
        return np.stack(tasks)

    def _choose_samples(self, classes: np.ndarray) -> np.ndarray:
        """[B, N, K+Q] distinct sample indices per chosen class (random order)."""
        per_class = self.shots + self.queries
        if self._uniform:
            keys = self._rng.random((*classes.shape, int(self._counts[0])))
        else:
            # Random keys, +inf past each class's count, so argsort only ranks existing samples.
            width = int(self._counts[classes].max())
            keys = self._rng.random((*classes.shape, width))
            keys[np.arange(width) >= self._counts[classes][..., None]] = np.inf
        return np.argsort(keys, axis=-1)[..., :per_class]

    def sample(self) -> Episode:
        """One meta-batch of ``meta_batch`` tasks."""
        b, n, k, q = self.meta_batch, self.ways, self.shots, self.queries
        classes = self._choose_classes()  # [B, N]
        samples = self._choose_samples(classes)  # [B, N, K+Q]
        class_idx = np.broadcast_to(classes[..., None], samples.shape)
        images = self.dataset.get(
            torch.from_numpy(np.ascontiguousarray(class_idx).reshape(-1)),
            torch.from_numpy(samples.reshape(-1)),
        )
        images = images.reshape(b, n, k + q, *images.shape[1:])
        support_x = images[:, :, :k].reshape(b, n * k, *images.shape[3:])
        query_x = images[:, :, k:].reshape(b, n * q, *images.shape[3:])
        labels = torch.arange(n, dtype=torch.int64)
        support_y = labels.repeat_interleave(k).expand(b, -1).contiguous()
        query_y = labels.repeat_interleave(q).expand(b, -1).contiguous()
        return Episode(support_x, support_y, query_x, query_y)

    def __repr__(self) -> str:
        return (
            f"EpisodeSampler(ways={self.ways}, shots={self.shots}, queries={self.queries}, "
            f"meta_batch={self.meta_batch}, seed={self.seed}, batches={self.batches})"
        )
