"""The reference backend: the model run once per task through ``torch.func.functional_call``."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call

from mamlkit.backends.chunking import ChunkPolicy
from mamlkit.backends.layout import per_task_names, task_slice
from mamlkit.vocabulary import Params


class LoopForward:
    """The reference strategy: the model run once per task through ``functional_call``.

    Runs any model (one forward per task, with that task's parameters and the model's buffers);
    ``auto`` falls back to it when the batched program refuses a model.

    >>> import torch
    >>> from mamlkit.backends import LoopForward
    >>> model = torch.nn.Linear(4, 3)
    >>> params = {name: p.expand(2, *p.shape) for name, p in model.named_parameters()}  # 2 tasks
    >>> LoopForward(model)(params, torch.randn(2, 5, 4)).shape
    torch.Size([2, 5, 3])
    """

    name = "loop"

    def __init__(
        self,
        model: nn.Module,
        fallback_reason: str | None = None,
        chunks: ChunkPolicy | None = None,
    ) -> None:
        self.model = model
        #: Why ``auto`` chose this strategy (the batched program's refusal), if it did.
        self.fallback_reason = fallback_reason
        self.param_ndim = {name: p.dim() for name, p in model.named_parameters()}
        self.chunks = chunks or ChunkPolicy()

    def support_groups(self, support_x: Tensor, *, first_order: bool) -> list[slice]:
        """The groups of tasks adapted together (:class:`ChunkPolicy`)."""
        return self.chunks.support_slices(support_x, first_order=first_order, strategy=self.name)

    def query_groups(self, query_x: Tensor) -> list[slice]:
        """The groups of tasks whose query sets are scored together (:class:`ChunkPolicy`)."""
        return self.chunks.query_slices(query_x, strategy=self.name)

    def __call__(self, params: Params, x: Tensor) -> Tensor:
        buffers = dict(self.model.named_buffers())
        per_task = per_task_names(params, self.param_ndim)
        outputs = [
            functional_call(self.model, {**buffers, **task_slice(params, per_task, b)}, (x[b],))
            for b in range(x.shape[0])
        ]
        return torch.stack(outputs)
