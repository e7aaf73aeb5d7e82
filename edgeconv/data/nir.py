"""A near-infrared (NIR) sensor model for the synthetic faces: the second domain of issue #12.

The same identity and the same nuisance (pose, expression, lighting, accessories) rendered as
a monochrome NIR camera would see them, so every NIR image has a ground-truth RGB pair
(``SyntheticFaces(..., sensor="nir")`` renders identity ``i`` image ``j`` as the NIR view of
the RGB image ``(i, j)``). What differs, as in real 850 nm imagery:

* skin reflects strongly in NIR and melanin absorbs little: faces are bright and skin tone
  nearly disappears;
* hair and irises are lighter than in RGB (dark eyes turn mid-grey), brows lose contrast;
* lips lose their red: they are barely darker than skin;
* many dark sunglass lenses are transparent in NIR: the eyes show through;
* the active illuminator lights the face more than the background, which falls off darker;
* one channel (returned replicated to three, for the RGB pipeline), its own sensor noise and
  a vignette.

Applied to the trait and nuisance tables before rendering (element-wise, so a NIR image is
as independent of its batch as an RGB one) and to the pixels after it. Torch-free.
"""

from __future__ import annotations

import numpy as np

SENSORS = ("rgb", "nir")
#: sensor noise standard deviation (8-bit levels) and vignette strength
NIR_NOISE = 4.0
NIR_VIGNETTE = 0.18


def check_sensor(sensor: str) -> str:
    from edgeconv.errors import EdgeconvError

    s = str(sensor).lower()
    if s not in SENSORS:
        raise EdgeconvError(f"sensor must be one of {', '.join(SENSORS)}, got {sensor!r}")
    return s


def _lum(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114])


def _grey(v: np.ndarray) -> np.ndarray:
    return np.repeat(np.clip(v, 0.0, 255.0)[..., None], 3, axis=-1)


def nir_tables(t: dict, p: dict) -> tuple[dict, dict]:
    """Copies of the identity traits ``t`` and image nuisance ``p`` with NIR responses."""
    t, p = dict(t), dict(p)
    t["skin"] = _grey(168.0 + 0.22 * _lum(t["skin"]))              # bright, tone compressed
    t["hair"] = _grey(70.0 + 0.55 * _lum(t["hair"]))               # melanin: lighter in NIR
    t["iris"] = _grey(115.0 + 0.35 * _lum(t["iris"]))              # dark eyes turn mid-grey
    t["brow_dark"] = t["brow_dark"] * 0.6
    t["lip_red"] = t["lip_red"] * 0.25
    p["bg"] = _grey(0.45 * _lum(p["bg"]))                          # illuminator falloff
    p["glasses_c"] = _grey(_lum(p["glasses_c"]))
    p["cap_c"] = _grey(40.0 + 0.7 * _lum(p["cap_c"]))
    p["sunglasses"] = np.zeros_like(p["sunglasses"])               # lenses transparent
    return t, p


def nir_pixels(rgb: np.ndarray, noise_keys: np.ndarray) -> np.ndarray:
    """uint8 (B, H, W, 3) render -> the sensor's monochrome image, replicated to 3 channels.

    ``noise_keys``: one uint64 per image (from the image's own hash), so the noise of an image
    does not depend on what else is in the batch.
    """
    b, h, w, _ = rgb.shape
    y = _lum(rgb.astype(np.float64))
    yy, xx = np.mgrid[0:h, 0:w]
    r2 = ((yy - (h - 1) / 2) / (h / 2)) ** 2 + ((xx - (w - 1) / 2) / (w / 2)) ** 2
    y = y * (1.0 - NIR_VIGNETTE * r2 / 2.0)[None]
    noise = np.stack([np.random.default_rng(int(k)).standard_normal((h, w))
                      for k in noise_keys])
    y = np.clip(np.round(y + NIR_NOISE * noise), 0, 255).astype(np.uint8)
    return np.repeat(y[..., None], 3, axis=-1)
