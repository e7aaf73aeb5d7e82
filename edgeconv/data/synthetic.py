"""Procedural aligned faces: the built-in data set behind ``--data synthetic``.

No real face data can be downloaded here, so the toolkit ships a deterministic
generator whose images share the statistics that make real *aligned* faces
"layout-specific" (TVConv paper, Fig. 1): every image has the same coarse layout
(hair on top, then forehead, brows, eyes, nose, mouth, chin), so the variance
*within* an image (across positions) is large while the variance *across* images at
a fixed position is small.  ``layout_statistics`` measures exactly that.

Identities are defined by layout-bound traits: face outline (width, forehead and
chin length, jaw squareness), skin tone, hair colour / hairline / parting / volume /
length, ear size, eye position / size / tilt / iris colour, brow position / length /
thickness / arch / slant, nose length / width, mouth position / width / lips,
facial hair, moles and a scar.  Every image then adds nuisance variation: a small
similarity transform (rotation, shift, scale of a few pixels), a little yaw,
illumination (gain, gradient, colour cast, side shading), expression (mouth
open / smile, brow raise, blinks, gaze), hair messiness, background colour and
clutter, occasional glasses / sunglasses / cap / a hand-like blob, blur and noise.

``difficulty`` (0 = easy ... 1 = hard, default 0.5) shrinks the spread of identity
traits around the population mean and enlarges the nuisance, so identity
differences become subtle relative to per-image variation.

Determinism: every random number is a counter-based hash of ``(seed, identity,
image index, stream)`` (SplitMix64), transcendental functions of parameters go
through libm element by element, and feature bounding boxes are conservative, so
``render(identity, index)`` is bit-identical whatever the order or batch in which it
is rendered (tested).  Rendering is vectorised over blocks of images (numpy
broadcasting over a coordinate grid, pooled scratch buffers); measured about 500-700
images per CPU-second at 96x96 on a busy shared 2-core VM (10k images: ~15 s of CPU),
and :meth:`SyntheticFaces.render_many` can fan out to worker processes on machines
with 4+ cores.

Difficulty reference (2000 verification pairs at 96x96, 10-fold accuracy of raw-pixel
cosine similarity): 0.0 -> ~83 %, 0.5 -> ~70 %, 1.0 -> ~62 %.  A 4-block CNN
(~0.3 M parameters) trained for 6 epochs on 400 identities x 20 images at the default
0.5 reached ~94 % (EER ~6 %, TAR@FAR=1e-3 ~41 %): learnable, not saturated.

Public API::

    ds = SyntheticFaces(num_identities=500, images_per_identity=20, size=(96, 96),
                        seed=0, difficulty=0.5)
    len(ds); img, label = ds[i]                     # uint8 (H, W, 3), int
    ds.render(identity, index); ds.render_batch(identities, indices)
    ds.materialize()                                # all images, uint8 (N, H, W, 3)
    left, right, is_same = ds.make_pairs(3000, seed=1)   # identities disjoint from training
"""

from __future__ import annotations

import math
import os
import sys
import threading

import numpy as np

from edgeconv.errors import EdgeconvError

#: Identity ids used for verification pairs start here by default, far beyond any
#: training range, so pairs never share an identity with a training set of the same seed.
VALIDATION_IDENTITY_OFFSET = 1 << 30

_DIFFICULTY_NAMES = {"easy": 0.2, "medium": 0.5, "hard": 0.8}

# Streams: independent hash streams for identity traits, per-image nuisance, pairs, banks.
_STREAM_IDENTITY = 0x1D
_STREAM_IMAGE = 0x1A6E
_STREAM_PAIRS = 0x9A125
_STREAM_BANK = 0xBA4C
_STREAM_NIR = 0x41E

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a uint64 array (wrapping arithmetic)."""
    z = np.array(z, dtype=np.uint64, ndmin=1)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _libm(fn):
    """Element-wise libm function: bit-identical for a value wherever it sits in an array
    (numpy's SIMD transcendental kernels may differ by an ulp from their scalar tails,
    which would make an image depend on the batch it was rendered in)."""
    vf = np.frompyfunc(fn, 1, 1)

    def f(x):
        return np.asarray(vf(np.asarray(x, dtype=np.float64)), dtype=np.float64)

    return f


_log, _cos, _sin, _exp = (_libm(f) for f in (math.log, math.cos, math.sin, math.exp))


def _keys(*parts) -> np.ndarray:
    """Hash integer arrays/scalars (broadcast together) into one uint64 key per element."""
    arrays = np.broadcast_arrays(*[np.asarray(p, dtype=np.int64) for p in parts])
    key = np.zeros(arrays[0].shape, dtype=np.uint64).reshape(-1)
    with np.errstate(over="ignore"):
        for a in arrays:
            key = _mix(key * _GOLDEN + a.reshape(-1).astype(np.uint64) + _GOLDEN)
    return key.reshape(arrays[0].shape)


class _Draw:
    """Sequential access to per-element uniform numbers derived from hash keys."""

    def __init__(self, keys: np.ndarray, n: int):
        ctr = (np.arange(1, n + 1, dtype=np.uint64) * _GOLDEN)[None, :]
        z = _mix(keys[:, None] ^ ctr)
        self._u = ((z >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / 2**53)
        self._i = 0

    def u(self, lo=0.0, hi=1.0) -> np.ndarray:
        col = self._u[:, self._i]
        self._i += 1
        return lo + (hi - lo) * col

    def n(self, clip: float = 3.0) -> np.ndarray:
        """Standard normal (Box-Muller), clipped to +-clip."""
        u1, u2 = self.u(), self.u()
        z = np.sqrt(-2.0 * _log(u1)) * _cos(2.0 * np.pi * u2)
        return np.clip(z, -clip, clip)

    def bern(self, p) -> np.ndarray:
        return self.u() < p


def _parse_difficulty(difficulty) -> float:
    if isinstance(difficulty, str):
        key = difficulty.strip().lower()
        if key in _DIFFICULTY_NAMES:
            return _DIFFICULTY_NAMES[key]
        try:
            difficulty = float(key)
        except ValueError:
            raise EdgeconvError(
                f"difficulty must be a number in [0, 1] or one of "
                f"{', '.join(_DIFFICULTY_NAMES)}, got {difficulty!r}") from None
    d = float(difficulty)
    if not (0.0 <= d <= 1.0) or math.isnan(d):
        raise EdgeconvError(f"difficulty must be in [0, 1], got {difficulty!r}")
    return d


def _parse_size(size) -> tuple[int, int]:
    from edgeconv.config import parse_input_size

    return parse_input_size(size)


# ----------------------------------------------------------------------------- palettes
_SKIN_LIGHT = np.array([236.0, 204.0, 180.0])
_SKIN_DARK = np.array([96.0, 64.0, 48.0])
_HAIR = np.array([[22, 18, 16], [58, 38, 26], [102, 70, 42], [166, 128, 80],
                  [210, 178, 120], [140, 62, 32], [150, 150, 150]], dtype=np.float64)
_HAIR_P = np.array([0.30, 0.26, 0.16, 0.10, 0.07, 0.06, 0.05])
_IRIS = np.array([[60, 38, 22], [96, 64, 36], [70, 110, 150], [90, 120, 80],
                  [110, 110, 120]], dtype=np.float64)
_IRIS_P = np.array([0.40, 0.25, 0.15, 0.10, 0.10])


def _pick(u: np.ndarray, palette: np.ndarray, probs: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(np.cumsum(probs) / probs.sum(), u, side="right")
    return palette[np.minimum(idx, len(palette) - 1)]


def _identity_traits(seed: int, identities: np.ndarray, d: float) -> dict:
    """Identity traits (face units: half the shorter image side = 1, v points down)."""
    r = _Draw(_keys(seed, _STREAM_IDENTITY, identities), 160)
    sp = 1.0 - 0.6 * d  # spread of traits around the population mean
    t = {}
    t["face_cy"] = 0.10 + 0.025 * sp * r.n()
    t["face_a"] = 0.64 + 0.05 * sp * r.n()
    t["face_bu"] = 0.80 + 0.05 * sp * r.n()
    t["face_bl"] = 0.78 + 0.06 * sp * r.n()
    t["jaw"] = np.clip(0.35 + 0.35 * sp * r.n(), -0.2, 0.9)
    # skin tone 0 (light) .. 1 (dark); most identities light-to-medium as in CASIA-WebFace
    tone = np.clip(0.3 + (0.12 + 0.08 * sp) * r.n(), 0.0, 1.0)
    skin = _SKIN_LIGHT[None] * (1 - tone[:, None]) + _SKIN_DARK[None] * tone[:, None]
    skin = skin * (1.0 + 0.04 * sp * r.n())[:, None] + 5.0 * sp * np.stack([r.n(), r.n(), r.n()], 1)
    t["skin"] = skin
    hair = _pick(r.u(), _HAIR, _HAIR_P) * (1.0 + 0.12 * r.n())[:, None] \
        + 5.0 * np.stack([r.n(), r.n(), r.n()], 1)
    t["hair"] = np.clip(hair, 5, 240)
    t["hairline"] = -0.50 + 0.09 * sp * r.n()          # v of the hairline at the centre
    t["hair_curve"] = 0.32 + 0.16 * sp * r.n()         # drop of the hairline at the temples
    t["hair_part"] = 0.22 * sp * r.n()                 # asymmetry of the fringe
    t["hair_vol"] = 0.05 + 0.05 * r.u()                # extra size of the hair mass
    long_hair = r.bern(0.35)
    t["hair_len"] = np.where(long_hair, 0.55 + 0.35 * r.u(), 0.02 + 0.12 * r.u())
    bald = r.bern(0.06)
    t["hairline"] = np.where(bald, -1.2, t["hairline"])
    t["hair_len"] = np.where(bald, -9.0, t["hair_len"])  # no hair mass
    t["ear_y"] = 0.02 + 0.04 * sp * r.n()
    t["ear_s"] = 1.0 + 0.15 * sp * r.n()
    t["eye_y"] = -0.02 + 0.035 * sp * r.n()
    t["eye_dx"] = 0.27 + 0.025 * sp * r.n()
    t["eye_rx"] = 0.105 + 0.012 * sp * r.n()
    t["eye_ry"] = 0.048 + 0.008 * sp * r.n()
    t["eye_tilt"] = 0.12 * sp * r.n()
    t["iris_r"] = 0.042 + 0.005 * sp * r.n()
    t["iris"] = _pick(r.u(), _IRIS, _IRIS_P)
    t["brow_gap"] = 0.115 + 0.022 * sp * r.n()
    t["brow_len"] = 0.125 + 0.02 * sp * r.n()
    t["brow_th"] = 0.024 + 0.007 * sp * r.n()
    t["brow_arch"] = 0.03 + 0.015 * sp * r.n()
    t["brow_slant"] = 0.12 * sp * r.n()
    t["brow_dark"] = np.clip(0.55 + 0.15 * r.n(), 0.25, 0.9)
    t["nose_len"] = 0.26 + 0.035 * sp * r.n()          # v of the nose tip
    t["nose_w"] = 0.085 + 0.014 * sp * r.n()
    t["mouth_y"] = 0.49 + 0.035 * sp * r.n()
    t["mouth_w"] = 0.175 + 0.022 * sp * r.n()
    t["lip_th"] = 0.032 + 0.009 * sp * r.n()
    t["lip_red"] = np.clip(0.35 + 0.12 * r.n(), 0.1, 0.7)
    beard = r.bern(0.22)
    t["beard"] = np.where(beard, 0.35 + 0.5 * r.u(), 0.0)
    t["moustache"] = np.where(r.bern(0.5), t["beard"], 0.0) + np.where(r.bern(0.08), 0.6, 0.0)
    t["glasses_p"] = np.where(r.bern(0.15), 0.8, 0.04)  # some people usually wear glasses
    # Marks: up to 3 moles and one scar.  Fewer and fainter as difficulty grows.
    n_moles = np.searchsorted([0.45, 0.78, 0.94], r.u())
    for k in range(3):
        present = (n_moles > k).astype(np.float64)
        t[f"mole{k}_u"] = r.u(-0.45, 0.45)
        t[f"mole{k}_v"] = r.u(-0.25, 0.72)
        t[f"mole{k}_r"] = r.u(0.014, 0.028)
        t[f"mole{k}_a"] = present * r.u(0.45, 0.85) * (1.0 - 0.4 * d)
    scar = r.bern(0.12 * (1.0 - 0.5 * d)).astype(np.float64)
    t["scar_u0"], t["scar_v0"] = r.u(-0.45, 0.25), r.u(-0.3, 0.55)
    ang = r.u(0, np.pi)
    ln = r.u(0.08, 0.2)
    t["scar_u1"], t["scar_v1"] = t["scar_u0"] + ln * _cos(ang), t["scar_v0"] + ln * _sin(ang)
    t["scar_a"] = scar * r.u(0.3, 0.6)
    return t


def _image_nuisance(seed: int, identities: np.ndarray, indices: np.ndarray, d: float,
                    traits: dict) -> dict:
    r = _Draw(_keys(seed, _STREAM_IMAGE, identities, indices), 160)
    nu = 0.5 + d  # nuisance magnitude
    p = {}
    p["rot"] = np.deg2rad(3.5 * nu) * r.n(2.5)
    p["tx"] = 0.035 * nu * r.n(2.5)
    p["ty"] = 0.035 * nu * r.n(2.5)
    p["scale"] = 1.0 + 0.035 * nu * r.n(2.5)
    p["yaw"] = 0.035 * nu * r.n(2.5)  # inner features shift sideways relative to the outline
    p["gain"] = _exp(0.06 * nu * r.n())
    ang = r.u(0, 2 * np.pi)
    strength = 0.28 * nu * r.u()
    p["grad_x"], p["grad_y"] = strength * _cos(ang), strength * _sin(ang)
    p["side_shade"] = 0.22 * nu * r.u() * np.sign(_cos(ang))  # shadow side of the face
    p["cast"] = _exp(0.045 * nu * np.stack([r.n(), r.n(), r.n()], 1))
    p["mouth_open"] = np.clip(0.45 * nu * r.n(), 0.0, 1.0)
    p["smile"] = np.clip(0.5 * nu * r.n(), -0.6, 1.0)
    p["brow_raise"] = 0.02 * nu * r.n()
    blink = r.bern(0.05 * nu)
    p["eye_open"] = np.where(blink, 0.15, np.clip(1.0 - 0.18 * nu * np.abs(r.n()), 0.4, 1.0))
    p["gaze_x"] = 0.018 * nu * r.n()
    p["gaze_y"] = 0.008 * nu * r.n()
    p["hair_mess"] = 0.025 * nu * r.n()
    grey = 120.0 + 28.0 * r.n()  # muted backgrounds: a grey level plus a little colour
    p["bg"] = grey[:, None] + 15.0 * np.stack([r.n(), r.n(), r.n()], 1)
    p["bg_tex"] = r.u(0.03, 0.15) * nu  # relative texture contrast
    p["rect_x0"], p["rect_y0"] = r.u(-1.6, 1.0), r.u(-1.6, 1.0)  # one clutter rectangle
    p["rect_w"], p["rect_h"] = r.u(0.1, 0.9), r.u(0.1, 0.9)
    p["rect_l"] = _exp(0.35 * r.n())  # brightness factor of the clutter rectangle
    p["glasses"] = r.bern(traits["glasses_p"] * (0.6 + 0.4 * nu)).astype(np.float64)
    p["sunglasses"] = (r.bern(0.03 * nu) & (p["glasses"] > 0)).astype(np.float64)
    p["glasses_c"] = np.stack([r.u(10, 90)] * 3, 1) + np.stack([r.u(0, 40), r.u(0, 20), 0 * r.u()], 1)
    p["cap"] = r.bern(0.04 * nu).astype(np.float64)
    p["cap_y"] = r.u(-0.62, -0.45)
    p["cap_c"] = 255.0 * np.stack([r.u(), r.u(), r.u()], 1)
    p["hand"] = r.bern(0.05 * nu).astype(np.float64)
    p["hand_u"] = r.u(-0.7, 0.7)
    p["hand_v"] = r.u(0.35, 0.95)
    p["hand_tone"] = r.u(0.0, 1.0)
    p["blur"] = np.where(r.bern(0.3 * nu), r.u(0.2, 0.8), 0.0)
    p["noise"] = r.u(1.5, 6.0) * nu
    p["bank_y"], p["bank_x"] = r.u(), r.u()
    return p


# ----------------------------------------------------------------------------- drawing
# Face units: 1 = half the shorter image side.  The face frame is scaled by
# _BASE_SCALE and shifted by _BASE_TY so that the face fills the crop like an aligned
# face (eyes slightly above the centre, chin near the bottom, hair cut at the top).
#
# Memory layout: single-channel maps are (B, h, w); the canvas is channel-major
# (3, B, h, w), so per-pixel alphas broadcast along the leading axis and every numpy
# inner loop runs over whole contiguous rows (broadcasting along a middle axis is
# several times slower).
_BASE_SCALE = 1.25
_BASE_TY = -0.10
_F32 = np.float32


def _col(a) -> np.ndarray:
    """(B,) -> (B,1,1) float32."""
    return np.asarray(a, dtype=_F32).reshape(-1, 1, 1)


def _rgb(a) -> np.ndarray:
    """(B,3) -> (3,B,1,1) float32."""
    return np.ascontiguousarray(np.asarray(a, dtype=_F32).reshape(-1, 3).T).reshape(3, -1, 1, 1)


def _bshape(a, b) -> tuple:
    sa = a.shape if isinstance(a, np.ndarray) else np.shape(a)
    sb = b.shape if isinstance(b, np.ndarray) else np.shape(b)
    if sa == sb or not sb:
        return sa
    if not sa:
        return sb
    if len(sa) != len(sb):
        return np.broadcast_shapes(sa, sb)
    return tuple(x if x != 1 else y for x, y in zip(sa, sb))


class _Scratch:
    """Recycled float32/bool work arrays.

    Allocating fresh temporaries for every batch makes the C allocator return memory
    to the OS and fault it in again (several times slower than the arithmetic on
    some VMs), so the hot paths of the renderer write into pooled buffers.  All
    buffers are handed back by :meth:`release` once a batch is converted to uint8.
    """

    def __init__(self, n1: int):
        self.n1 = n1  # elements in one single-channel full-size batch array
        self._free: dict = {}
        self._used: list = []

    def get(self, shape, dtype=_F32) -> np.ndarray:
        n = 1
        for s in shape:
            n *= s
        size = self.n1 if n <= self.n1 else 3 * self.n1
        if n > size:  # pragma: no cover - shapes never exceed (3, B, H, W)
            return np.empty(shape, dtype)
        key = (dtype, size)
        lst = self._free.get(key)
        buf = lst.pop() if lst else np.empty(size, dtype)
        self._used.append((key, buf))
        return buf[:n].reshape(shape)

    def release(self) -> None:
        for key, buf in self._used:
            self._free.setdefault(key, []).append(buf)
        self._used.clear()

    def clear(self) -> None:
        """Drop the pooled buffers (returns their memory)."""
        self._used.clear()
        self._free.clear()

    # out-of-place ops into pooled arrays
    def mul(self, a, b):
        return np.multiply(a, b, out=self.get(_bshape(a, b)))

    def add(self, a, b):
        return np.add(a, b, out=self.get(_bshape(a, b)))

    def sub(self, a, b):
        return np.subtract(a, b, out=self.get(_bshape(a, b)))

    def sq(self, a):
        return np.multiply(a, a, out=self.get(np.shape(a)))

    def absd(self, a, b):
        """|a - b|"""
        y = self.sub(a, b)
        return np.abs(y, out=y)

    def step(self, x, a, b):
        """clip(x * a + b, 0, 1): an antialiased step written affinely."""
        y = self.mul(x, a)
        y += b
        return np.clip(y, 0.0, 1.0, out=y)

    def gt(self, a, b):
        return np.greater(a, b, out=self.get(_bshape(a, b), np.bool_))

    def blend(self, canvas, alpha, colour) -> None:
        """In place: canvas += alpha * (colour - canvas); canvas (3,B,h,w), alpha (B,h,w)."""
        d = np.subtract(colour, canvas, out=self.get(canvas.shape))
        d *= alpha
        canvas += d


class _Renderer:
    """Draws a batch of faces into a (3, B, H, W) float32 canvas.  Internal.

    Full-frame work is limited to the layers that cover the whole image (background,
    hair, skin); features are drawn inside batch-wide bounding boxes (conservative, so
    an image never depends on the rest of its batch), rare features (glasses, cap,
    hand, facial hair, scar, blur) only on the images that have them, and moles in
    small per-image windows.  Not thread-safe (scratch buffers).
    """

    def __init__(self, size: tuple[int, int], bank_seed: int, max_batch: int):
        self.h, self.w = h, w = size
        self.unit = min(h, w) / 2.0  # pixels per face unit
        self.ys = ((np.arange(h, dtype=_F32) + 0.5 - h / 2) / self.unit).reshape(1, h, 1)
        self.xs = ((np.arange(w, dtype=_F32) + 0.5 - w / 2) / self.unit).reshape(1, 1, w)
        self.W = _Scratch(max_batch * h * w)
        # Noise banks (fixed per seed): random per-image crops give pixel noise and
        # background / hair texture without drawing B*H*W random numbers per image.
        rng = np.random.Generator(np.random.PCG64(int(_keys(bank_seed, _STREAM_BANK))))
        self.fine = rng.standard_normal((2 * h, 2 * w)).astype(_F32)
        cell = max(2, min(h, w) // 12)
        coarse = rng.standard_normal((2 * h // cell + 2, 2 * w // cell + 2))
        ys = np.linspace(0, coarse.shape[0] - 1.001, 2 * h)
        xs = np.linspace(0, coarse.shape[1] - 1.001, 2 * w)
        y0, x0 = ys.astype(int), xs.astype(int)
        fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
        smooth = (coarse[y0][:, x0] * (1 - fy) * (1 - fx) + coarse[y0 + 1][:, x0] * fy * (1 - fx)
                  + coarse[y0][:, x0 + 1] * (1 - fy) * fx + coarse[y0 + 1][:, x0 + 1] * fy * fx)
        smooth /= smooth.std() + 1e-6
        self.smooth = smooth.astype(_F32)

    # -- helpers ------------------------------------------------------------------------------
    def _crops(self, bank: np.ndarray, oy, ox) -> np.ndarray:
        """Per-image (h, w) windows of a (2h, 2w) bank at offsets (oy, ox): (B, h, w)."""
        h, w = self.h, self.w
        out = self.W.get((len(oy), h, w))
        for i, (y, x) in enumerate(zip(oy, ox)):
            out[i] = bank[y:y + h, x:x + w]
        return out

    def _to_pixels(self, p, u, v):
        """Face coords (v absolute, i.e. including face_cy) -> pixel coords (x, y)."""
        a, b = p["_a"], p["_b"]  # scale * cos, scale * sin (see _render)
        tx, ty = p["tx"], p["ty"]
        if np.ndim(u) == 2:
            a, b, tx, ty = a[:, None], b[:, None], tx[:, None], ty[:, None]
        x = (a * u - b * v + tx) * self.unit + (self.w / 2 - 0.5)
        y = (b * u + a * v + ty + _BASE_TY) * self.unit + (self.h / 2 - 0.5)
        return x, y

    def _bbox(self, p, u0, u1, v0, v1, pad: int = 2):
        """(rows, cols) slices covering the face-unit box [u0,u1]x[v0,v1] of every image."""
        z = np.zeros((len(p["rot"]), 4))
        z[:, 0::2] += np.reshape(u0, (-1, 1))
        z[:, 1::2] += np.reshape(u1, (-1, 1))
        vz = np.zeros_like(z)
        vz[:, :2] += np.reshape(v0, (-1, 1))
        vz[:, 2:] += np.reshape(v1, (-1, 1))
        x, y = self._to_pixels(p, z, vz)
        r0 = min(max(int(np.floor(y.min())) - pad, 0), self.h)
        r1 = max(min(int(np.ceil(y.max())) + pad + 1, self.h), r0)
        c0 = min(max(int(np.floor(x.min())) - pad, 0), self.w)
        c1 = max(min(int(np.ceil(x.max())) + pad + 1, self.w), c0)
        return slice(r0, r1), slice(c0, c1)

    @staticmethod
    def _subset(d: dict, idx: np.ndarray) -> dict:
        return {k: v[idx] for k, v in d.items()}

    # -- main ----------------------------------------------------------------------------------
    def render(self, t: dict, p: dict, out: np.ndarray) -> None:
        """Render one batch into ``out`` (uint8 (B, H, W, 3))."""
        try:
            self._render(t, p, out)
        finally:
            self.W.release()

    def _render(self, t, p, out):
        W = self.W
        h, w = self.h, self.w
        k = _col(self.unit * p["scale"] * _BASE_SCALE)  # face units -> pixels
        # Inverse similarity transform: image coords -> face coords (u right, v down),
        # v measured from the face centre (face_cy).
        c, s = _cos(p["rot"]), _sin(p["rot"])
        p["_a"] = p["scale"] * _BASE_SCALE * c  # forward transform, used by _bbox / _moles
        p["_b"] = p["scale"] * _BASE_SCALE * s
        isc = 1.0 / (p["scale"] * _BASE_SCALE)
        X = W.sub(self.xs, _col(p["tx"]))
        Y = W.sub(self.ys, _col(p["ty"] + _BASE_TY))
        U = W.add(W.mul(X, _col(c * isc)), W.mul(Y, _col(s * isc)))
        Vc = W.sub(W.mul(Y, _col(c * isc)), W.mul(X, _col(s * isc)))
        Vc -= _col(t["face_cy"])
        oy = (p["bank_y"] * h).astype(int)
        ox = (p["bank_x"] * w).astype(int)

        canvas, face = self._base(t, p, U, Vc, k, oy, ox)
        self._brows_eyes(t, p, U, Vc, canvas, k)
        self._nose(t, p, U, Vc, canvas, k)
        self._mouth(t, p, U, Vc, canvas, k)
        self._moles(t, p, U, Vc, canvas, k)
        # rare features: drawn on the images that have them only
        for flag, fn in (((t["beard"] > 0) | (t["moustache"] > 0), self._facial_hair),
                         (t["scar_a"] > 0, self._scar),
                         (p["glasses"] > 0, self._glasses),
                         (p["cap"] > 0, self._cap),
                         (p["hand"] > 0, self._hand)):
            idx = np.flatnonzero(flag)
            if len(idx):
                fn(self._subset(t, idx), self._subset(p, idx), idx, U, Vc, canvas, k[idx],
                   face=face, oy=oy[idx], ox=ox[idx])

        # -- illumination, blur, noise -----------------------------------------------------------
        light = W.add(W.mul(self.xs, _col(p["grad_x"] * p["gain"])),
                      W.mul(self.ys, _col(p["grad_y"] * p["gain"])))
        light += _col(p["gain"])
        canvas *= light
        canvas *= _rgb(p["cast"])
        bl = np.flatnonzero(p["blur"] > 0)
        if len(bl):  # 3x3 box blur mixed in with strength p["blur"]
            sub = canvas[:, bl]
            tmp = sub.copy()
            tmp[:, :, 1:-1] += sub[:, :, :-2]
            tmp[:, :, 1:-1] += sub[:, :, 2:]
            tmp[:, :, 1:-1] /= 3
            res = tmp.copy()
            res[:, :, :, 1:-1] += tmp[:, :, :, :-2]
            res[:, :, :, 1:-1] += tmp[:, :, :, 2:]
            res[:, :, :, 1:-1] /= 3
            res -= sub
            res *= _col(p["blur"][bl])
            sub += res
            canvas[:, bl] = sub
        noise = self._crops(self.fine, (oy * 7 + 3) % h, (ox * 5 + 1) % w)  # luminance noise
        noise *= _col(p["noise"])
        noise += _F32(0.5)  # + 0.5: the float -> uint8 cast below truncates
        canvas += noise
        np.clip(canvas, 0.0, 255.0, out=canvas)
        np.copyto(out, canvas.transpose(1, 2, 3, 0), casting="unsafe")

    # -- layers --------------------------------------------------------------------------------
    def _base(self, t, p, U, Vc, k, oy, ox):
        """Background, hair mass, skin (face, neck, ears) and fringe: the full-frame layers,
        composited in one go as per-pixel weights of three colours (background, hair,
        skin), each modulated by a single-channel texture / shading field."""
        W = self.W
        fa, fbu, fbl = _col(t["face_a"]), _col(t["face_bu"]), _col(t["face_bl"])
        # face outline: ellipse above the centre, squarer jaw below
        du = W.mul(U, 1.0 / fa)
        du2 = W.sq(du)
        lower = W.gt(Vc, 0.0)
        dv = W.mul(lower, 1.0 / fbl - 1.0 / fbu)
        dv += 1.0 / fbu
        dv *= Vc
        dv *= dv
        r2 = W.add(du2, dv)
        dv *= du2
        dv *= lower
        dv *= _col(t["jaw"])
        r2 -= dv
        face = W.step(r2, -0.5 * fa * k, 0.5 * fa * k + 0.5)
        # shading: darker towards the rim and on the shadow side (also shades neck/ears)
        shade = np.clip(r2, 0.0, 1.0, out=r2)
        shade *= shade
        shade *= _F32(-0.45)
        shade += _F32(1.0)
        shade -= W.mul(du, _col(p["side_shade"]))
        # hair mass behind the head, hanging down to face_cy + hair_len
        hv = _col(t["hair_vol"] + p["hair_mess"])
        ha, hb = fa + hv + 0.03, fbu + hv
        x = W.sq(W.mul(U, 1.0 / ha))
        x += W.sq(W.mul(Vc, 1.0 / hb))
        back = W.step(x, -0.5 * ha * k, 0.5 * ha * k + 0.5)
        back *= W.step(Vc, -k, _col(t["hair_len"]) * k + 0.5)
        # skin alpha: face, neck, ears
        skin_a = W.get(face.shape)
        skin_a[...] = face
        rs, cs = self._bbox(p, -0.5, 0.5, t["face_cy"] + 0.2, t["face_cy"] + 2.0, pad=1)
        neck = W.step(np.abs(U[:, rs, cs]), -k, 0.36 * fa * k + 0.5)
        neck *= W.step(Vc[:, rs, cs], k, 0.5 - 0.2 * k)
        np.maximum(skin_a[:, rs, cs], neck, out=skin_a[:, rs, cs])
        ear_s = _col(t["ear_s"])
        for side in (-1.0, 1.0):
            rs, cs = self._bbox(p, side * t["face_a"] - 0.15, side * t["face_a"] + 0.15,
                                t["face_cy"] + t["ear_y"] - 0.25, t["face_cy"] + t["ear_y"] + 0.25)
            eu = W.sq(W.mul(W.sub(U[:, rs, cs], side * (fa - 0.01)), 1.0 / (0.085 * ear_s)))
            eu += W.sq(W.mul(W.sub(Vc[:, rs, cs], _col(t["ear_y"])), 1.0 / (0.16 * ear_s)))
            np.maximum(skin_a[:, rs, cs], W.step(eu, -0.04 * k, 0.04 * k + 0.5),
                       out=skin_a[:, rs, cs])
        # fringe: hair inside the face above the hairline
        hl = W.mul(du2, _col(t["hair_curve"]))
        hl += W.mul(du, _col(t["hair_part"] * 0.3))
        hl -= Vc
        fr = W.step(hl, k, _col(t["hairline"] + p["hair_mess"]) * k + 0.5)
        fr *= face
        # weights: bg -> hair mass -> skin -> fringe
        nfr = W.sub(1.0, fr)
        wt = W.sub(1.0, skin_a)
        wt *= nfr
        w_hair = W.mul(wt, back)
        wt -= w_hair       # background weight
        w_hair += fr
        skin_a *= nfr
        skin_a *= shade    # skin weight (shaded)
        # background: tinted luminance = 1 + smooth texture (+ a clutter rectangle)
        x0, y0 = _col(p["rect_x0"]), _col(p["rect_y0"])
        inside = (self.xs > x0) & (self.xs < x0 + _col(p["rect_w"]))
        inside = inside & (self.ys > y0) & (self.ys < y0 + _col(p["rect_h"]))
        lum = self._crops(self.smooth, oy, ox)
        lum *= _col(p["bg_tex"])
        lum += W.mul(inside, _col(p["rect_l"] - 1.0))
        lum += _F32(1.0)
        lum *= wt
        # hair texture: fine luminance noise
        tex = self._crops(self.fine, ox % self.h, oy % self.w)
        tex *= _F32(0.07)
        tex += _F32(1.0)
        tex *= w_hair
        canvas = W.mul(lum, _rgb(p["bg"]))
        canvas += W.mul(tex, _rgb(t["hair"]))
        canvas += W.mul(skin_a, _rgb(t["skin"]))
        return canvas, face

    def _brows_eyes(self, t, p, U, Vc, canvas, k):
        W = self.W
        skin = _rgb(t["skin"])
        yaw = _col(p["yaw"])
        eye_vc = _col(t["eye_y"])
        by = eye_vc - _col(t["brow_gap"] + p["brow_raise"])
        bl, bt = _col(t["brow_len"]), _col(t["brow_th"])
        bd = _col(t["brow_dark"])
        brow_c = _rgb(t["hair"]) * bd + skin * (1 - bd) * 0.5
        erx, ery = _col(t["eye_rx"]), _col(t["eye_ry"] * p["eye_open"])
        iris_r = _col(t["iris_r"])
        iris_k = 0.5 * iris_r * k
        ery_k = 0.5 * ery * k
        lid_c = skin * 0.35
        ey = t["face_cy"] + t["eye_y"]
        for side in (-1.0, 1.0):
            cu = side * t["eye_dx"] + p["yaw"] * 0.7
            rs, cs = self._bbox(p, cu - t["brow_len"] - 0.05, cu + t["brow_len"] + 0.05,
                                ey - t["brow_gap"] - 0.09 - np.abs(p["brow_raise"]), ey + 0.08)
            Ub, Vb, cb = U[:, rs, cs], Vc[:, rs, cs], canvas[:, :, rs, cs]
            # brow: a thick arc, thicker towards the nose
            x = W.mul(W.sub(Ub, side * _col(t["eye_dx"]) + yaw * 0.6), 1.0 / bl)
            x2 = W.sq(x)
            arc = W.mul(x2, _col(t["brow_arch"]))
            arc += W.mul(x, -side * _col(t["brow_slant"]) * bl)
            arc += by - _col(t["brow_arch"])
            thick = W.mul(x, -0.35 * side * bt)
            thick += bt
            thick -= np.abs(W.sub(Vb, arc), out=arc)
            m = W.step(thick, k, 0.5)
            m *= W.step(x2, -0.2 * bl * k, 0.2 * bl * k + 0.5)
            W.blend(cb, m, brow_c)
            # eye: sclera (tilted ellipse), iris, pupil, upper-lid line
            dx = W.sub(Ub, side * _col(t["eye_dx"]) + yaw * 0.8)
            x = W.mul(dx, 1.0 / erx)
            y = W.mul(dx, side * _col(t["eye_tilt"]))
            y += Vb
            y -= eye_vc
            y *= 1.0 / ery
            r2e = W.add(W.sq(x), W.sq(y))
            sclera = W.step(r2e, -ery_k, ery_k + 0.5)
            ix_ = W.sub(dx, _col(p["gaze_x"]) + yaw * 0.3)
            iy_ = W.sub(Vb, eye_vc + _col(p["gaze_y"]))
            ir2 = W.add(W.sq(ix_), W.sq(iy_))
            ir2 *= 1.0 / (iris_r * iris_r)
            iris = W.step(ir2, -iris_k, iris_k + 0.5)
            iris *= sclera
            pupil = W.step(ir2, -iris_k, 0.3 * iris_k + 0.5)
            pupil *= sclera
            W.blend(cb, sclera, _F32(232.0))
            W.blend(cb, iris, _rgb(t["iris"]))
            W.blend(cb, pupil, _F32(15.0))
            # lid: |y*ery - top + 0.01| < 0.02 with top = -ery*sqrt(1 - x^2)
            top = W.sq(x)
            np.subtract(1.0, top, out=top)
            np.clip(top, 0.0, 1.0, out=top)
            np.sqrt(top, out=top)
            top *= ery
            top += W.mul(y, ery)
            top += _F32(0.01)
            lid = W.step(np.abs(top, out=top), -k, 0.02 * k + 0.5)
            lid *= W.step(np.abs(x, out=x), -4.0, 1.08 * 4.0)
            lid *= _F32(0.85)
            W.blend(cb, lid, lid_c)

    def _nose(self, t, p, U, Vc, canvas, k):
        W = self.W
        rs, cs = self._bbox(p, -0.22 + p["yaw"] * 1.2, 0.22 + p["yaw"] * 1.2,
                            t["face_cy"] + t["eye_y"], t["face_cy"] + t["nose_len"] + 0.08)
        Vn, cn = Vc[:, rs, cs], canvas[:, :, rs, cs]
        skin = _rgb(t["skin"])
        eye_vc = _col(t["eye_y"])
        nt, nw = _col(t["nose_len"]), _col(t["nose_w"])
        nx = W.sub(U[:, rs, cs], _col(p["yaw"]) * 1.2)
        # shadow along the ridge on the shadow side, from a quarter of the way down to the tip
        along = W.mul(W.sub(Vn, eye_vc), 1.0 / (nt - eye_vc))
        side = np.where(_col(p["side_shade"]) >= 0, _F32(0.55), _F32(-0.55))
        m = W.mul(np.clip(along, 0.0, 1.0, out=W.get(along.shape)), side * nw)
        shadow = W.step(W.absd(nx, m), -k, 0.022 * k + 0.5)
        np.minimum(W.sub(along, 0.25), W.sub(1.0, along), out=along)
        shadow *= W.step(along, 4.0, 0.5)
        shadow *= _F32(0.35)
        W.blend(cn, shadow, skin * 0.6)
        qy2 = W.sq(W.mul(W.sub(Vn, nt), 1.0 / (0.14 * nw)))
        nostril_c = skin * 0.3
        for sd in (-1.0, 1.0):
            q = W.sq(W.mul(W.sub(nx, sd * 0.45 * nw), 1.0 / (0.32 * nw)))
            q += qy2
            m = W.step(q, -0.12 * nw * k, 0.12 * nw * k + 0.5)
            m *= _F32(0.85)
            W.blend(cn, m, nostril_c)
        q = W.sq(W.mul(nx, 1.0 / nw))
        q += W.sq(W.mul(W.sub(Vn, nt - 0.04), 1.0 / (0.45 * nw)))
        tip = W.step(q, -0.3 * nw * k, 0.3 * nw * k + 0.5)
        tip *= _F32(0.25)
        W.blend(cn, tip, np.minimum(skin * 1.12, 255))

    def _mouth(self, t, p, U, Vc, canvas, k):
        W = self.W
        ml = t["face_cy"] + t["mouth_y"]
        rs, cs = self._bbox(p, -0.3 + p["yaw"], 0.3 + p["yaw"], ml - 0.1, ml + 0.16)
        cm = canvas[:, :, rs, cs]
        skin = _rgb(t["skin"])
        mw = _col(t["mouth_w"] * (1 + 0.1 * p["smile"]))
        lt = _col(t["lip_th"])
        op = _col(p["mouth_open"] * 0.07)
        x = W.mul(W.sub(U[:, rs, cs], _col(p["yaw"]) * 0.9), 1.0 / mw)
        x2 = W.sq(x)
        yy = W.mul(x2, _col(p["smile"] * 0.04))  # corners up when smiling
        yy += Vc[:, rs, cs]
        yy -= _col(t["mouth_y"])
        lip_red = _col(t["lip_red"])
        lip_c = skin * (1 - lip_red) + _rgb(np.array([[170.0, 60.0, 70.0]])) * lip_red
        wk = 0.25 * mw * k
        width_ok = W.step(x2, -wk, wk + 0.5)
        upper = W.step(W.absd(yy, -lt * 0.5 - op * 0.5), -k, lt * k + 0.5)
        lower = W.step(W.absd(yy, lt * 0.7 + op * 0.5), -k, 1.3 * lt * k + 0.5)
        np.maximum(upper, lower, out=upper)
        upper *= width_ok
        W.blend(cm, upper, lip_c)
        inner = W.step(np.abs(yy, out=yy), -k, (op * 0.5 + 0.004) * k + 0.5)
        inner *= W.step(x2, -wk, 0.72 * wk + 0.5)
        W.blend(cm, inner, _F32(30.0))

    def _moles(self, t, p, U, Vc, canvas, k):
        """Moles are tiny: draw them in (2r+1)^2 windows around each mole's pixel position."""
        b = len(p["rot"])
        px_per_unit = self.unit * p["scale"].max() * _BASE_SCALE
        r = int(np.ceil(0.03 * px_per_unit)) + 2
        off = np.arange(-r, r + 1)
        bi = np.arange(b)[:, None, None]
        mole_c = _rgb(t["skin"]) * 0.35  # (3, B, 1, 1)
        for m in range(3):
            a = t[f"mole{m}_a"]
            if not (a > 0).any():
                continue
            mu = t[f"mole{m}_u"] + p["yaw"] * 0.5
            mv = t[f"mole{m}_v"]
            x, y = self._to_pixels(p, mu, mv + t["face_cy"])
            yi = np.clip(np.rint(y).astype(int)[:, None, None] + off[None, :, None], 0, self.h - 1)
            xi = np.clip(np.rint(x).astype(int)[:, None, None] + off[None, None, :], 0, self.w - 1)
            uw, vw = U[bi, yi, xi], Vc[bi, yi, xi]  # (B, K, K)
            rr = _col(t[f"mole{m}_r"])
            du, dv = uw - _col(mu), vw - _col(mv)
            q = (du * du + dv * dv) / (rr * rr)
            alpha = np.clip((1.0 - q) * (0.5 * rr * k) + 0.5, 0.0, 1.0)
            alpha *= _col(a)
            cw = canvas[:, bi, yi, xi]  # (3, B, K, K)
            cw += alpha * (mole_c - cw)
            canvas[:, bi, yi, xi] = cw

    # rare features: (t, p) are subsets for the images ``idx``; plain numpy is fine here.
    def _facial_hair(self, t, p, idx, U, Vc, canvas, k, face, oy, ox):
        ml = t["face_cy"] + t["mouth_y"]
        rs, cs = self._bbox(p, -0.8, 0.8, ml - 0.14, ml + 0.6)
        Um, Vm = U[idx, rs, cs], Vc[idx, rs, cs]
        cm = canvas[:, idx, rs, cs]
        fine = np.stack([self.fine[y:y + self.h, x:x + self.w] for y, x in zip(oy, ox)])
        fine = fine[:, rs, cs]
        hair = _rgb(t["hair"]) * (1.0 + 0.07 * fine)
        lt = _col(t["lip_th"])
        op = _col(p["mouth_open"] * 0.07)
        x = (Um - _col(p["yaw"]) * 0.9) / _col(t["mouth_w"])
        yy = Vm - _col(t["mouth_y"])
        must = np.clip((0.035 - np.abs(yy + lt * 1.6 + 0.03)) * k + 0.5, 0, 1) \
            * np.clip((1.15 - np.abs(x)) * 4.0 + 0.5, 0, 1) * _col(t["moustache"])
        cm += must * (hair - cm)
        beard = face[idx, rs, cs] * np.clip((yy - lt * 2.2 - op) * k + 0.5, 0, 1)
        beard *= np.clip(0.55 + 0.2 * fine, 0, 1) * _col(t["beard"])
        cm += beard * (hair - cm)
        canvas[:, idx, rs, cs] = cm

    def _scar(self, t, p, idx, U, Vc, canvas, k, **_):
        yaw = p["yaw"] * 0.5
        u0, u1 = t["scar_u0"] + yaw, t["scar_u1"] + yaw
        rs, cs = self._bbox(p, np.minimum(u0, u1), np.maximum(u0, u1),
                            t["face_cy"] + np.minimum(t["scar_v0"], t["scar_v1"]),
                            t["face_cy"] + np.maximum(t["scar_v0"], t["scar_v1"]))
        cf = canvas[:, idx, rs, cs]
        sx, sy = _col(u1 - u0), _col(t["scar_v1"] - t["scar_v0"])
        du, dv = U[idx, rs, cs] - _col(u0), Vc[idx, rs, cs] - _col(t["scar_v0"])
        tt = np.clip((du * sx + dv * sy) / (sx * sx + sy * sy), 0, 1)
        ex, ey = du - tt * sx, dv - tt * sy
        dist = np.sqrt(ex * ex + ey * ey)
        m = np.clip((0.012 - dist) * k + 0.5, 0, 1) * _col(t["scar_a"])
        cf += m * (np.minimum(_rgb(t["skin"]) * 1.25 + 10, 255) - cf)
        canvas[:, idx, rs, cs] = cf

    def _glasses(self, t, p, idx, U, Vc, canvas, k, **_):
        ey = t["face_cy"] + t["eye_y"]
        rs, cs = self._bbox(p, -0.75 + p["yaw"], 0.75 + p["yaw"], ey - 0.22, ey + 0.22)
        Ug, Vg = U[idx, rs, cs], Vc[idx, rs, cs]
        cg = canvas[:, idx, rs, cs]
        yaw = _col(p["yaw"])
        ex_all, erx, eye_vc = _col(t["eye_dx"]), _col(t["eye_rx"]), _col(t["eye_y"])
        sun = _col(p["sunglasses"])
        gc = _rgb(p["glasses_c"])
        for side in (-1.0, 1.0):
            x = (Ug - side * ex_all - yaw * 0.7) / (erx * 1.45)
            y = (Vg - eye_vc - 0.01) / (erx * 1.05)
            r = np.sqrt(x * x + y * y)
            rim = np.clip((0.028 - np.abs(r - 1.0) * erx * 1.2) * k + 0.5, 0, 1)
            lens = np.clip((1.0 - r) * k + 0.5, 0, 1) * sun * 0.92
            cg += np.clip(rim + lens, 0, 1) * (gc - cg)
        bridge = np.clip((0.02 - np.abs(Vg - eye_vc + 0.03)) * k + 0.5, 0, 1) \
            * np.clip((ex_all - erx * 1.4 - np.abs(Ug - yaw * 0.7)) * k + 0.5, 0, 1)
        cg += bridge * (gc - cg)
        canvas[:, idx, rs, cs] = cg

    def _cap(self, t, p, idx, U, Vc, canvas, k, **_):
        rs, cs = self._bbox(p, -1.5, 1.5, -2.5, t["face_cy"] + p["cap_y"] + 0.05)
        m = np.clip((_col(p["cap_y"]) - Vc[idx, rs, cs]) * k + 0.5, 0, 1) \
            * np.clip((_col(t["face_a"]) + 0.12 - np.abs(U[idx, rs, cs])) * k + 0.5, 0, 1)
        cc = canvas[:, idx, rs, cs]
        cc += m * (_rgb(p["cap_c"]) - cc)
        canvas[:, idx, rs, cs] = cc

    def _hand(self, t, p, idx, U, Vc, canvas, k, **_):
        tone = p["hand_tone"][:, None]
        hand_c = _rgb((_SKIN_LIGHT[None] * (1 - tone) + _SKIN_DARK[None] * tone) * 0.95)
        rs, cs = self._bbox(p, p["hand_u"] - 0.35, p["hand_u"] + 0.35,
                            t["face_cy"] + p["hand_v"] - 0.4, t["face_cy"] + p["hand_v"] + 0.25)
        Uh, Vh = U[idx, rs, cs], Vc[idx, rs, cs]
        hu, hv = _col(p["hand_u"]), _col(p["hand_v"])
        q = ((Uh - hu) / 0.3) ** 2 + ((Vh - hv) / 0.22) ** 2
        hm = np.clip((1.0 - q) * 0.1 * k + 0.5, 0, 1)
        for f in range(4):  # fingers: capsules pointing up
            fq = ((Uh - hu + 0.18 - f * 0.12) / 0.05) ** 2 \
                + ((Vh - hv + 0.2 + 0.04 * (f % 3 == 0)) / 0.16) ** 2
            np.maximum(hm, np.clip((1.0 - fq) * 0.03 * k + 0.5, 0, 1), out=hm)
        ch = canvas[:, idx, rs, cs]
        ch += hm * (hand_c - ch)
        canvas[:, idx, rs, cs] = ch


# ----------------------------------------------------------------------------- workers
_PARALLEL_MIN_IMAGES = 4096   # below this, starting worker processes costs more than it saves
_CHUNK = 512                  # images per worker task
_WORKER_CACHE: dict = {}


def _auto_workers(n_images: int) -> int:
    if n_images < _PARALLEL_MIN_IMAGES or not sys.platform.startswith("linux"):
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    # with 2-3 cores the main process and the workers fight over the same cores and
    # the gain was nil on a shared 2-core VM; only fan out on bigger machines
    return min(cores, 8) if cores >= 4 else 1


def _worker_render(config: tuple, ids: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Runs in a worker process: render with a per-process cached generator."""
    ds = _WORKER_CACHE.get(config)
    if ds is None:
        size, seed, difficulty, block = config
        ds = _WORKER_CACHE[config] = SyntheticFaces(1, 1, size=size, seed=seed,
                                                    difficulty=difficulty, cache=False, block=block)
    return ds.render_batch(ids, idx)


# ----------------------------------------------------------------------------- data set
class SyntheticFaces:
    """Deterministic procedural aligned-face data set (an ImageFolder stand-in).

    Item ``i`` is image ``i % images_per_identity`` of identity
    ``i // images_per_identity``; ``ds[i]`` returns ``(uint8 (H, W, 3), label)`` with
    ``label`` the identity (``0 .. num_identities - 1``).

    Args:
        num_identities: number of training identities (classes).
        images_per_identity: images per identity.
        size: ``(height, width)`` or an int (default 96x96; 16..1024).
        seed: identities and images are pure functions of ``seed``.
        difficulty: 0 (easy) .. 1 (hard) or ``"easy"``/``"medium"``/``"hard"``.
        cache: keep rendered images (rendered in blocks of ``block`` on first access,
            or all at once by :meth:`materialize`).  Costs ``N*H*W*3`` bytes.
        block: batch size used when rendering.
    """

    def __init__(self, num_identities: int = 1000, images_per_identity: int = 20,
                 size=(96, 96), seed: int = 0, difficulty=0.5, cache: bool = True,
                 block: int = 16, sensor: str = "rgb"):
        from edgeconv.data.nir import check_sensor

        if int(num_identities) < 1:
            raise EdgeconvError(f"num_identities must be >= 1, got {num_identities!r}")
        if int(images_per_identity) < 1:
            raise EdgeconvError(f"images_per_identity must be >= 1, got {images_per_identity!r}")
        self.num_identities = int(num_identities)
        self.images_per_identity = int(images_per_identity)
        self.size = _parse_size(size)
        self.seed = int(seed)
        self.difficulty = _parse_difficulty(difficulty)
        self.cache = bool(cache)
        self.block = max(1, int(block))
        self.sensor = check_sensor(sensor)
        self._renderer = _Renderer(self.size, self.seed, self.block)
        self._lock = threading.Lock()
        self._images: np.ndarray | None = None
        self._done: np.ndarray | None = None

    # -- data-set protocol ---------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return self.num_identities

    @property
    def labels(self) -> np.ndarray:
        """int64 label of every item."""
        return np.repeat(np.arange(self.num_identities, dtype=np.int64), self.images_per_identity)

    def __len__(self) -> int:
        return self.num_identities * self.images_per_identity

    def __getstate__(self):  # picklable for DataLoader workers (spawn): no lock / scratch
        state = self.__dict__.copy()
        del state["_lock"], state["_renderer"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._renderer = _Renderer(self.size, self.seed, self.block)

    def __repr__(self) -> str:
        return (f"SyntheticFaces(num_identities={self.num_identities}, images_per_identity="
                f"{self.images_per_identity}, size={self.size}, seed={self.seed}, "
                f"difficulty={self.difficulty}"
                + (f", sensor={self.sensor!r})" if self.sensor != "rgb" else ")"))

    def __getitem__(self, i: int):
        n = len(self)
        i = int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {i} out of range for {n} images")
        label = i // self.images_per_identity
        if not self.cache:
            return self.render(label, i % self.images_per_identity), label
        if self._images is None:
            self._images = np.empty((n, *self.size, 3), dtype=np.uint8)  # pages are lazy
            self._done = np.zeros((n + self.block - 1) // self.block, dtype=bool)
        blk = i // self.block
        if not self._done[blk]:
            lo, hi = blk * self.block, min(n, (blk + 1) * self.block)
            idx = np.arange(lo, hi)
            self._images[lo:hi] = self.render_batch(idx // self.images_per_identity,
                                                    idx % self.images_per_identity)
            self._done[blk] = True
        img = self._images[i]
        img.flags.writeable = False  # a view of the cache: read-only
        return img, label

    # -- rendering -------------------------------------------------------------------
    def render_batch(self, identities, indices) -> np.ndarray:
        """Render images ``indices[k]`` of identities ``identities[k]``: uint8 (B, H, W, 3).

        Any non-negative integer identity/index is valid (identities beyond
        ``num_identities`` are new people); the result does not depend on batching.
        """
        ids = np.atleast_1d(np.asarray(identities, dtype=np.int64))
        idx = np.atleast_1d(np.asarray(indices, dtype=np.int64))
        ids, idx = np.broadcast_arrays(ids, idx)
        if ids.ndim != 1:
            raise EdgeconvError("identities and indices must be 1-D")
        if (ids < 0).any() or (idx < 0).any():
            raise EdgeconvError("identities and indices must be non-negative")
        out = np.empty((len(ids), *self.size, 3), dtype=np.uint8)
        with self._lock, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            t = _identity_traits(self.seed, ids, self.difficulty)
            p = _image_nuisance(self.seed, ids, idx, self.difficulty, t)
            if self.sensor == "nir":  # the same person and nuisance through a NIR camera
                from edgeconv.data.nir import nir_tables

                t, p = nir_tables(t, p)
            for lo in range(0, len(ids), self.block):
                sl = slice(lo, lo + self.block)
                self._renderer.render({k: v[sl] for k, v in t.items()},
                                      {k: v[sl] for k, v in p.items()}, out[sl])
        if self.sensor == "nir":
            from edgeconv.data.nir import nir_pixels

            out = nir_pixels(out, _keys(self.seed, ids, idx, _STREAM_NIR))
        return out

    def render(self, identity: int, index: int) -> np.ndarray:
        """One image (uint8 (H, W, 3)); the same whatever else was rendered before."""
        return self.render_batch([identity], [index])[0]

    def render_many(self, identities, indices, workers: int | None = None,
                    progress: bool = False, out: np.ndarray | None = None) -> np.ndarray:
        """:meth:`render_batch` for many images, optionally in worker processes.

        ``workers=None`` picks one process per available core (at most 8) for 4096
        images or more on Linux machines with at least 4 cores and renders in-process
        otherwise; ``workers=1`` never starts processes.  Linux workers are forked (like ``DataLoader`` workers: no
        re-import of the main script); elsewhere they are spawned, which needs the usual
        ``if __name__ == "__main__":`` guard in scripts.  If workers fail, the rest is
        rendered in-process with a warning.  The result is identical either way.
        """
        ids = np.atleast_1d(np.asarray(identities, dtype=np.int64))
        idx = np.atleast_1d(np.asarray(indices, dtype=np.int64))
        ids, idx = np.broadcast_arrays(ids, idx)
        n = len(ids)
        if out is None:
            out = np.empty((n, *self.size, 3), dtype=np.uint8)
        workers = _auto_workers(n) if workers is None else max(1, int(workers))
        chunks = [slice(lo, min(n, lo + _CHUNK)) for lo in range(0, n, _CHUNK)]
        bar = None
        if progress and n:
            from edgeconv.progress import Progress

            bar = Progress(n, "rendering synthetic faces", unit="img")
        try:
            done = np.zeros(len(chunks), dtype=bool)
            if workers > 1 and len(chunks) > 1:
                try:
                    self._render_parallel(ids, idx, chunks, workers, out, done, bar)
                except (OSError, RuntimeError, ImportError, EOFError) as exc:  # pragma: no cover
                    import warnings

                    warnings.warn(f"synthetic faces: worker processes failed ({exc}); "
                                  f"rendering in-process", RuntimeWarning, stacklevel=2)
            for j in np.flatnonzero(~done):
                sl = chunks[j]
                out[sl] = self.render_batch(ids[sl], idx[sl])
                if bar is not None:
                    bar.update(sl.stop - sl.start)
        finally:
            if bar is not None:
                bar.close()
            with self._lock:
                self._renderer.W.clear()  # give the scratch memory back after a big job
        return out

    def _render_parallel(self, ids, idx, chunks, workers, out, done, bar) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed
        from concurrent.futures.process import BrokenProcessPool

        config = (self.size, self.seed, self.difficulty, self.block)
        ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        try:
            with ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=ctx) as pool:
                futures = {pool.submit(_worker_render, config, ids[sl], idx[sl]): j
                           for j, sl in enumerate(chunks)}
                for fut in as_completed(futures):
                    j = futures[fut]
                    out[chunks[j]] = fut.result()
                    done[j] = True
                    if bar is not None:
                        bar.update(chunks[j].stop - chunks[j].start)
        except BrokenProcessPool as exc:  # pragma: no cover - the rest is rendered in-process
            raise RuntimeError(str(exc)) from exc

    def materialize(self, progress: bool = False, workers: int | None = None) -> np.ndarray:
        """Render (once) and return every item as uint8 (N, H, W, 3), in item order.

        Costs ``N * H * W * 3`` bytes (10k images at 96x96: 276 MB).  ``workers``: see
        :meth:`render_many` (large sets use one process per core by default).
        """
        n = len(self)
        if self._images is None:
            self._images = np.empty((n, *self.size, 3), dtype=np.uint8)
            self._done = np.zeros((n + self.block - 1) // self.block, dtype=bool)
        todo = np.flatnonzero(~self._done)
        if len(todo) == 0:
            return self._images
        items = np.concatenate([np.arange(b * self.block, min(n, (b + 1) * self.block))
                                for b in todo])
        if len(items) == n:
            self.render_many(items // self.images_per_identity, items % self.images_per_identity,
                             workers=workers, progress=progress, out=self._images)
        else:
            self._images[items] = self.render_many(items // self.images_per_identity,
                                                   items % self.images_per_identity,
                                                   workers=workers, progress=progress)
        self._done[:] = True
        return self._images

    # -- verification pairs ------------------------------------------------------------
    def make_pair_plan(self, num_pairs: int, seed: int = 0, identity_offset: int | None = None,
                       num_pair_identities: int | None = None) -> dict:
        """Which images make up each verification pair (no rendering).

        Pairs alternate same / different (``is_same[k] = k % 2 == 0``), so every
        contiguous fold of the 10-fold protocol is balanced.  Identities are drawn from
        ``identity_offset .. identity_offset + num_pair_identities - 1`` (default offset
        :data:`VALIDATION_IDENTITY_OFFSET`), which must not overlap the training
        identities ``0 .. num_identities - 1``.  Image indices are drawn from a range
        disjoint from the training images as well.

        Returns a dict of int64/bool arrays: ``left_identity, left_index,
        right_identity, right_index, is_same``.
        """
        num_pairs = int(num_pairs)
        if num_pairs < 2:
            raise EdgeconvError(f"num_pairs must be >= 2, got {num_pairs}")
        offset = VALIDATION_IDENTITY_OFFSET if identity_offset is None else int(identity_offset)
        if offset < self.num_identities:
            raise EdgeconvError(
                f"identity_offset {offset} overlaps the training identities "
                f"0..{self.num_identities - 1}; use an offset >= {self.num_identities}")
        n_ids = int(num_pair_identities) if num_pair_identities else max(2, num_pairs // 2)
        if n_ids < 2:
            raise EdgeconvError("need at least 2 pair identities")
        k = np.arange(num_pairs, dtype=np.int64)
        r = _Draw(_keys(self.seed, _STREAM_PAIRS, int(seed), k), 8)
        is_same = (k % 2) == 0
        a = (r.u() * n_ids).astype(np.int64)
        b_diff = (a + 1 + (r.u() * (n_ids - 1)).astype(np.int64)) % n_ids
        b = np.where(is_same, a, b_diff)
        base = 1 << 20  # pair images use indices beyond any training image index
        ia = base + (r.u() * (1 << 20)).astype(np.int64)
        ib = base + (r.u() * (1 << 20)).astype(np.int64)
        ib = np.where(is_same & (ib == ia), ia + 1, ib)
        return {"left_identity": a + offset, "left_index": ia,
                "right_identity": b + offset, "right_index": ib, "is_same": is_same}

    def make_pairs(self, num_pairs: int = 2000, seed: int = 0,
                   identity_offset: int | None = None,
                   num_pair_identities: int | None = None, workers: int | None = None):
        """Render verification pairs from identities disjoint from training.

        Returns a :class:`~edgeconv.data.pairs.PairSet` ``(left, right, is_same)``:
        uint8 (N, H, W, 3) arrays and a bool (N,) array; half the pairs are the same
        identity (alternating).  See :meth:`make_pair_plan`.
        """
        from edgeconv.data.pairs import PairSet

        plan = self.make_pair_plan(num_pairs, seed, identity_offset, num_pair_identities)
        n = len(plan["is_same"])
        both = self.render_many(np.r_[plan["left_identity"], plan["right_identity"]],
                                np.r_[plan["left_index"], plan["right_index"]], workers=workers)
        return PairSet(both[:n], both[n:], plan["is_same"].copy())


def layout_statistics(images: np.ndarray) -> dict:
    """Layout-specificity statistic of a batch (TVConv paper, Fig. 1e).

    ``cross_image_variance``: mean over pixels (and channels) of the variance across
    images; ``intra_image_variance``: mean over images (and channels) of the spatial
    variance within each image.  Layout-specific data has ``ratio`` = cross / intra < 1.
    """
    x = np.asarray(images, dtype=np.float64)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or len(x) < 2:
        raise EdgeconvError("layout_statistics needs a batch (N >= 2, H, W[, C])")
    cross = float(x.var(axis=0).mean())
    intra = float(x.reshape(len(x), -1, x.shape[-1]).var(axis=1).mean())
    return {"cross_image_variance": cross, "intra_image_variance": intra,
            "ratio": cross / intra if intra > 0 else float("inf")}
