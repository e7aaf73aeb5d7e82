"""The fused kernel's weight layout (numpy, torch-free): what ``--formulation fused`` writes.

Folded TVConv weights ``(C, k*k, h, w)`` (tap t = u*k + v, output grid) become
``(C, h, k*k, wpad)``, ``wpad = round_up(w, 8)``, columns ``>= w`` zero: for each output row
the k*k weight vectors of a block of columns are contiguous, which is how the kernel streams
them. The weight of every tap that falls outside the input image (it multiplies the zero
padding) is zero too: the kernel relies on it to read interior rows straight from the input,
where such a tap reads the neighbouring row. Storage ``float32``, ``float16`` or ``int8`` with one float32 scale per (channel, tap)
(symmetric, max-abs / 127). Bias: per channel ``(C,)`` or per pixel ``(C, h, wpad)``.
The layout's name (``LAYOUT``) is an attribute of every node and is checked by the library.
"""

from __future__ import annotations

import numpy as np

LAYOUT = "c_h_kk_w8"
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


def pack_weights(weight: np.ndarray, in_hw, stride: int, dtype: str = "float32"):
    """(C, k*k, h, w) float -> (packed (C, h, k*k, wpad), scales (C, k*k) float32 or None)."""
    weight = _checked_weight(weight, in_hw, stride, dtype)
    c, kk, h, w = weight.shape
    packed = np.zeros((c, h, kk, padded_width(w)), np.float64)
    packed[..., :w] = weight.transpose(0, 2, 1, 3)
    return _stored(packed, dtype, (1, 3))


def unpack_weights(packed: np.ndarray, scales: np.ndarray | None, w: int) -> np.ndarray:
    """The float32 (C, k*k, h, w) weights a packed tensor stands for (dequantised)."""
    vals = packed.astype(np.float32)
    if scales is not None:
        vals = vals * scales.astype(np.float32)[:, None, :, None]
    return np.ascontiguousarray(vals[..., :w].transpose(0, 2, 1, 3))


def pack_bias(bias: np.ndarray | None, channels: int, h: int, w: int) -> np.ndarray | None:
    """None, (C,) / (C,1,1) per channel, or (C, h, w) per pixel -> the kernel's bias tensor."""
    if bias is None:
        return None
    b = np.asarray(bias, np.float32).reshape(channels, -1)
    if b.shape[1] == 1:
        return np.ascontiguousarray(b[:, 0])
    b = b.reshape(channels, h, w)
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
