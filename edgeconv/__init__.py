"""edgeconv: layout-aware (TVConv) face models, from training to the edge device.

The top-level package is import-light: it must never import torch, so that the
device side (bench, runtime, unlock) runs on the base install.
"""

import os as _os

__version__ = "0.1.0"

# ONNX Runtime >= 1.32 (Linux wheels) records usage telemetry at import: a persistent device ID
# and a queue of events (every session creation, model load, run durations, error messages,
# the executable's path) under ~/.cache/Microsoft/DeveloperTools/.onnxruntime/, for upload.
# On a face-unlock device that is a log of every unlock attempt. Off unless the user opts in
# (ORT_DISABLE_TELEMETRY=0); it must be set before onnxruntime is imported. docs/unlock.md.
_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from edgeconv.errors import EdgeconvError  # noqa: E402  (torch-free)

__all__ = ["EdgeconvError", "__version__"]
