"""Activation (gradient) checkpointing of a model's blocks, correct for second-order MAML.

A checkpointed block keeps only its input during the forward pass and recomputes its
activations when a backward pass needs them, trading compute for memory. mamlkit uses PyTorch's
non-reentrant checkpointing (``torch.utils.checkpoint.checkpoint(..., use_reentrant=False)``),
which supports what MAML does with a model: gradients with ``create_graph=True`` in the inner
loop, then an outer backward through them (each backward recomputes the block once). What it
saves is the activations that only the outer backward needs, above all those of the query
passes; a second-order inner step's gradient graph still holds the (recomputed) activations its
own derivative needs.

Two things go wrong with a plain ``checkpoint(block, x)`` inside
``torch.func.functional_call``, and :func:`checkpointed` handles both:

* the recomputation runs during the backward pass, after ``functional_call`` has put the
  model's own parameters back, so it would recompute with the wrong weights (and give wrong
  gradients); :func:`checkpointed` recomputes with the tensors the block held in the forward
  pass (a task's adapted weights);
* a BatchNorm layer with running statistics updates them in every forward in training mode, so
  each recomputation would update them again; recomputations run on copies of the block's
  buffers, so the statistics change exactly as without checkpointing.

A model declares the submodules it checkpoints in ``checkpoint_modules`` (module names), so the
task-batched program of :mod:`mamlkit.backends` checkpoints the same blocks when it runs the
model for all tasks at once.
"""

from __future__ import annotations

import torch
from torch import Tensor, fx, nn
from torch.func import functional_call
from torch.utils.checkpoint import checkpoint


def checkpointed(module: nn.Module, x: Tensor) -> Tensor:
    """``module(x)``, keeping only ``x`` for the backward pass and recomputing the rest there.

    Runs ``module`` directly where nothing would be saved (no gradient recorded) and while
    ``torch.fx`` traces the model (the batched program checkpoints the traced blocks itself).

    >>> import torch
    >>> from mamlkit.models.checkpointing import checkpointed
    >>> layer = torch.nn.Linear(3, 2)
    >>> x = torch.randn(4, 3)
    >>> torch.allclose(checkpointed(layer, x), layer(x))
    True
    """
    if not torch.is_grad_enabled() or isinstance(x, fx.Proxy):
        return module(x)
    params = dict(module.named_parameters())
    buffers = dict(module.named_buffers())
    runs = 0

    def run(inputs: Tensor) -> Tensor:
        nonlocal runs
        runs += 1
        # The first run is the forward pass; later ones are recomputations, on copies of the
        # buffers so running statistics are not updated twice.
        state = buffers if runs == 1 else {n: b.clone() for n, b in buffers.items()}
        return functional_call(module, {**params, **state}, (inputs,))

    return checkpoint(run, x, use_reentrant=False)
