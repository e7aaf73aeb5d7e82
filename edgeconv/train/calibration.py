"""Threshold calibration on all pairs of a set of unseen identities (numpy only, torch-free).

A false-accept rate of 1e-3 can only be measured with >= 1e3 impostor pairs, and only
*resolved* (enough false accepts to estimate it: 10) with >= 10 / FAR = 1e4. A balanced list
of 1000-2000 pairs (the 10-fold protocol) cannot do that. Synthetic impostor pairs are free:
``G`` identities with ``m`` images each give ``G*m*(G*m-1)/2`` pairs, of which all but
``G*m*(m-1)/2`` are impostors (300 x 4 images: 717,600 impostor and 1,800 genuine pairs).

:func:`calibrate` returns the record stored in the model's metadata
(``verification.calibration``)::

    {"source", "num_images", "num_identities", "num_genuine", "num_impostors",
     "far_thresholds": {"1e-3": t, ...}, "resolvable": {"1e-3": true, ...},
     "tar_at_far": {"1e-3": tar, ...},
     "roc": [[far, threshold], ...]}        # log-spaced FARs, measurable ones only

``resolvable`` means at least 10 / FAR impostor pairs; ``roc`` is what ``--far`` interpolates
on (linear in log10 FAR) for a FAR between the calibrated ones
(:mod:`edgeconv.runtime.thresholds`, which also validates it when read back).
"""

from __future__ import annotations

import math

import numpy as np

from edgeconv.errors import EdgeconvError
from edgeconv.runtime.thresholds import RESOLVE_FALSE_ACCEPTS, resolvable  # noqa: F401

CALIBRATION_FARS = (1e-2, 1e-3, 1e-4)
#: the stored ROC: FARs 1e-6 .. 1e-1, four per decade (only those with >= 1 false accept)
ROC_FARS = tuple(10.0 ** (-6 + i / 4) for i in range(21))


def far_key(far: float) -> str:
    """1e-3 -> "1e-3", 5e-4 -> "5e-4" (JSON keys)."""
    mant, exp = f"{float(far):e}".split("e")
    mant = mant.rstrip("0").rstrip(".")
    return f"{mant}e{int(exp)}"


def all_pairs(embeddings, labels) -> tuple[np.ndarray, np.ndarray]:
    """Cosine scores and same-identity flags of every unordered pair of rows."""
    from edgeconv.train.verification import l2_normalize

    e = l2_normalize(np.asarray(embeddings, dtype=np.float64))
    y = np.asarray(labels)
    if e.ndim != 2 or len(e) != len(y) or len(e) < 2:
        raise EdgeconvError(f"need (N >= 2, D) embeddings and N labels, got {e.shape} and "
                            f"{y.shape}")
    iu = np.triu_indices(len(e), 1)
    scores = np.einsum("ij,ij->i", e[iu[0]], e[iu[1]])
    return scores, y[iu[0]] == y[iu[1]]


def calibrate(scores, is_same, fars=CALIBRATION_FARS, source: str = "",
              num_images: int | None = None, num_identities: int | None = None) -> dict:
    """Thresholds at ``fars`` (rule ``score > t``), the counts behind them and a log-FAR ROC."""
    from edgeconv.train.verification import _as_scores_labels, tar_at_far

    s, y = _as_scores_labels(scores, is_same)
    n_imp, n_gen = int((~y).sum()), int(y.sum())
    if n_imp == 0 or n_gen == 0:
        raise EdgeconvError("calibration needs both genuine and impostor pairs")
    out = {"source": source, "num_genuine": n_gen, "num_impostors": n_imp,
           "far_thresholds": {}, "resolvable": {}, "tar_at_far": {}, "roc": []}
    if num_images is not None:
        out["num_images"] = int(num_images)
    if num_identities is not None:
        out["num_identities"] = int(num_identities)
    for far in sorted(fars, reverse=True):
        t = tar_at_far(s, y, far)
        k = far_key(far)
        out["far_thresholds"][k] = t["threshold"]
        out["tar_at_far"][k] = t["tar"]
        out["resolvable"][k] = resolvable(far, n_imp)
    neg = np.sort(s[~y])[::-1]
    for far in ROC_FARS:
        allowed = int(math.floor(far * n_imp + 1e-9))
        if allowed < 1 or allowed >= n_imp:
            continue
        out["roc"].append([float(far), float(neg[allowed])])
    return out


def synthetic_identity_images(size, identities: int, images_per_identity: int,
                              identity_offset: int, difficulty=0.5, data_seed: int = 0,
                              workers=None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (G*m, H, W, 3) images of ``identities`` synthetic identities from
    ``identity_offset`` on (``images_per_identity`` each), and their identity labels."""
    from edgeconv.data.synthetic import SyntheticFaces

    if identities < 2 or images_per_identity < 2:
        raise EdgeconvError("calibration needs >= 2 identities with >= 2 images each")
    ds = SyntheticFaces(max(1, identities), 1, size=tuple(size), seed=data_seed,
                        difficulty=difficulty, cache=False)
    ids = np.repeat(np.arange(identities, dtype=np.int64) + int(identity_offset),
                    images_per_identity)
    idx = np.tile(np.arange(images_per_identity, dtype=np.int64), identities)
    return ds.render_many(ids, idx, workers=workers), ids
