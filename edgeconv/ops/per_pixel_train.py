"""The per-pixel product for training: one autograd function with a hand-written backward.

``apply_per_pixel`` (the reference, :mod:`edgeconv.ops.per_pixel`) builds k*k slice, multiply
and add nodes; autograd then gives each slice its own zero-filled padded gradient buffer and
each weight plane its own (N, C, h, w) product before the batch sum. In TVConv the weights are
shared by the whole batch ((1, C, k*k, h, w)), which allows a cheaper schedule:

* forward: ``out = bias + sum_t x_t * W_t`` accumulated in place (``addcmul_``) into one
  output buffer; only ``x`` and ``W`` are kept for backward (no per-tap temporaries);
* backward, input: the k*k gradient planes ``g * W_t`` are accumulated in place into ONE
  padded buffer at their tap offsets, then cropped;
* backward, weights: ``dW_t = sum_n x_t * g``, one batched reduction per tap
  (a product and a sum over the batch per tap; einsum
  lowers this to a much slower batched matmul on CPU), never materialising the k*k (N, C, h, w) products.

Exact (same arithmetic up to summation order): the tests gradcheck it in float64 against the
reference and compare float32 forward/backward to 1e-5 for strides 1/2, k 3/5, odd sizes,
batch 1 and many. Weights broadcast only over the batch (leading dim 1): the per-image weights
of ``filtergen`` keep the reference path.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from edgeconv.kernels.train import FORWARD, GRAD_INPUT, GRAD_WEIGHT


def _taps(k: int, s: int, h: int, w: int):
    """(tap index, row slice, col slice) of each tap in the zero-padded input."""
    for u in range(k):
        for v in range(k):
            yield u * k + v, slice(u, u + (h - 1) * s + 1, s), slice(v, v + (w - 1) * s + 1, s)


def _use_native(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """float32 CPU tensors and the native training kernels built (and not turned off)."""
    if x.dtype != torch.float32 or weight.dtype != torch.float32 or x.device.type != "cpu" \
            or weight.device.type != "cpu" or x.shape[0] == 0:
        return False
    from edgeconv.kernels import train as native

    return native.available()


def _native(mode: int, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, shape, k: int,
            s: int) -> None:
    from edgeconv.kernels import train as native

    a, b = a.contiguous(), b.contiguous()
    native.run(mode, a.data_ptr(), b.data_ptr(), out.data_ptr(), shape, k, s,
               threads=torch.get_num_threads())


class _PerPixel(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, k: int, s: int, h: int, w: int):
        native = _use_native(x, weight)
        if native:
            x = x.contiguous()
            weight = weight.contiguous()
            out = x.new_empty(x.shape[0], x.shape[1], h, w)
            _native(FORWARD, x, weight, out, x.shape, k, s)
            if bias is not None:
                out += bias
        else:
            p = k // 2
            xp = F.pad(x, (p, p, p, p))
            wt = weight[0]  # (C, k*k, h, w)
            if bias is not None:
                out = bias.expand(x.shape[0], -1, h, w).clone(
                    memory_format=torch.contiguous_format)
            else:
                out = x.new_zeros(x.shape[0], x.shape[1], h, w)
            for t, rs, cs in _taps(k, s, h, w):
                out.addcmul_(xp[:, :, rs, cs], wt[:, t])
        ctx.native = native
        ctx.save_for_backward(x, weight)
        ctx.geometry = (k, s, h, w)
        ctx.bias_shape = None if bias is None else bias.shape
        return out

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        k, s, h, w = ctx.geometry
        p = k // 2
        grad = grad.contiguous()
        gx = gw = gb = None
        if ctx.native:
            if ctx.needs_input_grad[0]:
                gx = torch.empty_like(x)
                _native(GRAD_INPUT, grad, weight, gx, x.shape, k, s)
            if ctx.needs_input_grad[1]:
                gw = torch.empty_like(weight)
                _native(GRAD_WEIGHT, x, grad, gw, x.shape, k, s)
        else:
            wt = weight[0]
            if ctx.needs_input_grad[0]:
                gxp = grad.new_zeros(x.shape[0], x.shape[1], x.shape[2] + 2 * p,
                                     x.shape[3] + 2 * p)
                for t, rs, cs in _taps(k, s, h, w):
                    gxp[:, :, rs, cs].addcmul_(grad, wt[:, t])
                gx = gxp[:, :, p: p + x.shape[2], p: p + x.shape[3]]
            if ctx.needs_input_grad[1]:
                xp = F.pad(x, (p, p, p, p))
                gw = torch.empty_like(weight)
                for t, rs, cs in _taps(k, s, h, w):
                    torch.sum(xp[:, :, rs, cs] * grad, dim=0, out=gw[0, :, t])
        if ctx.bias_shape is not None and ctx.needs_input_grad[2]:
            gb = grad.sum_to_size(ctx.bias_shape)
        return gx, gw, gb, None, None, None, None


def per_pixel_train(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                    kernel_size: int, stride: int, out_hw) -> torch.Tensor:
    """Same result as :func:`~edgeconv.ops.per_pixel.apply_per_pixel` for batch-shared
    per-pixel weights ``(1, C, k*k, h, w)`` and a bias broadcastable to ``(N, C, h, w)``."""
    h, w = (int(v) for v in out_hw)
    # traced graphs (fvcore MACs, ONNX) get the reference ops, not an opaque Python op
    if torch.jit.is_tracing() or weight.dim() != 5 or weight.shape[0] != 1 \
            or tuple(weight.shape[-2:]) != (h, w):
        from edgeconv.ops.per_pixel import apply_per_pixel

        return apply_per_pixel(x, weight, bias, kernel_size, stride, (h, w))
    return _PerPixel.apply(x, weight, bias, int(kernel_size), int(stride), h, w)
