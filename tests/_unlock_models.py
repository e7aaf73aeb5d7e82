"""Tiny exported face model for the unlock/runtime tests (helpers, no tests here).

The model is an ONNX graph built with ``onnx.helper`` (no torch):
``AveragePool(8x8) -> Flatten -> Sub(mean face) -> MatMul(projection)``, i.e. a
fixed linear projection of the downscaled normalised image.  The projection is a
Fisher (LDA) projection fitted with numpy on a few synthetic identities
(``difficulty="easy"``), which separates unseen synthetic identities well; its
threshold is calibrated on synthetic verification pairs (identities disjoint from
the fit) and written, as the exporter does, into the ONNX file's ``metadata_props``
(the authority) and into the sidecar copy ``model.onnx.json``
(``verification.far_thresholds``).

Fitting renders a few hundred synthetic faces (seconds); the fitted arrays are
cached on disk keyed by the generator's source, so later sessions start at once.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import tempfile
from pathlib import Path

import numpy as np

POOL = 8
SIZE = (96, 96)
DIM = 32
FIT_IDS, FIT_PER_ID, PCA_DIMS = 40, 6, 60
CAL_PAIRS = 400
CAL_FAR = 1e-2
DIFFICULTY = "easy"
SEED = 0
#: Identities used by the tests (disjoint from the fit and calibration identities).
TEST_IDENTITY_BASE = 5000


def synthetic():
    from edgeconv.data.synthetic import SyntheticFaces

    return SyntheticFaces(num_identities=FIT_IDS, images_per_identity=FIT_PER_ID, size=SIZE,
                          seed=SEED, difficulty=DIFFICULTY)


def render(identities, indices) -> np.ndarray:
    """uint8 (N, 96, 96, 3) test faces: image ``indices[k]`` of identity ``identities[k]``."""
    ids = np.asarray(identities, dtype=np.int64)
    return _ds().render_batch(ids + TEST_IDENTITY_BASE, np.asarray(indices, np.int64) + 100)


@functools.lru_cache(maxsize=1)
def _ds():
    return synthetic()


def _features(images: np.ndarray) -> np.ndarray:
    from edgeconv.data.images import normalize

    x = normalize(images)
    n, c, h, w = x.shape
    return x.reshape(n, c, h // POOL, POOL, w // POOL, POOL).mean(axis=(3, 5)).reshape(n, -1)


def _fit_lda(feats, labels, pca=PCA_DIMS, out=DIM, reg=1e-2):
    mu = feats.mean(0)
    fc = feats - mu
    _, _, vt = np.linalg.svd(fc, full_matrices=False)
    p = vt[:pca].T
    z = fc @ p
    classes = np.unique(labels)
    means = np.stack([z[labels == c].mean(0) for c in classes])
    within = z - means[np.searchsorted(classes, labels)]
    sw = within.T @ within / len(within)
    sw += reg * np.trace(sw) / len(sw) * np.eye(len(sw))
    ev, v = np.linalg.eigh(sw)
    wh = v / np.sqrt(ev)
    m = means @ wh
    m -= m.mean(0)
    _, _, vt2 = np.linalg.svd(m, full_matrices=False)
    return mu.astype(np.float32), (p @ wh @ vt2[:out].T).astype(np.float32)


def embed_reference(images, mu, proj) -> np.ndarray:
    """What the ONNX graph computes, in numpy, L2-normalised."""
    e = (_features(images) - mu) @ proj
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def threshold_at_far(scores, is_same, far: float) -> float:
    """Smallest threshold (accept ``score > threshold``) whose FAR is <= ``far``."""
    try:
        from edgeconv.train.verification import threshold_at_far as taf
    except ImportError:  # the metrics module is optional here
        taf = None
    if taf is not None:
        return float(taf(scores, is_same, far))
    neg = np.sort(np.asarray(scores, dtype=np.float64)[~np.asarray(is_same)])[::-1]
    return float(neg[min(int(np.floor(far * len(neg) + 1e-9)), len(neg) - 1)])


def _cache_key() -> str:
    from edgeconv.data import synthetic as syn

    h = hashlib.sha256()
    h.update(inspect.getsource(syn).encode())
    h.update(inspect.getsource(_fit_lda).encode())
    h.update(repr((POOL, SIZE, DIM, FIT_IDS, FIT_PER_ID, PCA_DIMS, CAL_PAIRS, CAL_FAR,
                   DIFFICULTY, SEED, np.__version__)).encode())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def fitted() -> dict:
    """mu, proj, calibration scores: fitted once, cached on disk."""
    cache = Path(os.environ.get("EDGECONV_TEST_CACHE",
                                Path(tempfile.gettempdir()) / "edgeconv-test-cache"))
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"unlock-lda-{_cache_key()}.npz"
    if path.exists():
        try:
            with np.load(path) as z:
                return {k: z[k] for k in z.files}
        except Exception:  # a damaged cache entry: refit
            pass
    ds = _ds()
    mu, proj = _fit_lda(_features(ds.materialize()), ds.labels)
    pairs = ds.make_pairs(CAL_PAIRS, seed=1)
    a = embed_reference(pairs.left, mu, proj)
    b = embed_reference(pairs.right, mu, proj)
    scores = (a * b).sum(1)
    out = {"mu": mu, "proj": proj, "scores": scores.astype(np.float32),
           "is_same": np.asarray(pairs.is_same)}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **out)
    os.replace(tmp, path)
    return out


def calibration() -> dict:
    """The metadata ``verification`` block of the tiny model."""
    f = fitted()
    s, same = f["scores"].astype(np.float64), f["is_same"].astype(bool)
    thrs = np.sort(s)
    accs = [((s > t) == same).mean() for t in thrs]
    best = int(np.argmax(accs))
    return {"accuracy": float(accs[best]), "threshold": float(thrs[best]),
            "far_thresholds": {"1e-2": threshold_at_far(s, same, CAL_FAR),
                               "1e-1": threshold_at_far(s, same, 0.1)},
            "pairs": "synthetic", "num_pairs": int(len(s)), "num_different": int((~same).sum()),
            "flip_test": False}


def make_model(path, calibrated: bool = True, metadata: bool = True, batch="N",
               name: str = "tiny_lda", perturb: float = 0.0, embed: bool = True) -> Path:
    """Write the tiny ONNX model with metadata (unless ``metadata=False``): embedded in the
    file and copied into the sidecar as the exporter does; ``embed=False``: sidecar only.

    ``perturb`` changes the weights slightly (a *different* model file).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    f = fitted()
    mu, proj = f["mu"], f["proj"].copy()
    if perturb:
        proj += np.float32(perturb) * np.random.default_rng(1).standard_normal(
            proj.shape).astype(np.float32) * np.abs(proj).mean()
    inits = [numpy_helper.from_array(mu[None, :].astype(np.float32), "mu"),
             numpy_helper.from_array(proj.astype(np.float32), "proj")]
    nodes = [helper.make_node("AveragePool", ["input"], ["p"], kernel_shape=[POOL, POOL],
                              strides=[POOL, POOL]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Sub", ["f", "mu"], ["c"]),
             helper.make_node("MatMul", ["c", "proj"], ["embedding"])]
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, *SIZE])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [batch, DIM])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = None
    if metadata:
        meta = {"format_version": 1, "edgeconv_version": "test", "model": name,
                "op": "none", "input_size": list(SIZE), "layout": "NCHW", "color": "RGB",
                "scale": 1.0 / 255.0, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                "embedding_dim": DIM, "input_name": "input", "output_name": "embedding",
                "format": "onnx"}
        if calibrated:
            meta["verification"] = calibration()
        if embed:
            helper.set_model_props(model, {"edgeconv": json.dumps(meta)})
    onnx.save(model, str(path))
    if meta is not None:
        data = path.read_bytes()
        side = dict(meta, file=path.name, sha256=hashlib.sha256(data).hexdigest(),
                    bytes=len(data), metadata_embedded=embed)
        (path.parent / (path.name + ".json")).write_text(json.dumps(side, indent=2))
    return path


@functools.lru_cache(maxsize=None)
def model_dir() -> Path:
    """A per-process folder with the standard test models (built once)."""
    import atexit
    import shutil

    d = Path(tempfile.mkdtemp(prefix="edgeconv-unlock-models-"))
    atexit.register(shutil.rmtree, d, ignore_errors=True)
    make_model(d / "face.onnx")
    make_model(d / "uncal" / "face.onnx", calibrated=False)
    make_model(d / "bare" / "face.onnx", metadata=False)
    make_model(d / "other" / "face.onnx", name="tiny_lda_v2", perturb=0.05)
    make_model(d / "fixed" / "face.onnx", batch=1)
    return d
