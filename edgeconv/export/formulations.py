"""Graph formulations of the folded (static per-pixel weight) TVConv product.

Every formulation computes exactly::

    out[n, c, i, j] = sum_{u,v} pad(x)[n, c, i*s+u, j*s+v] * W[0, c, u*k+v, i, j] (+ bias)

but lowers to different standard ONNX / TFLite ops, which run at very different speeds in
ONNX Runtime and LiteRT (the op is memory bound: it streams C*k*k*h*w weights per image).
Measurements and the reasons for the default are in ``docs/export_speed.md``.

Exact formulations (selectable by name, ``FoldedTVConv(..., formulation=NAME)``):

``slices``
    k*k strided Slices of the padded input, each multiplied by its weight plane, summed
    (Pad, Slice, Mul, Add). The eager/reference form.
``onehot``
    Pad + one depthwise Conv with channel multiplier k*k and one-hot kernels (the patches,
    channel-major (N, C*k*k, h, w)) -> Mul by (1, C*k*k, h, w) -> Reshape (N, C, k*k, h, w)
    -> ReduceSum over the k*k axis.
``onehot_tap``
    Like ``onehot`` but the patches are tap-major: k*k Slices concatenated on the channel
    axis (N, k*k*C, h, w) -> Mul -> Reshape (N, k*k, C, h, w) -> ReduceSum over axis 1 (the
    sum runs over whole contiguous (C, h, w) slabs, the fastest reduction layout).
``tapconv``
    k*k one-hot depthwise Convs (one tap each, MLAS depthwise kernels, no Pad/Slice copies),
    each times its weight plane, summed. Same arithmetic as ``slices`` without the copies.
``col2im``
    Stride 1: ONE broadcast Mul of the input by the weights moved to input coordinates
    (N, C, k*k, H, W), then ONE Col2Im (``F.fold``, ONNX opset >= 18) that sums the k*k
    shifted planes: 2 ops instead of ``tapconv``'s k*k Conv + k*k Mul + k*k-1 Add.
    Strided layers use ``tapconv``: Col2Im scatters onto the grid of its own input, and a
    polyphase split (4 strided slices, 3 Col2Im with 2x2/2x1/1x2 kernels) was measured
    slower than ``tapconv`` (ONNX Runtime's Col2Im kernel is single-threaded). ONNX only:
    TFLite has no Col2Im (litert-torch lowers it to a scatter the interpreter cannot run).

Approximate (``edgeconv.export.lowrank``): rank-r SVD of each layer's weights, r depthwise
convs times r spatial maps (exact only at full rank k*k).
"""

from __future__ import annotations

import torch

from edgeconv.errors import EdgeconvError
from edgeconv.export.formats import EXPORT_FORMATS, FUSED  # FUSED: defined with the table
from edgeconv.ops.per_pixel import (LOWERINGS, check_lowering, col2im_weights,  # noqa: F401
                                    onehot_kernels, per_pixel, tap_kernel)

EXACT_FORMULATIONS = LOWERINGS
#: ``fused`` (FUSED): each folded TVConv (with its BatchNorm and activation) becomes ONE node. ONNX: the
#: edgeconv kernel library's custom op ``edgeconv.TVConv`` (edgeconv.export.fused); the file
#: then runs only where that library is loaded (edgeconv.kernels). TFLite: a
#: ``STABLEHLO_COMPOSITE`` ``edgeconv.tvconv`` (edgeconv.export.litert_fused) whose
#: decomposition is standard ops, so the file runs in any LiteRT and runs the native kernel
#: where the edgeconv LiteRT delegate is loaded (docs/litert_delegate.md).
FORMULATIONS = EXACT_FORMULATIONS + (FUSED,)
#: The default of a format without its own (``edgeconv.export.formats``: each format's entry
#: names its default, the formulations it cannot carry and those that pin its batch size).
DEFAULT_FORMULATION = "tapconv"
MIN_OPSET = {"col2im": 18}


def default_formulation(fmt: str, opset: int | None = None) -> str:
    """The formulation a plain export of format ``fmt`` writes (its table entry)."""
    spec = EXPORT_FORMATS.get(fmt)
    return spec.default_formulation if spec is not None else DEFAULT_FORMULATION


def check_formulation_for(name: str, fmt: str, opset: int | None = None,
                          dynamic_batch: bool = False) -> str:
    """Refuse, in one line, a ``--formulation`` that ``fmt`` cannot carry: unknown names,
    forms the format's table entry cannot carry, Col2Im below opset 18, and
    (``dynamic_batch``) forms whose graph pins the format's batch size."""
    if name not in FORMULATIONS:
        raise EdgeconvError(f"unknown --formulation '{name}' "
                            f"(choose from: {', '.join(FORMULATIONS)})")
    spec = EXPORT_FORMATS[fmt]
    why = dict(spec.cannot_carry).get(name)
    if why is not None:
        carriers = [s.title for s in EXPORT_FORMATS.values() if name not in dict(s.cannot_carry)]
        raise EdgeconvError(f"--formulation {name} is {'/'.join(carriers)} only ({fmt} {why}): "
                            f"export {fmt} with another formulation, e.g. "
                            f"{spec.default_formulation}, or leave {fmt} out of --format")
    if "opset" in spec.options and opset is not None and opset < MIN_OPSET.get(name, 0):
        raise EdgeconvError(f"--formulation {name} needs {spec.title} opset >= "
                            f"{MIN_OPSET[name]} (Col2Im), got --opset {opset}")
    if dynamic_batch and name in spec.batch_pinning:
        raise EdgeconvError(
            f"--formulation {name} pins the batch size of a {spec.title} file, so it cannot "
            f"be dynamic (the file is converted at batch 1 and resized at run time): give "
            f"--batch N, or another formulation")
    return name


def check_formulation(name: str) -> str:
    """An exact lowering's name (``fused`` is a module swap, not a lowering)."""
    return check_lowering(name)


def set_formulation(model: torch.nn.Module, formulation: str) -> int:
    """Select ``formulation`` on every FoldedTVConv of ``model``; returns how many."""
    from edgeconv.ops.tvconv import FoldedTVConv

    check_formulation(formulation)
    n = 0
    for m in model.modules():
        if isinstance(m, FoldedTVConv):
            m.set_formulation(formulation)
            n += 1
    return n
