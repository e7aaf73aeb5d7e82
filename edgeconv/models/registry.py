"""timm-style model registry: ``@register_model`` on thin variant functions over one builder.

The registry itself is torch-free; model modules (which import torch) register on import,
triggered by the first lookup.
"""

from __future__ import annotations

import importlib
from typing import Callable

from edgeconv.config import parse_input_size
from edgeconv.errors import EdgeconvError

_MODEL_MODULES = ("edgeconv.models.mobilenetv2", "edgeconv.models.shufflenetv2")
#: The registered names, known without importing torch (``edgeconv models``, name checks
#: before a command imports torch); tests/test_models.py checks it against the registry.
MODEL_NAMES: tuple[str, ...] = ("mbv2_x0_1", "mbv2_x0_2", "mbv2_x0_3", "mbv2_x0_5",
                                "mbv2_x1_0", "sfv2_x0_5", "sfv2_x1_0", "sfv2_x1_5")
_REGISTRY: dict[str, Callable] = {}
_loaded = False


def register_model(fn: Callable) -> Callable:
    """Register ``fn`` under its ``__name__``; registering a name twice is an error."""
    name = fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"model '{name}' is already registered")
    _REGISTRY[name] = fn
    return fn


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for mod in _MODEL_MODULES:
            importlib.import_module(mod)


def list_models() -> list[str]:
    _load()
    return list(_REGISTRY)


def model_names() -> list[str]:
    """:data:`MODEL_NAMES` (torch-free)."""
    return list(MODEL_NAMES)


def check_model_name(name: str) -> str:
    """``name`` if it is a registered model; else one line listing them (torch-free)."""
    if name not in MODEL_NAMES:
        raise EdgeconvError(f"unknown model '{name}' (choose from: {', '.join(MODEL_NAMES)})")
    return name


def is_model(name: str) -> bool:
    _load()
    return name in _REGISTRY


def create_model(name: str, op: str = "depthwise", input_size=96, embedding_dim: int = 512,
                 op_kwargs: dict | None = None, **kwargs):
    """Build registered model ``name`` with operator ``op`` for ``input_size`` (N or (H, W)).

    The returned module carries ``model.config``: everything needed to build it again
    (stored in checkpoints and export metadata).
    """
    _load()
    if name not in _REGISTRY:
        raise EdgeconvError(f"unknown model '{name}' (choose from: {', '.join(_REGISTRY)})")
    from edgeconv.ops import check_op

    check_op(op)
    if embedding_dim < 1:
        raise EdgeconvError(f"embedding_dim must be positive, got {embedding_dim}")
    hw = parse_input_size(input_size)
    model = _REGISTRY[name](op=op, input_size=hw, embedding_dim=embedding_dim,
                            op_kwargs=dict(op_kwargs or {}), **kwargs)
    model.config = {"name": name, "op": op, "input_size": list(hw),
                    "embedding_dim": embedding_dim, "op_kwargs": dict(op_kwargs or {}), **kwargs}
    return model
