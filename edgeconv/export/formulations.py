"""Graph formulations of the folded (static per-pixel weight) TVConv product.

Every formulation computes exactly::

    out[n, c, i, j] = sum_{u,v} pad(x)[n, c, i*s+u, j*s+v] * W[0, c, u*k+v, i, j] (+ bias)

but lowers to different standard ONNX / TFLite ops, which run at very different speeds in
ONNX Runtime and LiteRT (the op is memory bound: it streams C*k*k*h*w weights per image).
Measurements and the reasons for the default are in ``docs/export_speed.md``.

Exact formulations (selectable by name, ``FoldedTVConv(..., formulation=NAME)``):

``slices``
    k*k strided Slices of the padded input, each multiplied by its weight plane, summed
    (Pad, Slice, Mul, Add). The eager/reference form.
``onehot``
    Pad + one depthwise Conv with channel multiplier k*k and one-hot kernels (the patches,
    channel-major (N, C*k*k, h, w)) -> Mul by (1, C*k*k, h, w) -> Reshape (N, C, k*k, h, w)
    -> ReduceSum over the k*k axis.
``onehot_tap``
    Like ``onehot`` but the patches are tap-major: k*k Slices concatenated on the channel
    axis (N, k*k*C, h, w) -> Mul -> Reshape (N, k*k, C, h, w) -> ReduceSum over axis 1 (the
    sum runs over whole contiguous (C, h, w) slabs, the fastest reduction layout).
``tapconv``
    k*k one-hot depthwise Convs (one tap each, MLAS depthwise kernels, no Pad/Slice copies),
    each times its weight plane, summed. Same arithmetic as ``slices`` without the copies.
``col2im``
    Stride 1: ONE broadcast Mul of the input by the weights moved to input coordinates
    (N, C, k*k, H, W), then ONE Col2Im (``F.fold``, ONNX opset >= 18) that sums the k*k
    shifted planes: 2 ops instead of ``tapconv``'s k*k Conv + k*k Mul + k*k-1 Add.
    Strided layers use ``tapconv``: Col2Im scatters onto the grid of its own input, and a
    polyphase split (4 strided slices, 3 Col2Im with 2x2/2x1/1x2 kernels) was measured
    slower than ``tapconv`` (ONNX Runtime's Col2Im kernel is single-threaded). ONNX only:
    TFLite has no Col2Im (litert-torch lowers it to a scatter the interpreter cannot run).

Approximate (``edgeconv.export.lowrank``): rank-r SVD of each layer's weights, r depthwise
convs times r spatial maps (exact only at full rank k*k).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

EXACT_FORMULATIONS = ("slices", "onehot", "onehot_tap", "tapconv", "col2im")
#: The default where ``col2im`` cannot be used (TFLite, ONNX opset < 18), chosen from the
#: measurements in docs/export_speed.md.
DEFAULT_FORMULATION = "tapconv"
#: Formulations only ONNX can carry (TFLite has no Col2Im: litert-torch lowers it to a
#: stablehlo scatter that the interpreter cannot run).
ONNX_ONLY_FORMULATIONS = ("col2im",)
#: formulations whose TFLite graph pins the batch size (a dynamic-batch file resized to
#: batch 3 computes one image: measured by benchmarks/export_speed.py), so TFLite needs --batch N
TFLITE_BATCH_PINNING = ("onehot", "onehot_tap", "slices")
MIN_OPSET = {"col2im": 18}


def default_formulation(fmt: str, opset: int | None = None) -> str:
    """The fastest exact formulation each format can carry (docs/export_speed.md)."""
    if fmt == "onnx" and (opset is None or opset >= MIN_OPSET["col2im"]):
        return "col2im"
    return DEFAULT_FORMULATION


def check_formulation_for(name: str, fmt: str, opset: int | None = None,
                          dynamic_batch: bool = False) -> str:
    """Refuse, in one line, a ``--formulation`` that ``fmt`` cannot carry: unknown names,
    ONNX-only forms outside ONNX, Col2Im below opset 18, and (``dynamic_batch``) forms whose
    TFLite graph pins the batch size."""
    from edgeconv.errors import EdgeconvError

    if name not in EXACT_FORMULATIONS:
        raise EdgeconvError(f"unknown --formulation '{name}' "
                            f"(choose from: {', '.join(EXACT_FORMULATIONS)})")
    if fmt != "onnx" and name in ONNX_ONLY_FORMULATIONS:
        raise EdgeconvError(f"--formulation {name} is ONNX only ({fmt} has no Col2Im op): "
                            f"export {fmt} with another formulation, e.g. {DEFAULT_FORMULATION}")
    if fmt == "onnx" and opset is not None and opset < MIN_OPSET.get(name, 0):
        raise EdgeconvError(f"--formulation {name} needs ONNX opset >= {MIN_OPSET[name]} "
                            f"(Col2Im), got --opset {opset}")
    if fmt == "tflite" and dynamic_batch and name in TFLITE_BATCH_PINNING:
        raise EdgeconvError(
            f"--formulation {name} pins the batch size of a TFLite file, so it cannot "
            f"be dynamic (litert-torch converts at batch 1 and the interpreter resizes): "
            f"give --batch N, or another formulation")
    return name


def check_formulation(name: str) -> str:
    from edgeconv.errors import EdgeconvError

    if name not in EXACT_FORMULATIONS:
        raise EdgeconvError(f"unknown TVConv formulation '{name}' "
                            f"(choose from: {', '.join(EXACT_FORMULATIONS)})")
    return name


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
        from edgeconv.ops.tvconv import apply_per_pixel

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
        check_formulation(formulation)
        raise AssertionError(formulation)
    if bias is not None:
        out = out + bias
    return out


def set_formulation(model: torch.nn.Module, formulation: str) -> int:
    """Select ``formulation`` on every FoldedTVConv of ``model``; returns how many."""
    from edgeconv.ops.tvconv import FoldedTVConv

    check_formulation(formulation)
    n = 0
    for m in model.modules():
        if isinstance(m, FoldedTVConv):
            m.set_formulation(formulation)
            n += 1
    return n
