"""Faster, exactly equivalent replacements for three PyTorch CPU operations MAML leans on.

What each contributes end to end is measured by ``benchmarks/ablation.py``
(``docs/performance.md``):

* :func:`batch_norm_train`: batch-statistics BatchNorm whose *double backward* is a closed
  form of about a dozen tensor passes, fewer than PyTorch's generic formula
  (``batchnorm_double_backward``); second-order MAML runs it in every inner step of every task.
* :func:`max_pool2d`: max-pooling through the channels-last kernel, which on CPU is much faster
  than the NCHW one at Conv4's first-layer shape; the indices, the gradient and the tie rule
  (the first maximum wins) are PyTorch's own.
* :func:`conv_batch_norm`: a convolution with few input taps (``C_in * k * k <= 27``, e.g. a
  first layer on grey or RGB images) followed by batch-statistics BatchNorm, as one matrix
  product. BatchNorm's mean and variance of ``W p + b`` follow from the mean and covariance of
  the image patches ``p`` (a ``taps x taps`` matrix), so normalisation is folded into the weights
  and the wide conv output is written once instead of three times. The conv bias cancels in
  BatchNorm; it stays in the graph, so it gets its (exactly zero) gradient as on any path.

Each function is differentiable twice through ordinary autograd, and each is tested against the
PyTorch composition it replaces: values, gradients and second derivatives
(``tests/backends/test_kernels.py``).

:func:`differentiated_once` marks passes whose outputs no second derivative will follow (query
passes, first-order support passes): there :func:`batch_norm_train`'s closed form is pure
overhead, and the batched program uses PyTorch's own BatchNorm, whose single backward is faster.
Both are exact either way; the mark only chooses the faster kernel.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

#: Largest number of input taps (``C_in * kh * kw``) for which :func:`conv_batch_norm` applies.
SMALL_CONV_TAPS = 27

_aten = torch.ops.aten

_ONCE: contextvars.ContextVar[bool] = contextvars.ContextVar("differentiated_once", default=False)


@contextlib.contextmanager
def differentiated_once() -> Iterator[None]:
    """Inside: what is computed will be differentiated at most once, so kernels whose only gain
    is a cheaper second derivative step aside. Only speed depends on it, never a value or a
    gradient: every kernel here is exact to any order.

    >>> from mamlkit.backends.kernels import differentiated_once, second_derivative_expected
    >>> with differentiated_once():
    ...     second_derivative_expected()
    False
    >>> second_derivative_expected()
    True
    """
    token = _ONCE.set(True)
    try:
        yield
    finally:
        _ONCE.reset(token)


def second_derivative_expected() -> bool:
    """``False`` inside :func:`differentiated_once`, else ``True`` (the safe assumption)."""
    return not _ONCE.get()


def _channel_view(x: Tensor) -> tuple[int, ...]:
    return (1, x.shape[1]) + (1,) * (x.dim() - 2)


class _BatchNormBackward(torch.autograd.Function):
    """BatchNorm's backward ``(gy, x, weight) -> (gx, gw, gb)`` with a closed-form derivative.

    With ``xhat = (x - mean) * r``, ``a = mean(gy)``, ``b = mean(gy * xhat)`` per channel, the
    forward here is PyTorch's ``gx = weight * r * (gy - a - xhat * b)``, ``gw = sum(gy * xhat)``,
    ``gb = sum(gy)``. Its backward (incoming ``ggx, ggw, ggb``) needs three per-channel sums
    (of ``ggx``, ``ggx * xhat``, ``ggx * gy``) and two full-size outputs; see the inline algebra.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, gy: Tensor, x: Tensor, weight: Tensor | None, mean: Tensor, invstd: Tensor, eps: float
    ) -> tuple[Tensor, Tensor, Tensor]:
        gx, gw, gb = _aten.native_batch_norm_backward(
            gy, x, weight, None, None, mean, invstd, True, eps, [True, True, True]
        )
        ctx.save_for_backward(gy, x, weight, mean, invstd, gw, gb)
        return gx, gw, gb

    @staticmethod
    def backward(  # type: ignore[override]
        ctx, ggx: Tensor | None, ggw: Tensor | None, ggb: Tensor | None
    ) -> tuple[Tensor | None, ...]:
        gy, x, weight, mean, invstd, gw, gb = ctx.saved_tensors
        shape = _channel_view(x)
        dims = [0, *range(2, x.dim())]
        count = x.numel() // x.shape[1]
        r = invstd.view(shape)
        gamma_r = r if weight is None else weight.view(shape) * r
        xhat = (x - mean.view(shape)) * r
        a = (gb / count).view(shape)  # mean(gy)
        b = (gw / count).view(shape)  # mean(gy * xhat)
        zero = torch.zeros_like(r)
        # c1: coefficient of gy in d(loss)/d(xhat); sums of ggx enter only when ggx is given.
        c1 = zero if ggw is None else ggw.view(shape)
        if ggx is not None:
            sum_ggx = ggx.sum(dims).view(shape)
            p = (ggx * xhat).sum(dims).view(shape)
            s1 = (ggx * gy).sum(dims).view(shape) - a * sum_ggx
            c1 = c1 - gamma_r * p / count
        g_gy = g_x = g_w = None
        if ctx.needs_input_grad[0]:
            # d/dgy: BatchNorm's own backward applied to ggx, plus ggw * xhat + ggb.
            shift = zero if ggb is None else ggb.view(shape)
            if ggx is not None:
                g_gy = gamma_r * ggx + c1 * xhat + (shift - gamma_r * sum_ggx / count)
            else:
                g_gy = (c1 * xhat + shift).expand_as(x).contiguous()
        if weight is not None and ctx.needs_input_grad[2]:
            # d/dweight of <ggx, gx> = r * sum(ggx * (gy - a - xhat * b)).
            g_w = (r * (s1 - b * p)).view(-1) if ggx is not None else torch.zeros_like(weight)
        if ctx.needs_input_grad[1]:
            # d/dx through xhat (f = c1 * gy + c2 * ggx is d(loss)/d(xhat), pushed through the
            # normalisation) and through r explicitly (coefficient e).
            if ggx is not None:
                c2 = -gamma_r * b
                mean_f = c1 * a + c2 * sum_ggx / count
                mean_fx = c1 * b + c2 * p / count
                explicit_r = (gamma_r / r) * (s1 - b * p)
                g_x = (r * c1) * gy + (r * c2) * ggx
                g_x = g_x - r * mean_f - xhat * (r * mean_fx + explicit_r * r * r / count)
            else:
                g_x = (r * c1) * (gy - a - xhat * b)
        return g_gy, g_x, g_w, None, None, None


class _BatchNormTrain(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx, x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float
    ) -> Tensor:
        out, mean, invstd = torch.native_batch_norm(x, weight, bias, None, None, True, 0.0, eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps = eps
        ctx.affine = (weight is not None, bias is not None)
        return out

    @staticmethod
    def backward(ctx, gy: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, weight, mean, invstd = ctx.saved_tensors
        gx, gw, gb = _BatchNormBackward.apply(gy, x, weight, mean, invstd, ctx.eps)
        has_weight, has_bias = ctx.affine
        return gx, gw if has_weight else None, gb if has_bias else None, None


def batch_norm_train(
    x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float = 1e-5
) -> Tensor:
    """``F.batch_norm(x, None, None, weight, bias, training=True, eps=eps)``, cheaper to
    differentiate twice. ``x`` is ``[N, C, ...]``; statistics are per channel over the rest.

    >>> import torch
    >>> import torch.nn.functional as F
    >>> from mamlkit.backends.kernels import batch_norm_train
    >>> x, w, b = torch.randn(8, 3, 4, 4), torch.rand(3), torch.randn(3)
    >>> reference = F.batch_norm(x, None, None, w, b, training=True)
    >>> torch.allclose(batch_norm_train(x, w, b), reference, atol=1e-5)
    True
    """
    return _BatchNormTrain.apply(x, weight, bias, eps)


class _MaxPoolChannelsLast(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, *args: object) -> Tensor:  # type: ignore[override]
        out, indices = _aten.max_pool2d_with_indices(
            x.contiguous(memory_format=torch.channels_last), *args
        )
        indices = indices.contiguous()
        ctx.save_for_backward(x, indices)
        ctx.args = args
        return out.contiguous()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, indices = ctx.saved_tensors
        # PyTorch's backward kernel, itself differentiable (its derivative gathers by index).
        grad_x = _aten.max_pool2d_with_indices_backward(grad, x, *ctx.args, indices)
        return (grad_x, *([None] * len(ctx.args)))


def _pair(value: int | tuple[int, ...] | list[int]) -> list[int]:
    return list(value) if isinstance(value, (tuple, list)) else [value, value]


def max_pool2d(
    x: Tensor,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    ceil_mode: bool = False,
) -> Tensor:
    """``F.max_pool2d`` through the channels-last kernel (same values, indices and gradients).

    A channels-last input is pooled in place; an NCHW one is converted, pooled, and returned as
    NCHW, with PyTorch's backward kernel (and its derivative) on the original layout.

    >>> import torch
    >>> import torch.nn.functional as F
    >>> from mamlkit.backends.kernels import max_pool2d
    >>> x = torch.randn(2, 3, 8, 8)
    >>> torch.equal(max_pool2d(x, 2), F.max_pool2d(x, 2))
    True
    """
    kernel = _pair(kernel_size)
    stride_ = kernel if stride is None or stride == [] else _pair(stride)
    if x.dim() != 4 or x.is_contiguous(memory_format=torch.channels_last):
        return F.max_pool2d(x, kernel, stride_, padding, dilation, ceil_mode)
    return _MaxPoolChannelsLast.apply(
        x, kernel, stride_, _pair(padding), _pair(dilation), bool(ceil_mode)
    )


def conv_batch_norm(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    bn_weight: Tensor | None,
    bn_bias: Tensor | None,
    *,
    tasks: int,
    padding: tuple[int, int],
    eps: float,
) -> Tensor:
    """``batch_norm(conv2d(x, weight, bias, padding=padding, groups=tasks))`` in one matmul.

    Tasks are laid out as channel groups: ``x`` is ``[n, tasks * C_in, H, W]``, ``weight`` is
    ``[tasks, C_out, C_in, kh, kw]``, ``bias``, ``bn_weight`` and ``bn_bias`` ``[tasks, C_out]``;
    statistics are per task and channel over ``(n, H, W)`` (BatchNorm with batch statistics).
    Stride 1, no dilation. With one task the result is channels-last, so a pool after it needs
    no layout change.
    """
    n, _, height, width = x.shape
    out_channels, in_channels, kh, kw = weight.shape[1:]
    taps = in_channels * kh * kw
    out_h = height + 2 * padding[0] - kh + 1
    out_w = width + 2 * padding[1] - kw + 1
    w = weight.reshape(tasks, out_channels, taps)
    count = n * out_h * out_w
    # Centred patches: the output is then folded @ (p - mean) with no large terms that cancel,
    # and the patch mean (data only) carries no gradient. A row (or column) of ones carries the
    # shift, so the matmul writes the output in one pass.
    if tasks == 1:
        cols = F.unfold(x, (kh, kw), padding=padding).transpose(1, 2)  # [n, P, taps]
        centred = (cols - cols.mean(dim=(0, 1))).reshape(count, taps)
        flat = centred.to(_STATS)
        folded = _fold(w, (flat.t() @ flat / count)[None], bias, bn_weight, bn_bias, eps)
        cols = torch.cat([centred, centred.new_ones(count, 1)], dim=1)
        out = cols @ folded[0].to(x.dtype).t()
        return out.view(n, out_h, out_w, out_channels).permute(0, 3, 1, 2)
    cols = F.unfold(x, (kh, kw), padding=padding).view(n, tasks, taps, out_h * out_w)
    centred = cols - cols.mean(dim=(0, 3), keepdim=True)  # per task and tap
    flat = centred.to(_STATS)
    cov = torch.einsum("ntkp,ntjp->tkj", flat, flat) / count
    folded = _fold(w, cov, bias, bn_weight, bn_bias, eps).to(x.dtype)
    ones = cols.new_ones(n, tasks, 1, out_h * out_w)
    out = torch.matmul(folded, torch.cat([centred, ones], dim=2))  # [n, tasks, C_out, P]
    return out.view(n, tasks * out_channels, out_h, out_w)


#: The statistics (a taps x taps covariance and the quadratic form w C w) are tiny but badly
#: conditioned: neighbouring pixels are strongly correlated, and in float32 the variance loses
#: enough digits to put float32 meta-gradients 1% off on Omniglot (the float32 test in
#: ``tests/backends/test_strategies.py``). In float64 they are more accurate than the unfused
#: float32 path.
_STATS = torch.float64


def _fold(
    w: Tensor,
    cov: Tensor,
    bias: Tensor | None,
    bn_weight: Tensor | None,
    bn_bias: Tensor | None,
    eps: float,
) -> Tensor:
    """``[tasks, C_out, taps + 1]`` in float64: ``w`` scaled by BatchNorm's ``weight / std``,
    with BatchNorm's shift as the last column; ``cov`` is the centred patches' covariance."""
    tasks, out_channels = w.shape[:2]
    w = w.to(_STATS)
    var = torch.einsum("tok,tkj,toj->to", w, cov, w)
    scale = torch.rsqrt(var + eps)
    if bn_weight is not None:
        scale = scale * bn_weight.reshape(tasks, out_channels).to(_STATS)
    shift = torch.zeros_like(scale)
    if bias is not None:  # the conv mean includes the bias, which BatchNorm removes again
        b = bias.reshape(tasks, out_channels).to(_STATS)
        shift = shift + scale * (b - b)
    if bn_bias is not None:
        shift = shift + bn_bias.reshape(tasks, out_channels).to(_STATS)
    return torch.cat([scale[..., None] * w, shift[..., None]], dim=2)
