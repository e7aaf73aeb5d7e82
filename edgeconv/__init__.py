"""edgeconv: layout-aware (TVConv) face models, from training to the edge device.

The top-level package is import-light: it must never import torch, so that the
device side (bench, runtime, unlock) runs on the base install.
"""

__version__ = "0.1.0"

from edgeconv.errors import EdgeconvError  # noqa: E402  (torch-free)

__all__ = ["EdgeconvError", "__version__"]
