"""A model's forward pass for many tasks at once, each task with its own weights.

The model is traced once with ``torch.fx``; the program then runs every layer for all ``B`` tasks
in one call. Activations keep the tasks side by side in dimension 1 (``[n, B * C, ...]``), so:

* a convolution with per-task weights is one grouped convolution (``groups = B``);
* BatchNorm over ``B * C`` channels computes each task's own batch statistics, with PyTorch's
  (or :mod:`.kernels`') BatchNorm, whose second derivatives are exact. (``torch.func.vmap``'s
  BatchNorm rule gives second-order meta-gradients about 4% off, so it is not used.);
* a linear layer is one batched matrix product; element-wise functions, pooling and
  ``flatten(1)`` need nothing special.

Two rewrites save memory traffic, both exact: an activation that only feeds a max-pool is applied
after the pool (``relu(maxpool(x)) == maxpool(relu(x))`` for non-decreasing functions, with equal
gradients), and on CPU a first-layer conv followed by batch-statistics BatchNorm becomes
:func:`.kernels.conv_batch_norm`.

A model that checkpoints some of its blocks (``checkpoint_modules``, module names: see
:mod:`mamlkit.models.checkpointing`) gets the same here: the steps of each such block run under
non-reentrant activation checkpointing, so only the block's inputs are kept for the backward pass.

Only the operations listed in this file are accepted; anything else raises :class:`NotBatchable`
naming the operation, and :mod:`mamlkit.backends` then runs the model task by task.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn
from torch.utils.checkpoint import checkpoint

from mamlkit.backends import kernels
from mamlkit.backends.layout import per_task_names
from mamlkit.vocabulary import Params

Env = dict[str, Any]


class NotBatchable(ValueError):
    """The model uses something the task-batched program cannot run; the message says what.

    A ``ValueError``: forcing ``execution="batched"`` on such a model is a bad argument."""


ELEMENTWISE_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softplus,
    nn.Hardtanh,
    nn.Identity,
)
SPATIAL_MODULES = (nn.AvgPool2d, nn.AdaptiveAvgPool2d)
ELEMENTWISE_FUNCTIONS = {
    F.relu,
    torch.relu,
    F.relu6,
    F.leaky_relu,
    F.elu,
    F.gelu,
    F.silu,
    torch.tanh,
    torch.sigmoid,
    F.softplus,
}
SPATIAL_FUNCTIONS = {F.avg_pool2d, F.adaptive_avg_pool2d}
ARITHMETIC = {operator.add, operator.sub, operator.mul, operator.truediv, torch.add, torch.mul}
ELEMENTWISE_METHODS = {"relu", "sigmoid", "tanh", "contiguous"}
#: Non-decreasing functions that commute with max-pooling.
MONOTONE_FUNCTIONS = {F.relu, torch.relu}


Unary = Callable[[Tensor, Params, int], Tensor]


class _Step:
    """One node of the program: ``run(env, params, tasks)`` returns the node's value, computed
    from the values named in ``reads``."""

    def __init__(
        self, name: str, run: Callable[[Env, Params, int], Any], reads: tuple[str, ...]
    ) -> None:
        self.name = name
        self.run = run
        self.reads = reads


def _unary(name: str, source: str, fn: Unary) -> _Step:
    return _Step(name, lambda env, params, tasks: fn(env[source], params, tasks), (source,))


def _pointwise(name: str, source: str, fn: Callable[[Tensor], Any]) -> _Step:
    return _Step(name, lambda env, params, tasks: fn(env[source]), (source,))


class _Segment:
    """Consecutive steps of one checkpointed module: only the values in ``reads`` are kept for
    the backward pass, which recomputes the others; ``run`` returns the values in ``writes``
    (those that later steps read) by name."""

    def __init__(self, steps: list[_Step], writes: tuple[str, ...]) -> None:
        self.steps = steps
        names = {step.name for step in steps}
        self.reads = tuple(dict.fromkeys(r for step in steps for r in step.reads if r not in names))
        self.writes = writes

    def run(self, env: Env, params: Params, tasks: int) -> dict[str, Any]:
        def segment(*values: Any) -> tuple[Any, ...]:
            local = dict(zip(self.reads, values, strict=True))
            for step in self.steps:
                local[step.name] = step.run(local, params, tasks)
            return tuple(local[name] for name in self.writes)

        values = [env[name] for name in self.reads]
        if torch.is_grad_enabled():
            out = checkpoint(segment, *values, use_reentrant=False)
        else:
            out = segment(*values)
        return dict(zip(self.writes, out, strict=True))


class TaskBatchedProgram:
    """``program(params, x)``: the model's outputs ``[B, n, ...]`` for inputs ``[B, n, ...]``.

    ``params`` maps parameter names of the model to tensors that are either per task
    (``[B, *shape]``) or shared by all tasks (``shape``); a name left out means the model's own
    parameter, shared. Raises :class:`NotBatchable` at construction when the model cannot be
    traced or uses an operation not supported here.

    >>> import torch
    >>> from mamlkit.backends import NotBatchable, TaskBatchedProgram
    >>> from mamlkit.models import MLP
    >>> program = TaskBatchedProgram(MLP(in_channels=4, num_classes=3, hidden=8))
    >>> program({}, torch.randn(2, 5, 4)).shape  # 2 tasks, all with the model's own weights
    torch.Size([2, 5, 3])
    >>> class Sorting(torch.nn.Module):
    ...     def forward(self, x):
    ...         return x.sort(dim=-1).values
    >>> TaskBatchedProgram(Sorting())
    Traceback (most recent call last):
        ...
    mamlkit.backends.program.NotBatchable: method .sort() is not supported
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        try:
            self.graph = fx.Tracer().trace(model)
        except Exception as error:  # torch.fx raises many types (TraceError, TypeError, ...)
            raise NotBatchable(f"torch.fx cannot trace the model ({error})") from error
        self.modules = dict(model.named_modules())
        self.param_ndim = {name: p.dim() for name, p in model.named_parameters()}
        self.stateful: list[nn.Module] = []
        self.steps: list[_Step] = []
        self.input: str | None = None
        self.output: str | None = None
        self._compile()
        #: The program as run: steps, with those of checkpointed modules grouped in segments.
        self.plan = self._checkpoint_segments(getattr(model, "checkpoint_modules", ()))

    def unsupported_state(self) -> str | None:
        """Why the model cannot run batched in its current mode (``None``: it can)."""
        for module in self.stateful:
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                if module.training and module.track_running_stats:
                    return (
                        "BatchNorm updates running statistics in training mode (a side effect "
                        "of each task in turn)"
                    )
            elif module.training and getattr(module, "p", 0.0) > 0:
                return "dropout in training mode draws different random numbers when batched"
        return None

    def __call__(self, params: Params, x: Tensor) -> Tensor:
        if x.dim() < 3:
            raise NotBatchable(f"inputs must be [tasks, examples, features...], got {x.shape}")
        tasks, examples = x.shape[:2]
        env: Env = {self.input: _to_task_layout(x)}
        for step in self.plan:
            if isinstance(step, _Segment):
                env.update(step.run(env, params, tasks))
            else:
                env[step.name] = step.run(env, params, tasks)
        out = env[self.output]
        if not isinstance(out, Tensor) or out.dim() < 2 or out.shape[0] != examples:
            raise NotBatchable("the model's output is not one tensor of per-example outputs")
        return _from_task_layout(out, tasks)

    # -- parameters -------------------------------------------------------------------------------
    def _param(self, params: Params, name: str) -> Tensor | None:
        if name in params:
            return params[name]
        try:
            return self.model.get_parameter(name)
        except AttributeError:
            return None

    def _is_per_task(self, name: str, value: Tensor) -> bool:
        return bool(per_task_names({name: value}, self.param_ndim))

    def _per_task(self, params: Params, name: str, tasks: int) -> Tensor:
        """The tensor ``name`` as ``[tasks, *shape]`` (a shared one is expanded, not copied)."""
        value = self._param(params, name)
        if value is None:
            raise NotBatchable(f"parameter {name!r} is missing")
        return value if self._is_per_task(name, value) else value.expand(tasks, *value.shape)

    # -- compiling --------------------------------------------------------------------------------
    def _compile(self) -> None:
        fused_away: set[str] = set()
        for node in self.graph.nodes:
            if node.name in fused_away:
                continue
            if node.op == "placeholder":
                if self.input is not None:
                    raise NotBatchable("the model's forward takes more than one input")
                self.input = node.name
            elif node.op == "output":
                if not isinstance(node.args[0], fx.Node):
                    raise NotBatchable("the model must return one tensor")
                self.output = node.args[0].name
            elif node.op == "call_module":
                self.steps.append(self._module_step(node, fused_away))
            elif node.op == "call_function":
                self.steps.append(self._function_step(node))
            elif node.op == "call_method":
                self.steps.append(self._method_step(node))
            else:
                raise NotBatchable(f"{node.op} {node.target!r} (a parameter used directly)")
        if self.input is None or self.output is None:
            raise NotBatchable("the traced model has no input or no output")

    def _checkpoint_segments(self, modules: tuple[str, ...]) -> list[_Step | _Segment]:
        """The steps, with consecutive steps inside one of ``modules`` grouped in a segment."""
        for name in modules:
            if name not in self.modules:
                raise NotBatchable(f"checkpoint_modules names {name!r}, which the model lacks")
        if not modules:
            return list(self.steps)
        nodes = {node.name: node for node in self.graph.nodes}

        def scope(step: _Step) -> str | None:
            stack = nodes[step.name].meta.get("nn_module_stack", {})
            inside = [key.split("@")[0] for key in stack]
            return next((name for name in inside if name in modules), None)

        groups = [(where, list(steps)) for where, steps in itertools.groupby(self.steps, scope)]
        empty = set(modules) - {where for where, _ in groups}
        if empty:
            raise NotBatchable(
                f"no traced operation lies in checkpointed module(s) {sorted(empty)}"
            )
        plan: list[_Step | _Segment] = []
        for i, (where, steps) in enumerate(groups):
            if where is None:
                plan.extend(steps)
                continue
            names = {step.name for step in steps}
            later = [r for _, rest in groups[i + 1 :] for step in rest for r in step.reads]
            writes = tuple(dict.fromkeys(n for n in [*later, self.output] if n in names))
            plan.append(_Segment(steps, writes))
        return plan

    def _module_step(self, node: fx.Node, fused_away: set[str]) -> _Step:
        module = self.modules[node.target]
        prefix = f"{node.target}."
        source = _single_tensor_arg(node)
        if isinstance(module, nn.Conv2d):
            if module.padding_mode != "zeros":
                raise NotBatchable(f"{node.target}: padding_mode={module.padding_mode!r}")
            conv = self._conv(module, prefix)
            fused = self._fused_batch_norm(node, module, conv)
            if fused is not None:
                bn_node, run = fused
                fused_away.add(bn_node.name)
                return _unary(bn_node.name, source, run)
            return _unary(node.name, source, conv)
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            self.stateful.append(module)
            return _unary(node.name, source, self._batch_norm(module, prefix))
        if isinstance(module, nn.Linear):
            return _unary(node.name, source, self._linear(prefix))
        if isinstance(module, nn.MaxPool2d):
            if module.return_indices:
                raise NotBatchable(f"{node.target}: MaxPool2d(return_indices=True)")
            pool = _max_pool(
                module.kernel_size, module.stride, module.padding, module.dilation,
                module.ceil_mode,
            )  # fmt: skip
            return self._pool_step(node, source, pool)
        if isinstance(module, (nn.Dropout, nn.Dropout2d)):
            self.stateful.append(module)
            return _pointwise(node.name, source, lambda x: x)
        if isinstance(module, nn.Flatten):
            if module.start_dim != 1 or module.end_dim != -1:
                raise NotBatchable(f"{node.target}: Flatten must flatten dims 1..-1")
            return _pointwise(node.name, source, lambda x: x.flatten(1))
        if isinstance(module, ELEMENTWISE_MODULES + SPATIAL_MODULES):
            return _pointwise(node.name, source, module)
        raise NotBatchable(f"{node.target}: {type(module).__name__} is not supported")

    def _conv(self, conv: nn.Conv2d, prefix: str) -> Unary:
        weight_name, bias_name = prefix + "weight", prefix + "bias"

        def run(x: Tensor, params: Params, tasks: int) -> Tensor:
            weight = self._per_task(params, weight_name, tasks)
            bias = self._per_task(params, bias_name, tasks) if conv.bias is not None else None
            return _grouped_conv(x, weight, bias, conv, tasks)

        return run

    def _fused_batch_norm(
        self, node: fx.Node, conv: nn.Conv2d, conv_fn: Unary
    ) -> tuple[fx.Node, Unary] | None:
        """A conv with few taps whose only user is a BatchNorm2d: both as one step."""
        users = list(node.users)
        if len(users) != 1 or not _fusable_conv(conv):
            return None
        (user,) = users
        bn = self.modules.get(user.target) if user.op == "call_module" else None
        if not isinstance(bn, nn.BatchNorm2d) or user.args != (node,) or user.kwargs:
            return None
        self.stateful.append(bn)
        bn_fn = self._batch_norm(bn, f"{user.target}.")
        conv_weight, conv_bias = f"{node.target}.weight", f"{node.target}.bias"
        bn_weight, bn_bias = f"{user.target}.weight", f"{user.target}.bias"
        padding = (int(conv.padding[0]), int(conv.padding[1]))

        def run(x: Tensor, params: Params, tasks: int) -> Tensor:
            if x.device.type != "cpu" or not _uses_batch_stats(bn):
                return bn_fn(conv_fn(x, params, tasks), params, tasks)
            return kernels.conv_batch_norm(
                x,
                self._per_task(params, conv_weight, tasks),
                self._per_task(params, conv_bias, tasks) if conv.bias is not None else None,
                self._per_task(params, bn_weight, tasks) if bn.affine else None,
                self._per_task(params, bn_bias, tasks) if bn.affine else None,
                tasks=tasks,
                padding=padding,
                eps=bn.eps,
            )

        return user, run

    def _batch_norm(self, bn: nn.modules.batchnorm._BatchNorm, prefix: str) -> Unary:
        weight_name, bias_name = prefix + "weight", prefix + "bias"

        def run(x: Tensor, params: Params, tasks: int) -> Tensor:
            weight = bias = None
            if bn.affine:
                weight = self._per_task(params, weight_name, tasks).reshape(-1)
                bias = self._per_task(params, bias_name, tasks).reshape(-1)
            if _uses_batch_stats(bn):
                if x.device.type == "cpu" and kernels.second_derivative_expected():
                    return kernels.batch_norm_train(x, weight, bias, bn.eps)
                return F.batch_norm(x, None, None, weight, bias, True, 0.0, bn.eps)
            # Running statistics passed in ``params`` (MAML++'s per-step ones) replace the layer's.
            mean = params.get(prefix + "running_mean", bn.running_mean).repeat(tasks)
            var = params.get(prefix + "running_var", bn.running_var).repeat(tasks)
            return F.batch_norm(x, mean, var, weight, bias, False, 0.0, bn.eps)

        return run

    def _linear(self, prefix: str) -> Unary:
        weight_name, bias_name = prefix + "weight", prefix + "bias"

        def run(x: Tensor, params: Params, tasks: int) -> Tensor:
            if x.dim() != 2:
                raise NotBatchable("a linear layer on inputs with more than one feature dim")
            weight, bias = self._param(params, weight_name), self._param(params, bias_name)
            n = x.shape[0]
            x3 = x.view(n, tasks, -1)
            shared = not self._is_per_task(weight_name, weight) and (
                bias is None or not self._is_per_task(bias_name, bias)
            )
            if shared:
                return F.linear(x3, weight, bias).reshape(n, -1)
            weight = self._per_task(params, weight_name, tasks)
            xt = x3.transpose(0, 1)  # [tasks, n, in]
            if bias is None:
                out = torch.bmm(xt, weight.transpose(1, 2))
            else:
                bias = self._per_task(params, bias_name, tasks)
                out = torch.baddbmm(bias.unsqueeze(1), xt, weight.transpose(1, 2))
            return out.transpose(0, 1).reshape(n, -1)

        return run

    def _pool_step(self, node: fx.Node, source: str, pool: Callable[[Tensor], Tensor]) -> _Step:
        """Max-pool; when its input is a ReLU used only here, apply the ReLU after the pool."""
        producer = next(n for n in node.all_input_nodes if n.name == source)
        activation = _monotone_activation(producer, self.modules)
        if activation is not None and len(producer.users) == 1:
            self.steps[:] = [s for s in self.steps if s.name != producer.name]
            inner = _single_tensor_arg(producer)
            return _pointwise(node.name, inner, lambda x: activation(pool(x)))
        return _pointwise(node.name, source, pool)

    def _function_step(self, node: fx.Node) -> _Step:
        target = node.target
        if target is torch.flatten:
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            if start != 1 or end != -1:
                raise NotBatchable("torch.flatten must flatten dims 1..-1")
            return _pointwise(node.name, _single_tensor_arg(node), lambda x: x.flatten(1))
        if target is F.max_pool2d:
            args, kwargs = _constant_args(node)
            names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
            given = {**dict(zip(names, args, strict=False)), **kwargs}
            if given.get("return_indices"):
                raise NotBatchable("F.max_pool2d(return_indices=True)")
            pool = _max_pool(
                given["kernel_size"], given.get("stride"), given.get("padding", 0),
                given.get("dilation", 1), given.get("ceil_mode", False),
            )  # fmt: skip
            return self._pool_step(node, _single_tensor_arg(node), pool)
        if target in ELEMENTWISE_FUNCTIONS or target in SPATIAL_FUNCTIONS:
            args, kwargs = _constant_args(node)
            source = _single_tensor_arg(node)
            return _pointwise(node.name, source, lambda x: target(x, *args, **kwargs))
        if target in ARITHMETIC:
            return _arithmetic(node)
        if target is torch.mean:
            mean = _spatial_mean(*_constant_args(node))
            if mean is None:
                raise NotBatchable("torch.mean must average over spatial dims (2 and up) only")
            return _pointwise(node.name, _single_tensor_arg(node), mean)
        name = getattr(target, "__name__", repr(target))
        raise NotBatchable(f"function {name} is not supported")

    def _method_step(self, node: fx.Node) -> _Step:
        method = node.target
        source = node.args[0]
        if not isinstance(source, fx.Node):
            raise NotBatchable(f"method .{method} on a constant")
        rest = node.args[1:]
        if method in ELEMENTWISE_METHODS and not rest and not node.kwargs:
            return _pointwise(node.name, source.name, lambda x: getattr(x, method)())
        if method == "size" and rest == (0,) and not node.kwargs:
            return _pointwise(node.name, source.name, lambda x: x.shape[0])
        if method == "flatten" and (rest in ((1,), (1, -1)) or node.kwargs == {"start_dim": 1}):
            return _pointwise(node.name, source.name, lambda x: x.flatten(1))
        if method == "mean":
            mean = _spatial_mean(rest, node.kwargs)
            if mean is not None:
                return _pointwise(node.name, source.name, mean)
        if method in ("view", "reshape") and len(rest) == 2 and rest[1] == -1:
            first = rest[0]
            if isinstance(first, fx.Node) and first.target == "size" and first.args[1:] == (0,):
                return _pointwise(node.name, source.name, lambda x: x.reshape(x.shape[0], -1))
        raise NotBatchable(f"method .{method}{tuple(rest)} is not supported")


# ------------------------------------------------------------------------------------ helpers
def _single_tensor_arg(node: fx.Node) -> str:
    inputs = node.all_input_nodes
    if len(inputs) != 1 or node.args[:1] != (inputs[0],):
        raise NotBatchable(f"{node.target}: expected one tensor input as its first argument")
    return inputs[0].name


def _constant_args(node: fx.Node) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments after the first, which must not be tensors."""
    args, kwargs = node.args[1:], dict(node.kwargs)
    if any(isinstance(a, fx.Node) for a in (*args, *kwargs.values())):
        raise NotBatchable(f"{node.target}: tensor-valued extra arguments are not supported")
    return args, kwargs


def _arithmetic(node: fx.Node) -> _Step:
    if node.kwargs:
        raise NotBatchable(f"{node.target} with keyword arguments")
    fn = node.target
    args = node.args

    def run(env: Env, params: Params, tasks: int) -> Any:
        return fn(*[env[a.name] if isinstance(a, fx.Node) else a for a in args])

    return _Step(node.name, run, tuple(a.name for a in node.all_input_nodes))


def _spatial_mean(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Callable[[Tensor], Tensor] | None:
    """``mean(dim, keepdim)`` (after the input) as a function, if it averages over spatial
    dims only (2 and up: not the examples, not the tasks x channels); else ``None``."""
    dims = args[0] if args else kwargs.get("dim")
    keepdim = args[1] if len(args) > 1 else kwargs.get("keepdim", False)
    dims = (dims,) if isinstance(dims, int) else dims
    if not dims or not all(isinstance(d, int) and d >= 2 for d in dims):
        return None
    return lambda x: x.mean(dims, keepdim)


def _monotone_activation(
    node: fx.Node, modules: dict[str, nn.Module]
) -> Callable[[Tensor], Tensor] | None:
    if node.op == "call_module":
        module = modules[node.target]
        if isinstance(module, nn.ReLU):
            return F.relu
        if isinstance(module, nn.LeakyReLU) and module.negative_slope >= 0:
            slope = module.negative_slope
            return lambda x: F.leaky_relu(x, slope)
        return None
    if node.op == "call_function" and node.target in MONOTONE_FUNCTIONS and len(node.args) == 1:
        return F.relu
    if node.op == "call_method" and node.target == "relu" and len(node.args) == 1:
        return F.relu
    return None


def _max_pool(
    kernel: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: Any
) -> Callable[[Tensor], Tensor]:
    def pool(x: Tensor) -> Tensor:
        if x.device.type == "cpu":
            return kernels.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode)
        return F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode)

    return pool


def _fusable_conv(conv: nn.Conv2d) -> bool:
    taps = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
    return (
        conv.groups == 1
        and tuple(conv.stride) == (1, 1)
        and tuple(conv.dilation) == (1, 1)
        and not isinstance(conv.padding, str)
        and taps <= kernels.SMALL_CONV_TAPS
    )


def _uses_batch_stats(bn: nn.modules.batchnorm._BatchNorm) -> bool:
    return bn.training or (bn.running_mean is None and bn.running_var is None)


def _grouped_conv(
    x: Tensor, weight: Tensor, bias: Tensor | None, conv: nn.Conv2d, tasks: int
) -> Tensor:
    if tasks == 1:
        return F.conv2d(
            x, weight[0], None if bias is None else bias[0], conv.stride, conv.padding,
            conv.dilation, conv.groups,
        )  # fmt: skip
    return F.conv2d(
        x,
        weight.reshape(tasks * weight.shape[1], *weight.shape[2:]),
        None if bias is None else bias.reshape(-1),
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups * tasks,
    )


def _to_task_layout(x: Tensor) -> Tensor:
    """``[B, n, C, ...]`` -> ``[n, B * C, ...]``."""
    tasks, examples = x.shape[:2]
    return x.transpose(0, 1).reshape(examples, tasks * x.shape[2], *x.shape[3:])


def _from_task_layout(out: Tensor, tasks: int) -> Tensor:
    """``[n, B * C, ...]`` -> ``[B, n, C, ...]``."""
    examples = out.shape[0]
    return out.reshape(examples, tasks, out.shape[1] // tasks, *out.shape[2:]).transpose(0, 1)
