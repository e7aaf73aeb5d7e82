"""MACs and params with fvcore, using op handles that reproduce the TVConv paper's convention.

Convention (reproduces the paper's Fig. 5 table): convolutions and Linear layers count their
multiply-accumulates (Linear bias counted: in*out + out); BatchNorm and LayerNorm = 2 per element;
ReLU/ReLU6 = 1 per element; pooling = 1 per input element; elementwise products (the per-pixel
TVConv product) = 1 per output element; sigmoid/softmax/GELU/sqrt/division 1 per output element
(the comparison operators' routing and attention), so a folded k x k TVConv costs k*k per output value like
a depthwise conv; additions (residuals, the per-pixel sum) and data movement are not counted.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from edgeconv.errors import require

# Ops that move or reshape data, or additions the convention leaves out: counted as zero.
ZERO_COST_OPS = (
    "aten::add", "aten::add_", "aten::sub", "aten::sum", "aten::pad", "aten::constant_pad_nd",
    "aten::slice", "aten::select", "aten::view", "aten::reshape", "aten::transpose",
    "aten::contiguous", "aten::cat", "aten::chunk", "aten::split", "aten::flatten",
    "aten::unsqueeze", "aten::squeeze", "aten::size", "aten::Int", "aten::clone",
    "aten::detach", "aten::to", "aten::permute", "aten::expand", "aten::unsafe_split",
    "aten::split_with_sizes", "aten::unsafe_chunk", "aten::unflatten",
    "aten::stack", "aten::index_select", "aten::new_zeros", "aten::new_full", "aten::zeros",
    "aten::fill_", "aten::lift_fresh",
)


def _numel(value) -> int:
    from fvcore.nn.jit_handles import get_shape

    shape = get_shape(value)
    return int(math.prod(shape)) if shape else 0


def _per_input_element(factor: int):
    def handle(inputs, outputs):
        return factor * _numel(inputs[0])
    return handle


def _per_output_element(factor: int):
    def handle(inputs, outputs):
        return factor * _numel(outputs[0])
    return handle


def _linear_with_bias(inputs, outputs):
    # aten::linear(input, weight, bias): out_numel * in_features (+ out_numel if bias)
    from fvcore.nn.jit_handles import get_shape

    w = get_shape(inputs[1])
    out = _numel(outputs[0])
    has_bias = len(inputs) > 2 and get_shape(inputs[2]) is not None
    return out * w[-1] + (out if has_bias else 0)


def _addmm_with_bias(inputs, outputs):
    # aten::addmm(bias, x, w^T)
    from fvcore.nn.jit_handles import get_shape

    x = get_shape(inputs[1])
    out = _numel(outputs[0])
    return out * x[-1] + out


def _zero(inputs, outputs):
    return 0


HANDLES = {
    "aten::linear": _linear_with_bias,
    "aten::addmm": _addmm_with_bias,
    "aten::batch_norm": _per_input_element(2),
    "aten::layer_norm": _per_input_element(2),
    "aten::relu": _per_output_element(1),
    "aten::relu_": _per_output_element(1),
    "aten::hardtanh": _per_output_element(1),
    "aten::hardtanh_": _per_output_element(1),
    "aten::max_pool2d": _per_input_element(1),
    "aten::adaptive_avg_pool2d": _per_input_element(1),
    "aten::mean": _per_input_element(1),
    "aten::mul": _per_output_element(1),
    # the comparison operators (edgeconv.ops.condconv ... axial, the mixer): nonlinearities and
    # normalisers 1 per element like ReLU; products/quotients 1 per output element
    "aten::sigmoid": _per_output_element(1),
    "aten::softmax": _per_output_element(1),
    "aten::gelu": _per_output_element(1),
    "aten::div": _per_output_element(1),
    "aten::sqrt": _per_output_element(1),
    **{op: _zero for op in ZERO_COST_OPS},
}


def count_macs(model: nn.Module, input_size=(96, 96), batch: int = 1, channels: int = 3):
    """Total MACs and an fvcore analysis (for per-module numbers) of ``model`` on one input."""
    fvcore_nn = require("fvcore.nn", "train", package="fvcore")
    model = model.eval()
    x = torch.zeros(batch, channels, *input_size)
    analysis = fvcore_nn.FlopCountAnalysis(model, (x,))
    analysis.set_op_handle(**HANDLES)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    with torch.no_grad():
        total = analysis.total()
    return int(total), analysis


def count_params(model: nn.Module) -> int:
    """Parameters plus non-BatchNorm buffers: :func:`edgeconv.profiling.counts.values_of`."""
    from edgeconv.profiling.counts import values_of

    return values_of(model)


def per_layer(analysis, model: nn.Module) -> "OrderedDict[str, int]":
    """MACs per top-level layer of the backbone (stem, blocks, last conv) and the head."""
    by_module = analysis.by_module()
    rows: "OrderedDict[str, int]" = OrderedDict()
    for name, _ in model.features.named_children():
        rows[f"features.{name}"] = int(by_module.get(f"features.{name}", 0))
    rows["head"] = int(by_module.get("head", 0))
    return rows
