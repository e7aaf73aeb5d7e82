"""ImageFolder training sets: one sub-folder per identity (torch-free).

Layout (CASIA-WebFace style)::

    root/
      0000045/001.jpg 002.jpg ...
      0000099/001.jpg ...

Class indices are the sorted sub-folder names (``0 .. num_classes - 1``), files are
sorted too (the same order as ``torchvision.datasets.ImageFolder``), so the order is
deterministic across machines.  Images are found
recursively inside each class folder; extensions ``.jpg .jpeg .png .bmp .webp``
(any case).  Hidden files and folders (starting with ``.``) are skipped.
Items are ``(uint8 (H, W, 3) RGB, label)``, decoded on access and resized (bilinear)
only when their size differs from ``size``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgeconv.data.images import IMAGE_EXTENSIONS, is_image_file, load_image
from edgeconv.errors import EdgeconvError


def _walk_images(folder: Path) -> list[Path]:
    """Image files below ``folder``, in torchvision's order (walk entries sorted by path).

    Symbolic links are followed but each real folder is visited once (a link loop ends the
    walk); an image name that is not a regular file (a FIFO, a device such as /dev/zero, a
    dangling link) is refused here, before training starts, in one line."""
    from edgeconv.fileio import is_regular_file, walk_files

    found = []
    walk = list(walk_files(folder))
    for dirpath, filenames in sorted(walk):
        for name in sorted(filenames):
            if not name.startswith(".") and is_image_file(name):
                p = Path(dirpath) / name
                if not is_regular_file(p):
                    what = ("a dangling symbolic link" if not os.path.exists(p)
                            else "not a regular file (a FIFO, device or folder)")
                    raise EdgeconvError(f"{p}: {what}, not an image file")
                found.append(p)
    return found


class ImageFolder:
    """Face images in ``root/<identity>/...``; ``ds[i] -> (uint8 (H, W, 3), label)``.

    Args:
        root: the folder holding one sub-folder per identity.
        size: ``(height, width)`` (or an int); ``None`` keeps each image's own size.
        allow_empty: skip identity folders without images instead of failing (they
            then get no class index).
    """

    def __init__(self, root: str | os.PathLike, size=(96, 96), allow_empty: bool = False):
        self.root = Path(root)
        if not self.root.exists():
            raise EdgeconvError(f"{self.root}: image folder not found")
        if not self.root.is_dir():
            raise EdgeconvError(f"{self.root}: not a folder (expected one sub-folder per identity)")
        if size is not None:
            from edgeconv.config import parse_input_size

            size = parse_input_size(size)
        self.size = size
        class_dirs = sorted(d for d in self.root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not class_dirs:
            loose = [p for p in self.root.iterdir() if p.is_file() and is_image_file(p)]
            hint = (f" (found {len(loose)} images directly in it: put each identity's images "
                    f"in its own sub-folder)") if loose else ""
            raise EdgeconvError(f"{self.root}: no identity sub-folders{hint}")
        samples: list[tuple[Path, int]] = []
        classes: list[str] = []
        empty: list[str] = []
        for d in class_dirs:
            files = _walk_images(d)
            if not files:
                empty.append(d.name)
                continue
            label = len(classes)
            classes.append(d.name)
            samples.extend((f, label) for f in files)
        if empty and not allow_empty:
            shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
            raise EdgeconvError(
                f"{self.root}: {len(empty)} identity folder(s) contain no images "
                f"({'/'.join(IMAGE_EXTENSIONS)}): {shown}")
        if not samples:
            raise EdgeconvError(f"{self.root}: no images found "
                                f"(extensions {' '.join(IMAGE_EXTENSIONS)})")
        self.classes = classes
        self.class_to_idx = {c: i for i, c in enumerate(classes)}
        self.samples = samples
        self.skipped_empty = empty

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def labels(self) -> np.ndarray:
        return np.array([lb for _, lb in self.samples], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return (f"ImageFolder({str(self.root)!r}, {len(self.samples)} images, "
                f"{self.num_classes} identities, size={self.size})")

    def __getitem__(self, i: int):
        path, label = self.samples[i]
        return load_image(path, size=self.size), label

    def check(self, limit: int | None = None) -> int:
        """Decode (up to ``limit``) images now so corrupt files fail early; returns the count."""
        n = len(self) if limit is None else min(len(self), int(limit))
        for i in range(n):
            self[i]
        return n
