"""How much of a fused ONNX file's work ONNX Runtime's NCHWc layout would speed up, against
what it would cost around the ``edgeconv.TVConv`` nodes (export side: needs ``onnx``).

ONNX Runtime's NchwcTransformer runs standard convolutions in a channel-blocked layout
(x86 MLAS: 8 or 16 channels per block). A custom-op node reads plain NCHW, so with the
transformer on every ``edgeconv.TVConv`` node is wrapped in two reorders (blocked -> NCHW
before, NCHW -> blocked after) that copy its input and output. Whether the blocked
convolutions save more than the reorders cost depends on the model, measured on the AVX2 build
machine with ONNX Runtime 1.32 (time with the transformer on / off, batch 1 and 8):

    MB x0.1 TVConv 96x96          10 conv MACs per reordered float   1.15 / 1.17   (off wins)
    MB x0.5 TVConv 96x96          24                                  0.95 / 1.09
    MB x1.0 TVConv 96x96          44                                  1.00 / 1.04
    ShuffleNetV2 x1.0 TVConv 96   106                                 0.90 / 0.97   (on wins)
    DeepLabV3+ IR TVConv 256 x0.5 1164                                0.80          (on wins)

So the file records the ratio (standard-convolution MACs per float the reorders would copy,
per image) and the device side (``edgeconv.kernels.session_kwargs``) keeps the transformer on
above :data:`edgeconv.kernels.NCHWC_MIN_CONV_MACS_PER_FLOAT`.
"""

from __future__ import annotations

import numpy as np

from edgeconv.kernels import DOMAIN, OP_TYPE


def _dims(value_info) -> list:
    """A tensor's inferred dimensions, None where unknown."""
    return [d.dim_value if d.HasField("dim_value") else None
            for d in value_info.type.tensor_type.shape.dim]


def conv_macs_per_fused_float(data) -> float | None:
    """Convolution MACs (every ``Conv`` but depthwise ones) per float crossing an
    ``edgeconv.TVConv`` node (its input and output, per image) in the ONNX model ``data``
    (serialised, or a ModelProto); None where the model has no such node or the sizes cannot
    be known."""
    import onnx

    proto = data if isinstance(data, onnx.ModelProto) else onnx.load_from_string(data)
    model = onnx.shape_inference.infer_shapes(proto)
    g = model.graph
    dims = {v.name: _dims(v) for v in list(g.value_info) + list(g.input) + list(g.output)}
    inits = {t.name: tuple(t.dims) for t in g.initializer}
    macs = 0
    floats = 0
    for node in g.node:  # topological order: a node's input sizes are known before it
        fused = node.domain == DOMAIN and node.op_type == OP_TYPE
        conv = node.domain in ("", "ai.onnx") and node.op_type == "Conv"
        if not (fused or conv):
            continue
        x = dims.get(node.input[0], [])
        known = len(x) == 4 and None not in x[1:]
        attr = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if fused:  # the output's size from the input's (inference through a function body
            if not known:  # does not always keep it)
                return None
            _, c, h, w = x
            k, st = attr.get("kernel_size", 3), attr.get("stride", 1)
            out = [x[0], c, (h + 2 * (k // 2) - k) // st + 1, (w + 2 * (k // 2) - k) // st + 1]
            floats += c * h * w + c * out[2] * out[3]
        else:
            wshape = inits.get(node.input[1])
            if wshape is None or len(wshape) != 4:
                return None  # a weight computed at run time
            out = dims.get(node.output[0], [])
            if len(out) != 4 or None in out[1:]:
                if not known:
                    return None
                out = [x[0], wshape[0], *_conv_out_hw(x[2:], wshape[2:], attr)]
            if attr.get("group", 1) != wshape[0] or wshape[1] != 1:  # not depthwise
                macs += out[1] * out[2] * out[3] * int(np.prod(wshape[1:]))
        dims[node.output[0]] = out
    if floats == 0:
        return None
    return macs / floats


def _conv_out_hw(hw, kernel, attr: dict) -> list[int]:
    """A Conv's output (H, W) from its input's, kernel, strides, pads and dilations."""
    strides = attr.get("strides", [1, 1])
    dil = attr.get("dilations", [1, 1])
    pads = attr.get("pads", [0, 0, 0, 0])
    if attr.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID"):
        return [(n + s - 1) // s for n, s in zip(hw, strides)]  # SAME_*: ceil(n / s)
    return [(n + pads[i] + pads[i + 2] - d * (k - 1) - 1) // s + 1
            for i, (n, k, s, d) in enumerate(zip(hw, kernel, strides, dil))]
