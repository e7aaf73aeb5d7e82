"""Model metadata that travels with every exported file (torch-free).

Written by the exporter into ONNX ``metadata_props`` (key ``edgeconv``, a JSON
string) and into a sidecar ``<model file>.json``; read by the bench harness and
the runtime/unlock side, which need nothing else to preprocess inputs.

Schema (``format_version`` 1)::

    {
      "format_version": 1,
      "edgeconv_version": "0.1.0",
      "model": "mbv2_x0_5", "op": "tvconv", "width": 0.5,
      "input_size": [96, 96],            # height, width
      "layout": "NCHW", "color": "RGB",
      "scale": 0.00392156862745098,      # x/255 first ...
      "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],   # ... then (x - mean) / std
      "embedding_dim": 512,
      "macs": 74030000,
      "params_train": 828000,            # training form (edgeconv.profiling.counts)
      "params_inference": 828000,        # inference form: folded graph's constants incl. maps
      "input_name": "input", "output_name": "embedding",
      "verification": {                  # optional, from `edgeconv eval`
        "accuracy": 0.97, "accuracy_std": 0.01, "threshold": 0.31,
        "far_thresholds": {"1e-3": 0.45, "1e-4": 0.52}, "pairs": "synthetic"
      },
      "format": "onnx" | "tflite", "folding": "exact" | "lowrank", ...
    }

Written by ``edgeconv export`` in addition (all optional for readers)::

      "formulation": "col2im",           # graph form of the folded TVConv (None: no TVConv)
      "batch": "dynamic" | N,            # TFLite "dynamic": batch-1 file, resizable
      "opset": 18, "simplifier": "onnxsim",           # ONNX only
      "precision": "float32" | "float16-weights",     # TFLite only (+ "fp16_tensors")
      "op_kwargs": {...}, "trained": false, "checkpoint": {...},
      "lowrank": {"requested": 2, "ranks": [...], "max_rank": 2, "mean_rank": 2.0,
                  "vs_exact": {"min_cosine_faces": ..., ...}},   # folding == "lowrank"
      "parity": {"runtime": ..., "max_abs_diff": ..., "min_cosine": ..., "inputs": [...]},
      "kernels": {"domain": "edgeconv", "op": "TVConv", "op_version": 1, "layout": ...,
                  "weight_dtype": ..., "library_version": ...},  # formulation "fused" only
      # sidecar only: "file", "sha256", "bytes", "metadata_embedded"

A translator file (``edgeconv export UNIT.ckpt --direction nir2rgb``, read by
``edgeconv.runtime.translator``) has ``"kind": "translator"``, ``"direction"``, ``"domains"``
({"input": "nir", "output": "rgb"}), ``"output_range"`` [-1, 1], ``"unit_config"`` and no
``embedding_dim``; its interface is 3 channels in and out (see ``edgeconv.export.translator``).

In ``.tflite`` files the same JSON is the buffer of the flatbuffer ``metadata`` entry named
``edgeconv`` (see ``edgeconv.export.tflite_export.read_tflite_metadata``).
"""

from __future__ import annotations

import json
from pathlib import Path

from edgeconv.errors import EdgeconvError

METADATA_FORMAT_VERSION = 1
ONNX_METADATA_KEY = "edgeconv"
TFLITE_METADATA_NAME = "edgeconv"  # name of the metadata buffer inside .tflite files


def sidecar_path(model_path: str | Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json``."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + ".json")


#: largest sidecar read (metadata is a few KB)
MAX_SIDECAR_BYTES = 4 << 20


def read_sidecar(model_path: str | Path) -> dict | None:
    """Metadata from the sidecar JSON, or None when there is none."""
    path = sidecar_path(model_path)
    try:
        if not path.is_file():
            return None
        with open(path, "rb") as fh:
            raw = fh.read(MAX_SIDECAR_BYTES + 1)
    except OSError as exc:
        raise EdgeconvError(f"{path}: unreadable metadata ({exc.strerror or exc})") from None
    if len(raw) > MAX_SIDECAR_BYTES:
        raise EdgeconvError(f"{path}: metadata file larger than {MAX_SIDECAR_BYTES >> 20} MB")
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise EdgeconvError(f"{path}: unreadable metadata ({exc})") from None
    if not isinstance(meta, dict):
        raise EdgeconvError(f"{path}: metadata must be a JSON object")
    return meta


def read_onnx_metadata(model_path: str | Path) -> dict | None:
    """Metadata from an ONNX file's metadata_props via onnxruntime (no onnx package needed)."""
    import onnxruntime as ort

    from edgeconv.runtime.backends import register_kernels_if_used

    so = ort.SessionOptions()
    register_kernels_if_used(so, model_path)  # a fused model: KernelsMissing when not built
    try:
        sess = ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise EdgeconvError(f"{model_path}: not a readable ONNX model ({_first_line(exc)})") from None
    props = sess.get_modelmeta().custom_metadata_map or {}
    raw = props.get(ONNX_METADATA_KEY)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise EdgeconvError(f"{model_path}: corrupt edgeconv metadata in the ONNX file") from None


def load_metadata(model_path: str | Path) -> dict | None:
    """Sidecar JSON first, then (for ONNX) embedded metadata; None for foreign models."""
    meta = read_sidecar(model_path)
    if meta is None and str(model_path).lower().endswith(".onnx"):
        meta = read_onnx_metadata(model_path)
    return meta


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
