"""The fast backend: all tasks in one :class:`~mamlkit.backends.program.TaskBatchedProgram`,
checked against the loop before it is trusted, falling back to the loop where it must."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from mamlkit.backends.chunking import ChunkPolicy
from mamlkit.backends.layout import per_task_names, task_slice
from mamlkit.backends.loop import LoopForward
from mamlkit.backends.program import NotBatchable, TaskBatchedProgram
from mamlkit.vocabulary import Params


class BatchedForward:
    """All tasks in one :class:`TaskBatchedProgram`; falls back to ``loop`` where it must.

    ``strict=True`` (strategy ``batched``) turns every fallback into an error naming the reason.
    Before the first batched call for an input shape, dtype and device it compares the program's
    outputs with :class:`LoopForward`'s on two tasks; a mismatch switches it to ``loop`` for good
    (with a warning unless strict). Raises :class:`NotBatchable` when the model cannot be traced.

    >>> import torch
    >>> from mamlkit.backends import BatchedForward
    >>> from mamlkit.models import MLP
    >>> forward = BatchedForward(MLP(in_channels=4, num_classes=3, hidden=8), strict=True)
    >>> forward({}, torch.randn(2, 5, 4)).shape, forward.name
    (torch.Size([2, 5, 3]), 'batched')
    """

    def __init__(
        self, model: nn.Module, *, strict: bool, chunks: ChunkPolicy | None = None
    ) -> None:
        self.program = TaskBatchedProgram(model)
        self.loop = LoopForward(model)
        self.chunks = chunks or ChunkPolicy()
        self.strict = strict
        self.verified: set[tuple[object, ...]] = set()
        self.disabled: str | None = None

    @property
    def name(self) -> str:
        """``"loop"`` while the model runs task by task (after a fallback, or in a mode the
        program cannot run, e.g. BatchNorm updating running statistics in training)."""
        return "loop" if self.disabled or self.program.unsupported_state() else "batched"

    def support_groups(self, support_x: Tensor, *, first_order: bool) -> list[slice]:
        """The groups of tasks adapted together (:class:`ChunkPolicy`; one group while the
        model runs task by task)."""
        return self.chunks.support_slices(support_x, first_order=first_order, strategy=self.name)

    def query_groups(self, query_x: Tensor) -> list[slice]:
        """The groups of tasks whose query sets are scored together (:class:`ChunkPolicy`)."""
        return self.chunks.query_slices(query_x, strategy=self.name)

    def __call__(self, params: Params, x: Tensor) -> Tensor:
        reason = self.disabled or self.program.unsupported_state()
        if reason is None:
            key = (tuple(x.shape[2:]), x.dtype, x.device.type)
            if key not in self.verified:
                reason = self._verify(params, x)
                if reason is None:
                    self.verified.add(key)
                else:
                    self.disabled = reason
        if reason is None:
            return self.program(params, x)
        if self.strict:
            raise NotBatchable(f"execution='batched' cannot run this model: {reason}")
        return self.loop(params, x)

    def _verify(self, params: Params, x: Tensor) -> str | None:
        """Compare batched with loop outputs on (at most) two tasks, without gradients."""
        take = min(2, x.shape[0])
        per_task = per_task_names(params, self.loop.param_ndim)
        sample = {n: v.detach() for n, v in task_slice(params, per_task, slice(0, take)).items()}
        with torch.no_grad(), _full_float32():
            try:
                got = self.program(sample, x[:take])
            except NotBatchable as error:
                return str(error)
            want = self.loop(sample, x[:take])
        if got.shape != want.shape:
            return f"batched outputs have shape {tuple(got.shape)}, expected {tuple(want.shape)}"
        scale = want.abs().max().item() if want.numel() else 1.0
        tolerance = 1e-4 if want.dtype == torch.float32 else 1e-9
        if not torch.allclose(got, want, rtol=tolerance, atol=tolerance * max(scale, 1.0)):
            message = "batched outputs differ from task-by-task outputs"
            if not self.strict:
                warnings.warn(f"{message}; mamlkit runs this model task by task", stacklevel=3)
            return message
        return None


@contextlib.contextmanager
def _full_float32() -> Iterator[None]:
    """Full float32 convolutions and matrix products while verifying: on a GPU, TF32 (on by
    default for cuDNN convolutions) rounds the grouped and the per-task convolutions differently,
    by about 1e-3, which is precision, not a wrong program."""
    cudnn, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = cudnn, matmul
