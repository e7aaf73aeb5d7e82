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
      "kernels": {"domain": "edgeconv", "op": "TVConv", "op_version": 2,
                  "layouts": ["c_h_kk_w8", "c_kk_hw"], "layout": "c_h_kk_w8,c_kk_hw",
                  "weight_dtype": ..., "library_version": ...},  # formulation "fused" only
                  # (op_version 1 files: "layout": "c_h_kk_w8", no "layouts")
      # sidecar only: "file", "sha256", "bytes", "metadata_embedded"

A translator file (``edgeconv export UNIT.ckpt --direction nir2rgb``, read by
``edgeconv.runtime.translator``) has ``"kind": "translator"``, ``"direction"``, ``"domains"``
({"input": "nir", "output": "rgb"}), ``"output_range"`` [-1, 1], ``"unit_config"`` and no
``embedding_dim``; its interface is 3 channels in and out (see ``edgeconv.export.translator``).

A generator file (``edgeconv gan-export GAN.ckpt``, read by ``edgeconv.runtime.generator``)
has ``"kind": "generator"``, ``"z_dim"`` (input (N, z_dim) float32, N(0, 1) noise),
``"lis_modules"``, ``"reverser"`` (R-separate's G(R(G(z)))), ``"image_size"`` [H, W],
``"output_range"`` [0, 1] (output (N, 3, H, W)) and ``"gan_config"``; no ``embedding_dim``.

In ``.tflite`` files the same JSON is the buffer of the flatbuffer ``metadata`` entry named
``edgeconv`` (see ``edgeconv.metadata.files.read_tflite_metadata``).

The package (torch-free; nothing in it opens an inference session):

* ``edgeconv.metadata.files``: reading from ONNX, TFLite and the sidecar, bounded;
* ``edgeconv.metadata.schema``: the constants of the schema and :func:`validate_metadata`;
* ``edgeconv.metadata.identity``: which metadata a file is run with (embedded vs sidecar) and
  the identity templates are bound to;
* ``edgeconv.metadata.write``: the fields every exporter writes first (:func:`header`).
"""

from edgeconv.metadata.files import (  # noqa: F401
    MAX_DISPLAY_CHARS, MAX_METADATA_BYTES, MAX_METADATA_DEPTH, MAX_SIDECAR_BYTES,
    METADATA_FORMAT_VERSION, ONNX_METADATA_KEY, TFLITE_METADATA_NAME, escape_text,
    load_metadata, onnx_metadata_from_bytes, parse_metadata_json, read_onnx_metadata,
    read_sidecar, read_tflite_metadata, sidecar_path, tflite_metadata_from_bytes)
from edgeconv.metadata.identity import (  # noqa: F401
    ResolvedMetadata, file_sha256, identity, onnx_external_locations, resolve_metadata)
from edgeconv.metadata.schema import (  # noqa: F401
    MAX_EMBEDDING_DIM, MAX_INPUT_SIDE, SIDECAR_ONLY_KEYS, TRANSLATOR_DIRECTIONS, MetadataError,
    validate_metadata)
from edgeconv.metadata.write import header  # noqa: F401
