"""N-way K-shot episode sampling over any few-shot dataset, reproducible from one seed.

Each task of a meta-batch picks ``ways`` distinct classes uniformly at random; a class's label is
its position in that random order (0..N-1), so labels carry no information across tasks. From each
class it draws ``shots + queries`` distinct samples: the first ``shots`` form the support set, the
rest the query set. Support and query are ordered by label (label-major).

Given ``groups`` (one label per class, e.g. Omniglot's ``class_alphabets``), every task instead
draws its classes from one group, chosen uniformly among the groups with at least N sources.
``sources`` (one label per class, e.g. Omniglot's ``class_characters``; default: every class its
own) marks classes that are variants of one item (a character and its rotations): a task holds N
distinct sources of its group, each as one of its classes chosen uniformly.

``support_transform`` and ``query_transform`` augment the support and the query images (see
:mod:`mamlkit.data.augment`): each gets the images of the whole meta-batch and a
``torch.Generator`` seeded, for every meta-batch, from a second stream of the sampler's seed, so
augmentation never changes which classes and samples are drawn (and a sampler without transforms
has no second stream at all).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from mamlkit.checks import positive_int
from mamlkit.data.augment import Transform
from mamlkit.episodes import Episode

STATE_VERSION = 1

#: The spawn key of the augmentation stream: ``SeedSequence(seed, spawn_key=(AUGMENT_STREAM,))``,
#: independent of the stream ``default_rng(seed)`` that draws the tasks.
AUGMENT_STREAM = 0x617567


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
        groups: one label per class (any hashable values, e.g. alphabet names); when given, all
            N classes of a task share one label. The group is drawn uniformly among the groups
            that hold N distinct sources (smaller groups are skipped), then N of its sources
            uniformly without replacement.
        sources: one label per class; classes sharing one (e.g. a character and its rotations)
            never appear together in a task: a task draws N distinct sources and one class of
            each, uniformly. Without ``groups``, the whole dataset is one group.
        support_transform: augments the support images: called with the support images of all
            tasks of a meta-batch, ``[B * N * K, *image_shape]``, and a ``torch.Generator`` to
            draw from; returns images of that shape (built-in ones: :mod:`mamlkit.data.augment`).
        query_transform: the same for the query images ``[B * N * Q, *image_shape]``, with its
            own generator.

    Impossible requests (more ways than classes, more shots + queries than the smallest class
    holds, no group with N sources) fail at construction with a message naming the dataset.
    Without ``groups`` and ``sources`` each task's classes are one ``rng.choice`` of all classes,
    and the state holds only the generator.

    With a transform, every meta-batch draws two seeds from a second generator,
    ``default_rng(SeedSequence(seed, spawn_key=(AUGMENT_STREAM,)))``: one seeds the support
    transform's ``torch.Generator``, the other the query transform's. The tasks' classes and
    samples are those of the same sampler without transforms; the state also holds the second
    generator, so a resumed sampler augments exactly as an uninterrupted one.

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

    Classes 0-3 in group "a", 4-9 in group "b": every task's 3 classes come from one group.

    >>> groups = ["a"] * 4 + ["b"] * 6
    >>> grouped = EpisodeSampler(Toy(), ways=3, shots=1, queries=1, meta_batch=8, groups=groups)
    >>> classes = grouped.sample().support_x[:, :, 0, 0, 0].long() // 10
    >>> bool(((classes < 4).all(1) | (classes >= 4).all(1)).all())
    True

    A query transform (here: negate every image) leaves the support set and the draws alone:

    >>> negate = lambda images, generator: -images
    >>> plain = EpisodeSampler(Toy(), 5, 1, 2, meta_batch=4, seed=3).sample()
    >>> augmented = EpisodeSampler(Toy(), 5, 1, 2, meta_batch=4, seed=3, query_transform=negate)
    >>> episode = augmented.sample()
    >>> torch.equal(episode.support_x, plain.support_x)
    True
    >>> torch.equal(episode.query_x, -plain.query_x)
    True
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
        groups: Sequence[Any] | np.ndarray | None = None,
        sources: Sequence[Any] | np.ndarray | None = None,
        support_transform: Transform | None = None,
        query_transform: Transform | None = None,
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
        self._groups: list[tuple[np.ndarray, np.ndarray]] | None = None
        if groups is not None or sources is not None:
            self._groups = _group_tables(groups, sources, num_classes, self.ways, name)
        for what, transform in (("support", support_transform), ("query", query_transform)):
            if transform is not None and not callable(transform):
                raise TypeError(
                    f"{what}_transform must be callable as transform(images, generator), got "
                    f"{type(transform).__name__}"
                )
        self.support_transform = support_transform
        self.query_transform = query_transform
        self._augment_rng: np.random.Generator | None = None
        if self.augments:
            sequence = np.random.SeedSequence(self.seed, spawn_key=(AUGMENT_STREAM,))
            self._augment_rng = np.random.default_rng(sequence)

    @property
    def augments(self) -> bool:
        """Whether the sampler transforms its support or query images."""
        return self.support_transform is not None or self.query_transform is not None

    @property
    def grouped(self) -> bool:
        """Whether tasks are drawn within groups / from distinct sources (``groups``,
        ``sources``)."""
        return self._groups is not None

    def _group_signature(self) -> list[list[int]] | None:
        """The eligible groups' sizes (sources, classes), recorded in the state to refuse
        resuming a stream with another grouping."""
        if self._groups is None:
            return None
        return [[len(counts), int(counts.sum())] for _, counts in self._groups]

    def _choose_classes(self) -> np.ndarray:
        """[B, N] distinct classes per task, in random order."""
        if self._groups is not None:
            return self._choose_grouped_classes(self._groups)
        rng, num_classes = self._rng, len(self._counts)
        tasks = [rng.choice(num_classes, self.ways, replace=False) for _ in range(self.meta_batch)]
        return np.stack(tasks)

    def _choose_grouped_classes(self, groups: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """[B, N] classes per task: one group, N distinct sources of it, one class per source."""
        rng, tasks = self._rng, []
        for _ in range(self.meta_batch):
            table, counts = groups[int(rng.integers(len(groups)))]
            picked = rng.choice(len(counts), self.ways, replace=False)
            tasks.append(table[picked, rng.integers(counts[picked])])
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
        if self._augment_rng is not None:
            support_seed, query_seed = self._augment_rng.integers(0, 2**63, size=2).tolist()
            support_x = self._transformed("support", support_x, support_seed)
            query_x = self._transformed("query", query_x, query_seed)
        labels = torch.arange(n, dtype=torch.int64)
        support_y = labels.repeat_interleave(k).expand(b, -1).contiguous()
        query_y = labels.repeat_interleave(q).expand(b, -1).contiguous()
        return Episode(support_x, support_y, query_x, query_y)

    def _transformed(self, what: str, images: Tensor, seed: int) -> Tensor:
        """``images`` [B, n, ...] through the ``what`` transform (if any), which sees them as
        ``[B * n, ...]`` and draws from a ``torch.Generator`` seeded with ``seed``."""
        transform = self.support_transform if what == "support" else self.query_transform
        if transform is None:
            return images
        flat = images.reshape(-1, *images.shape[2:])
        out = transform(flat, torch.Generator().manual_seed(seed))
        if not isinstance(out, Tensor) or out.shape != flat.shape:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"{what}_transform {transform!r} must return images of the shape it was given, "
                f"{tuple(flat.shape)}, got {got}"
            )
        return out.reshape(images.shape)

    def _extra_state(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        signature = self._group_signature()
        if signature is not None:
            extra["groups"] = signature
        if self._augment_rng is not None:
            extra["augment"] = self._augment_rng.bit_generator.state
        return extra

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        if self._augment_rng is not None:
            self._augment_rng.bit_generator.state = state["augment"]

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; later meta-batches continue its stream exactly. A state
        saved with another grouping (``groups`` / ``sources``), or by a sampler that augmented
        its images when this one does not (or the reverse), is refused."""
        saved, own = state.get("groups"), self._group_signature()
        if saved != own:
            raise ValueError(
                f"sampler state was saved by a sampler drawing tasks {_grouping(saved)}, but this "
                f"one draws them {_grouping(own)}; resume with the same groups and sources"
            )
        if ("augment" in state) != self.augments:
            saved_by = "augmented" if "augment" in state else "did not augment"
            this = "augments" if self.augments else "does not augment"
            raise ValueError(
                f"sampler state was saved by a sampler that {saved_by} its images, but this one "
                f"{this} them; resume with the same support_transform and query_transform "
                "(--augment)"
            )
        super().load_state_dict(state)

    def __repr__(self) -> str:
        grouped = f", groups={len(self._groups)}" if self._groups is not None else ""
        for what, transform in (
            ("support", self.support_transform),
            ("query", self.query_transform),
        ):
            if transform is not None:
                grouped += f", {what}_transform={transform!r}"
        return (
            f"EpisodeSampler(ways={self.ways}, shots={self.shots}, queries={self.queries}, "
            f"meta_batch={self.meta_batch}, seed={self.seed}, batches={self.batches}{grouped})"
        )


def _grouping(signature: Any) -> str:
    return f"within {len(signature)} groups" if signature else "without groups"


def _codes(labels: Any, what: str, num_classes: int, name: str) -> np.ndarray:
    """Integer codes (in order of first appearance) of one hashable label per class."""
    values = labels.tolist() if hasattr(labels, "tolist") else list(labels)
    if len(values) != num_classes:
        raise ValueError(
            f"{what} must hold one label per class of {name} ({num_classes}), got {len(values)}"
        )
    index: dict[Any, int] = {}
    try:
        return np.array([index.setdefault(v, len(index)) for v in values], dtype=np.int64)
    except TypeError:
        raise TypeError(f"{what} must hold hashable labels (e.g. str or int)") from None


def _group_tables(
    groups: Any, sources: Any, num_classes: int, ways: int, name: str
) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each group holding at least ``ways`` sources (groups and sources in order of first
    appearance): ``table`` [sources, most classes of one source] of class indices (-1 padded)
    and ``counts`` [sources], the classes of each source."""
    everything = np.zeros(num_classes, dtype=np.int64)
    group_of = everything if groups is None else _codes(groups, "groups", num_classes, name)
    own = np.arange(num_classes, dtype=np.int64)
    source_of = own if sources is None else _codes(sources, "sources", num_classes, name)
    tables, largest = [], 0
    for group in range(int(group_of.max()) + 1):
        members = np.flatnonzero(group_of == group)
        _, row, counts = np.unique(source_of[members], return_inverse=True, return_counts=True)
        largest = max(largest, len(counts))
        if len(counts) < ways:
            continue
        by_row = np.argsort(row, kind="stable")  # members of source 0, then 1, ... (class order)
        starts = np.repeat(np.cumsum(counts) - counts, counts)
        table = np.full((len(counts), int(counts.max())), -1, dtype=np.int64)
        table[row[by_row], np.arange(len(members)) - starts] = members[by_row]
        tables.append((table, counts.astype(np.int64)))
    if not tables and groups is None:
        raise ValueError(f"ways={ways} but {name} has only {largest} distinct sources")
    if not tables:
        unit = "distinct sources" if sources is not None else "classes"
        raise ValueError(
            f"ways={ways} but no group of {name} has {ways} {unit} (the largest has {largest})"
        )
    return tables
