"""What every exported image model shares on the device side (torch-free): the file read
once, its embedded metadata as the authority (validated), the preprocessing it was trained
with, the size rule, batching for dynamic and fixed-batch files, and the identity templates
are bound to. The face :class:`~edgeconv.runtime.embedder.Embedder`, the UNIT
:class:`~edgeconv.runtime.translator.Translator` and the disc/cup
:class:`~edgeconv.segmentation.runtime.Segmenter` are siblings on :class:`ImageModel`.

Preprocessing follows the model's edgeconv metadata (``input_size``, ``color``,
``layout``, ``scale``/``mean``/``std``), i.e. exactly what training did: decode to RGB
with :mod:`edgeconv.data.images`, resize bilinearly to the model's input size when the
image differs, then ``(x * scale - mean) / std``.  Only images with (about) the model's
aspect ratio are accepted.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from pathlib import Path

import numpy as np

from edgeconv.data import images as _images
from edgeconv.errors import EdgeconvError
from edgeconv.runtime.closing import Closing

DEFAULT_INPUT_SIZE = (96, 96)
DEFAULT_SCALE = 1.0 / 255.0
DEFAULT_MEAN = (0.5, 0.5, 0.5)
DEFAULT_STD = (0.5, 0.5, 0.5)
#: Largest relative aspect-ratio difference accepted before resizing (2 %).
ASPECT_TOLERANCE = 0.02
#: Largest batch sent to a dynamic-batch model in one run.
MAX_BATCH = 32
#: Largest input tensor one run may need (a fixed-batch model's declared batch included).
MAX_BATCH_BYTES = 1 << 30


class MetadataWarning(UserWarning):
    """The model has no (or incomplete) edgeconv metadata; defaults were assumed."""


class ImageModel(Closing):
    """An exported image model file (ONNX or .tflite) plus the preprocessing it was trained
    with: what the face embedder, the translator and the segmenter share.

    Args:
        model_path: ``.onnx`` or ``.tflite`` file (metadata embedded in the file; a sidecar
            ``<file>.json`` only where the file has none, and never one that disagrees).
        threads: inference threads.
        backend: force ``onnxruntime`` / ``tflite`` (default: by file type).
        metadata: use this metadata dict instead of reading it.
        warmup: run one inference at load time, so that the first real one is not
            slowed down by the runtime's lazy initialisation.

    A subclass says which files it runs (:meth:`_check_kind`), what their output must look
    like (:meth:`_check_output_shape`, :meth:`_check_output`) and sets up what its metadata
    adds (:meth:`_setup`).
    """

    #: what one run must return per image (for the error naming a wrong output)
    OUTPUT_WHAT = "an output per image"

    def __init__(self, model_path: str | os.PathLike, threads: int = 1,
                 backend: str | None = None, metadata: dict | None = None,
                 warmup: bool = True):
        from edgeconv.runtime.backends import open_model

        self.path = Path(model_path)
        t0 = time.perf_counter()
        self.model = open_model(self.path, backend=backend, threads=threads)
        self.warnings: list[str] = []
        try:
            self._load(metadata, warmup)
        except BaseException:
            self.model.close()  # a refused file leaves no session behind
            raise
        self.load_seconds = time.perf_counter() - t0

    # -- set-up ------------------------------------------------------------------------
    def _load(self, metadata: dict | None, warmup: bool) -> None:
        from edgeconv import metadata as model_meta

        # the bytes the runtime runs, read once: hashed and parsed here, never re-read
        mf = self.model.model_file
        if metadata is not None:
            res = model_meta.ResolvedMetadata(metadata, "given")
        else:  # the embedded metadata is the authority; a disagreeing sidecar is refused
            res = model_meta.resolve_metadata(self.path, self._embedded_metadata(), mf.sha256)
        for w in res.warnings:
            self._warn(w)
        meta = res.meta
        if meta is not None:
            model_meta.validate_metadata(meta, self.path.name)
        self._check_kind(meta)
        self.metadata_source = res.source
        self.has_metadata = meta is not None
        self.meta: dict = dict(meta or {})
        self._configure()
        self._setup()
        # what templates are bound to: the file, its external data, sidecar-only metadata
        self.sha256 = mf.identity(res.bound_bytes)
        if warmup:
            self.warmup()

    def _check_kind(self, meta: dict | None) -> None:
        """Refuse, in one line, a file of a kind this class does not run."""
        raise NotImplementedError

    def _setup(self) -> None:
        """What the subclass reads from ``self.meta`` once the file is configured."""

    def _check_output_shape(self, out: tuple) -> None:
        """Refuse a declared output shape this kind cannot have (``out``: ints / None)."""

    def _check_output(self, y: np.ndarray, batch: int) -> None:
        """Refuse one run's output (``batch`` images in) this kind cannot have."""

    def _embedded_metadata(self) -> dict | None:
        """The metadata embedded in the bytes the runtime runs (one parser per format, in
        edgeconv.metadata; no second read of the file)."""
        return self.model.embedded_metadata()

    def _check_declared_shapes(self, declared, model_hw) -> None:
        """Refuse, before anything is allocated, inputs that would need absurd memory and
        outputs this kind cannot have."""
        from edgeconv.metadata import MAX_INPUT_SIDE

        name = self.path.name
        if any(v is not None and not 1 <= v <= MAX_INPUT_SIDE for v in model_hw):
            raise EdgeconvError(f"{name}: the model's input {list(declared)} asks for images "
                                f"larger than {MAX_INPUT_SIDE} pixels a side; not a face model")
        batch = declared[0]
        h, w = (v or 1 for v in model_hw)
        if batch is not None and batch * 3 * h * w * 4 > MAX_BATCH_BYTES:
            raise EdgeconvError(
                f"{name}: the model's fixed input {list(declared)} would need "
                f"{batch * 3 * h * w * 4 / 2**30:.1f} GiB per run (limit "
                f"{MAX_BATCH_BYTES / 2**30:.0f} GiB); export it with a dynamic or small batch")
        out = tuple(self.model.declared_output_shape)
        if out:
            self._check_output_shape(out)

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        warnings.warn(f"{self.path.name}: {message}", MetadataWarning, stacklevel=3)

    def _configure(self) -> None:
        meta, model = self.meta, self.model
        declared = tuple(model.declared_input_shape)
        if len(declared) != 4:
            raise EdgeconvError(f"{self.path.name}: expected a 4-D image input, the model's "
                                f"input {model.input_name!r} has shape {list(declared)}")
        layout = str(meta.get("layout") or "").upper()
        if layout not in ("NCHW", "NHWC"):
            if layout:
                raise EdgeconvError(f"{self.path.name}: unsupported layout {layout!r} in metadata")
            layout = "NHWC" if declared[3] == 3 and declared[1] != 3 else "NCHW"
        self.layout = layout
        hw_axes = (1, 2) if layout == "NHWC" else (2, 3)
        c_axis = 3 if layout == "NHWC" else 1
        if declared[c_axis] not in (None, 3):
            raise EdgeconvError(f"{self.path.name}: expected 3 colour channels, the model's input "
                                f"has shape {list(declared)} ({layout})")
        model_hw = tuple(declared[a] for a in hw_axes)
        self._check_declared_shapes(declared, model_hw)
        size = meta.get("input_size")
        if size is not None:
            try:
                size = tuple(int(v) for v in (size if isinstance(size, (list, tuple))
                                              else (size, size)))
                assert len(size) == 2 and min(size) > 0
            except (TypeError, ValueError, AssertionError):
                raise EdgeconvError(f"{self.path.name}: bad input_size {meta.get('input_size')!r} "
                                    "in metadata") from None
            for want, have in zip(size, model_hw):
                if have is not None and have != want:
                    raise EdgeconvError(f"{self.path.name}: metadata input_size {list(size)} does "
                                        f"not match the model's input shape {list(declared)}")
        elif all(v is not None for v in model_hw):
            size = model_hw
        else:
            size = DEFAULT_INPUT_SIZE
        self.input_size: tuple[int, int] = size
        color = str(meta.get("color") or "RGB").upper()
        if color not in ("RGB", "BGR"):
            raise EdgeconvError(f"{self.path.name}: unsupported color order {color!r} in metadata")
        self.color = color
        self.scale = float(meta.get("scale", DEFAULT_SCALE))
        self.mean = np.asarray(meta.get("mean", DEFAULT_MEAN), dtype=np.float32).reshape(-1)
        self.std = np.asarray(meta.get("std", DEFAULT_STD), dtype=np.float32).reshape(-1)
        if self.mean.size not in (1, 3) or self.std.size not in (1, 3) or (self.std == 0).any():
            raise EdgeconvError(f"{self.path.name}: bad mean/std in metadata")
        if not self.has_metadata:
            self._warn(f"no edgeconv metadata; assuming input {size[0]}x{size[1]} "
                       f"({'from the model' if size == model_hw else 'default'}), {layout}, RGB, "
                       "(x/255 - 0.5)/0.5 and no calibrated threshold")
        else:
            missing = [k for k in ("input_size", "mean", "std") if k not in meta]
            if missing:
                self._warn(f"metadata lacks {', '.join(missing)}; edgeconv defaults assumed")
        self._default_norm = (layout == "NCHW" and color == "RGB"
                              and math.isclose(self.scale, DEFAULT_SCALE, rel_tol=1e-6)
                              and np.allclose(self.mean, 0.5) and np.allclose(self.std, 0.5))
        from edgeconv.metadata import escape_text

        # shown and stored with templates: never raw (escape sequences, 200k characters)
        self.name = escape_text(meta.get("model") or self.path.stem, 80)
        # batch strategy: dynamic -> chunks of MAX_BATCH; fixed B -> chunks of B (padded)
        self.fixed_batch = None if model.dynamic_batch else int(declared[0] or 1)
        if model.resizes_batch:
            # the interpreter resizes its batch dimension, unless the file was exported for a
            # fixed batch (metadata "batch": N): its graph may bake that batch in
            b = meta.get("batch")
            fixed = isinstance(b, int) and not isinstance(b, bool) and 1 <= b <= 4096
            self.fixed_batch = int(b) if fixed else None
        self._quant = getattr(model, "input_quantization", (0.0, 0))
        self._batch = None

    def warmup(self) -> None:
        """One inference on a grey image (counted in :attr:`load_seconds`)."""
        from PIL import Image

        Image.init()  # Pillow registers its decoders lazily (tens of ms on first use)
        grey = np.full((1, *self.input_size, 3), 128, dtype=np.uint8)
        for _ in range(2):
            self._run(self.preprocess(grey))

    # -- properties --------------------------------------------------------------------
    @property
    def label(self) -> str:
        """Model name and file format, e.g. ``unit nir2rgb (onnx)``: what a report shows."""
        return f"{self.name} ({self.model.file_format})"

    @property
    def identity(self) -> dict:
        """What a template records about the model that made it."""
        return {"sha256": self.sha256, "name": self.label, "file": self.path.name}

    # -- preprocessing -----------------------------------------------------------------
    def load(self, item, name: str | None = None) -> np.ndarray:
        """One input (path, encoded bytes or uint8 RGB array) -> uint8 (H, W, 3) at input size."""
        decode_image_bytes = _images.decode_image_bytes
        if isinstance(item, (str, os.PathLike)):
            path = Path(item)
            arr = _images.load_image(path)
            name = str(path)
        elif isinstance(item, (bytes, bytearray, memoryview)):
            name = name or "<image bytes>"
            arr = decode_image_bytes(bytes(item), size=None, name=name)
        elif isinstance(item, np.ndarray):
            name = name or "<array>"
            arr = item
            if arr.dtype != np.uint8:
                raise EdgeconvError(f"{name}: expected a uint8 RGB image array, got {arr.dtype} "
                                    "(use embed_normalized for already-normalised input)")
            if arr.ndim != 3 or arr.shape[2] != 3:
                raise EdgeconvError(f"{name}: expected an RGB image of shape (H, W, 3), got "
                                    f"{tuple(arr.shape)}")
        else:
            raise EdgeconvError(f"expected an image path, bytes or a uint8 array, got "
                                f"{type(item).__name__}")
        return self._fit(arr, name)

    def _fit(self, arr: np.ndarray, name: str) -> np.ndarray:
        h, w = arr.shape[:2]
        th, tw = self.input_size
        if (h, w) == (th, tw):
            return np.ascontiguousarray(arr)
        if min(h, w) < 8 or abs((w / h) / (tw / th) - 1.0) > ASPECT_TOLERANCE:
            raise EdgeconvError(
                f"{name}: image is {w}x{h} (WxH) but the model expects an aligned face crop of "
                f"{tw}x{th}; crop/align the face first (only images with the same aspect ratio "
                "are resized)")
        from PIL import Image

        # resize exactly as edgeconv.data.images does when loading training images
        img = Image.fromarray(np.ascontiguousarray(arr), "RGB")
        helper = getattr(_images, "_pil_to_rgb_array", None)
        if helper is not None:
            return helper(img, (th, tw), name)
        return np.asarray(img.resize((tw, th), Image.BILINEAR), dtype=np.uint8)

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) RGB at the input size -> the model's float input."""
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        if self._default_norm:
            x = _images.normalize(images)
        else:
            x = images.astype(np.float32)
            if self.color == "BGR":
                x = x[..., ::-1]
            x = (x * np.float32(self.scale) - self.mean) / self.std
            if self.layout == "NCHW":
                x = x.transpose(0, 3, 1, 2)
            x = np.ascontiguousarray(x, dtype=np.float32)
        return self._to_input_dtype(x)

    def _to_input_dtype(self, x: np.ndarray) -> np.ndarray:
        dtype = np.dtype(self.model.input_dtype)
        if dtype.kind == "f":
            return x.astype(dtype, copy=False)
        scale, zero = self._quant
        if not scale:
            raise EdgeconvError(f"{self.path.name}: integer input {dtype} without quantisation "
                                "parameters is not supported")
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)

    # -- inference ---------------------------------------------------------------------
    def _run(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        step = self.fixed_batch or MAX_BATCH
        outs = []
        for lo in range(0, n, step):
            chunk = x[lo:lo + step]
            m = len(chunk)
            b = self.fixed_batch or m
            if m < b:  # fixed-batch model: pad the last chunk
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], b - m, axis=0)])
            if self._batch != b:
                self.model.set_batch(b, input_size=self.input_size, layout=self.layout)
                self._batch = b
            y = np.asarray(self.model.run(chunk))
            if y.ndim < 1 or y.shape[0] != b:
                raise EdgeconvError(f"{self.path.name}: the model returned shape "
                                    f"{list(y.shape)} for {b} image(s); a model returns "
                                    f"{self.OUTPUT_WHAT}")
            self._check_output(y, b)
            outs.append(y[:m].astype(np.float32))
        return np.concatenate(outs) if outs else np.zeros((0,), np.float32)

    def _image_batch(self, images) -> tuple[np.ndarray, bool]:
        """uint8 (N, H, W, 3) or one (H, W, 3) -> (batch at the input size, was it one)."""
        images = np.asarray(images)
        single = images.ndim == 3
        if single:
            images = images[None]
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise EdgeconvError(f"expected uint8 RGB images (N, H, W, 3), got {images.dtype} "
                                f"{tuple(images.shape)}")
        if tuple(images.shape[1:3]) != tuple(self.input_size):
            images = np.stack([self._fit(im, "<array>") for im in images])
        return images, single

    def load_items(self, items) -> tuple[np.ndarray, bool]:
        """Path / bytes / uint8 array, or a list of them -> (uint8 batch, was it one item)."""
        single = not isinstance(items, (list, tuple))
        batch = [items] if single else list(items)
        if not batch:
            raise EdgeconvError("no images given")
        return np.stack([self.load(it) for it in batch]), single

    def close(self) -> None:
        self.model.close()


    def __repr__(self):
        return (f"<{type(self).__name__} {self.path.name} {self.model.backend} "
                f"input={self.input_size}>")
