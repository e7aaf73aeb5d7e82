"""Data sources for training and verification (torch-free; torch adapters live in
:mod:`edgeconv.data.torch_datasets`).

Training sets (items ``(uint8 (H, W, 3) RGB, int label)``, attribute ``num_classes``):

* :class:`~edgeconv.data.synthetic.SyntheticFaces` - deterministic procedural aligned
  faces (the ``--data synthetic`` default);
* :class:`~edgeconv.data.imagefolder.ImageFolder` - one sub-folder per identity.

Verification sets (:class:`~edgeconv.data.pairs.PairSet`: ``left``, ``right`` uint8
(N, H, W, 3), ``is_same`` bool (N,)):

* ``SyntheticFaces.make_pairs`` - identities disjoint from the training identities;
* :func:`~edgeconv.data.pairs.load_pair_list` - ``left right flag`` text files;
* :func:`~edgeconv.data.insightface_bin.load_bin` - insightface ``.bin`` files
  (restricted unpickler: never plain ``pickle.load``).

:func:`open_pairs` picks the right loader from a spec string.
"""

from __future__ import annotations

import os

from edgeconv.data.images import IMAGE_EXTENSIONS, load_image, normalize
from edgeconv.data.imagefolder import ImageFolder
from edgeconv.data.insightface_bin import load_bin, write_bin
from edgeconv.data.pairs import PairSet, load_pair_list, read_pair_list, write_pair_list
from edgeconv.data.synthetic import SyntheticFaces, layout_statistics
from edgeconv.errors import EdgeconvError

__all__ = [
    "IMAGE_EXTENSIONS", "ImageFolder", "PairSet", "SyntheticFaces", "layout_statistics",
    "load_bin", "load_image", "load_pair_list", "normalize", "open_pairs", "read_pair_list",
    "write_bin", "write_pair_list",
]


def open_pairs(spec: str | os.PathLike, size=(96, 96), num_pairs: int = 1000,
               seed: int = 0, difficulty=0.5, train_identities: int = 0,
               max_pairs: int | None = None) -> PairSet:
    """Verification pairs from ``"synthetic"``, a ``.bin`` file or a pair-list file.

    For ``"synthetic"``: ``num_pairs`` pairs rendered with the data seed ``seed`` and
    ``difficulty`` from identities disjoint from training (``train_identities`` is the
    training set's identity count, checked against the default identity offset).
    ``max_pairs`` limits file-based sets (first pairs).
    """
    text = str(spec)
    if text == "synthetic":
        ds = SyntheticFaces(max(1, int(train_identities)), 1, size=size, seed=seed,
                            difficulty=difficulty, cache=False)
        return ds.make_pairs(num_pairs, seed=seed)
    if not os.path.exists(text):
        raise EdgeconvError(f"{text}: verification set not found "
                            f"(expected 'synthetic', a .bin file or a pair list)")
    if text.lower().endswith(".bin"):
        return load_bin(text, size=size, max_pairs=max_pairs)
    return load_pair_list(text, size=size, max_pairs=max_pairs)
