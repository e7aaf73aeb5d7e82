"""A face generator on the device side (torch-free): an exported LIS GAN generator
(``edgeconv gan-export GAN.ckpt``) run in ONNX Runtime or LiteRT.

    from edgeconv.runtime.generator import FaceGenerator
    with FaceGenerator("gan_generator.onnx") as g:
        faces = g.generate(100, seed=0)          # uint8 (100, H, W, 3), z ~ N(0, 1) seeded

The file's embedded metadata is the authority (``edgeconv.metadata``, kind
``"generator"``): ``z_dim``, ``image_size``, ``output_range``. Files with a fixed batch
(TFLite generator files always) are run one batch at a time, the last one padded.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgeconv.errors import EdgeconvError
from edgeconv.runtime.closing import Closing

KIND = "generator"
#: noise vectors per run of a dynamic-batch file
MAX_BATCH = 64


def noise(n: int, z_dim: int, seed: int = 0) -> np.ndarray:
    """The seeded N(0, 1) noise of :meth:`FaceGenerator.generate` (float32 (n, z_dim))."""
    rng = np.random.default_rng([int(seed), 0x2E7])
    return rng.standard_normal((int(n), int(z_dim))).astype(np.float32)


class FaceGenerator(Closing):
    def __init__(self, model_path: str | os.PathLike, threads: int = 1,
                 backend: str | None = None):
        from edgeconv import metadata as model_meta
        from edgeconv.runtime.backends import open_model

        self.path = Path(model_path)
        self.model = open_model(self.path, backend=backend, threads=threads)
        mf = self.model.model_file
        try:
            embedded = self.model.embedded_metadata()
            res = model_meta.resolve_metadata(self.path, embedded, mf.sha256)
            meta = res.meta
            if meta is not None:
                model_meta.validate_metadata(meta, self.path.name)
            if not meta or meta.get("kind") != KIND:
                raise EdgeconvError(f"{self.path.name}: not an edgeconv generator file (its "
                                    "metadata has no kind 'generator'); export one with "
                                    "`edgeconv gan-export GAN.ckpt`")
            self.meta = dict(meta)
            self.warnings = list(res.warnings)
            self.z_dim = int(meta["z_dim"])
            self.image_size = tuple(int(v) for v in meta["image_size"])
            lo, hi = meta.get("output_range", [0.0, 1.0])
            self._lo, self._hi = float(lo), float(hi)
            declared = tuple(self.model.declared_input_shape)
            if len(declared) != 2 or declared[1] not in (None, self.z_dim):
                raise EdgeconvError(f"{self.path.name}: labelled a generator of z_dim "
                                    f"{self.z_dim}, but its input has shape {list(declared)}")
            b = meta.get("batch")
            fixed = isinstance(b, int) and not isinstance(b, bool) and b >= 1
            self.fixed_batch = int(b) if fixed else (
                None if self.model.dynamic_batch else int(declared[0] or 1))
        except BaseException:
            self.model.close()
            raise
        self.sha256 = mf.sha256
        self.lis_modules = int(self.meta.get("lis_modules", 0))

    @property
    def label(self) -> str:
        return (f"{self.path.name} ({self.lis_modules} LIS module(s)"
                + (", R-separate" if self.meta.get("reverser") else "")
                + f", {self.model.backend})")

    def run(self, z: np.ndarray) -> np.ndarray:
        """float32 (N, z_dim) -> uint8 (N, H, W, 3)."""
        z = np.ascontiguousarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise EdgeconvError(f"expected noise of shape (N, {self.z_dim}), got {z.shape}")
        step = self.fixed_batch or MAX_BATCH
        h, w = self.image_size
        out = []
        for i in range(0, len(z), step):
            chunk = z[i:i + step]
            m = len(chunk)
            if self.fixed_batch and m < step:
                chunk = np.concatenate([chunk, np.zeros((step - m, self.z_dim), np.float32)])
            self.model.set_batch(len(chunk))
            y = np.asarray(self.model.run(chunk))
            if y.size != len(chunk) * 3 * h * w:
                raise EdgeconvError(f"{self.path.name}: output {list(y.shape)} is not "
                                    f"{len(chunk)} image(s) of 3x{h}x{w}")
            y = y.reshape(len(chunk), 3, h, w)[:m]
            if not np.isfinite(y).all():
                raise EdgeconvError(f"{self.path.name}: the generator produced non-finite pixels")
            y = (y.astype(np.float64) - self._lo) * (255.0 / (self._hi - self._lo))
            out.append(np.clip(np.round(y), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1))
        if not out:
            return np.zeros((0, h, w, 3), np.uint8)
        return np.ascontiguousarray(np.concatenate(out))

    def generate(self, n: int, seed: int = 0) -> np.ndarray:
        """``n`` faces of seeded N(0, 1) noise (:func:`noise`): uint8 (n, H, W, 3)."""
        return self.run(noise(n, self.z_dim, seed))

    def close(self) -> None:
        self.model.close()

