"""Operators that replace the 3x3 depthwise convolution of a block, chosen by name.

``list_ops()`` is torch-free; ``build_op()`` imports the operator module lazily.

Every operator takes the same construction arguments::

    build_op(name, channels, stride=1, in_hw=(h, w), kernel_size=3, **op_kwargs)

and maps (N, C, H, W) -> (N, C, ceil(H/stride), ceil(W/stride)) with zero padding k//2.
"""

from __future__ import annotations

import importlib

from edgeconv.errors import EdgeconvError

# name -> (module, class)
_OPS = {
    "depthwise": ("edgeconv.ops.depthwise", "DepthwiseConv"),
    "tvconv": ("edgeconv.ops.tvconv", "TVConv"),
    "filtergen": ("edgeconv.ops.filtergen", "FilterGenConv"),
}


def list_ops() -> list[str]:
    return list(_OPS)


def check_op(name: str) -> str:
    if name not in _OPS:
        raise EdgeconvError(f"unknown op '{name}' (choose from: {', '.join(_OPS)})")
    return name


def op_class(name: str):
    module, cls = _OPS[check_op(name)]
    return getattr(importlib.import_module(module), cls)


def build_op(name: str, channels: int, stride: int = 1, in_hw=(96, 96), kernel_size: int = 3,
             **op_kwargs):
    """Construct operator ``name`` for a (channels, *in_hw) input."""
    return op_class(name)(channels, stride=stride, in_hw=tuple(in_hw), kernel_size=kernel_size,
                          **op_kwargs)


def conv_out_size(size: int, kernel_size: int, stride: int) -> int:
    """Output length of a conv/pool with padding k//2 (the 'same'-style padding used throughout)."""
    pad = kernel_size // 2
    return (size + 2 * pad - kernel_size) // stride + 1


def out_hw(in_hw, kernel_size: int, stride: int) -> tuple[int, int]:
    return (conv_out_size(in_hw[0], kernel_size, stride), conv_out_size(in_hw[1], kernel_size, stride))
