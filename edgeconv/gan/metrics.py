"""Fidelity / diversity of generated faces (numpy only, torch-free).

* :func:`precision_recall`: improved precision and recall (Kynkaanniemi et al. 2019). Each set's
  manifold is the union of balls around its feature vectors with the radius to the k-th
  nearest neighbour (k = 3) in the same set. Precision = share of generated samples inside the
  real manifold (fidelity); recall = share of real samples inside the generated manifold
  (diversity). Identical sets give 1, 1; sets far apart give 0, 0.
* :func:`fid`: Frechet distance of Gaussians fitted to two feature sets.
* Feature spaces: :class:`PixelFeatures` (16x16 RGB thumbnails, in [0, 1], through a fixed
  seeded Gaussian projection to 64 dimensions: plain pixel statistics, no learned model) and
  :class:`EmbeddingFeatures` (an exported edgeconv face model through
  :class:`edgeconv.runtime.embedder.Embedder`: the L2-normalised embeddings).
* :func:`artifact_rate`: the share of generated faces the face model cannot embed near any
  real face. ``nearest`` = best cosine of a face's embedding to a reference set of real faces
  (identities disjoint from those it is compared with); the cut is the ``q``-quantile (1%) of
  that score over held-out REAL faces, so by construction about 1% of real faces count as
  "artifacts" (the control, reported next to it): a generated face below the cut is less
  face-like, to the verifier, than 99% of real faces. Being below it says the verifier sees no
  face it knows the like of: broken geometry, melted features, blobs.
  :func:`outlier_rate` is the same rule in a distance space (pixel features): the share of
  samples farther from every real reference than 99% of held-out real faces are.
"""

from __future__ import annotations

import numpy as np

K = 3


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def knn_radii(x: np.ndarray, k: int = K) -> np.ndarray:
    """Distance of each row to its k-th nearest other row."""
    d = _sqdist(x, x)
    np.fill_diagonal(d, np.inf)
    k = min(int(k), len(x) - 1)
    return np.sqrt(np.partition(d, k - 1, axis=1)[:, k - 1])


def _coverage(samples: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> float:
    d = np.sqrt(_sqdist(samples, centres))
    return float((d <= radii[None, :] * (1 + 1e-9) + 1e-12).any(1).mean())


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = K) -> tuple[float, float]:
    """(precision, recall) of ``fake`` against ``real`` (rows: feature vectors)."""
    if len(real) <= k or len(fake) <= k:
        raise ValueError(f"precision/recall needs more than k={k} samples in each set")
    return (_coverage(fake, real, knn_radii(real, k)),
            _coverage(real, fake, knn_radii(fake, k)))


def _sqrtm_psd(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((c + c.T) / 2)
    return (v * np.sqrt(np.maximum(w, 0))) @ v.T


def fid(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + tr(Ca + Cb - 2 (Ca^1/2 Cb Ca^1/2)^1/2)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu = a.mean(0) - b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    s = _sqrtm_psd(ca)
    cross = np.sqrt(np.maximum(np.linalg.eigvalsh(s @ cb @ s), 0)).sum()
    return float(mu @ mu + np.trace(ca) + np.trace(cb) - 2 * cross)


class PixelFeatures:
    """uint8 NHWC faces -> 16x16 RGB thumbnails (area mean) in [0, 1] -> fixed projection."""

    def __init__(self, side: int = 16, dim: int = 64, seed: int = 0):
        self.side, self.dim = int(side), int(dim)
        rng = np.random.default_rng([int(seed), 0x91C])
        self.proj = rng.standard_normal((self.side * self.side * 3, self.dim)) / np.sqrt(
            self.side * self.side * 3)

    def thumbnails(self, images: np.ndarray) -> np.ndarray:
        x = np.asarray(images, np.float64) / 255.0
        n, h, w, c = x.shape
        s = self.side
        ys = (np.arange(s + 1) * h) // s
        xs = (np.arange(s + 1) * w) // s
        cs = np.cumsum(np.cumsum(np.pad(x, ((0, 0), (1, 0), (1, 0), (0, 0))), 1), 2)
        tot = (cs[:, ys[1:]][:, :, xs[1:]] - cs[:, ys[:-1]][:, :, xs[1:]]
               - cs[:, ys[1:]][:, :, xs[:-1]] + cs[:, ys[:-1]][:, :, xs[:-1]])
        area = np.outer(np.diff(ys), np.diff(xs))[None, :, :, None]
        return (tot / area).reshape(n, -1)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.thumbnails(images) @ self.proj


class EmbeddingFeatures:
    """An exported face model's L2-normalised embeddings (faces resized to its input)."""

    def __init__(self, model_path, threads: int = 1):
        from edgeconv.runtime.embedder import Embedder

        self.embedder = Embedder(model_path, threads=threads)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        out = [self.embedder.embed_images(images[i:i + 256]) for i in range(0, len(images), 256)]
        return np.concatenate(out).astype(np.float64)

    def close(self):
        self.embedder.close()


def outlier_cut(heldout: np.ndarray, reference: np.ndarray, q: float = 0.99) -> float:
    """The ``q``-quantile of held-out real samples' distance to their nearest reference."""
    return float(np.quantile(np.sqrt(_sqdist(heldout, reference).min(1)), q))


def outlier_rate(feats: np.ndarray, reference: np.ndarray, cut: float) -> float:
    """Share of samples farther from every reference sample than ``cut`` (the pixel-space
    artifact rate: a sample farther from any real face than 99% of real faces are)."""
    return float((np.sqrt(_sqdist(feats, reference).min(1)) > cut).mean())


def nearest_cosine(emb: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Best cosine of each (unit-norm) embedding to any reference embedding."""
    return (np.asarray(emb, np.float64) @ np.asarray(reference, np.float64).T).max(1)


def artifact_cut(real_heldout: np.ndarray, reference: np.ndarray, q: float = 0.01) -> float:
    """The ``q``-quantile of held-out real faces' :func:`nearest_cosine`."""
    return float(np.quantile(nearest_cosine(real_heldout, reference), q))


def artifact_rate(emb: np.ndarray, reference: np.ndarray, cut: float) -> float:
    """Share of faces whose nearest real reference is below ``cut`` (see the module)."""
    return float((nearest_cosine(emb, reference) < cut).mean())
