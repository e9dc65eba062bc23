"""The reference backend: the model run once per task through ``torch.func.functional_call``."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call

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

    def __init__(self, model: nn.Module, fallback_reason: str | None = None) -> None:
        self.model = model
        #: Why ``auto`` chose this strategy (the batched program's refusal), if it did.
        self.fallback_reason = fallback_reason
        self.param_ndim = {name: p.dim() for name, p in model.named_parameters()}

    def __call__(self, params: Params, x: Tensor) -> Tensor:
        buffers = dict(self.model.named_buffers())
        per_task = per_task_names(params, self.param_ndim)
        outputs = [
            functional_call(self.model, {**buffers, **task_slice(params, per_task, b)}, (x[b],))
            for b in range(x.shape[0])
        ]
        return torch.stack(outputs)
