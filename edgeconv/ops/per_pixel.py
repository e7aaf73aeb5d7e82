"""The static per-pixel product and its graph lowerings (torch): exact, chosen by name.

``apply_per_pixel`` is the reference (k*k shifted strided slices of the zero-padded input,
each times its weight plane, summed: exact for every stride). ``per_pixel(..., name)`` computes
the same product with other standard ops, which ONNX Runtime and LiteRT run at very different
speeds; which lowering each export format gets is the exporter's policy
(``edgeconv.export.formulations``, measurements in ``docs/export_speed.md``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

#: exact lowerings of the folded product, by name
LOWERINGS = ("slices", "onehot", "onehot_tap", "tapconv", "col2im")


def check_lowering(name: str) -> str:
    """``name`` if it is a lowering, else one-line EdgeconvError."""
    from edgeconv.errors import EdgeconvError

    if name not in LOWERINGS:
        raise EdgeconvError(f"unknown TVConv formulation '{name}' "
                            f"(choose from: {', '.join(LOWERINGS)})")
    return name


def apply_per_pixel(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                    kernel_size: int, stride: int, out_hw: tuple[int, int]) -> torch.Tensor:
    """out[n,c,i,j] = sum_{u,v} pad(x)[n,c,i*s+u,j*s+v] * weight[:,c,u*k+v,i,j] (+ bias).

    ``weight``: (1 or N, C, k*k, h or 1, w or 1), broadcast over the batch and/or positions;
    ``bias``: None or broadcastable to (N, C, h, w); ``out_hw``: (h, w) as static ints, so traced
    and exported graphs get static slices.
    """
    k, s = kernel_size, stride
    h, w = out_hw
    p = k // 2
    xp = nn.functional.pad(x, (p, p, p, p))
    out = None
    for u in range(k):
        for v in range(k):
            patch = xp[:, :, u: u + (h - 1) * s + 1: s, v: v + (w - 1) * s + 1: s]
            term = patch * weight[:, :, u * k + v]
            out = term if out is None else out + term
    if bias is not None:
        out = out + bias
    return out


def onehot_kernels(channels: int, kernel_size: int, dtype=torch.float32) -> torch.Tensor:
    """(C*k*k, 1, k, k) depthwise kernels: output channel c*k*k + t picks tap t of channel c."""
    kk = kernel_size * kernel_size
    eye = torch.eye(kk, dtype=dtype).view(kk, 1, kernel_size, kernel_size)
    return eye.repeat(channels, 1, 1, 1)


def tap_kernel(channels: int, kernel_size: int, tap: int, dtype=torch.float32) -> torch.Tensor:
    """(C, 1, k, k) depthwise kernel with a single 1 at tap ``tap`` (u*k + v)."""
    w = torch.zeros(channels, 1, kernel_size * kernel_size, dtype=dtype)
    w[:, :, tap] = 1
    return w.view(channels, 1, kernel_size, kernel_size)


def col2im_weights(weight: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """(1, C, k*k, h, w) output-grid weights -> input-grid column weights for ``col2im``.

    Col2Im adds column ``t`` at block position ``m`` to ``out[m + d_t]`` (``d_t`` the offset of
    tap ``t`` from the kernel centre). With ``cols[t, m] = x[m] * W'[t, m]`` and
    ``W'[t, m] = W[flip(t), m + d_t]`` (zero outside the image) the sum at ``p`` is
    ``sum_t x[p + d_t] W[t, p]``: the per-pixel product, exactly. Stride 1 only.
    """
    k = kernel_size
    p = k // 2
    _, c, kk, h, w = weight.shape
    wpad = F.pad(weight, (p, p, p, p))
    out = torch.empty_like(weight)
    for t in range(kk):
        u, v = divmod(t, k)
        out[:, :, t] = wpad[:, :, kk - 1 - t, u: u + h, v: v + w]
    return out


def per_pixel(x: torch.Tensor, weight: torch.Tensor, bias, kernel_size: int, stride: int,
              formulation: str = "slices", aux: dict | None = None) -> torch.Tensor:
    """Apply static per-pixel weights (1, C, k*k, h, w) with the named formulation.

    ``aux`` may hold precomputed constants (``onehot``: the one-hot kernels; ``tapconv``:
    the per-tap kernels; ``col2im``: the input-grid weights) so that tracing does not
    rebuild them.
    """
    if formulation == "slices":
        return apply_per_pixel(x, weight, bias, kernel_size, stride, tuple(weight.shape[-2:]))
    k, s = kernel_size, stride
    kk = k * k
    # python ints: traced graphs get static shapes (Col2Im needs a constant output size)
    c, h, w = (int(v) for v in (weight.shape[1], weight.shape[-2], weight.shape[-1]))
    p = k // 2
    aux = aux or {}
    if formulation == "col2im" and s != 1:
        formulation = "tapconv"  # documented fallback for strided layers
    if formulation == "col2im":
        wcol = aux.get("col2im")
        if wcol is None:
            wcol = col2im_weights(weight, k)
        cols = (x.unsqueeze(2) * wcol).reshape(-1, c * kk, h * w)
        out = F.fold(cols, (h, w), k, padding=p)
    elif formulation == "onehot":
        kern = aux.get("onehot")
        if kern is None:
            kern = onehot_kernels(c, k, x.dtype)
        patches = F.conv2d(x, kern, stride=s, padding=p, groups=c)  # (N, C*kk, h, w)
        prod = patches * weight.reshape(1, c * kk, h, w)
        out = prod.reshape(-1, c, kk, h, w).sum(2)
    elif formulation == "onehot_tap":
        xp = F.pad(x, (p, p, p, p))
        taps = [xp[:, :, u: u + (h - 1) * s + 1: s, v: v + (w - 1) * s + 1: s]
                for u in range(k) for v in range(k)]
        patches = torch.cat(taps, 1)  # (N, kk*C, h, w), tap-major
        wt = weight.transpose(1, 2).reshape(1, kk * c, h, w)
        out = (patches * wt).reshape(-1, kk, c, h, w).sum(1)
    elif formulation == "tapconv":
        kerns = aux.get("tapconv")
        out = None
        for t in range(kk):
            kern = kerns[t] if kerns is not None else tap_kernel(c, k, t, x.dtype)
            shifted = F.conv2d(x, kern, stride=s, padding=p, groups=c)
            term = shifted * weight[:, :, t]
            out = term if out is None else out + term
    else:
        check_lowering(formulation)
        raise AssertionError(formulation)
    if bias is not None:
        out = out + bias
    return out
