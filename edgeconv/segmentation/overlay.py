"""Mask overlays and image grids (numpy + Pillow, torch-free).

Colours follow the paper's Fig. 10: ground truth in red, predicted disc in green, predicted
cup in blue (contours, 1 px at 128, thicker for larger images); filled masks can be tinted.
"""

from __future__ import annotations

import numpy as np

GT_COLOUR = (255, 40, 40)
DISC_COLOUR = (40, 255, 60)
CUP_COLOUR = (60, 140, 255)


def contour(mask: np.ndarray, thickness: int = 1) -> np.ndarray:
    """Boolean (H, W) boundary pixels of a boolean mask (4-neighbour erosion, ``thickness``
    times)."""
    m = np.asarray(mask, bool)
    inner = m.copy()
    for _ in range(max(1, thickness)):
        p = np.pad(inner, 1, constant_values=False)
        inner = inner & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return m & ~inner


def _paint(img: np.ndarray, where: np.ndarray, colour) -> None:
    img[where] = np.asarray(colour, np.uint8)


def overlay(image: np.ndarray, pred: np.ndarray | None = None, gt: np.ndarray | None = None,
            tint: bool = False) -> np.ndarray:
    """uint8 (H, W, 3) image with the contours of ``pred`` / ``gt`` ((2, H, W) [cup, disc])
    drawn on it (ground truth red; prediction: disc green, cup blue). ``tint`` also shades the
    predicted disc rim and cup."""
    out = np.array(image, dtype=np.uint8, copy=True)
    th = max(1, round(min(out.shape[:2]) / 160))
    if pred is not None and tint:
        p = np.asarray(pred, bool)
        f = out.astype(np.float32)
        for m, col in ((p[1] & ~p[0], DISC_COLOUR), (p[0], CUP_COLOUR)):
            f[m] = 0.6 * f[m] + 0.4 * np.asarray(col, np.float32)
        out = np.clip(f, 0, 255).astype(np.uint8)
    if gt is not None:
        g = np.asarray(gt, bool)
        _paint(out, contour(g[1], th) | contour(g[0], th), GT_COLOUR)
    if pred is not None:
        p = np.asarray(pred, bool)
        _paint(out, contour(p[1], th), DISC_COLOUR)
        _paint(out, contour(p[0], th), CUP_COLOUR)
    return out


def grid(rows: list[list[np.ndarray]], pad: int = 4, fill: int = 255) -> np.ndarray:
    """Tile equal-sized uint8 (H, W, 3) images row by row (rows may differ in length)."""
    h, w = rows[0][0].shape[:2]
    ncol = max(len(r) for r in rows)
    out = np.full((len(rows) * (h + pad) + pad, ncol * (w + pad) + pad, 3), fill, np.uint8)
    for i, row in enumerate(rows):
        for j, im in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[y:y + h, x:x + w] = im
    return out


def mask_to_png_array(mask: np.ndarray) -> np.ndarray:
    """(2, H, W) [cup, disc] -> (H, W) uint8 in the REFUGE encoding edgeconv reads back:
    0 = cup, 128 = disc rim, 255 = background (``edgeconv.segmentation.data``)."""
    m = np.asarray(mask, bool)
    out = np.full(m.shape[1:], 255, np.uint8)
    out[m[1]] = 128
    out[m[0] & m[1]] = 0
    return out
