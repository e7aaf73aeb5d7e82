"""Thin torch adapters over the torch-free data sources (the only torch import in data/).

``FaceDataset`` wraps any map-style source whose items are ``(uint8 (H, W, 3), label)``
(:class:`~edgeconv.data.synthetic.SyntheticFaces`,
:class:`~edgeconv.data.imagefolder.ImageFolder`) and yields normalised float32 CHW
tensors ``(x / 255 - 0.5) / 0.5`` with an optional random horizontal flip (the only
augmentation of the published recipe).  Flips draw from torch's global RNG, which
``DataLoader`` seeds per worker; pass ``generator`` for a reproducible stream in the
main process.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from edgeconv.data.images import normalize
from edgeconv.errors import EdgeconvError


def to_tensor(images: np.ndarray, flip: bool = False) -> torch.Tensor:
    """uint8 (N, H, W, 3) or (H, W, 3) -> normalised float32 NCHW (CHW) tensor.

    ``flip=True`` mirrors horizontally (for the flip test).
    """
    x = normalize(images)
    if flip:
        x = x[..., ::-1]
    return torch.from_numpy(np.ascontiguousarray(x))


def iter_batches(images: np.ndarray, batch_size: int = 256, flip: bool = False):
    """Yield normalised tensor batches of a uint8 (N, H, W, 3) array, in order."""
    if batch_size < 1:
        raise EdgeconvError(f"batch_size must be >= 1, got {batch_size}")
    for lo in range(0, len(images), batch_size):
        yield to_tensor(images[lo:lo + batch_size], flip=flip)


class FaceDataset(Dataset):
    """``source[i] = (uint8 (H, W, 3), label)`` -> ``(float32 (3, H, W) tensor, int label)``.

    Args:
        source: any map-style face source (``__len__``/``__getitem__``); its
            ``num_classes`` is passed through.
        train: enable the random horizontal flip (probability ``flip_prob``).
        preload: call ``source.materialize()`` when it has one (synthetic data), so
            ``DataLoader`` workers share the rendered images instead of re-rendering.
        generator: optional ``torch.Generator`` for the flips.
    """

    def __init__(self, source, train: bool = False, flip_prob: float = 0.5, preload: bool = True,
                 generator: torch.Generator | None = None):
        if not 0.0 <= flip_prob <= 1.0:
            raise EdgeconvError(f"flip_prob must be in [0, 1], got {flip_prob}")
        self.source = source
        self.train = bool(train)
        self.flip_prob = float(flip_prob)
        self.generator = generator
        if preload and hasattr(source, "materialize"):
            source.materialize()

    @property
    def num_classes(self) -> int:
        return int(self.source.num_classes)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i):
        img, label = self.source[int(i)]
        flip = self.train and self.flip_prob > 0 and \
            bool(torch.rand((), generator=self.generator) < self.flip_prob)
        return to_tensor(img, flip=flip), int(label)
