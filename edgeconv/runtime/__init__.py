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

# Face unlock (edgeconv.runtime.embedder / store / policy), imported on first use so that
# `import edgeconv.runtime` stays numpy-only: `from edgeconv.runtime import Embedder`.
_LAZY = {"Embedder": "embedder", "TemplateStore": "store", "LockoutPolicy": "policy"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"edgeconv.runtime.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'edgeconv.runtime' has no attribute {name!r}")
