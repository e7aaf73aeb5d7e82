"""Image translation on the device side (torch-free): an exported UNIT direction
(``edgeconv export UNIT.ckpt --direction nir2rgb``) run in ONNX Runtime or LiteRT.

    from edgeconv.runtime.translator import Translator, TranslatingEmbedder
    tr = Translator("unit_nir2rgb.onnx")
    rgb = tr.translate("nir_probe.png")              # uint8 (H, W, 3)
    emb = TranslatingEmbedder(Embedder("face.onnx"), tr)
    e = emb.embed("nir_probe.png")                   # the RGB face model's embedding of the
                                                     # probe's translation

:class:`Translator` is the embedder's sibling on :class:`~edgeconv.runtime.image_model.ImageModel`
(metadata authority, validation, decoding, aspect check, batching) and adds what a translator
file is: metadata
``kind: "translator"``, 3-channel NCHW input normalised ``(x/255 - 0.5)/0.5`` and a 3-channel
output in [-1, 1]. :class:`TranslatingEmbedder` is what ``enroll / verify / identify /
unlock --translate FILE`` use: the probe goes through the translator, then the face model;
templates stay bound to the face model (the translator only changes what it is shown).
"""

from __future__ import annotations

import os
import time

import numpy as np

from edgeconv.errors import EdgeconvError
from edgeconv.runtime.embedder import Embedder
from edgeconv.runtime.image_model import ImageModel

KIND = "translator"


class Translator(ImageModel):
    """An exported translator file (ONNX or .tflite) and the pre/post-processing it needs."""

    KIND = KIND
    OUTPUT_WHAT = "an image per image (a translator)"

    def __init__(self, model_path: str | os.PathLike, threads: int = 1,
                 backend: str | None = None, warmup: bool = True):
        super().__init__(model_path, threads=threads, backend=backend, warmup=warmup)

    def _setup(self) -> None:
        self.direction = str(self.meta["direction"])
        domains = self.meta.get("domains") or {}
        self.source, self.target = domains.get("input"), domains.get("output")
        lo, hi = self.meta.get("output_range", [-1.0, 1.0])
        self._out_lo, self._out_hi = float(lo), float(hi)

    def _check_output_shape(self, out: tuple) -> None:
        if len(out) != 4 or out[1] not in (None, 3):
            raise EdgeconvError(f"{self.path.name}: labelled a translator, but its output has "
                                f"shape {list(out)}, not an image [batch, 3, height, width] (a "
                                "face model?)")

    @property
    def label(self) -> str:
        return f"{self.name} {self.direction} ({self.model.backend})"

    def translate_images(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) (or one (H, W, 3)) -> uint8 translations at the input size."""
        images, single = self._image_batch(images)
        h, w = self.input_size
        y = np.asarray(self._run(self.preprocess(images)))
        if y.size != len(images) * 3 * h * w:
            raise EdgeconvError(f"{self.path.name}: the translator output {list(y.shape)} is "
                                f"not {len(images)} image(s) of 3x{h}x{w}")
        y = y.reshape(len(images), 3, h, w)
        if not np.isfinite(y).all():
            raise EdgeconvError(f"{self.path.name}: the translator produced non-finite pixels")
        with np.errstate(over="ignore", invalid="ignore"):  # clipped to 0..255 below
            y = (y.astype(np.float64) - self._out_lo) * (255.0 / (self._out_hi - self._out_lo))
            out = np.clip(np.round(y), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
        out = np.ascontiguousarray(out)
        return out[0] if single else out

    def translate(self, items) -> np.ndarray:
        """Path / bytes / uint8 array -> (H, W, 3) uint8; a list of them -> (N, H, W, 3)."""
        if isinstance(items, np.ndarray) and items.ndim == 4:
            return self.translate_images(items)
        arrs, single = self.load_items(items)
        out = self.translate_images(arrs)
        return out[0] if single else out

    def _check_kind(self, meta: dict | None) -> None:
        if not meta or meta.get("kind") != KIND:
            raise EdgeconvError(f"{self.path.name}: not an edgeconv translator file (its "
                                "metadata has no kind 'translator'); export one with "
                                "`edgeconv export UNIT.ckpt --direction nir2rgb`")


class TranslatingEmbedder:
    """A face :class:`Embedder` that sees every image through a :class:`Translator` first.

    Everything the unlock flows use of an embedder (threshold, sha256, label, input size,
    close) is the face model's; ``embed`` / ``embed_images`` translate first, and
    :attr:`translate_ms` holds the translation time of the last call."""

    def __init__(self, embedder: Embedder, translator: Translator):
        self.embedder, self.translator = embedder, translator
        self.translate_ms = 0.0
        self.load_seconds = embedder.load_seconds + translator.load_seconds

    def __getattr__(self, name):  # the face model's attributes (threshold, sha256, ...)
        return getattr(self.embedder, name)

    def _through(self, images: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        out = self.translator.translate_images(images)
        self.translate_ms = (time.perf_counter() - t0) * 1000.0
        return out

    def embed_images(self, images: np.ndarray) -> np.ndarray:
        return self.embedder.embed_images(self._through(images))

    def embed(self, items):
        if isinstance(items, np.ndarray) and items.ndim == 4:
            return self.embed_images(items)
        arrs, single = self.translator.load_items(items)
        e = self.embed_images(arrs)
        return e[0] if single else e

    def describe(self) -> dict:
        t = self.translator
        return {"file": str(t.path), "direction": t.direction, "sha256": t.sha256,
                "backend": t.model.backend}

    def close(self) -> None:
        self.translator.close()
        self.embedder.close()
