"""Face-verification metrics (numpy only, torch-free).

Conventions
-----------
* A *score* is a similarity: higher means "more likely the same person" (cosine
  similarity of L2-normalised embeddings by default).  A pair is accepted as "same"
  when ``score > threshold`` (strictly).
* ``is_same`` is a bool array (True = genuine pair, False = impostor pair).
* Every public function returns plain Python floats/ints/lists so results can be
  dumped with :func:`json.dumps` directly (no numpy types, no NaN/inf).

Protocols
---------
* **10-fold accuracy** (LFW / insightface ``verification.py``): the pairs are split
  into ``n_folds`` CONTIGUOUS folds (like ``sklearn.model_selection.KFold`` without
  shuffling: the first ``n % n_folds`` folds get one extra pair).  For each fold the
  threshold that maximises accuracy on the other folds is applied to it.  We search
  thresholds exactly (every midpoint between consecutive distinct scores) instead of
  insightface's 0.01 grid on squared distances; when several thresholds tie, the
  middle one of the tied cut positions is used.  Reported: mean and (population, as
  ``np.std``) standard deviation of the fold accuracies, and the mean threshold.
  For cosine scores, insightface's squared-distance threshold is ``2 - 2 * t``.
* **Flip test**: the embedding of the horizontally flipped image is *added* to the
  embedding of the image before normalising (:func:`flip_test_embeddings`).
* **TAR @ FAR**: the smallest threshold whose false-accept rate on the impostor
  pairs is <= the target (:func:`threshold_at_far`).  With ``N`` impostor pairs the
  smallest non-zero FAR that can be measured is ``1 / N``; a target below that cannot
  be resolved: the result then says ``resolvable: false`` and reports the TAR at
  FAR = 0 (threshold at the highest impostor score), which is a pessimistic value.
  Even when resolvable, few allowed false accepts make the estimate noisy
  (``false_accepts_allowed`` tells how many).
* **EER**: where FAR = FRR on the ROC, linearly interpolated between ROC points.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from edgeconv.errors import EdgeconvError

DEFAULT_FARS = (1e-3, 1e-4)


# ----------------------------------------------------------------------------- inputs
def _as_scores_labels(scores, is_same) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(is_same)
    if y.dtype != np.bool_:
        if y.size and not np.isin(y, (0, 1)).all():
            raise EdgeconvError("is_same must be booleans (or 0/1)")
        y = y.astype(bool)
    y = y.reshape(-1)
    if s.shape != y.shape:
        raise EdgeconvError(f"{s.size} scores but {y.size} is_same labels")
    if s.size == 0:
        raise EdgeconvError("no verification pairs")
    if not np.isfinite(s).all():
        raise EdgeconvError("scores contain NaN or inf (did the model diverge?)")
    return s, y


def _below(x: float) -> float:
    """The largest float below ``x`` (a threshold that accepts a score equal to x)."""
    return float(np.nextafter(x, -np.inf))


# ----------------------------------------------------------------------------- embeddings
def l2_normalize(x, axis: int = -1, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit L2 norm (float64 copy)."""
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(n, eps)


def flip_test_embeddings(embeddings, flipped_embeddings) -> np.ndarray:
    """insightface flip test: ``normalize(emb(image) + emb(flipped image))``."""
    a = np.asarray(embeddings, dtype=np.float64)
    b = np.asarray(flipped_embeddings, dtype=np.float64)
    if a.shape != b.shape:
        raise EdgeconvError(f"embedding shapes differ: {a.shape} vs {b.shape}")
    return l2_normalize(a + b)


def cosine_scores(left, right) -> np.ndarray:
    """Cosine similarity of paired rows: (N, D), (N, D) -> (N,) float64."""
    a, b = np.asarray(left), np.asarray(right)
    if a.ndim != 2 or a.shape != b.shape:
        raise EdgeconvError(f"left/right embeddings must both be (N, D), got {a.shape} and {b.shape}")
    return np.einsum("ij,ij->i", l2_normalize(a), l2_normalize(b))


# ----------------------------------------------------------------------------- accuracy
def accuracy_at(scores, is_same, threshold: float) -> float:
    """Fraction of pairs classified correctly by ``score > threshold``."""
    s, y = _as_scores_labels(scores, is_same)
    return float(np.mean((s > threshold) == y))


def best_threshold(scores, is_same) -> tuple[float, float]:
    """Exact accuracy-maximising threshold: returns ``(threshold, accuracy)``.

    Candidates are every cut between consecutive distinct scores (midpoints), plus
    "accept all" and "accept none"; ties are broken by taking the middle one.
    """
    s, y = _as_scores_labels(scores, is_same)
    order = np.argsort(s, kind="stable")
    s, y = s[order], y[order]
    n = len(s)
    pos_total = int(y.sum())
    # cut i: the i lowest scores are rejected, the rest accepted (i = 0..n)
    neg_below = np.concatenate([[0], np.cumsum(~y)])
    pos_below = np.concatenate([[0], np.cumsum(y)])
    correct = neg_below + (pos_total - pos_below)
    valid = np.ones(n + 1, dtype=bool)
    valid[1:n] = s[1:] > s[:-1]  # cannot cut between equal scores
    correct = np.where(valid, correct, -1)
    best = np.flatnonzero(correct == correct.max())
    i = int(best[len(best) // 2])
    if i == 0:
        thr = _below(s[0])
    elif i == n:
        thr = float(s[-1])
    else:
        thr = float((s[i - 1] + s[i]) / 2.0)
        if not s[i - 1] <= thr < s[i]:  # midpoint rounding on adjacent floats
            thr = float(s[i - 1])
    return thr, float(correct[i] / n)


def contiguous_folds(n: int, n_folds: int = 10) -> list[np.ndarray]:
    """Index arrays of ``n_folds`` contiguous folds (the first ``n % n_folds`` one larger)."""
    if n_folds < 2:
        raise EdgeconvError(f"need at least 2 folds, got {n_folds}")
    if n < n_folds:
        raise EdgeconvError(f"{n} pairs are too few for {n_folds}-fold evaluation")
    return np.array_split(np.arange(n), n_folds)


def kfold_accuracy(scores, is_same, n_folds: int = 10) -> dict:
    """The n-fold verification protocol (see the module docstring).

    Returns ``{"n_folds", "accuracy", "accuracy_std", "threshold", "threshold_std",
    "fold_accuracies", "fold_thresholds"}``.
    """
    s, y = _as_scores_labels(scores, is_same)
    folds = contiguous_folds(len(s), n_folds)
    accs, thrs = [], []
    for k, test in enumerate(folds):
        train = np.concatenate([f for j, f in enumerate(folds) if j != k])
        thr, _ = best_threshold(s[train], y[train])
        accs.append(float(np.mean((s[test] > thr) == y[test])))
        thrs.append(thr)
    return {
        "n_folds": int(n_folds),
        "accuracy": float(np.mean(accs)),
        "accuracy_std": float(np.std(accs)),
        "threshold": float(np.mean(thrs)),
        "threshold_std": float(np.std(thrs)),
        "fold_accuracies": [float(a) for a in accs],
        "fold_thresholds": [float(t) for t in thrs],
    }


# ----------------------------------------------------------------------------- ROC
def roc_curve(scores, is_same) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full ROC: ``(far, tar, thresholds)``, FAR increasing from 0 to 1.

    Point ``j`` is the rule ``score > thresholds[j]``; the first point accepts nothing
    (threshold = the highest score), the last accepts everything.
    """
    s, y = _as_scores_labels(scores, is_same)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise EdgeconvError("ROC needs both same and different pairs")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    tp, fp = np.cumsum(y), np.cumsum(~y)
    last = np.flatnonzero(np.r_[s[1:] < s[:-1], True])  # last index of each distinct score
    tar = np.r_[0.0, tp[last] / n_pos]
    far = np.r_[0.0, fp[last] / n_neg]
    # accepting the group ending at `last[j]` means threshold = the next lower score
    nxt = np.r_[s[last[:-1] + 1], _below(s[-1])]
    thr = np.r_[s[0], nxt]
    return far, tar, thr


def roc_auc(scores, is_same) -> float:
    """Area under the ROC curve (trapezoids; ties count half)."""
    far, tar, _ = roc_curve(scores, is_same)
    return float(np.sum((far[1:] - far[:-1]) * (tar[1:] + tar[:-1]) / 2.0))


def threshold_at_far(scores, is_same, far: float) -> float:
    """Smallest threshold (rule ``score > threshold``) whose FAR is <= ``far``.

    With ``N`` impostor pairs at most ``floor(far * N)`` of them are accepted.  When
    ``far < 1 / N`` the threshold is the highest impostor score (FAR = 0); see
    :func:`tar_at_far` for the flag that reports this.
    """
    return tar_at_far(scores, is_same, far)["threshold"]


def tar_at_far(scores, is_same, far: float) -> dict:
    """True-accept rate at a target false-accept rate, with resolvability caveats.

    Returns ``{"far_target", "tar", "threshold", "far_achieved", "false_accepts_allowed",
    "num_negatives", "min_far", "resolvable", "note"}`` where ``min_far = 1 / N`` is
    the smallest non-zero FAR measurable with ``N`` impostor pairs.
    """
    s, y = _as_scores_labels(scores, is_same)
    far = float(far)
    if not 0.0 <= far <= 1.0:
        raise EdgeconvError(f"FAR must be in [0, 1], got {far}")
    neg = np.sort(s[~y])[::-1]
    pos = s[y]
    n_neg, n_pos = len(neg), len(pos)
    if n_neg == 0 or n_pos == 0:
        raise EdgeconvError("TAR@FAR needs both same and different pairs")
    allowed = int(math.floor(far * n_neg + 1e-9))
    if allowed >= n_neg:
        thr = _below(float(s.min()))
    else:
        thr = float(neg[allowed])
    fa = int(np.count_nonzero(neg > thr))
    min_far = 1.0 / n_neg
    resolvable = far >= min_far
    note = ""
    if not resolvable:
        note = (f"only {n_neg} different-identity pairs: the smallest non-zero FAR measurable "
                f"is {min_far:.3g} > {far:.3g}; TAR is reported at FAR = 0 (threshold at the "
                f"highest impostor score), a pessimistic estimate")
    elif allowed < 10:
        note = (f"only {allowed} false accept(s) allowed among {n_neg} impostor pairs: "
                f"the estimate is noisy")
    return {
        "far_target": far,
        "tar": float(np.count_nonzero(pos > thr) / n_pos),
        "threshold": thr,
        "far_achieved": float(fa / n_neg),
        "false_accepts_allowed": allowed,
        "num_negatives": int(n_neg),
        "min_far": float(min_far),
        "resolvable": bool(resolvable),
        "note": note,
    }


def eer(scores, is_same) -> dict:
    """Equal error rate: ``{"eer", "threshold"}`` (FAR = FRR, linearly interpolated)."""
    far, tar, thr = roc_curve(scores, is_same)
    frr = 1.0 - tar
    d = far - frr  # increasing from -1 to +1 along the curve
    i = int(np.argmax(d >= 0))
    if i == 0 or d[i] == 0:
        return {"eer": float((far[i] + frr[i]) / 2.0), "threshold": float(thr[i])}
    t = d[i - 1] / (d[i - 1] - d[i])
    rate = far[i - 1] + t * (far[i] - far[i - 1])
    return {"eer": float(rate), "threshold": float(thr[i - 1] + t * (thr[i] - thr[i - 1]))}


def roc_points(scores, is_same, num: int = 100) -> dict:
    """ROC sampled at ``num`` log-spaced FARs from ``1 / N_neg`` to 1 (for JSON / plots).

    Returns ``{"far": [...], "tar": [...], "threshold": [...]}`` (achieved FARs).
    """
    s, y = _as_scores_labels(scores, is_same)
    n_neg = int((~y).sum())
    if n_neg == 0 or y.sum() == 0:
        raise EdgeconvError("ROC needs both same and different pairs")
    targets = np.unique(np.r_[0.0, np.logspace(np.log10(1.0 / n_neg), 0.0, max(2, num))])
    pts = [tar_at_far(s, y, f) for f in targets]
    far, tar, thr = [], [], []
    for p in pts:
        if far and p["far_achieved"] == far[-1] and p["tar"] == tar[-1]:
            continue
        far.append(p["far_achieved"])
        tar.append(p["tar"])
        thr.append(p["threshold"])
    return {"far": far, "tar": tar, "threshold": thr}


# ----------------------------------------------------------------------------- reports
def evaluate_scores(scores, is_same, n_folds: int = 10, fars=DEFAULT_FARS,
                    roc_num: int = 100) -> dict:
    """Every metric on similarity scores, as a JSON-ready dict.

    Keys: ``num_pairs, num_same, num_different, accuracy, accuracy_std, threshold,
    kfold`` (the full :func:`kfold_accuracy` dict), ``eer, eer_threshold, auc,
    tar_at_far`` (list of :func:`tar_at_far` dicts), ``roc`` (:func:`roc_points`).
    """
    s, y = _as_scores_labels(scores, is_same)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise EdgeconvError(f"verification needs both same and different pairs "
                            f"(got {n_pos} same, {n_neg} different)")
    kf = kfold_accuracy(s, y, n_folds)
    e = eer(s, y)
    return {
        "num_pairs": int(len(s)),
        "num_same": n_pos,
        "num_different": n_neg,
        "accuracy": kf["accuracy"],
        "accuracy_std": kf["accuracy_std"],
        "threshold": kf["threshold"],
        "kfold": kf,
        "eer": e["eer"],
        "eer_threshold": e["threshold"],
        "auc": roc_auc(s, y),
        "tar_at_far": [tar_at_far(s, y, f) for f in fars],
        "roc": roc_points(s, y, roc_num),
    }


def evaluate_embeddings(left, right, is_same, left_flipped=None, right_flipped=None,
                        n_folds: int = 10, fars=DEFAULT_FARS, roc_num: int = 100) -> dict:
    """:func:`evaluate_scores` on the cosine similarity of paired embeddings.

    With ``left_flipped``/``right_flipped`` (embeddings of the horizontally flipped
    images) the flip test is applied.  Adds ``flip_test`` and ``embedding_norm``
    (mean L2 norm of the raw embeddings, insightface's "XNorm").
    """
    left = np.asarray(left, dtype=np.float64)
    right = np.asarray(right, dtype=np.float64)
    if left.ndim != 2 or left.shape != right.shape:
        raise EdgeconvError(f"left/right embeddings must both be (N, D), got "
                            f"{left.shape} and {right.shape}")
    if not (np.isfinite(left).all() and np.isfinite(right).all()):
        raise EdgeconvError("embeddings contain NaN or inf (did the model diverge?)")
    norm = float(np.mean(np.linalg.norm(np.concatenate([left, right]), axis=1)))
    flip = left_flipped is not None or right_flipped is not None
    if flip:
        if left_flipped is None or right_flipped is None:
            raise EdgeconvError("flip test needs both left_flipped and right_flipped")
        left = flip_test_embeddings(left, left_flipped)
        right = flip_test_embeddings(right, right_flipped)
    out = evaluate_scores(cosine_scores(left, right), is_same, n_folds, fars, roc_num)
    out["flip_test"] = bool(flip)
    out["embedding_norm"] = norm
    return out


def summary_line(result: dict, name: str = "") -> str:
    """One line for logs: accuracy +- std, threshold, EER, TAR@FAR (flagged if unresolved)."""
    parts = [f"{name}: " if name else "",
             f"acc {100 * result['accuracy']:.2f} +- {100 * result['accuracy_std']:.2f} %",
             f" | thr {result['threshold']:.4f}",
             f" | EER {100 * result['eer']:.2f} %"]
    for t in result.get("tar_at_far", []):
        flag = "" if t["resolvable"] else " (unresolved: FAR 0)"
        parts.append(f" | TAR@FAR={t['far_target']:.0e} {100 * t['tar']:.2f} %{flag}")
    return "".join(parts)


def roc_plot(path: str | os.PathLike, curves, title: str | None = None,
             fars=DEFAULT_FARS) -> Path:
    """Write a ROC plot (TAR vs FAR, log FAR axis) as PNG, atomically.

    ``curves``: one result of :func:`evaluate_scores` (or a ``roc`` dict with ``far``/
    ``tar``), or a mapping ``{label: result}``, or a list of ``(label, result)``.
    Needs matplotlib (``pip install 'edgeconv[plot]'``); imported lazily, no pyplot.
    """
    from edgeconv.errors import require
    from edgeconv.fileio import atomic_path

    require("matplotlib", "plot")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if isinstance(curves, dict) and ("roc" in curves or "far" in curves):
        items = [("", curves)]
    elif isinstance(curves, dict):
        items = list(curves.items())
    else:
        items = list(curves)
    if not items:
        raise EdgeconvError("roc_plot needs at least one curve")
    fig = Figure(figsize=(5.5, 4.5 + 0.25 * len(items)), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    xmin = 1.0
    for label, res in items:
        roc = res.get("roc", res)
        far = np.asarray(roc["far"], dtype=float)
        tar = np.asarray(roc["tar"], dtype=float)
        if far.shape != tar.shape or far.size == 0:
            raise EdgeconvError(f"curve {label!r}: far/tar must be equal-length, non-empty")
        pos = far > 0
        if pos.any():
            xmin = min(xmin, float(far[pos].min()))
        txt = label or "ROC"
        if "accuracy" in res:
            txt += f" (acc {100 * res['accuracy']:.2f}%, EER {100 * res['eer']:.2f}%)"
        ax.step(np.where(pos, far, np.nan), tar, where="post", label=txt)
    for f in fars:
        ax.axvline(f, color="0.7", lw=0.8, ls="--")
        ax.text(f, 1.0, f" FAR {f:g}", rotation=90, va="top", ha="right", fontsize=7,
                color="0.4")
    ax.set_xscale("log")
    ax.set_xlim(max(min(xmin, min(fars)) / 2, 1e-7), 1.0)
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("false accept rate (FAR)")
    ax.set_ylabel("true accept rate (TAR)")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title or "verification ROC")
    # below the axes: a legend inside would cover the curves where they matter (low FAR)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=8, ncol=1,
              frameon=False)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
