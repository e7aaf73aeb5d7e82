"""Face embeddings from an exported model (ONNX or .tflite), torch-free.

    from edgeconv.runtime.embedder import Embedder
    emb = Embedder("face.onnx")                  # metadata from model.onnx.json / the file
    e = emb.embed("alice.png")                   # (512,) float32, L2-normalised
    E = emb.embed(["a.png", "b.png", arr])       # (3, 512); paths, bytes or uint8 arrays
    s = float(e @ E[1])                          # cosine similarity = verification score

Preprocessing follows the model's edgeconv metadata (``input_size``, ``color``,
``layout``, ``scale``/``mean``/``std``), i.e. exactly what training did: decode to RGB
with :mod:`edgeconv.data.images`, resize bilinearly to the model's input size when the
image differs, then ``(x * scale - mean) / std``.  Only images with (about) the model's
aspect ratio are accepted: the model expects aligned, centred face crops, and squashing
a 4:3 photo into a square is never what the user wants.

Models without edgeconv metadata work too: the input size is read from the model
(96x96 when it is symbolic) and the edgeconv defaults (RGB, NCHW, ``(x/255-0.5)/0.5``)
are assumed, with a :class:`MetadataWarning` saying so.
"""

from __future__ import annotations

import os

import numpy as np

from edgeconv.errors import EdgeconvError

from edgeconv.runtime.image_model import (ASPECT_TOLERANCE, DEFAULT_INPUT_SIZE,  # noqa: F401
                                          DEFAULT_MEAN, DEFAULT_SCALE, DEFAULT_STD, MAX_BATCH,
                                          MAX_BATCH_BYTES, ImageModel, MetadataWarning)


from edgeconv.runtime.thresholds import (ThresholdError, calibrated_thresholds,  # noqa: E402,F401
                                         calibration_size, select_threshold,
                                         select_threshold_checked)


from edgeconv.metadata import file_sha256  # noqa: E402,F401  (re-exported)


# metadata readers: edgeconv.metadata (re-exported here for older imports)
from edgeconv.metadata import read_tflite_metadata, tflite_metadata_from_bytes  # noqa: E402,F401


# ----------------------------------------------------------------------------- embedder
class Embedder(ImageModel):
    """An exported face model plus the preprocessing it was trained with.

    Args:
        model_path: ``.onnx`` or ``.tflite`` file (metadata embedded in the file; a sidecar
            ``<file>.json`` only where the file has none).
        threads: inference threads.
        backend: force ``onnxruntime`` / ``tflite`` (default: by file type).
        flip: flip-test: embed the image and its mirror image and average.  Default:
            what the model's calibration used (metadata ``verification.flip_test``),
            else off; thresholds are only valid for the setting they were calibrated with.
        metadata: use this metadata dict instead of reading it.
        warmup: run one inference at load time, so that the first real one is not
            slowed down by the runtime's lazy initialisation.
    """

    OUTPUT_WHAT = "a vector per image (an embedding model)"

    def __init__(self, model_path: str | os.PathLike, threads: int = 1,
                 backend: str | None = None, flip: bool | None = None,
                 metadata: dict | None = None,
                 warmup: bool = True):
        self._flip_arg = flip
        self.threshold_warning: str | None = None
        super().__init__(model_path, threads=threads, backend=backend, metadata=metadata,
                         warmup=warmup)

    def _setup(self) -> None:
        ver = self.meta.get("verification")
        ver = ver if isinstance(ver, dict) else {}
        self.calibrated_flip = ver.get("flip_test", ver.get("flip"))
        flip = self._flip_arg
        self.flip = bool(self.calibrated_flip) if flip is None else bool(flip)

    def _check_kind(self, meta: dict | None) -> None:
        if meta and meta.get("kind") == "translator":
            raise EdgeconvError(f"{self.path.name}: an image translator ({meta.get('direction')}),"
                                " not a face model; give it as --translate FILE next to the "
                                "face model")
        if meta and meta.get("kind") == "generator":
            raise EdgeconvError(f"{self.path.name}: a face generator (noise -> image), not a "
                                "face model; give it as --impostors FILE to "
                                "`edgeconv unlock-trial`")
        if meta and meta.get("kind") == "segmenter":
            raise EdgeconvError(f"{self.path.name}: a disc/cup segmenter, not a face model; "
                                "run it with `edgeconv segment`")

    def _check_output_shape(self, out: tuple) -> None:
        if len(out) < 2 or (out[-1] is not None and out[-1] < 2):
            raise EdgeconvError(f"{self.path.name}: the model's output has shape {list(out)}; "
                                "an embedding model outputs a vector per image ([batch, dim], "
                                "dim >= 2)")

    def _check_output(self, y: np.ndarray, batch: int) -> None:
        if y.ndim < 2 or y.size // batch < 2:
            raise EdgeconvError(f"{self.path.name}: the model returned shape {list(y.shape)} "
                                f"for {batch} image(s); an embedding model returns a vector "
                                "per image")

    # -- properties --------------------------------------------------------------------
    @property
    def embedding_dim(self) -> int | None:
        dim = self.meta.get("embedding_dim")
        if dim is None and self.model.declared_output_shape:
            dim = self.model.declared_output_shape[-1]
        return int(dim) if dim is not None else None

    @property
    def label(self) -> str:
        """Model name, op, width and file format, e.g. ``mbv2_x0_5 tvconv x0.5 (onnx)``:
        recorded with templates, so that ``users list`` tells the models apart."""
        fmt = self.model.file_format
        parts = [self.name]
        op = self.meta.get("op")
        if isinstance(op, str) and op and op != "none":
            parts.append(op)
        width = self.meta.get("width")
        if isinstance(width, (int, float)) and not isinstance(width, bool) and width > 0:
            parts.append(f"x{width:g}")
        return f"{' '.join(parts)} ({fmt})"

    def threshold(self, far=None, threshold=None) -> tuple[float, str]:
        """See :func:`~edgeconv.runtime.thresholds.select_threshold`; a calibration that does
        not resolve the FAR leaves its one-line warning in ``threshold_warning``."""
        thr, source, self.threshold_warning = select_threshold_checked(
            self.meta, far=far, threshold=threshold)
        return thr, source

    # -- inference ---------------------------------------------------------------------
    def embed_normalized(self, x: np.ndarray) -> np.ndarray:
        """Model input (N, ...) already preprocessed -> L2-normalised (N, D) embeddings."""
        y = self._run(np.asarray(x))
        y = y.reshape(len(y), -1) if len(y) else np.zeros((0, self.embedding_dim or 0),
                                                          np.float32)
        if not np.isfinite(y).all():
            raise EdgeconvError(f"{self.path.name}: the model produced non-finite embeddings")
        norm = np.linalg.norm(y, axis=1, keepdims=True)
        if (norm <= 1e-12).any():
            raise EdgeconvError(f"{self.path.name}: the model produced a zero embedding")
        return (y / norm).astype(np.float32)

    def embed_images(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) RGB at the input size -> (N, D) L2-normalised embeddings."""
        images, single = self._image_batch(images)
        e = self.embed_normalized(self.preprocess(images))
        if self.flip:
            f = self.embed_normalized(self.preprocess(np.ascontiguousarray(images[:, :, ::-1])))
            e = e + f
            e /= np.linalg.norm(e, axis=1, keepdims=True)
        return e[0] if single else e

    def embed(self, items) -> np.ndarray:
        """Path / bytes / uint8 array -> (D,); a list of them -> (N, D). L2-normalised."""
        if isinstance(items, np.ndarray) and items.ndim == 4:
            return self.embed_images(items)
        images, single = self.load_items(items)
        e = self.embed_images(images)
        return e[0] if single else e

    def __repr__(self):
        return (f"<Embedder {self.path.name} {self.model.backend} input={self.input_size} "
                f"flip={self.flip}>")


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of L2-normalised embeddings (broadcasts over leading dims)."""
    return np.sum(np.asarray(a, np.float32) * np.asarray(b, np.float32), axis=-1)
