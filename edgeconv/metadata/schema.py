"""The schema of what an exported file carries, and its validation (torch-free).

Every kind of file (face model / embedder, segmenter, translator, generator) is described in
``edgeconv.metadata`` (the package's docstring has the fields); :func:`validate_metadata`
checks a metadata dict before anything uses it: types, finite numbers, ``std > 0``, sane
sizes, thresholds in [-1, 1], and each kind's own fields.
"""

from __future__ import annotations

import math

from edgeconv.errors import EdgeconvError

#: keys the exporter adds to the sidecar only (not part of the embedded metadata)
SIDECAR_ONLY_KEYS = ("file", "sha256", "bytes", "metadata_embedded")
MAX_INPUT_SIDE = 4096
MAX_EMBEDDING_DIM = 65536


class MetadataError(EdgeconvError):
    """Metadata that cannot be used: malformed, out of range, or disagreeing with the model."""


# ----------------------------------------------------------------------------- validation
def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _threshold_ok(v) -> bool:
    return _num(v) and -1.0 <= float(v) <= 1.0


def validate_metadata(meta: dict, name: str) -> None:
    """Raise :class:`MetadataError` (one line) on any value of the wrong type or range."""
    def bad(key, why):
        raise MetadataError(f"{name}: metadata {key} {why}")

    if not isinstance(meta, dict):
        bad("", "must be a JSON object")
    if "input_size" in meta and meta["input_size"] is not None:
        s = meta["input_size"]
        vals = s if isinstance(s, list) else [s, s]
        if len(vals) != 2 or not all(isinstance(v, int) and not isinstance(v, bool)
                                     and 1 <= v <= MAX_INPUT_SIDE for v in vals):
            bad("input_size", f"must be [height, width] of integers in 1..{MAX_INPUT_SIDE}, got "
                f"{s!r}")
    for key, allowed in (("layout", ("NCHW", "NHWC")), ("color", ("RGB", "BGR"))):
        v = meta.get(key)
        if v is not None and (not isinstance(v, str) or v.upper() not in allowed):
            bad(key, f"must be one of {', '.join(allowed)}, got {v!r}")
    if "scale" in meta and not (_num(meta["scale"]) and meta["scale"] > 0):
        bad("scale", f"must be a positive finite number, got {meta['scale']!r}")
    for key in ("mean", "std"):
        if key not in meta:
            continue
        v = meta[key]
        vals = v if isinstance(v, list) else [v]
        if len(vals) not in (1, 3) or not all(_num(x) for x in vals):
            bad(key, f"must be 1 or 3 finite numbers, got {v!r}")
        if key == "std" and not all(x > 0 for x in vals):
            bad(key, f"must be > 0, got {v!r}")
    if meta.get("embedding_dim") is not None:
        d = meta["embedding_dim"]
        if not (isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= MAX_EMBEDDING_DIM):
            bad("embedding_dim", f"must be an integer in 1..{MAX_EMBEDDING_DIM}, got {d!r}")
    for key in ("model", "input_name", "output_name"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            bad(key, f"must be text, got {type(meta[key]).__name__}")
    _validate_translator(meta, bad)
    ver = meta.get("verification")
    if ver is None:
        return
    if not isinstance(ver, dict):
        bad("verification", "must be an object")
    if "threshold" in ver and ver["threshold"] is not None and not _threshold_ok(ver["threshold"]):
        bad("verification.threshold", f"must be a finite number in [-1, 1], got "
            f"{ver['threshold']!r}")
    for key in ("flip_test", "flip"):
        if ver.get(key) is not None and not isinstance(ver[key], bool):
            bad(f"verification.{key}", f"must be true or false, got {ver[key]!r}")
    tables = [("verification.far_thresholds", ver.get("far_thresholds"))]
    cal = ver.get("calibration")
    if cal is not None:
        if not isinstance(cal, dict):
            bad("verification.calibration", "must be an object")
        tables.append(("verification.calibration.far_thresholds", cal.get("far_thresholds")))
        roc = cal.get("roc")
        if roc is not None and not (isinstance(roc, list) and all(
                isinstance(p, list) and len(p) == 2 and _num(p[0]) and 0 < p[0] < 1
                and _threshold_ok(p[1]) for p in roc)):
            bad("verification.calibration.roc", "must be [[far, threshold], ...] with 0 < far < "
                "1 and thresholds in [-1, 1]")
    for key, table in tables:
        if table is None:
            continue
        if not isinstance(table, dict):
            bad(key, "must be an object {far: threshold}")
        for far, thr in table.items():
            try:
                ok_far = 0.0 < float(far) < 1.0
            except (TypeError, ValueError):
                ok_far = False
            if not ok_far:
                bad(key, f"has a key that is not a false-accept rate: {far!r}")
            if not _threshold_ok(thr):
                bad(key, f"[{far}] must be a finite number in [-1, 1], got {thr!r}")


TRANSLATOR_DIRECTIONS = {"nir2rgb": ("nir", "rgb"), "rgb2nir": ("rgb", "nir")}


#: largest magnitude of a translator's output_range (the exporter writes [-1, 1])
MAX_OUTPUT_RANGE = 1e6


def _validate_translator(meta: dict, bad) -> None:
    kind = meta.get("kind")
    if kind is None:
        return
    if kind == "segmenter":  # edgeconv.segmentation
        _validate_segmenter(meta, bad)
        return
    if kind not in ("embedder", "translator", "generator"):
        bad("kind", f"must be 'embedder', 'translator' or 'generator', got {kind!r}")
    if kind == "generator":
        _validate_generator(meta, bad)
        return
    if kind != "translator":
        return
    direction = meta.get("direction")
    if direction not in TRANSLATOR_DIRECTIONS:
        bad("direction", f"must be one of {', '.join(TRANSLATOR_DIRECTIONS)}, got {direction!r}")
    dom = meta.get("domains")
    want = dict(zip(("input", "output"), TRANSLATOR_DIRECTIONS[direction]))
    if dom is not None and dom != want:
        bad("domains", f"must be {want} for {direction}, got {dom!r}")
    for key in ("input_channels", "output_channels"):
        if meta.get(key, 3) != 3:
            bad(key, f"must be 3 (the translator file interface), got {meta.get(key)!r}")
    rng = meta.get("output_range", [-1.0, 1.0])
    if not (isinstance(rng, list) and len(rng) == 2 and all(_num(v) for v in rng)
            and all(abs(float(v)) <= MAX_OUTPUT_RANGE for v in rng) and rng[0] < rng[1]):
        bad("output_range", f"must be [low, high] with low < high, within "
                            f"+-{MAX_OUTPUT_RANGE:g}, got {rng!r}")
    if meta.get("input_size") is None:
        bad("input_size", "is required for a translator")


#: largest noise vector a generator file may declare
MAX_Z_DIM = 65536


def _validate_generator(meta: dict, bad) -> None:
    """A generator file (``edgeconv gan-export``): z (N, z_dim) in, (N, 3, H, W) out."""
    z = meta.get("z_dim")
    if not (isinstance(z, int) and not isinstance(z, bool) and 1 <= z <= MAX_Z_DIM):
        bad("z_dim", f"must be an integer in 1..{MAX_Z_DIM}, got {z!r}")
    k = meta.get("lis_modules", 0)
    if not (isinstance(k, int) and not isinstance(k, bool) and 0 <= k <= 16):
        bad("lis_modules", f"must be an integer in 0..16, got {k!r}")
    s = meta.get("image_size")
    if not (isinstance(s, list) and len(s) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_INPUT_SIDE
            for v in s)):
        bad("image_size", f"must be [height, width] of integers in 1..{MAX_INPUT_SIDE}, got "
            f"{s!r}")
    if meta.get("output_channels", 3) != 3:
        bad("output_channels", f"must be 3, got {meta.get('output_channels')!r}")
    rng = meta.get("output_range", [0.0, 1.0])
    if not (isinstance(rng, list) and len(rng) == 2 and all(_num(v) for v in rng)
            and all(abs(float(v)) <= MAX_OUTPUT_RANGE for v in rng) and rng[0] < rng[1]):
        bad("output_range", f"must be [low, high] with low < high, within "
                            f"+-{MAX_OUTPUT_RANGE:g}, got {rng!r}")


#: most output classes a segmenter file may declare
MAX_SEGMENTER_CLASSES = 256


def _validate_segmenter(meta: dict, bad) -> None:
    """``kind: "segmenter"`` (edgeconv.segmentation): ``classes`` a list of distinct names
    (one logit channel each), ``input_size`` required, ``postprocess.threshold`` in (0, 1)."""
    classes = meta.get("classes")
    if not (isinstance(classes, list) and 1 <= len(classes) <= MAX_SEGMENTER_CLASSES
            and all(isinstance(c, str) and c for c in classes)
            and len(set(classes)) == len(classes)):
        bad("classes", f"must be a list of 1..{MAX_SEGMENTER_CLASSES} distinct names for a "
                       f"segmenter, got {classes!r}")
    if meta.get("input_size") is None:
        bad("input_size", "is required for a segmenter")
    post = meta.get("postprocess")
    if post is not None:
        if not isinstance(post, dict):
            bad("postprocess", "must be an object")
        thr = post.get("threshold", 0.5)
        if not (_num(thr) and 0.0 < float(thr) < 1.0):
            bad("postprocess.threshold", f"must be a number in (0, 1), got {thr!r}")
