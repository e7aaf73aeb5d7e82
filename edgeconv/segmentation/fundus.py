"""Procedural fundus photographs with optic disc / cup masks: the built-in segmentation data.

Real fundus sets (Drishti-GS, RIM-ONE, REFUGE) cannot be downloaded here, so this module
renders images that keep what the task depends on:

* an optic disc of about 1.8 mm: 80-110 px across at 256x256 (scaled with the size), a
  slightly vertical ellipse with an irregular (low-order harmonic) outline;
* a cup inside it, vertical cup-to-disc ratio 0.2-0.7, vertically elongated (its horizontal
  ratio is smaller) and offset a little to the temporal side; paler than the rim;
* vessels leaving the disc: four arcade trunks (superior / inferior temporal artery and vein,
  parabolas opening towards the macula) plus nasal trunks and branches; arteries thinner and
  brighter with a central light reflex, veins darker and wider, all tapering;
* the macula (a darker blob) and fovea (a tiny bright reflex) 2.65 disc diameters from the
  disc centre on the temporal side (left or right eye);
* choroidal texture, vignetting;
* FOUR centre profiles (:data:`CENTRES`) that change tone, contrast, brightness, blur, noise and
  framing (disc-centred or macula-side crops, with or without the black border of the
  camera's circular field of view), like the four DoFE domains.

Masks: ``(2, H, W)`` uint8 0/1, channel 0 the cup, channel 1 the disc INCLUDING the cup
(``cup <= disc`` everywhere, tested).

Determinism: image ``(centre, index)`` of a renderer with ``seed`` draws all its numbers
from ``numpy.random.default_rng(SeedSequence([seed, centre, index]))``, so it is bit-identical
whatever the order, batch or process in which it is rendered (tested), like
``edgeconv.data.synthetic``.

    r = FundusRenderer(size=256, seed=0)
    img, mask = r.render(centre=0, index=3)        # uint8 (H, W, 3), uint8 (2, H, W)
    imgs, masks = r.render_many(centre=2, n=16)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgeconv.errors import EdgeconvError

#: disc diameter in pixels at a 256x256 image (about 1.8 mm)
DISC_PX_AT_256 = (80.0, 110.0)
#: fovea distance from the disc centre, in disc diameters
FOVEA_DD = 2.65


@dataclass(frozen=True)
class CentreProfile:
    """How one clinical centre's camera and crop make a fundus look."""

    name: str
    tone: tuple            # RGB multipliers of the fundus base colour
    contrast: float        # around the image mean
    brightness: float      # additive, in [0, 1] units
    gamma: float
    blur: float            # Gaussian sigma at 256 px
    noise: float           # Gaussian noise std in [0, 1] units
    framing: str           # "disc" (disc-centred crop) or "macula" (macula-side crop)
    border: float | None   # radius of the circular field of view / half side; None: no border
    vignette: float        # corner darkening
    disc_scale: tuple      # multipliers of the disc size range (kept within 80-110 px)
    cup_pallor: float      # how much paler the cup is than the rim


#: the four centres (domains), after the DoFE protocol's Drishti-GS, RIM-ONE-r3, REFUGE train
#: (Zeiss Visucam 500) and REFUGE val (Canon CR-2): ``--test-domain N`` holds out CENTRES[N]
CENTRES = (
    CentreProfile("A (Drishti-GS-like)", tone=(1.00, 0.78, 0.55), contrast=1.25, brightness=0.04,
                  gamma=0.95, blur=0.6, noise=0.010, framing="disc", border=None, vignette=0.25,
                  disc_scale=(0.95, 1.0), cup_pallor=0.55),
    CentreProfile("B (RIM-ONE-r3-like)", tone=(0.95, 0.48, 0.30), contrast=0.85,
                  brightness=-0.06, gamma=1.15, blur=1.6, noise=0.030, framing="disc",
                  border=None, vignette=0.45, disc_scale=(0.9, 1.0), cup_pallor=0.42),
    CentreProfile("C (REFUGE Zeiss-like)", tone=(0.80, 0.60, 0.42), contrast=0.75,
                  brightness=-0.02, gamma=1.30, blur=1.0, noise=0.015, framing="macula",
                  border=1.05, vignette=0.55, disc_scale=(0.85, 0.95), cup_pallor=0.38),
    CentreProfile("D (REFUGE Canon-like)", tone=(1.05, 0.62, 0.32), contrast=1.10,
                  brightness=0.08, gamma=0.85, blur=0.8, noise=0.025, framing="macula",
                  border=0.92, vignette=0.35, disc_scale=(0.85, 0.95), cup_pallor=0.45),
)


def centre_names() -> list[str]:
    return [c.name for c in CENTRES]


def check_centre(centre: int) -> int:
    if not isinstance(centre, (int, np.integer)) or not 0 <= int(centre) < len(CENTRES):
        raise EdgeconvError(f"centre must be 0..{len(CENTRES) - 1} "
                            f"({', '.join(centre_names())}), got {centre!r}")
    return int(centre)


# ----------------------------------------------------------------------------- helpers
def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of an (H, W) or (H, W, C) float array (reflect padding)."""
    if sigma <= 0.05:
        return img
    r = max(1, int(math.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    out = img
    for axis in (0, 1):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (r, r)
        p = np.pad(out, pad, mode="reflect")
        acc = np.zeros_like(out)
        n = out.shape[axis]
        for i, w in enumerate(k):
            sl = [slice(None)] * out.ndim
            sl[axis] = slice(i, i + n)
            acc += w * p[tuple(sl)]
        out = acc
    return out


def _smooth_noise(rng, h: int, w: int, cells: int) -> np.ndarray:
    """Bilinearly upsampled random grid: smooth texture in about [-1, 1]."""
    g = rng.standard_normal((cells + 1, cells + 1))
    ys = np.linspace(0, cells, h)
    xs = np.linspace(0, cells, w)
    y0 = np.minimum(ys.astype(int), cells - 1)
    x0 = np.minimum(xs.astype(int), cells - 1)
    fy = (ys - y0)[:, None]
    fx = (xs - x0)[None, :]
    a = g[y0][:, x0]
    b = g[y0][:, x0 + 1]
    c = g[y0 + 1][:, x0]
    d = g[y0 + 1][:, x0 + 1]
    return (a * (1 - fy) * (1 - fx) + b * (1 - fy) * fx + c * fy * (1 - fx) + d * fy * fx) / 1.5


def _blob_radius(theta: np.ndarray, r0: float, harmonics) -> np.ndarray:
    r = np.ones_like(theta)
    for k, amp, ph in harmonics:
        r = r + amp * np.cos(k * theta + ph)
    return r0 * r


def _polyline_distance(yy, xx, pts: np.ndarray, widths: np.ndarray):
    """Distance of every pixel to a polyline and the (interpolated) width there."""
    best = np.full(yy.shape, np.inf)
    wbest = np.zeros(yy.shape)
    for i in range(len(pts) - 1):
        (y0, x0), (y1, x1) = pts[i], pts[i + 1]
        dy, dx = y1 - y0, x1 - x0
        ll = dy * dy + dx * dx + 1e-9
        t = np.clip(((yy - y0) * dy + (xx - x0) * dx) / ll, 0.0, 1.0)
        d = np.hypot(yy - (y0 + t * dy), xx - (x0 + t * dx))
        closer = d < best
        best = np.where(closer, d, best)
        wbest = np.where(closer, widths[i] + t * (widths[i + 1] - widths[i]), wbest)
    return best, wbest


# ----------------------------------------------------------------------------- renderer
class FundusRenderer:
    """Deterministic fundus images + [cup, disc] masks for the four centres (see module)."""

    def __init__(self, size=256, seed: int = 0):
        from edgeconv.config import parse_input_size

        self.size = tuple(parse_input_size(size))
        if min(self.size) < 32:
            raise EdgeconvError(f"fundus images need at least 32x32 pixels, got "
                                f"{self.size[0]}x{self.size[1]}")
        self.seed = int(seed)

    def rng(self, centre: int, index: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence(
            [self.seed & 0xFFFFFFFF, int(centre), int(index)]))

    def render_many(self, centre: int, n: int, start: int = 0):
        """(n, H, W, 3) uint8 images and (n, 2, H, W) uint8 masks of one centre."""
        pairs = [self.render(centre, start + i) for i in range(n)]
        return (np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]))

    def render(self, centre: int, index: int):
        """Image ``index`` of ``centre``: (uint8 (H, W, 3), uint8 (2, H, W) [cup, disc])."""
        prof = CENTRES[check_centre(centre)]
        rng = self.rng(centre, index)
        h, w = self.size
        s = math.sqrt(h * w) / 256.0              # pixels per "256-pixel"
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)

        # --- geometry ----------------------------------------------------------------------
        lo, hi = DISC_PX_AT_256
        d_px = rng.uniform(lo * prof.disc_scale[0], hi * prof.disc_scale[1]) * s
        d_px = float(np.clip(d_px, lo * s, hi * s))
        side = 1.0 if rng.random() < 0.5 else -1.0   # +1: macula to the right of the disc
        if prof.framing == "disc":
            cy = h / 2 + rng.uniform(-0.06, 0.06) * h
            cx = w / 2 + rng.uniform(-0.06, 0.06) * w
        else:  # macula side: the disc off-centre, the macula towards (and past) the edge
            cy = h / 2 + rng.uniform(-0.08, 0.08) * h
            cx = w / 2 - side * rng.uniform(0.14, 0.22) * w
        rd = d_px / 2
        elong = rng.uniform(1.02, 1.12)              # disc: slightly taller than wide
        disc_h = [(2, rng.uniform(0.0, 0.04), rng.uniform(0, 2 * np.pi)),
                  (3, rng.uniform(0.0, 0.03), rng.uniform(0, 2 * np.pi))]
        tilt = rng.uniform(-0.2, 0.2)
        dy, dx = yy - cy, xx - cx
        ca, sa = math.cos(tilt), math.sin(tilt)
        ey, ex = (ca * dy - sa * dx) / elong, (sa * dy + ca * dx)
        rho, th = np.hypot(ey, ex), np.arctan2(ey, ex)
        disc_r = _blob_radius(th, rd, disc_h)
        disc = rho <= disc_r
        cdr = rng.uniform(0.2, 0.7)                  # vertical cup-to-disc ratio
        cup_elong = rng.uniform(1.05, 1.25)          # cup: more vertical than the disc
        ccy = cy + rng.uniform(-0.05, 0.05) * rd
        ccx = cx + side * rng.uniform(0.0, 0.12) * rd * (1 - cdr)
        cdy, cdx = yy - ccy, xx - ccx
        cey, cex = (ca * cdy - sa * cdx) / (elong * cup_elong), (sa * cdy + ca * cdx)
        crho, cth = np.hypot(cey, cex), np.arctan2(cey, cex)
        cup_h = [(2, rng.uniform(0.0, 0.06), rng.uniform(0, 2 * np.pi)),
                 (3, rng.uniform(0.0, 0.04), rng.uniform(0, 2 * np.pi))]
        # vertical cup extent = cdr x the disc's (rho is scaled by elong x cup_elong vertically)
        cup_r = _blob_radius(cth, rd * cdr / cup_elong, cup_h)
        cup = (crho <= cup_r) & disc
        fy = cy + rng.uniform(-0.15, 0.15) * d_px
        fx = cx + side * FOVEA_DD * d_px

        # --- base fundus -------------------------------------------------------------------
        tone = np.asarray(prof.tone) * rng.uniform(0.92, 1.08, 3)
        tex = _smooth_noise(rng, h, w, 6) * 0.06 + _smooth_noise(rng, h, w, 18) * 0.03
        base = 0.62 + tex
        img = base[..., None] * tone[None, None, :]
        # macula: darker, browner; fovea reflex
        dm = np.hypot(yy - fy, xx - fx)
        mac = np.exp(-(dm / (0.55 * d_px)) ** 2)
        img *= (1 - 0.35 * mac)[..., None]
        img[..., 1:] *= (1 - 0.25 * mac)[..., None]
        img += (0.25 * np.exp(-(dm / (0.04 * d_px + 0.5)) ** 2))[..., None]

        # --- disc and cup ------------------------------------------------------------------
        edge = np.clip((disc_r - rho) / (0.06 * rd) + 0.5, 0, 1)     # soft rim edge
        rim_col = np.array([1.00, 0.80, 0.55]) * rng.uniform(0.9, 1.05)
        halo = np.exp(-np.clip(rho - disc_r, 0, None) / (0.15 * rd)) * (rho > disc_r)
        img = img * (1 - 0.6 * edge[..., None]) + 0.6 * edge[..., None] * rim_col
        img += 0.05 * halo[..., None]
        cedge = np.clip((cup_r - crho) / (0.18 * rd * max(cdr, 0.2)) + 0.5, 0, 1) * edge
        cup_col = np.array([1.0, 0.95, 0.80])
        pal = prof.cup_pallor * rng.uniform(0.8, 1.2)
        img = img * (1 - pal * cedge[..., None]) + pal * cedge[..., None] * cup_col

        # --- vessels -----------------------------------------------------------------------
        img = self._vessels(rng, img, yy, xx, cy, cx, d_px, side, s)

        # --- camera: vignetting, tone curve, blur, noise, border ---------------------------
        r = np.hypot(yy - h / 2, xx - w / 2) / math.hypot(h / 2, w / 2)
        img *= (1 - prof.vignette * r ** 2)[..., None]
        img = np.clip(img, 0, None)
        mean = img.mean()
        img = (img - mean) * prof.contrast + mean + prof.brightness + rng.normal(0, 0.02)
        img = np.clip(img, 0, 1) ** (prof.gamma * rng.uniform(0.95, 1.05))
        img = gaussian_blur(img, prof.blur * s * rng.uniform(0.8, 1.2))
        img = img + rng.normal(0, prof.noise, img.shape)
        if prof.border is not None:
            fov_cy = h / 2 + rng.uniform(-0.03, 0.03) * h
            fov_cx = w / 2 + side * rng.uniform(0.0, 0.05) * w
            rr = np.hypot(yy - fov_cy, xx - fov_cx) / (min(h, w) / 2 * prof.border)
            img *= np.clip((1.0 - rr) / 0.02, 0, 1)[..., None]
            img += rng.normal(0, 0.004, img.shape) * (rr > 1)[..., None]
        out = np.clip(np.round(np.clip(img, 0, 1) * 255), 0, 255).astype(np.uint8)
        mask = np.stack([cup, disc]).astype(np.uint8)
        return out, mask

    def _vessels(self, rng, img, yy, xx, cy, cx, d_px, side, s):
        """Arcade trunks and branches; veins darker and wider, arteries with a reflex."""
        h, w = img.shape[:2]
        vessels = []  # (points (n, 2) y/x, widths (n,), is_artery)
        for vert in (-1.0, 1.0):
            for artery in (True, False):
                curv = rng.uniform(0.9, 1.4) * (1.12 if artery else 1.0)
                length = rng.uniform(1.6, 2.3) * d_px
                t = np.linspace(0, 1, 14)
                yv = cy + vert * (t * length * 0.75 + (0.10 if artery else 0.16) * d_px)
                xv = cx + side * (curv * (t * length) ** 2 / (1.4 * d_px)
                                  + (0.06 if artery else -0.04) * d_px)
                yv = yv + np.cumsum(rng.normal(0, 0.02 * d_px, t.size))
                width = (0.058 if artery else 0.08) * d_px * rng.uniform(0.9, 1.1)
                vessels.append((np.stack([yv, xv], 1), width * (1 - 0.55 * t), artery))
            for artery in (True, False):  # nasal trunks
                ang = rng.uniform(0.35, 1.0)
                length = rng.uniform(1.0, 1.6) * d_px
                t = np.linspace(0, 1, 10)
                yv = cy + vert * np.sin(ang) * t * length + (0.05 if artery else -0.05) * d_px
                xv = cx - side * np.cos(ang) * t * length
                xv = xv + np.cumsum(rng.normal(0, 0.02 * d_px, t.size))
                width = (0.045 if artery else 0.06) * d_px * rng.uniform(0.9, 1.1)
                vessels.append((np.stack([yv, xv], 1), width * (1 - 0.6 * t), artery))
        branches = []
        for pts, wid, artery in vessels[:]:
            for _ in range(int(rng.integers(1, 3))):
                k = int(rng.integers(3, len(pts) - 2))
                ang = math.atan2(pts[k + 1, 0] - pts[k, 0], pts[k + 1, 1] - pts[k, 1])
                ang += rng.choice([-1, 1]) * rng.uniform(0.5, 1.1)
                length = rng.uniform(0.5, 1.1) * d_px
                t = np.linspace(0, 1, 6)
                by = pts[k, 0] + np.sin(ang) * t * length + np.cumsum(rng.normal(0, 0.015 * d_px, 6))
                bx = pts[k, 1] + np.cos(ang) * t * length
                branches.append((np.stack([by, bx], 1), wid[k] * 0.6 * (1 - 0.5 * t), artery))
        pad = 0.05 * d_px
        for pts, wid, artery in vessels + branches:
            y0 = int(max(0, pts[:, 0].min() - wid.max() - pad))
            y1 = int(min(h, pts[:, 0].max() + wid.max() + pad + 1))
            x0 = int(max(0, pts[:, 1].min() - wid.max() - pad))
            x1 = int(min(w, pts[:, 1].max() + wid.max() + pad + 1))
            if y1 <= y0 or x1 <= x0:
                continue
            sy, sx = yy[y0:y1, x0:x1], xx[y0:y1, x0:x1]
            dist, wloc = _polyline_distance(sy, sx, pts, wid)
            half = np.maximum(wloc / 2, 0.35 * s)
            cover = np.clip((half - dist) / 0.8 + 0.5, 0, 1)
            patch = img[y0:y1, x0:x1]
            if artery:
                col = np.array([0.85, 0.30, 0.22])
                strength = 0.55
            else:
                col = np.array([0.55, 0.14, 0.14])
                strength = 0.75
            patch[:] = patch * (1 - strength * cover[..., None]) + \
                strength * cover[..., None] * col * patch.mean() / 0.45
            if artery:  # central light reflex
                reflex = np.clip((0.22 * half - dist) / 0.6 + 0.5, 0, 1) * cover
                patch += 0.12 * reflex[..., None]
        return img
