"""Sinusoid regression (Finn et al. 2017, section 5.1): each task is ``y = A sin(x - phase)``.

Amplitude ``A`` is uniform in [0.1, 5], phase uniform in [0, pi], inputs ``x`` uniform in [-5, 5].
A task gives ``shots`` (K) support points and ``queries`` (Q) query points; the loss is the mean
squared error. Nothing is downloaded: tasks are generated on the fly by :class:`SinusoidSampler`,
which draws from its own ``numpy.random.default_rng`` (never the global RNGs) seeded with both
``seed`` and the split, so the "train" and "test" streams of one seed differ.
"""

from __future__ import annotations

import math
import os
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch

from mamlkit.checks import positive_int
from mamlkit.data.sampler import SeededStream
from mamlkit.data.storage import check_split
from mamlkit.episodes import Episode
from mamlkit.vocabulary import TaskKind

#: Split name -> the number mixed into the sampler's seed (splits are independent task streams).
SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}

Range = tuple[float, float]


@runtime_checkable
class TaskDistribution(Protocol):
    """A dataset that makes its own task sampler (regression tasks, not N-way classes).

    ``task`` is :attr:`~mamlkit.vocabulary.TaskKind.REGRESSION`, ``num_outputs`` the targets per
    example (the model's outputs) and ``image_shape`` the shape of one input.
    :func:`mamlkit.training.build_sampler` calls
    :meth:`task_sampler` instead of building an :class:`~mamlkit.data.EpisodeSampler`.

    >>> from mamlkit.data import Sinusoid, TaskDistribution
    >>> isinstance(Sinusoid(), TaskDistribution)
    True
    """

    task: TaskKind
    num_outputs: int
    image_shape: tuple[int, ...]  # shape of one input example

    def task_sampler(
        self,
        shots: int,
        queries: int,
        meta_batch: int,
        *,
        seed: int = 0,
        batches: int | None = None,
    ) -> Any:
        """An iterable of :class:`Episode` with ``sample()``, ``state_dict()`` and friends."""
        ...


class SinusoidTasks(NamedTuple):
    """The true functions of a meta-batch: ``y = amplitude[b] * sin(x - phase[b])``.

    >>> import numpy as np
    >>> from mamlkit.data import SinusoidTasks
    >>> SinusoidTasks(amplitude=np.array([2.0]), phase=np.array([0.0]))(np.array([[np.pi / 2]]))
    array([[2.]])
    """

    amplitude: np.ndarray  # float64 [B]
    phase: np.ndarray  # float64 [B]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``y`` of every task at ``x`` of shape ``[B, ...]`` (or broadcastable to it)."""
        shape = (-1,) + (1,) * (np.ndim(x) - 1)
        return self.amplitude.reshape(shape) * np.sin(x - self.phase.reshape(shape))


def _check_range(name: str, value: Any) -> Range:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (low, high) of numbers, got {value!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise ValueError(f"{name} must be finite with low <= high, got ({low}, {high})")
    return low, high


class Sinusoid:
    """Sinusoid regression y = A sin(x - phase) (Finn et al. 2017), generated: the task
    distribution of one split, whose ``task_sampler`` draws episodes (default model: ``mlp``).

    ``root`` is accepted (and unused) so the class works as a ``DATASETS`` factory: the tasks need
    no files. ``download=True`` is refused, not ignored: there is nothing to download. The split
    only selects an independent random stream.

    Args:
        root: unused.
        split: ``"train"``, ``"val"`` or ``"test"``.
        download: must be ``False``.
        amplitude: range of the uniform amplitude ``A``.
        phase: range of the uniform phase.
        x_range: range of the uniform inputs ``x``.

    >>> from mamlkit.data import Sinusoid
    >>> sampler = Sinusoid(split="train").task_sampler(shots=10, queries=10, meta_batch=4)
    >>> episode = sampler.sample()
    >>> episode.support_x.shape, episode.support_y.dtype
    (torch.Size([4, 10, 1]), torch.float32)
    >>> Sinusoid(download=True)
    Traceback (most recent call last):
        ...
    ValueError: sinusoid tasks are generated, there is nothing to download: drop --download
    """

    task = TaskKind.REGRESSION
    num_outputs = 1
    image_shape: tuple[int, ...] = (1,)

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        split: str = "train",
        *,
        download: bool = False,
        amplitude: Range = (0.1, 5.0),
        phase: Range = (0.0, math.pi),
        x_range: Range = (-5.0, 5.0),
    ) -> None:
        if download:
            raise ValueError(
                "sinusoid tasks are generated, there is nothing to download: drop --download"
            )
        self.split = check_split("sinusoid", split, SPLITS)
        self.amplitude = _check_range("amplitude", amplitude)
        self.phase = _check_range("phase", phase)
        self.x_range = _check_range("x_range", x_range)

    @property
    def description(self) -> str:
        """How error messages name this dataset, e.g. "the sinusoid 'test' split"."""
        return f"the sinusoid {self.split!r} split"

    def task_sampler(
        self,
        shots: int,
        queries: int,
        meta_batch: int,
        *,
        seed: int = 0,
        batches: int | None = None,
    ) -> SinusoidSampler:
        """A :class:`SinusoidSampler` of ``meta_batch`` tasks with K=``shots``, Q=``queries``."""
        return SinusoidSampler(
            shots,
            queries,
            meta_batch,
            seed=seed,
            batches=batches,
            split=self.split,
            amplitude=self.amplitude,
            phase=self.phase,
            x_range=self.x_range,
        )

    def __repr__(self) -> str:
        return (
            f"Sinusoid(split={self.split!r}, amplitude={self.amplitude}, phase={self.phase}, "
            f"x_range={self.x_range})"
        )


class SinusoidSampler(SeededStream):
    """Meta-batches of sinusoid regression tasks from its own seeded RNG.

    ``sample()`` returns an :class:`Episode` of float32 tensors: ``support_x``/``support_y``
    ``[B, K, 1]`` and ``query_x``/``query_y`` ``[B, Q, 1]``; support and query points of a task
    come from the same function, drawn independently. Per meta-batch the generator draws, in
    order: ``B`` amplitudes, ``B`` phases, then ``B x (K + Q)`` inputs.

    Args:
        shots: K, support points per task.
        queries: Q, query points per task.
        meta_batch: B, tasks per meta-batch.
        seed: seed of the sampler's generator (mixed with the split).
        batches: meta-batches one iteration yields; ``None`` iterates forever.
        split, amplitude, phase, x_range: as for :class:`Sinusoid`.

    >>> import numpy as np
    >>> from mamlkit.data import SinusoidSampler
    >>> sampler = SinusoidSampler(shots=5, queries=10, meta_batch=4, seed=0)
    >>> episode, truth = sampler.sample_with_tasks()
    >>> episode.query_x.shape, truth.amplitude.shape
    (torch.Size([4, 10, 1]), (4,))
    >>> true_y = truth(episode.query_x.double().numpy())  # the functions at the query inputs
    >>> bool(np.allclose(true_y, episode.query_y.numpy(), atol=1e-5))
    True
    >>> train = SinusoidSampler(5, 5, 2, seed=0, split="train").sample()
    >>> test = SinusoidSampler(5, 5, 2, seed=0, split="test").sample()
    >>> bool((train.support_x == test.support_x).all())  # splits are independent streams
    False
    """

    def __init__(
        self,
        shots: int,
        queries: int,
        meta_batch: int,
        *,
        seed: int = 0,
        batches: int | None = None,
        split: str = "train",
        amplitude: Range = (0.1, 5.0),
        phase: Range = (0.0, math.pi),
        x_range: Range = (-5.0, 5.0),
    ) -> None:
        self.shots = positive_int("shots", shots)
        self.queries = positive_int("queries", queries)
        self.meta_batch = positive_int("meta_batch", meta_batch)
        self.split = check_split("sinusoid", split, SPLITS)
        self.amplitude = _check_range("amplitude", amplitude)
        self.phase = _check_range("phase", phase)
        self.x_range = _check_range("x_range", x_range)
        self._init_stream(seed, batches, SPLITS[self.split])

    def sample_with_tasks(self) -> tuple[Episode, SinusoidTasks]:
        """One meta-batch and the true functions it was drawn from (for plots and checks)."""
        b, k, q = self.meta_batch, self.shots, self.queries
        tasks = SinusoidTasks(
            self._rng.uniform(*self.amplitude, size=b), self._rng.uniform(*self.phase, size=b)
        )
        x = self._rng.uniform(*self.x_range, size=(b, k + q, 1))
        y = tasks(x)
        xt = torch.from_numpy(x).to(torch.float32)
        yt = torch.from_numpy(y).to(torch.float32)
        episode = Episode(
            xt[:, :k].contiguous(), yt[:, :k].contiguous(), xt[:, k:].contiguous(), yt[:, k:]
        )
        return episode, tasks

    def sample(self) -> Episode:
        """One meta-batch of ``meta_batch`` tasks."""
        return self.sample_with_tasks()[0]

    _noun = "a SinusoidSampler"
    _state_kind = "sinusoid sampler"

    def _extra_state(self) -> dict[str, Any]:
        return {"split": self.split}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.split = check_split("sinusoid", state.get("split", self.split), SPLITS)

    def __repr__(self) -> str:
        return (
            f"SinusoidSampler(shots={self.shots}, queries={self.queries}, "
            f"meta_batch={self.meta_batch}, seed={self.seed}, split={self.split!r}, "
            f"batches={self.batches})"
        )
