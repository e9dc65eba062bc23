"""The fast kernels against the PyTorch compositions they replace: values, first and second
derivatives (float64), including the partial second derivatives MAML actually uses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mamlkit.backends import kernels


def _double_backward(fn, inputs: list[torch.Tensor], seed: int = 0) -> list[torch.Tensor]:
    """First derivatives with a graph, then derivatives of a random functional of them."""
    g = torch.Generator().manual_seed(seed)
    out = fn(*inputs)
    upstream = torch.randn(out.shape, generator=g, dtype=out.dtype)
    firsts = torch.autograd.grad((out * upstream).sum(), inputs, create_graph=True)
    probe = sum((f * torch.randn(f.shape, generator=g, dtype=f.dtype)).sum() for f in firsts)
    return [*firsts, *torch.autograd.grad(probe, inputs, allow_unused=True, materialize_grads=True)]


def _leaves(*tensors: torch.Tensor | None) -> list[torch.Tensor]:
    return [t.detach().clone().requires_grad_() for t in tensors if t is not None]


@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (6, 4), (3, 2, 7)])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_train_matches_pytorch_to_second_order(shape, affine: bool) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 2 + 0.5
    channels = shape[1]
    weight = torch.rand(channels, generator=g, dtype=torch.float64) + 0.5 if affine else None
    bias = torch.randn(channels, generator=g, dtype=torch.float64) if affine else None

    def ours(x, *wb):
        return kernels.batch_norm_train(x, *(wb or (None, None)), eps=1e-5)

    def theirs(x, *wb):
        w, b = wb or (None, None)
        return F.batch_norm(x, None, None, w, b, training=True, eps=1e-5)

    inputs = _leaves(x, weight, bias)
    torch.testing.assert_close(ours(*inputs), theirs(*inputs))
    for got, want in zip(
        _double_backward(ours, _leaves(*inputs)), _double_backward(theirs, _leaves(*inputs)),
        strict=True,
    ):  # fmt: skip
        torch.testing.assert_close(got, want)
    small = _leaves(*(t[:3] if t.dim() == 1 else t[:, :3] for t in inputs))
    assert torch.autograd.gradgradcheck(ours, tuple(small))


def test_batch_norm_double_backward_with_only_some_outputs_used() -> None:
    """MAML uses the weight gradient alone in some steps: undefined incoming grads are zeros."""
    g = torch.Generator().manual_seed(2)
    x, w, b = _leaves(
        torch.randn(5, 3, 4, 4, generator=g, dtype=torch.float64),
        torch.rand(3, generator=g, dtype=torch.float64) + 0.5,
        torch.randn(3, generator=g, dtype=torch.float64),
    )
    for pick in range(3):
        results = []
        native = lambda *a: F.batch_norm(a[0], None, None, *a[1:], True)  # noqa: E731
        for fn in (kernels.batch_norm_train, native):
            out = fn(x, w, b)
            firsts = torch.autograd.grad((out * out.detach()).sum(), [x, w, b], create_graph=True)
            results.append(
                torch.autograd.grad(
                    firsts[pick].pow(2).sum(), [x, w, b], allow_unused=True, materialize_grads=True
                )
            )
        for got, want in zip(*results, strict=True):
            torch.testing.assert_close(got, want)


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "ceil_mode"),
    [(2, None, 0, False), (3, 2, 1, False), (2, 2, 0, True)],
)
def test_max_pool_matches_pytorch_including_ties(kernel, stride, padding, ceil_mode) -> None:
    g = torch.Generator().manual_seed(3)
    # integer values: many ties, which must go to the same (first) maximum as in PyTorch
    x = torch.randint(0, 3, (2, 3, 7, 7), generator=g).double()
    cl = x.contiguous(memory_format=torch.channels_last)
    for source in (x, cl):

        def ours(t, source=source):
            return kernels.max_pool2d(t, kernel, stride, padding, 1, ceil_mode)

        def theirs(t):
            return F.max_pool2d(t, kernel, stride, padding, 1, ceil_mode)

        (a,), (b,) = _leaves(source), _leaves(source)
        torch.testing.assert_close(ours(a), theirs(b))
        assert ours(a).is_contiguous() or source is cl
        pairs = zip(_double_backward(ours, [a]), _double_backward(theirs, [b]), strict=True)
        for got, want in pairs:
            torch.testing.assert_close(got, want)


def _conv_bn_reference(x, weight, bias, bn_weight, bn_bias, tasks, padding, eps):
    out = F.conv2d(
        x,
        weight.reshape(-1, *weight.shape[2:]),
        None if bias is None else bias.reshape(-1),
        padding=padding,
        groups=tasks,
    )
    return F.batch_norm(
        out,
        None,
        None,
        None if bn_weight is None else bn_weight.reshape(-1),
        None if bn_bias is None else bn_bias.reshape(-1),
        training=True,
        eps=eps,
    )


@pytest.mark.parametrize("tasks", [1, 3])
@pytest.mark.parametrize(("in_channels", "kernel", "padding"), [(1, 3, 1), (3, 3, 0), (1, 5, 2)])
@pytest.mark.parametrize("affine", [True, False])
def test_conv_batch_norm_matches_conv_then_batch_norm(tasks, in_channels, kernel, padding, affine):
    g = torch.Generator().manual_seed(4)
    x = torch.rand(4, tasks * in_channels, 6, 6, generator=g, dtype=torch.float64)
    w = torch.randn(tasks, 2, in_channels, kernel, kernel, generator=g, dtype=torch.float64)
    b = torch.randn(tasks, 2, generator=g, dtype=torch.float64)
    gamma = torch.rand(tasks, 2, generator=g, dtype=torch.float64) + 0.5 if affine else None
    beta = torch.randn(tasks, 2, generator=g, dtype=torch.float64) if affine else None
    pad = (padding, padding)

    def ours(w, b, *gb):
        gamma, beta = gb or (None, None)
        return kernels.conv_batch_norm(
            x, w, b, gamma, beta, tasks=tasks, padding=pad, eps=1e-5
        ).contiguous()

    def theirs(w, b, *gb):
        gamma, beta = gb or (None, None)
        return _conv_bn_reference(x, w, b, gamma, beta, tasks, pad, 1e-5)

    inputs = _leaves(w, b, gamma, beta)
    torch.testing.assert_close(ours(*inputs), theirs(*inputs))
    got = _double_backward(ours, _leaves(*inputs))
    want = _double_backward(theirs, _leaves(*inputs))
    for index, (a, c) in enumerate(zip(got, want, strict=True)):
        if index % len(inputs) == 1:  # the conv bias: zero in exact arithmetic on both paths
            torch.testing.assert_close(a, torch.zeros_like(a))
            torch.testing.assert_close(c, torch.zeros_like(c))
        else:
            torch.testing.assert_close(a, c)
    if tasks == 1:
        side = 6 + 2 * padding - kernel + 1
        assert ours(*inputs).shape == (4, 2, side, side)
        out = kernels.conv_batch_norm(x, w, b, gamma, beta, tasks=1, padding=pad, eps=1e-5)
        assert out.is_contiguous(memory_format=torch.channels_last)
