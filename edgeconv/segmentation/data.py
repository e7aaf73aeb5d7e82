"""Segmentation data: the synthetic centres, real image + mask folders, domain splits.

Torch-free (numpy arrays; ``edgeconv.segmentation.train`` wraps them in tensors).

Folder formats (``--data DIR``): DIR holds one folder per domain (centre), sorted by name;
each domain has an image folder and a mask folder whose files pair by stem, in one of the
layouts::

    DIR/<domain>/image/*.png|jpg   + DIR/<domain>/mask/*.png            (REFUGE-style)
    DIR/<domain>/{train,test}/ROIs/image + .../ROIs/mask                (DoFE; train and
                                                                          test are merged)

Masks: one-channel PNG (or RGB with equal channels) in the REFUGE / DoFE encoding and only
that: **0 = cup, 128 = disc rim (disc minus cup), 255 = background**; any other value is
refused in one line (a mask saved as JPEG, a 0/1 mask, a colour overlay), as is a mask folder
whose stems do not match the image folder's, or a mask whose size differs from its image's.
Images and masks are resized (bilinear / nearest) to the training size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeconv.errors import EdgeconvError

#: the mask encoding read (REFUGE / DoFE): value -> meaning
MASK_VALUES = {0: "cup", 128: "disc rim", 255: "background"}
MASK_RULE = "masks must hold only 0 (cup), 128 (disc rim) and 255 (background)"
_LAYOUTS = (("image", "mask"), ("ROIs/image", "ROIs/mask"))


@dataclass
class Domain:
    """One centre: uint8 images (N, H, W, 3), uint8 masks (N, 2, H, W) [cup, disc], names."""

    name: str
    images: np.ndarray
    masks: np.ndarray
    names: list

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, idx) -> "Domain":
        idx = np.asarray(idx, int)
        return Domain(self.name, self.images[idx], self.masks[idx],
                      [self.names[i] for i in idx])


# ----------------------------------------------------------------------------- synthetic
def synthetic_domains(n_per_domain: int, size=128, seed: int = 0, start: int = 0) -> list:
    """The four rendered centres (edgeconv.segmentation.fundus), ``n_per_domain`` each."""
    from edgeconv.segmentation.fundus import CENTRES, FundusRenderer

    r = FundusRenderer(size, seed)
    out = []
    for c, prof in enumerate(CENTRES):
        imgs, masks = r.render_many(c, n_per_domain, start=start)
        out.append(Domain(prof.name, imgs, masks,
                          [f"centre{c}_{start + i:05d}" for i in range(n_per_domain)]))
    return out


# ----------------------------------------------------------------------------- masks
def decode_mask(arr: np.ndarray, name: str) -> np.ndarray:
    """REFUGE-encoded (H, W) or (H, W, 3) uint8 mask -> (2, H, W) uint8 [cup, disc]."""
    a = np.asarray(arr)
    if a.ndim == 3:
        if not (a[..., :1] == a).all():
            raise EdgeconvError(f"{name}: a colour mask; {MASK_RULE}")
        a = a[..., 0]
    bad = np.setdiff1d(np.unique(a), np.array(list(MASK_VALUES)))
    if bad.size:
        raise EdgeconvError(f"{name}: mask value(s) {', '.join(map(str, bad[:5].tolist()))}"
                            f"{' ...' if bad.size > 5 else ''} not allowed; {MASK_RULE}")
    cup = a == 0
    disc = a <= 128
    return np.stack([cup, disc]).astype(np.uint8)


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """A mask file (read through edgeconv.fileio, decoded without colour conversion)."""
    import io

    from PIL import Image

    from edgeconv.data.images import sniff_format
    from edgeconv.fileio import read_regular_file

    data = read_regular_file(path, "mask file", 256 << 20)
    if sniff_format(data) not in ("PNG", "BMP"):
        raise EdgeconvError(f"{path}: masks must be PNG or BMP files (lossless); {MASK_RULE}")
    try:
        with Image.open(io.BytesIO(data), formats=["PNG", "BMP"]) as im:
            if im.mode == "P":
                im = im.convert("RGB")
            elif im.mode not in ("L", "RGB", "RGBA", "I;16", "I"):
                im = im.convert("L")
            arr = np.asarray(im)
    except (OSError, ValueError) as exc:
        raise EdgeconvError(f"{path}: cannot decode the mask ({exc})") from None
    if arr.ndim == 3:
        arr = arr[..., :3]
    return decode_mask(arr, str(path))


def _stems(folder: Path, kind: str) -> dict:
    from edgeconv.data.images import IMAGE_EXTENSIONS

    out = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if p.stem in out:
            raise EdgeconvError(f"{folder}: two {kind} files with the stem '{p.stem}'")
        out[p.stem] = p
    return out


def pair_folder(image_dir: str | os.PathLike, mask_dir: str | os.PathLike) -> list:
    """[(stem, image path, mask path)] of an image folder and its mask folder; one line
    when the stems differ."""
    image_dir, mask_dir = Path(image_dir), Path(mask_dir)
    for d, kind in ((image_dir, "image"), (mask_dir, "mask")):
        if not d.is_dir():
            raise EdgeconvError(f"{d}: no {kind} folder")
    imgs, masks = _stems(image_dir, "image"), _stems(mask_dir, "mask")
    if not imgs:
        raise EdgeconvError(f"{image_dir}: no images (PNG, JPEG, BMP, WebP)")
    only_i, only_m = sorted(set(imgs) - set(masks)), sorted(set(masks) - set(imgs))
    if only_i or only_m:
        parts = []
        if only_i:
            parts.append(f"{len(only_i)} image(s) without a mask (e.g. {only_i[0]})")
        if only_m:
            parts.append(f"{len(only_m)} mask(s) without an image (e.g. {only_m[0]})")
        raise EdgeconvError(f"{mask_dir} does not match {image_dir}: {'; '.join(parts)}")
    return [(s, imgs[s], masks[s]) for s in sorted(imgs)]


def load_pairs(pairs: list, size) -> tuple[np.ndarray, np.ndarray]:
    """Read, check and resize (image bilinear, mask nearest) the pairs to ``size`` (H, W)."""
    from PIL import Image

    from edgeconv.data.images import load_image

    h, w = size
    imgs, masks = [], []
    for stem, ip, mp in pairs:
        img = load_image(ip)
        m = read_mask(mp)
        if m.shape[1:] != img.shape[:2]:
            raise EdgeconvError(f"{mp}: mask is {m.shape[2]}x{m.shape[1]} but its image is "
                                f"{img.shape[1]}x{img.shape[0]} (WxH)")
        if img.shape[:2] != (h, w):
            img = np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))
            m = np.stack([np.asarray(Image.fromarray(c * 255).resize((w, h), Image.NEAREST)) > 127
                          for c in m]).astype(np.uint8)
            m[0] &= m[1]
        imgs.append(img)
        masks.append(m)
    return np.stack(imgs), np.stack(masks)


def find_domain_pairs(domain_dir: Path) -> list:
    found = []
    for base in (domain_dir, domain_dir / "train", domain_dir / "test"):
        for i_rel, m_rel in _LAYOUTS:
            if (base / i_rel).is_dir() or (base / m_rel).is_dir():
                found += pair_folder(base / i_rel, base / m_rel)
                break
    if not found:
        raise EdgeconvError(f"{domain_dir}: no image + mask folders (expected image/ and mask/, "
                            "or {train,test}/ROIs/image and .../ROIs/mask)")
    return found


def folder_domains(root: str | os.PathLike, size) -> list:
    """Every domain folder of ``root`` (sorted by name), read at ``size``."""
    root = Path(root)
    if not root.is_dir():
        raise EdgeconvError(f"{root}: not a folder of domain folders")
    dirs = [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    if len(dirs) < 2:
        raise EdgeconvError(f"{root}: needs at least 2 domain folders for leave-one-domain-out, "
                            f"found {len(dirs)}")
    out = []
    for d in dirs:
        pairs = find_domain_pairs(d)
        imgs, masks = load_pairs(pairs, size)
        out.append(Domain(d.name, imgs, masks, [p[0] for p in pairs]))
    return out


# ----------------------------------------------------------------------------- splits
def lodo_split(domains: list, test_domain: int, holdout: float = 0.15, seed: int = 0):
    """Leave one domain out: (train domains, source validation domains, test domain).

    The validation part (for checkpoint selection) comes from the SOURCE domains only
    (``holdout`` of each, at least one image); the test domain is never seen before the
    final evaluation."""
    if not 0 <= test_domain < len(domains):
        raise EdgeconvError(f"--test-domain must be 0..{len(domains) - 1} "
                            f"({', '.join(d.name for d in domains)}), got {test_domain}")
    if not 0 < holdout < 1:
        raise EdgeconvError(f"holdout must be in (0, 1), got {holdout}")
    train, val = [], []
    for i, d in enumerate(domains):
        if i == test_domain:
            continue
        if len(d) < 2:
            raise EdgeconvError(f"domain {d.name}: needs at least 2 images (train + held out)")
        rng = np.random.default_rng(np.random.SeedSequence([seed, i, 7]))
        perm = rng.permutation(len(d))
        k = max(1, int(round(holdout * len(d))))
        val.append(d.subset(np.sort(perm[:k])))
        train.append(d.subset(np.sort(perm[k:])))
    return train, val, domains[test_domain]


def balanced_batches(sizes: list, batch_size: int, epoch: int, seed: int = 0):
    """Index batches drawing equally from each domain: yields [(domain, index), ...] with
    ``batch_size // len(sizes)`` images of every domain per batch (at least 1). An epoch
    has as many batches as the largest domain needs; smaller domains are re-shuffled and
    cycled."""
    k = max(1, batch_size // len(sizes))
    rng = np.random.default_rng(np.random.SeedSequence([seed, epoch, 11]))
    n_batches = max(int(np.ceil(n / k)) for n in sizes)
    streams = []
    for n in sizes:
        reps = int(np.ceil(n_batches * k / n))
        streams.append(np.concatenate([rng.permutation(n) for _ in range(reps)]))
    for b in range(n_batches):
        yield [(d, int(streams[d][b * k + j])) for d in range(len(sizes)) for j in range(k)]
