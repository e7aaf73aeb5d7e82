"""The fused kernel's weight layouts (numpy, torch-free): what ``--formulation fused`` writes.

Folded TVConv weights ``(C, k*k, h, w)`` (tap t = u*k + v, output grid) are stored in one of
two layouts, named by each node's ``layout`` attribute (``layout_for`` picks):

- ``"c_kk_hw"`` (``FLAT_LAYOUT``; stride 1 with h*w >= 8, the default there): ``(C, k*k, h, w)``
  as they are. The kernel reads each tap's weights and input as one run over the whole plane
  (vectors cross row ends), so every vector lane is used whatever the width.
- ``"c_h_kk_w8"`` (``LAYOUT``; stride 2, and every layer of layout-version-1 files):
  ``(C, h, k*k, wpad)``, ``wpad = round_up(w, 8)``, columns ``>= w`` zero: for each output row
  the k*k weight vectors of a block of columns are contiguous.

In both, the weight of every tap that falls outside the input image (it multiplies the zero
padding) is zero: the kernel relies on it to read the input in place, where such a tap reads
the neighbouring row (or plane). Storage ``float32``, ``float16`` or ``int8`` with one float32
scale per (channel, tap) (symmetric, max-abs / 127). Bias: per channel ``(C,)`` or per pixel
``(C, h, wpad)`` (rows) / ``(C, h, w)`` (flat). The layout's name is an attribute of every node
and is checked by the library; fused files import the ``edgeconv`` opset at version 2
(``edgeconv.kernels.OP_VERSION``), which libraries that read only the rows layout (version 1)
leave to the nodes' function bodies.
"""

from __future__ import annotations

import numpy as np

LAYOUT = "c_h_kk_w8"
FLAT_LAYOUT = "c_kk_hw"
LAYOUTS = (LAYOUT, FLAT_LAYOUT)
WIDTH_ALIGN = 8
WEIGHT_DTYPES = ("float32", "float16", "int8")
#: what an export stores fused layers' per-pixel weights as when the user names none:
#: float16 halves the file and the weight stream (docs/default_export_speed.md: ORT 1.64x vs
#: 1.57x MB x1.0 depthwise max FPS, net peak memory 0.81x vs 1.06x; LiteRT 1.72x vs 1.49x,
#: 0.91x vs 1.16x) at a parity of ~1e-5 on the embedding; the kernel computes in float32
DEFAULT_WEIGHT_DTYPE = "float16"
ACTIVATIONS = ("none", "relu", "relu6")


def padded_width(w: int) -> int:
    return (int(w) + WIDTH_ALIGN - 1) // WIDTH_ALIGN * WIDTH_ALIGN


def out_hw(in_hw, kernel_size: int, stride: int) -> tuple[int, int]:
    p = kernel_size // 2
    return tuple((int(n) + 2 * p - kernel_size) // stride + 1 for n in in_hw)


def outside_taps(in_hw, kernel_size: int, stride: int) -> np.ndarray:
    """(k*k, h, w) bool: tap t of output (i, j) reads outside the (unpadded) input."""
    k, s, p = kernel_size, stride, kernel_size // 2
    h, w = out_hw(in_hw, k, s)
    rows = np.arange(h)[:, None] * s + np.arange(k)[None, :] - p  # (h, k): input row of (i, u)
    cols = np.arange(w)[:, None] * s + np.arange(k)[None, :] - p  # (w, k)
    rbad = (rows < 0) | (rows >= in_hw[0])
    cbad = (cols < 0) | (cols >= in_hw[1])
    bad = rbad.T[:, None, :, None] | cbad.T[None, :, None, :]  # (u, v, h, w)
    return bad.reshape(k * k, h, w)


def _checked_weight(weight: np.ndarray, in_hw, stride: int, dtype: str) -> np.ndarray:
    """(C, k*k, h, w) float64 with the taps that read the zero padding zeroed; every layout's
    checks (dtype name, rank, k, output size) in one place."""
    if dtype not in WEIGHT_DTYPES:
        raise ValueError(f"weight dtype must be one of {WEIGHT_DTYPES}, got {dtype!r}")
    weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim != 4:
        raise ValueError(f"weight must be (C, k*k, h, w), got shape {weight.shape}")
    _, kk, h, w = weight.shape
    k = int(round(kk ** 0.5))
    if k * k != kk or out_hw(in_hw, k, stride) != (h, w):
        raise ValueError(f"weight {weight.shape} does not fit input {tuple(in_hw)}, stride {stride}")
    return np.where(outside_taps(in_hw, k, stride)[None], 0.0, weight)


def _stored(packed: np.ndarray, dtype: str, grid_axes: tuple):
    """(packed in ``dtype``, float32 scales or None): int8 is symmetric with one scale per
    (channel, tap) = max-abs over the output grid (``grid_axes``) / 127."""
    if dtype == "float32":
        return packed.astype(np.float32), None
    if dtype == "float16":
        return packed.astype(np.float16), None
    amax = np.abs(packed).max(axis=grid_axes, keepdims=True)
    scales = np.where(amax > 0, amax / 127.0, 1.0)
    q = np.clip(np.rint(packed / scales), -127, 127).astype(np.int8)
    return q, np.squeeze(scales, axis=grid_axes).astype(np.float32)


def layout_for(stride: int, out_hw) -> str:
    """The layout an export writes for a layer: flat at stride 1 where the plane holds at least
    one vector of outputs (docs/default_export_speed.md has the measurements), else rows."""
    h, w = (int(n) for n in out_hw)
    return FLAT_LAYOUT if int(stride) == 1 and h * w >= WIDTH_ALIGN else LAYOUT


def _known_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


def _check_layout(layout: str, stride: int, out_hw) -> None:
    _known_layout(layout)
    if layout == FLAT_LAYOUT and (int(stride) != 1 or out_hw[0] * out_hw[1] < WIDTH_ALIGN):
        raise ValueError(f"layout {FLAT_LAYOUT!r} needs stride 1 and h*w >= {WIDTH_ALIGN}")


def pack_weights(weight: np.ndarray, in_hw, stride: int, dtype: str = "float32",
                 layout: str | None = None):
    """(C, k*k, h, w) float -> (packed, scales (C, k*k) float32 or None); packed is
    (C, h, k*k, wpad) in ``LAYOUT``, (C, k*k, h, w) in ``FLAT_LAYOUT`` (default:
    :func:`layout_for`)."""
    weight = _checked_weight(weight, in_hw, stride, dtype)
    c, kk, h, w = weight.shape
    layout = layout or layout_for(stride, (h, w))
    _check_layout(layout, stride, (h, w))
    if layout == FLAT_LAYOUT:
        return _stored(np.ascontiguousarray(weight), dtype, (2, 3))
    packed = np.zeros((c, h, kk, padded_width(w)), np.float64)
    packed[..., :w] = weight.transpose(0, 2, 1, 3)
    return _stored(packed, dtype, (1, 3))


def unpack_weights(packed: np.ndarray, scales: np.ndarray | None, w: int,
                   layout: str) -> np.ndarray:
    """The float32 (C, k*k, h, w) weights a packed tensor in ``layout`` stands for
    (dequantised). ``layout`` has no default: the packing's default depends on the layer."""
    _known_layout(layout)
    vals = packed.astype(np.float32)
    if layout == FLAT_LAYOUT:
        if scales is not None:
            vals = vals * scales.astype(np.float32)[:, :, None, None]
        return np.ascontiguousarray(vals)
    if scales is not None:
        vals = vals * scales.astype(np.float32)[:, None, :, None]
    return np.ascontiguousarray(vals[..., :w].transpose(0, 2, 1, 3))


def pack_bias(bias: np.ndarray | None, channels: int, h: int, w: int,
              layout: str) -> np.ndarray | None:
    """None, (C,) / (C,1,1) per channel, or (C, h, w) per pixel -> the kernel's bias tensor
    (per pixel: (C, h, wpad) in ``LAYOUT``, (C, h, w) in ``FLAT_LAYOUT``)."""
    _known_layout(layout)
    if bias is None:
        return None
    b = np.asarray(bias, np.float32).reshape(channels, -1)
    if b.shape[1] == 1:
        return np.ascontiguousarray(b[:, 0])
    b = b.reshape(channels, h, w)
    if layout == FLAT_LAYOUT:
        return np.ascontiguousarray(b)
    out = np.zeros((channels, h, padded_width(w)), np.float32)
    out[..., :w] = b
    return out


# --- NHWC layout (the LiteRT delegate's kernel) -------------------------------------------

#: Packed NHWC weight layout: (h, w, k*k, C), C contiguous; taps outside the input zeroed.
NHWC_LAYOUT = "h_w_kk_c"


def pack_weights_nhwc(weight: np.ndarray, in_hw, stride: int, dtype: str = "float32"):
    """(C, k*k, h, w) float -> (packed (h, w, k*k, C), scales (k*k, C) float32 or None).

    int8: symmetric, one scale per (tap, channel) = max-abs over the output grid / 127.
    """
    weight = _checked_weight(weight, in_hw, stride, dtype)
    packed = np.ascontiguousarray(weight.transpose(2, 3, 1, 0))  # (h, w, kk, C)
    return _stored(packed, dtype, (0, 1))


def unpack_weights_nhwc(packed: np.ndarray, scales: np.ndarray | None) -> np.ndarray:
    """The float32 (C, k*k, h, w) weights an NHWC-packed tensor stands for (dequantised)."""
    vals = np.asarray(packed).astype(np.float32)
    if scales is not None:
        vals = vals * np.asarray(scales, np.float32)[None, None]
    return np.ascontiguousarray(vals.transpose(3, 2, 0, 1))


def pack_bias_nhwc(bias: np.ndarray | None, channels: int, h: int, w: int) -> np.ndarray | None:
    """None, (C,) / (C,1,1) per channel, or (C, h, w) per pixel -> (C,) or (h, w, C) float32."""
    if bias is None:
        return None
    b = np.asarray(bias, np.float32).reshape(channels, -1)
    if b.shape[1] == 1:
        return np.ascontiguousarray(b[:, 0])
    return np.ascontiguousarray(b.reshape(channels, h, w).transpose(1, 2, 0))
