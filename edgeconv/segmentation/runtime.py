"""Disc / cup segmentation on the device side (torch-free): an exported ``deeplabv3p_mbv2``
file (metadata ``kind: "segmenter"``) run in ONNX Runtime or LiteRT.

    from edgeconv.segmentation.runtime import Segmenter
    seg = Segmenter("seg.onnx")
    masks = seg.segment("fundus.png")        # uint8 (2, H, W) [cup, disc], post-processed

:class:`Segmenter` is the embedder's sibling on :class:`~edgeconv.runtime.image_model.ImageModel`
(its file handling: embedded metadata is the authority, validation, decoding, batching)
and its size rule: an image of the model's size is used as
it is; one of the same aspect ratio is resized to it (the masks are resized back, nearest);
any other size is refused in one line. The output (N, C, H, W) logits go through a sigmoid
and the post-processing of :mod:`edgeconv.segmentation.metrics` (numpy only).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgeconv.errors import EdgeconvError
from edgeconv.runtime.image_model import ASPECT_TOLERANCE, ImageModel

KIND = "segmenter"


class Segmenter(ImageModel):
    """An exported segmenter file (ONNX or .tflite) and the pre/post-processing it needs."""

    KIND = KIND
    OUTPUT_WHAT = "class logits per image (a segmenter)"

    def __init__(self, model_path: str | os.PathLike, threads: int = 1,
                 backend: str | None = None, warmup: bool = True):
        super().__init__(model_path, threads=threads, backend=backend, warmup=warmup)

    def _setup(self) -> None:
        self.classes = list(self.meta["classes"])
        post = self.meta.get("postprocess") or {}
        self.threshold_value = float(post.get("threshold", 0.5))
        out = tuple(self.model.declared_output_shape)
        if out and (len(out) != 4 or out[1] not in (None, len(self.classes))):
            raise EdgeconvError(f"{self.path.name}: labelled a segmenter of "
                                f"{len(self.classes)} classes, but its output has shape "
                                f"{list(out)}, not [batch, {len(self.classes)}, height, width]")

    def _check_kind(self, meta: dict | None) -> None:
        if not meta or meta.get("kind") != KIND:
            raise EdgeconvError(f"{self.path.name}: not an edgeconv segmenter file (its metadata "
                                "has no kind 'segmenter'); export a seg-train checkpoint with "
                                "`edgeconv export RUN/best.ckpt`")

    @property
    def label(self) -> str:
        return f"{self.name} {self.meta.get('aspp', '')} ({self.model.backend})"

    def _fit(self, arr: np.ndarray, name: str) -> np.ndarray:
        h, w = arr.shape[:2]
        th, tw = self.input_size
        if (h, w) != (th, tw) and (min(h, w) < 8 or
                                   abs((w / h) / (tw / th) - 1.0) > ASPECT_TOLERANCE):
            raise EdgeconvError(f"{name}: image is {w}x{h} (WxH) but the segmenter expects "
                                f"{tw}x{th}; crop it around the optic disc first (only images "
                                "with the same aspect ratio are resized)")
        return super()._fit(arr, name)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) at the input size -> float32 (N, C, H, W) sigmoid outputs."""
        images, single = self._image_batch(images)
        h, w = self.input_size
        y = np.asarray(self._run(self.preprocess(images)))
        c = len(self.classes)
        if y.size != len(images) * c * h * w:
            raise EdgeconvError(f"{self.path.name}: the segmenter output {list(y.shape)} is "
                                f"not {len(images)} x {c}x{h}x{w} logits")
        y = y.reshape(len(images), c, h, w).astype(np.float64)
        if not np.isfinite(y).all():
            raise EdgeconvError(f"{self.path.name}: the segmenter produced non-finite logits")
        p = (1.0 / (1.0 + np.exp(-np.clip(y, -60, 60)))).astype(np.float32)
        return p[0] if single else p

    def segment_images(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) -> uint8 (N, C, H, W) post-processed 0/1 masks."""
        from edgeconv.segmentation.metrics import postprocess

        probs = self.probabilities(np.asarray(images) if np.asarray(images).ndim == 4
                                   else np.asarray(images)[None])
        return np.stack([postprocess(p, self.threshold_value) for p in probs])

    def segment(self, item, name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One image (path, bytes or uint8 array) -> (uint8 (C, h, w) masks at the image's
        own size, the uint8 (h, w, 3) image as decoded)."""
        from edgeconv.data import images as _images

        if isinstance(item, (str, os.PathLike)):
            original = _images.load_image(Path(item))
            name = str(item)
        elif isinstance(item, np.ndarray):
            original = item
        else:
            original = _images.decode_image_bytes(bytes(item), size=None,
                                                  name=name or "<image bytes>")
        fitted = self.load(original, name=name or "<array>")
        masks = self.segment_images(fitted[None])[0]
        oh, ow = original.shape[:2]
        if masks.shape[1:] != (oh, ow):
            from PIL import Image

            masks = np.stack([np.asarray(Image.fromarray(m * 255).resize((ow, oh),
                                                                        Image.NEAREST)) > 127
                              for m in masks]).astype(np.uint8)
        return masks, original


def segment_files(model_path, images: list, output_dir, threads: int = 1,
                  backend: str | None = None, echo=print) -> list[dict]:
    """``edgeconv segment``: for every image write ``<stem>_mask.png`` (REFUGE encoding:
    0 cup, 128 disc rim, 255 background) and ``<stem>_overlay.png`` into ``output_dir``.

    Every image is checked (decoded, sized) before anything is written."""
    from edgeconv.data.images import encode_image
    from edgeconv.fileio import atomic_write_bytes
    from edgeconv.segmentation.overlay import mask_to_png_array, overlay

    if not images:
        raise EdgeconvError("no images given")
    out_dir = Path(output_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise EdgeconvError(f"{out_dir}: exists and is not a directory")
    stems = [Path(p).stem for p in images]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise EdgeconvError(f"two images share the name '{dup[0]}': their outputs would "
                            "overwrite each other")
    seg = Segmenter(model_path, threads=threads, backend=backend)
    try:
        results = [seg.segment(p) for p in images]
    finally:
        seg.close()
    rows = []
    for p, (masks, img) in zip(images, results):
        stem = Path(p).stem
        m = mask_to_png_array(masks)
        mpath, opath = out_dir / f"{stem}_mask.png", out_dir / f"{stem}_overlay.png"
        atomic_write_bytes(mpath, _encode_gray(m))
        atomic_write_bytes(opath, encode_image(overlay(img, pred=masks, tint=True)))
        row = {"image": str(p), "mask": str(mpath), "overlay": str(opath),
               **{f"{c}_pixels": int(masks[i].sum()) for i, c in enumerate(seg.classes)}}
        if masks.shape[0] == 2 and masks[1].any():
            ys = np.flatnonzero(masks[1].any(1))
            yc = np.flatnonzero(masks[0].any(1))
            row["vertical_cdr"] = float(len(yc) / len(ys)) if len(ys) else 0.0
        rows.append(row)
        echo(f"{p}: " + ", ".join(f"{c} {row[f'{c}_pixels']} px" for c in seg.classes)
             + (f", vertical CDR {row['vertical_cdr']:.2f}" if "vertical_cdr" in row else "")
             + f" -> {mpath.name}, {opath.name}")
    return rows


def _encode_gray(arr: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr, np.uint8), "L").save(buf, format="PNG")
    return buf.getvalue()
