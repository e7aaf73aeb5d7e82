"""Decision thresholds from a model's metadata (torch-free): calibrated, interpolated, checked.

The metadata's ``verification`` block (written by ``edgeconv eval`` / export) holds
``far_thresholds`` ({"1e-3": t, ...}) and, from this version on, ``calibration``: the pair
counts behind them, which FARs they resolve (>= 10 / FAR impostor pairs) and a log-spaced ROC
(``roc``: [[far, threshold], ...]). :func:`select_threshold` picks the threshold for a FAR:

* a calibrated FAR: its threshold, with a note of the counts (and a warning when the
  calibration could not resolve it);
* a FAR between the calibrated ones: interpolated (linear in log10 FAR) on the stored ROC,
  or between the two neighbouring calibrated thresholds when no ROC is stored, and said so;
* anything else: refused in one line, naming the calibrated range.

Nothing read from the file is trusted: malformed entries are ignored or refused.
"""

from __future__ import annotations

import math

from edgeconv.errors import EdgeconvError

#: expected false accepts a calibration needs to resolve a FAR (>= 10 / FAR impostor pairs)
RESOLVE_FALSE_ACCEPTS = 10


class ThresholdError(EdgeconvError):
    """No usable decision threshold (no calibration and no explicit --threshold)."""


def _parse_far(key) -> float:
    try:
        value = float(key)
    except (TypeError, ValueError):
        raise EdgeconvError(f"not a false-accept rate: {key!r} (expected e.g. 1e-3)") from None
    if not 0.0 < value < 1.0:
        raise EdgeconvError(f"false-accept rate must be between 0 and 1, got {key!r}")
    return value


def _verification(meta) -> dict:
    ver = (meta or {}).get("verification") if isinstance(meta, dict) else None
    return ver if isinstance(ver, dict) else {}


def calibrated_thresholds(meta: dict | None) -> dict[float, float]:
    """``{far: threshold}`` from metadata ``verification.far_thresholds`` ({} if none)."""
    table = _verification(meta).get("far_thresholds") or {}
    out = {}
    if isinstance(table, dict):
        for k, v in table.items():
            try:
                far, thr = float(k), float(v)
            except (TypeError, ValueError):
                continue
            if 0.0 < far < 1.0 and math.isfinite(thr) and -1.0 <= thr <= 1.0:
                out[far] = thr
    return dict(sorted(out.items()))


def _count(v) -> int | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        return None
    return int(v)


def calibration_size(ver: dict) -> int | None:
    """Number of impostor (different-identity) pairs the calibration used, if recorded.

    Reads ``calibration.num_impostors`` (current metadata), then the older top-level keys,
    then ``num_negatives`` inside ``tar_at_far`` entries (a list of dicts or a dict of dicts).
    """
    if not isinstance(ver, dict):
        return None
    cal = ver.get("calibration")
    if isinstance(cal, dict):
        n = _count(cal.get("num_impostors"))
        if n:
            return n
    for key in ("num_impostors", "num_different", "num_negatives"):
        n = _count(ver.get(key))
        if n:
            return n
    entries = ver.get("tar_at_far")
    if isinstance(entries, dict):
        entries = list(entries.values())
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict):
            n = _count(entry.get("num_negatives"))
            if n:
                return n
    return None


def resolvable(far: float, num_impostors: int | None) -> bool | None:
    """>= 10 / FAR impostor pairs (None: count unknown)."""
    if not num_impostors:
        return None
    return num_impostors * far >= RESOLVE_FALSE_ACCEPTS - 1e-9


def threshold_warning(ver: dict, far: float) -> str | None:
    """One line when the calibration behind ``far`` is missing its counts or too small."""
    n = calibration_size(ver)
    if n is None:
        return (f"the threshold at FAR {far:g} comes with no record of how many impostor pairs "
                "calibrated it: its false-accept rate is unverified")
    if not resolvable(far, n):
        return (f"FAR {far:g} is NOT resolved by the calibration: {n} impostor pairs resolve "
                f"FARs down to {RESOLVE_FALSE_ACCEPTS / n:.2g} (>= 10/FAR pairs needed); the "
                "real false-accept rate may be much higher")
    return None


def _calibration_note(ver: dict, far: float) -> str:
    n = calibration_size(ver)
    cal = ver.get("calibration") if isinstance(ver.get("calibration"), dict) else {}
    src = cal.get("source") if isinstance(cal.get("source"), str) else None
    pairs = ver.get("pairs")
    what = src or (pairs if isinstance(pairs, str) else None)
    note = f" on {n} impostor pairs" if n else ""
    if what:
        note += f" ({what[:80]})"
    if n and not resolvable(far, n):
        note += f"; NOT resolvable: {n} impostor pairs resolve FARs down to {10 / n:.2g} only"
    return note


def check_roc(roc) -> list[tuple[float, float]]:
    """A stored ROC validated: [[far, threshold], ...], 0 < far < 1 increasing, thresholds
    finite in [-1, 1] and non-increasing. EdgeconvError (one line) otherwise."""
    if not isinstance(roc, (list, tuple)) or len(roc) < 2:
        raise EdgeconvError("the stored ROC needs at least two [far, threshold] points")
    pts = []
    for p in roc:
        if not isinstance(p, (list, tuple)) or len(p) != 2:
            raise EdgeconvError("the stored ROC holds a point that is not [far, threshold]")
        try:
            far, thr = float(p[0]), float(p[1])
        except (TypeError, ValueError):
            raise EdgeconvError("the stored ROC holds a non-numeric point") from None
        if not (0.0 < far < 1.0 and math.isfinite(thr) and -1.0 <= thr <= 1.0):
            raise EdgeconvError("the stored ROC holds an out-of-range point")
        pts.append((far, thr))
    for (f0, t0), (f1, t1) in zip(pts, pts[1:]):
        if not (f1 > f0 and t1 <= t0):
            raise EdgeconvError("the stored ROC is not monotone (FAR up, threshold down)")
    return pts


def interpolate(points, far: float) -> float:
    """Threshold at ``far`` on sorted (far, threshold) points, linear in log10 FAR."""
    x = math.log10(far)
    for (f0, t0), (f1, t1) in zip(points, points[1:]):
        if f0 <= far <= f1:
            a = (x - math.log10(f0)) / (math.log10(f1) - math.log10(f0))
            return float(t0 + a * (t1 - t0))
    raise EdgeconvError(f"FAR {far:g} is outside {points[0][0]:g} .. {points[-1][0]:g}")


def select_threshold(meta: dict | None, far=None, threshold=None) -> tuple[float, str]:
    """See :func:`select_threshold_checked` (without its warning)."""
    return select_threshold_checked(meta, far, threshold)[:2]


def select_threshold_checked(meta: dict | None, far=None,
                             threshold=None) -> tuple[float, str, str | None]:
    """The decision threshold (cosine similarity; accept when ``score > threshold``).

    ``threshold`` (explicit) wins. Otherwise the model's threshold at the false-accept rate
    ``far`` (default: 1e-3 when calibrated, else the strictest one calibrated), calibrated or
    interpolated (module docstring). Without a calibration this refuses to guess
    (:class:`ThresholdError`). Returns ``(threshold, human-readable source, warning)``;
    ``warning`` is one line when the calibration does not resolve that FAR, else None.
    """
    if threshold is not None:
        thr = float(threshold)
        if not math.isfinite(thr) or not -1.0 <= thr <= 1.0:
            raise EdgeconvError(f"--threshold must be a cosine similarity in [-1, 1], "
                                f"got {threshold}")
        return thr, "explicit --threshold", None
    table = calibrated_thresholds(meta)
    ver = _verification(meta)
    if not table:
        hint = ""
        if ver.get("threshold") is not None:
            hint = (f" (its metadata only has the best-accuracy threshold {ver['threshold']}, "
                    "which is not a false-accept calibration)")
        raise ThresholdError(
            "the model has no calibrated verification thresholds" + hint + "; evaluate it "
            "(metadata verification.far_thresholds) or pass an explicit --threshold")
    if far is None:
        want = 1e-3 if any(math.isclose(f, 1e-3, rel_tol=1e-6) for f in table) else min(table)
    else:
        want = _parse_far(far)
    for f, thr in table.items():
        if math.isclose(f, want, rel_tol=1e-6):
            return (thr, f"calibrated at FAR {f:g}" + _calibration_note(ver, f),
                    threshold_warning(ver, f))
    lo, hi = min(table), max(table)
    avail = ", ".join(f"{f:g}" for f in table)
    if len(table) < 2 or not lo < want < hi:
        raise ThresholdError(f"the model has no threshold calibrated at FAR {want:g} "
                             f"(calibrated: {avail}); choose a FAR in that range with --far "
                             "or pass --threshold")
    cal = ver.get("calibration") if isinstance(ver.get("calibration"), dict) else {}
    try:
        pts = check_roc(cal.get("roc"))
        if not pts[0][0] <= want <= pts[-1][0]:
            raise EdgeconvError("outside the stored ROC")
        thr, how = interpolate(pts, want), "on the stored ROC"
    except EdgeconvError:
        pts = sorted(table.items())
        if any(t1 > t0 for (_, t0), (_, t1) in zip(pts, pts[1:])):
            raise ThresholdError(f"the model's calibrated thresholds are not monotone in FAR "
                                 f"(calibrated: {avail}); pass --threshold") from None
        thr, how = interpolate(pts, want), "between the calibrated thresholds"
    below = max(f for f in table if f < want)
    above = min(f for f in table if f > want)
    return (thr, f"interpolated at FAR {want:g} {how} (calibrated FARs {below:g} and "
                 f"{above:g})" + _calibration_note(ver, want), threshold_warning(ver, want))
