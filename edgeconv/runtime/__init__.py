"""On-device runtime (torch-free): open exported ONNX / TFLite models and run them.

See :mod:`edgeconv.runtime.backends`. Only numpy is imported here; the runtime
libraries are imported when a model is opened.
"""

from edgeconv.runtime.backends import (  # noqa: F401
    BACKENDS,
    ModelBackend,
    ModelFileError,
    UnsupportedConfig,
    backend_for_path,
    open_model,
)

__all__ = ["BACKENDS", "ModelBackend", "ModelFileError", "UnsupportedConfig",
           "backend_for_path", "open_model"]
