"""Verification pair sets and pair-list files (torch-free).

A :class:`PairSet` is what every validation source produces (synthetic pairs,
pair-list files, insightface ``.bin`` files): ``left`` and ``right`` RGB uint8 arrays
of shape (N, H, W, 3) and ``is_same`` a bool array (N,).  It unpacks as a 3-tuple::

    left, right, is_same = load_pair_list("lfw_pairs.txt", size=(96, 96))

Pair-list format (as in the public TVConv release): one pair per line,
``left right flag`` separated by whitespace, flag ``1`` = same person and ``-1``
= different people (``0`` is also accepted as "different").  Paths are relative to
the folder holding the list file, or to ``root`` when given; absolute paths are kept.
Blank lines and lines starting with ``#`` are ignored.  Paths containing whitespace
are not supported.  Errors name ``file:line``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from edgeconv.errors import EdgeconvError


@dataclass
class PairSet:
    """Verification pairs: ``left``/``right`` uint8 (N, H, W, 3), ``is_same`` bool (N,).

    ``len(pairs)`` is the number of pairs; ``left, right, is_same = pairs`` unpacks.
    """

    left: np.ndarray
    right: np.ndarray
    is_same: np.ndarray

    def __len__(self) -> int:
        return len(self.is_same)

    def __iter__(self):
        return iter((self.left, self.right, self.is_same))

    @property
    def num_pairs(self) -> int:
        return int(len(self.is_same))

    @property
    def num_same(self) -> int:
        return int(np.count_nonzero(self.is_same))

    def interleaved(self) -> np.ndarray:
        """Images in insightface order ``[l0, r0, l1, r1, ...]``: uint8 (2N, H, W, 3)."""
        out = np.empty((2 * len(self.left), *self.left.shape[1:]), dtype=self.left.dtype)
        out[0::2] = self.left
        out[1::2] = self.right
        return out

    def check(self, name: str = "pairs") -> "PairSet":
        """Validate shapes/dtypes; returns self."""
        left, right, same = self.left, self.right, np.asarray(self.is_same)
        if left.shape != right.shape or left.ndim != 4 or left.shape[-1] != 3:
            raise EdgeconvError(f"{name}: left/right must both be (N, H, W, 3), got "
                                f"{left.shape} and {right.shape}")
        if left.dtype != np.uint8 or right.dtype != np.uint8:
            raise EdgeconvError(f"{name}: images must be uint8")
        if same.shape != (left.shape[0],) or same.dtype != np.bool_:
            raise EdgeconvError(f"{name}: is_same must be a bool array of length {left.shape[0]}")
        return self


def check_pair_count(n: int, size, option: str = "pairs", where: str = "") -> int:
    """Refuse, before anything is decoded or allocated, a pair count whose images (two uint8
    RGB images per pair at ``size``) would not fit the memory limit."""
    from edgeconv.options import check_size

    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    return check_size(n, f"{where + ': ' if where else ''}{option}", 2 * h * w * 3,
                      f"decoded {h}x{w} images")


class PairEntry(NamedTuple):
    """One parsed line of a pair list."""

    left: Path
    right: Path
    is_same: bool
    line: int


_FLAGS = {"1": True, "+1": True, "-1": False, "0": False}


def read_pair_list(path: str | os.PathLike, root: str | os.PathLike | None = None,
                   check_files: bool = True) -> list[PairEntry]:
    """Parse a pair-list file into :class:`PairEntry` rows (no image decoding).

    Raises :class:`EdgeconvError` with ``file:line`` for malformed lines, and (when
    ``check_files``) for image paths that do not exist.
    """
    from edgeconv.fileio import read_regular_file

    path = Path(path)
    data = read_regular_file(path, "pair list")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise EdgeconvError(f"{path}: not a text pair list (not UTF-8); "
                            f"a .bin file needs the insightface loader") from None
    if text.startswith("\ufeff"):  # a byte-order mark is not part of the first file name
        text = text[1:]
    base = Path(root) if root is not None else path.parent
    if root is not None and not base.is_dir():
        raise EdgeconvError(f"{base}: image root folder not found")
    from edgeconv.fileio import is_regular_file

    entries: list[PairEntry] = []
    missing: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 3:
            raise EdgeconvError(
                f"{path}:{lineno}: expected 'left right flag' (3 fields), got {len(fields)}: "
                f"{line[:80]!r}")
        flag = fields[2]
        if flag not in _FLAGS:
            raise EdgeconvError(
                f"{path}:{lineno}: flag must be 1 (same) or -1 (different), got {flag!r}")
        left, right = base / fields[0], base / fields[1]
        if check_files:
            for p in (left, right):
                if len(missing) < 5 and not is_regular_file(p):
                    why = ("not a regular file (a FIFO, device or folder)" if os.path.exists(p)
                           else "image not found")
                    missing.append(f"{path}:{lineno}: {why}: {p}")
        entries.append(PairEntry(left, right, _FLAGS[flag], lineno))
    if missing:
        more = "" if len(missing) < 5 else " (showing the first 5)"
        raise EdgeconvError("; ".join(missing) + more)
    if not entries:
        raise EdgeconvError(f"{path}: pair list has no pairs")
    return entries


def load_pair_list(path: str | os.PathLike, size=(96, 96),
                   root: str | os.PathLike | None = None, max_pairs: int | None = None) -> PairSet:
    """Read a pair list and decode its images (each file once) into a :class:`PairSet`."""
    from edgeconv.data.images import load_image

    entries = read_pair_list(path, root=root)
    if max_pairs is not None:
        entries = entries[: int(max_pairs)]
    check_pair_count(len(entries), size, "pairs", str(path))
    cache: dict[Path, np.ndarray] = {}

    def get(p: Path) -> np.ndarray:
        img = cache.get(p)
        if img is None:
            img = cache[p] = load_image(p, size=size)
        return img

    first = get(entries[0].left)
    n = len(entries)
    left = np.empty((n, *first.shape), dtype=np.uint8)
    right = np.empty_like(left)
    for k, e in enumerate(entries):
        left[k], right[k] = get(e.left), get(e.right)
    same = np.array([e.is_same for e in entries], dtype=bool)
    return PairSet(left, right, same)


def write_pair_list(path: str | os.PathLike, pairs, relative_to: str | os.PathLike | None = None) -> Path:
    """Write ``(left, right, is_same)`` rows as a pair list (atomically).

    Paths are written relative to ``relative_to`` (default: the list's folder) when
    they lie below it.  Paths containing whitespace are refused.
    """
    from edgeconv.fileio import atomic_write_text

    path = Path(path)
    base = Path(relative_to) if relative_to is not None else path.parent
    lines = []
    for left, right, same in pairs:
        cols = []
        for p in (Path(left), Path(right)):
            try:
                rel = os.path.relpath(p, base) if p.is_absolute() == base.is_absolute() else str(p)
            except ValueError:  # pragma: no cover - different drives on Windows
                rel = str(p)
            if rel.startswith(".."):
                rel = str(p)
            rel = rel.replace(os.sep, "/")
            if any(ch.isspace() for ch in rel):
                raise EdgeconvError(f"pair-list paths cannot contain whitespace: {rel!r}")
            cols.append(rel)
        lines.append(f"{cols[0]} {cols[1]} {1 if same else -1}")
    return atomic_write_text(path, "\n".join(lines) + "\n")
