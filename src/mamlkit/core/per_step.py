"""Per-step copies of BatchNorm weights and running statistics (MAML++'s BNWB and BNRS).

Antoniou et al. (2019, section 4) give every inner step its own BatchNorm scale and shift (BNWB)
and its own running statistics (BNRS). Step ``s`` means the support pass of inner step ``s`` and
the query pass after it, as in the paper's code; the query pass before any step (``theta_0``)
uses step 0. Step 0 uses the model's own tensors, and :class:`PerStepTables` holds copies for
steps ``1 .. K-1``, so every copy is used and receives a gradient. :meth:`PerStepTables.at`
swaps them into the tensors a forward sees; the model itself is never modified.
"""

from __future__ import annotations

from torch import nn

from mamlkit.vocabulary import Params, table_key


def batch_norm_modules(model: nn.Module) -> dict[str, nn.modules.batchnorm._BatchNorm]:
    """The model's BatchNorm layers by module name."""
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
    }


def batch_norm_parameter_names(model: nn.Module) -> list[str]:
    """Names of the affine weights and biases of the model's BatchNorm layers (what MAML++'s
    BNWB copies per step).

    >>> from mamlkit import Conv4
    >>> from mamlkit.core.per_step import batch_norm_parameter_names
    >>> batch_norm_parameter_names(Conv4())[:2]
    ['features.block1.norm.weight', 'features.block1.norm.bias']
    """
    return [
        f"{name}.{leaf}" if name else leaf
        for name, module in batch_norm_modules(model).items()
        for leaf, _ in module.named_parameters(recurse=False)
    ]


def running_stat_names(model: nn.Module) -> list[str]:
    """Names of the running means and variances of BatchNorm layers that track them.

    A layer built with ``track_running_stats=False`` (MAML's convention, and mamlkit's
    default) has none: per-step statistics then need a model built with them, and this says so.
    A model without BatchNorm layers has nothing to copy (an empty list).

    >>> from mamlkit import Conv4
    >>> from mamlkit.core.per_step import running_stat_names
    >>> running_stat_names(Conv4(track_running_stats=True))[:2]
    ['features.block1.norm.running_mean', 'features.block1.norm.running_var']
    >>> running_stat_names(Conv4())
    Traceback (most recent call last):
        ...
    ValueError: per-step BatchNorm running statistics (bn_per_step_stats, MAML++'s BNRS) need ...
    """
    modules = batch_norm_modules(model)
    missing = [name for name, module in modules.items() if not module.track_running_stats]
    if missing:
        raise ValueError(
            "per-step BatchNorm running statistics (bn_per_step_stats, MAML++'s BNRS) need "
            f"BatchNorm layers that track running statistics, but {missing} do not; build the "
            "model with track_running_stats=True (e.g. Conv4(track_running_stats=True)) or "
            "switch the setting off (e.g. 'mamlpp[bn_per_step_stats=false]')"
        )
    return [f"{name}.{stat}" for name in modules for stat in ("running_mean", "running_var")]


class PerStepTables(nn.Module):
    """Copies of some parameters (learned) and buffers (running statistics) for steps 1..K-1.

    Args:
        model: the model whose tensors are copied (their values at construction start every copy).
        parameters: parameter names that get one learned copy per step.
        buffers: buffer names that get one copy per step (updated in place by BatchNorm).
        steps: inner steps ``K``; the copies cover steps ``1 .. K-1``.
    """

    def __init__(
        self, model: nn.Module, parameters: list[str], buffers: list[str], steps: int
    ) -> None:
        super().__init__()
        self.steps = steps
        copies = steps - 1
        #: Whether any tensor is per step (then steps beyond ``steps`` have none).
        self.active = bool(parameters or buffers)
        # One inner step needs no copies: step 0 is the model's own tensors.
        self.parameter_names = tuple(parameters) if copies else ()
        self.buffer_names = tuple(buffers) if copies else ()
        own_params = dict(model.named_parameters())
        own_buffers = dict(model.named_buffers())
        self.weights = nn.ParameterDict(
            {
                table_key(n): nn.Parameter(
                    own_params[n].detach().unsqueeze(0).repeat_interleave(copies, 0)
                )
                for n in self.parameter_names
            }
        )
        for n in self.buffer_names:
            own = own_buffers[n].detach()
            self.register_buffer(
                "stats-" + table_key(n), own.unsqueeze(0).repeat_interleave(copies, 0)
            )

    def at(self, params: Params, step: int) -> Params:
        """``params`` with the tensors of inner step ``step`` (step 0: the model's own)."""
        if step == 0 or not self.active:
            return params
        if step >= self.steps:
            raise ValueError(
                f"per-step BatchNorm tensors exist for {self.steps} inner steps; step "
                f"{step + 1} has none (adapt with at most {self.steps} inner steps)"
            )
        chosen = dict(params)
        for n in self.parameter_names:
            chosen[n] = self.weights[table_key(n)][step - 1]
        for n in self.buffer_names:
            chosen[n] = self.get_buffer("stats-" + table_key(n))[step - 1]
        return chosen
