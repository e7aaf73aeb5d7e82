"""Post-processing and metrics of disc / cup masks (numpy only, torch-free, scipy-free).

Post-processing (the release's, without its defects): per channel, threshold the probability
at 0.5, keep the largest 8-connected component, fill its holes (background regions not
4-connected to the border); then the cup is clipped to the disc.

Metrics per structure, in pixels of the evaluated image:

* DSC = 2|P & G| / (|P| + |G|), as a percentage; both empty -> 100, one empty -> 0;
* HD95: the 95th percentile of the symmetric boundary-to-boundary distances (all distances
  from P's boundary pixels to G's boundary, and from G's to P's, pooled);
* ASD: the mean of those pooled distances.

An EMPTY prediction (or an empty ground truth with a non-empty prediction) gets DSC 0 and
HD95 = ASD = the image diagonal, the largest distance possible in the image: a missed disc is
the worst result, never a perfect one (the public release scored it as 100). Both empty:
distances 0.
"""

from __future__ import annotations

import math

import numpy as np

THRESHOLD = 0.5


# ----------------------------------------------------------------------------- components
def label_components(mask: np.ndarray, connectivity: int = 8) -> tuple[np.ndarray, int]:
    """Connected components of a boolean (H, W) mask: (int32 labels, 0 = background, count).

    Union-find over run-length segments of each row (fast enough in numpy for 256x256)."""
    m = np.asarray(mask, bool)
    h, w = m.shape
    labels = np.zeros((h, w), np.int32)
    parent = [0]

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    prev_runs: list[tuple[int, int, int]] = []
    diag = 1 if connectivity == 8 else 0
    for y in range(h):
        row = m[y]
        if not row.any():
            prev_runs = []
            continue
        d = np.diff(np.concatenate([[0], row.view(np.int8), [0]]))
        starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
        runs = []
        j = 0
        for s, e in zip(starts.tolist(), ends.tolist()):
            lab = 0
            while j < len(prev_runs) and prev_runs[j][1] + diag <= s:
                j += 1
            k = j
            while k < len(prev_runs) and prev_runs[k][0] < e + diag:
                other = find(prev_runs[k][2])
                if lab == 0:
                    lab = other
                elif other != lab:
                    ra, rb = find(lab), other
                    if ra != rb:
                        parent[max(ra, rb)] = min(ra, rb)
                    lab = min(ra, rb)
                k += 1
            if lab == 0:
                lab = len(parent)
                parent.append(lab)
            labels[y, s:e] = lab
            runs.append((s, e, lab))
        prev_runs = runs
    if len(parent) == 1:
        return labels, 0
    roots = np.array([find(i) for i in range(len(parent))], np.int32)
    uniq, compact = np.unique(roots, return_inverse=True)
    compact = compact.astype(np.int32)  # root 0 -> 0
    return compact[labels], int(len(uniq) - 1)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of a boolean mask (ties: the first in raster
    order); an empty mask stays empty."""
    labels, n = label_components(mask, 8)
    if n <= 1:
        return labels > 0
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (int(np.argmax(sizes)) + 1)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill background regions that are not 4-connected to the image border."""
    m = np.asarray(mask, bool)
    labels, n = label_components(~m, 4)
    if n == 0:
        return m.copy()
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    outside = np.isin(labels, border[border > 0])
    return ~outside


def postprocess(prob: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
    """(2, H, W) probabilities [cup, disc] -> uint8 0/1 masks: threshold, largest connected
    component, fill holes, cup clipped to the disc."""
    prob = np.asarray(prob)
    out = np.zeros(prob.shape, np.uint8)
    for c in range(prob.shape[0]):
        out[c] = fill_holes(largest_component(prob[c] > threshold))
    if prob.shape[0] == 2:
        out[0] &= out[1]
    return out


# ----------------------------------------------------------------------------- metrics
def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """DSC in percent; both empty -> 100, exactly one empty -> 0."""
    p, g = np.asarray(pred, bool), np.asarray(gt, bool)
    sp, sg = int(p.sum()), int(g.sum())
    if sp == 0 and sg == 0:
        return 100.0
    return 200.0 * int((p & g).sum()) / (sp + sg)


def boundary(mask: np.ndarray) -> np.ndarray:
    """(k, 2) coordinates of the mask's boundary pixels (mask pixels with a 4-neighbour
    outside the mask or the image)."""
    m = np.asarray(mask, bool)
    p = np.pad(m, 1, constant_values=False)
    inner = m & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return np.argwhere(m & ~inner).astype(np.float64)


def _min_dists(a: np.ndarray, b: np.ndarray, chunk: int = 2048) -> np.ndarray:
    out = np.empty(len(a))
    for i in range(0, len(a), chunk):
        d = ((a[i:i + chunk, None, :] - b[None, :, :]) ** 2).sum(-1)
        out[i:i + chunk] = np.sqrt(d.min(1))
    return out


def surface_distances(pred: np.ndarray, gt: np.ndarray) -> dict:
    """{"hd95", "asd"} in pixels (see module for empty masks)."""
    p, g = np.asarray(pred, bool), np.asarray(gt, bool)
    bp, bg = boundary(p), boundary(g)
    if len(bp) == 0 and len(bg) == 0:
        return {"hd95": 0.0, "asd": 0.0}
    if len(bp) == 0 or len(bg) == 0:
        diag = math.hypot(*p.shape)
        return {"hd95": diag, "asd": diag}
    d = np.concatenate([_min_dists(bp, bg), _min_dists(bg, bp)])
    return {"hd95": float(np.percentile(d, 95)), "asd": float(d.mean())}


def score(pred: np.ndarray, gt: np.ndarray) -> dict:
    """(2, H, W) post-processed prediction vs ground truth [cup, disc] ->
    {"cup": {"dsc", "hd95", "asd"}, "disc": {...}}."""
    from edgeconv.segmentation import CLASSES

    out = {}
    for c, name in enumerate(CLASSES):
        out[name] = {"dsc": dice(pred[c], gt[c]), **surface_distances(pred[c], gt[c])}
    return out


def summarise(scores: list[dict]) -> dict:
    """Mean of :func:`score` dicts: {"cup": {"dsc": mean, ...}, ..., "n": count}."""
    from edgeconv.segmentation import CLASSES

    out: dict = {"n": len(scores)}
    for name in CLASSES:
        out[name] = {k: float(np.mean([s[name][k] for s in scores])) if scores else float("nan")
                     for k in ("dsc", "hd95", "asd")}
    return out
