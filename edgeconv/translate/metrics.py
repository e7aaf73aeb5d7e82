"""Translation quality against the ground-truth pair the synthetic generator renders (numpy).

``l1`` (mean absolute difference in [0, 255] levels), ``psnr`` (dB, peak 255) and ``ssim``
(Wang et al. 2004: 7x7 uniform windows, C1 = (0.01 L)^2, C2 = (0.03 L)^2, on luminance) of
uint8 (N, H, W, C) image batches; :func:`evaluate_translation` renders unseen identities in
both domains and scores a translation direction next to the trivial baseline a practitioner
would try first (NIR -> RGB: the NIR image as grey RGB; RGB -> NIR: RGB converted to grey).
"""

from __future__ import annotations

import numpy as np

from edgeconv.errors import EdgeconvError

#: unseen identities for translation evaluation start here (beyond any training range)
EVAL_IDENTITY_OFFSET = 1 << 29


def _check(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 4:
        raise EdgeconvError(f"image batches must be (N, H, W, C) of equal shape, got "
                            f"{a.shape} and {b.shape}")
    return a.astype(np.float64), b.astype(np.float64)


def l1(a, b) -> np.ndarray:
    a, b = _check(a, b)
    return np.abs(a - b).mean(axis=(1, 2, 3))


def psnr(a, b) -> np.ndarray:
    a, b = _check(a, b)
    mse = ((a - b) ** 2).mean(axis=(1, 2, 3))
    with np.errstate(divide="ignore"):
        return np.where(mse == 0, np.inf, 10.0 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-12)))


def _box(x, k):
    """Mean over k x k windows (valid), batched over the first axis."""
    c = np.cumsum(np.cumsum(np.pad(x, ((0, 0), (1, 0), (1, 0))), axis=1), axis=2)
    s = c[:, k:, k:] - c[:, :-k, k:] - c[:, k:, :-k] + c[:, :-k, :-k]
    return s / (k * k)


def ssim(a, b, window: int = 7) -> np.ndarray:
    a, b = _check(a, b)
    lum = np.array([0.299, 0.587, 0.114]) if a.shape[-1] == 3 else np.ones(1)
    x, y = a @ lum / lum.sum(), b @ lum / lum.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = _box(x, window), _box(y, window)
    vx = _box(x * x, window) - mx ** 2
    vy = _box(y * y, window) - my ** 2
    cxy = _box(x * y, window) - mx * my
    m = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return m.mean(axis=(1, 2))


def scores(pred, truth) -> dict:
    return {"l1": float(l1(pred, truth).mean()), "psnr": float(np.mean(psnr(pred, truth))),
            "ssim": float(ssim(pred, truth).mean())}


def evaluate_translation(translate, size: int, n: int = 64, seed: int = 0,
                         difficulty: float = 0.5, direction: str = "nir2rgb") -> dict:
    """Scores of ``translate`` (uint8 NHWC -> uint8 NHWC) and of the trivial baseline on ``n``
    unseen identities rendered in both domains (ground-truth pairs)."""
    from edgeconv.data.synthetic import SyntheticFaces

    ids = np.arange(n) + EVAL_IDENTITY_OFFSET
    idx = np.zeros(n, dtype=np.int64)
    kw = dict(num_identities=1, images_per_identity=1, size=(size, size), seed=seed,
              difficulty=difficulty)
    rgb = SyntheticFaces(**kw).render_batch(ids, idx)
    nir = SyntheticFaces(**kw, sensor="nir").render_batch(ids, idx)
    src, truth = (nir, rgb) if direction == "nir2rgb" else (rgb, nir)
    grey = np.repeat(np.round(src.astype(np.float64) @ np.array([0.299, 0.587, 0.114]))
                     .clip(0, 255).astype(np.uint8)[..., None], 3, axis=-1)
    return {"direction": direction, "identities": n, "translation": scores(translate(src), truth),
            "baseline": scores(grey, truth), "baseline_name": "grey copy of the input"}
