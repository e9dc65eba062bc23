"""Meta-training across processes with ``torch.distributed``, launched by ``torchrun``.

Every one of the P processes draws the same meta-batch from the same seeded task stream and takes
its own contiguous 1/P of the tasks. The meta-gradients and the logged metrics are averaged with
an all-reduce each iteration, so every rank applies the same Adam step and the parameters stay
identical; the result equals a single-process run of the same seed up to float rounding, and a
run may be resumed with another P. Only rank 0 writes files. The backend is gloo on CPU and nccl
on CUDA (each rank on ``cuda:LOCAL_RANK``).

Drawing the whole meta-batch on every rank repeats the (cheap) sampling P times; in exchange the
task stream, its checkpointed sampler state and its digest are those of the single-process run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mamlkit.errors import ConfigError


@dataclass(frozen=True)
class ProcessGroup:
    """Where this process stands among the ones meta-training together (one by default).

    Attributes:
        rank: this process's index, 0 .. ``world_size - 1`` (torchrun's ``RANK``).
        world_size: the number of processes P.
        local_rank: the index on this machine, which picks its GPU (``LOCAL_RANK``).

    >>> from mamlkit.training.distributed import ProcessGroup
    >>> ProcessGroup().distributed, ProcessGroup(rank=1, world_size=2).is_main
    (False, False)
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        """Whether there is more than one process (collectives are then needed)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and shows progress."""
        return self.rank == 0


def world_size_from_environment() -> int:
    """The number of processes ``torchrun`` started (its ``WORLD_SIZE``); 1 without torchrun."""
    text = os.environ.get("WORLD_SIZE", "1")
    try:
        return max(1, int(text))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={text!r} is not a number; launch with torchrun") from None


def is_main_process() -> bool:
    """Whether this process is rank 0 of ``torchrun`` (its ``RANK``), or runs alone."""
    return os.environ.get("RANK", "0") == "0"


def check_divisible(meta_batch: int, world_size: int) -> None:
    """Every process takes the same number of tasks: P must divide the meta-batch.

    Otherwise a :class:`~mamlkit.errors.ConfigError` suggests the nearest multiples; checked
    before training starts, not when the first meta-batch is split.

    >>> from mamlkit.training.distributed import check_divisible
    >>> check_divisible(32, 4)
    >>> check_divisible(10, 4)
    Traceback (most recent call last):
        ...
    mamlkit.errors.ConfigError: --meta-batch 10 cannot be split evenly over 4 processes; choose a
    multiple of 4 (e.g. 8 or 12)
    """
    if meta_batch % world_size:
        lower = meta_batch - meta_batch % world_size
        options = [n for n in (lower, lower + world_size) if n > 0]
        raise ConfigError(
            f"--meta-batch {meta_batch} cannot be split evenly over {world_size} processes; "
            f"choose a multiple of {world_size} (e.g. {' or '.join(map(str, options))})"
        )


def process_device(device: torch.device, group: ProcessGroup) -> torch.device:
    """Each rank's device: ``cuda`` (without an index) becomes ``cuda:LOCAL_RANK``.

    >>> import torch
    >>> from mamlkit.training.distributed import ProcessGroup, process_device
    >>> process_device(torch.device("cuda"), ProcessGroup(rank=1, world_size=2, local_rank=1))
    device(type='cuda', index=1)
    """
    if group.distributed and device.type == "cuda" and device.index is None:
        return torch.device("cuda", group.local_rank)
    return device


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[ProcessGroup]:
    """Join the process group ``torchrun`` describes in the environment, and leave it after.

    Without torchrun (``WORLD_SIZE`` unset or 1) nothing is initialised and the group is this
    process alone. The backend is nccl for a CUDA ``device``, else gloo. A process group that
    was already initialised (by the caller) is used and left alone.

    >>> import torch
    >>> from mamlkit.training.distributed import process_group
    >>> with process_group(torch.device("cpu")) as group:  # not under torchrun
    ...     group
    ProcessGroup(rank=0, world_size=1, local_rank=0)
    """
    world_size = world_size_from_environment()
    if world_size == 1:
        yield ProcessGroup()
        return
    import torch.distributed as dist

    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; run without torchrun")
    owned = not dist.is_initialized()
    if owned:
        if device.type == "cuda":
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    group = ProcessGroup(
        dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
    )
    try:
        yield group
    finally:
        if owned:
            dist.destroy_process_group()


def shard(batches: Iterable[Any], group: ProcessGroup) -> Iterator[Any]:
    """This rank's contiguous share of the tasks (dimension 0) of each meta-batch.

    >>> import torch
    >>> from mamlkit.training.distributed import ProcessGroup, shard
    >>> batch = (torch.arange(4), 10 * torch.arange(4))  # 4 tasks
    >>> list(shard([batch], ProcessGroup(rank=1, world_size=2)))
    [(tensor([2, 3]), tensor([20, 30]))]
    """
    for batch in batches:
        if not group.distributed:
            yield batch
            continue
        tasks = batch[0].shape[0]
        check_divisible(tasks, group.world_size)
        size = tasks // group.world_size
        share = slice(group.rank * size, (group.rank + 1) * size)
        yield tuple(t[share] for t in batch)


def average_gradients(
    parameters: Iterable[Tensor], metrics: dict[str, float], group: ProcessGroup
) -> dict[str, float]:
    """Average the ``.grad`` of ``parameters`` and the ``metrics`` over all ranks, in place.

    One all-reduce per gradient dtype plus one for the metrics. Every rank runs the same graph,
    so the same parameters have a gradient on every rank. Returns the averaged metrics; in a
    group of one process, ``metrics`` unchanged (nothing is communicated).
    """
    if not group.distributed:
        return metrics
    import torch.distributed as dist

    grads = [p.grad for p in parameters if p.grad is not None]
    by_dtype: dict[torch.dtype, list[Tensor]] = {}
    for grad in grads:
        by_dtype.setdefault(grad.dtype, []).append(grad)
    for same in by_dtype.values():
        flat = torch.cat([g.reshape(-1) for g in same])
        dist.all_reduce(flat)
        flat /= group.world_size
        offset = 0
        for grad in same:
            grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
            offset += grad.numel()
    keys = sorted(metrics)
    device = grads[0].device if grads else torch.device("cpu")
    values = torch.tensor([metrics[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(values)
    values /= group.world_size
    return dict(zip(keys, values.tolist(), strict=True))


def any_rank(flag: bool, group: ProcessGroup, device: torch.device) -> bool:
    """Whether ``flag`` is true on some rank (e.g. a Ctrl-C seen by only some processes)."""
    if not group.distributed:
        return flag
    import torch.distributed as dist

    value = torch.tensor([float(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def barrier(group: ProcessGroup) -> None:
    """Wait until every rank gets here (e.g. until rank 0 has prepared the run folder)."""
    if group.distributed:
        import torch.distributed as dist

        dist.barrier()
