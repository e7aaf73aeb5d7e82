"""One ``edgeconv.TVConv`` node as a whole ONNX model (torch-free: numpy and onnx).

For tests and benchmarks of the kernel library against a single layer::

    from edgeconv.export.fused_node import node_model
    data, weights, bias = node_model(32, (24, 24), 3, 1, dtype="int8")
    # data: the serialised model, input "x" (N, 32, 24, 24) -> output "y"
"""

from __future__ import annotations

import numpy as np


def node_model(c: int, in_hw, k: int, s: int, dtype: str = "float32", bias: str = "channel",
               act: str = "relu6", seed: int = 0, attrs: dict | None = None, packed_w=None,
               free_hw: bool = False, layout: str | None = None):
    """A one-node ONNX model (dynamic batch) of random weights and what it holds.

    ``c`` channels, input ``in_hw``, kernel ``k``, stride ``s``; weights stored as ``dtype``
    (float32 / float16 / int8, ``edgeconv.kernels.pack``); ``bias`` "none", "channel" or
    "pixel"; ``act`` "none", "relu" or "relu6"; ``layout`` the packed layout (default
    ``pack.layout_for``: flat at stride 1); ``attrs`` overrides node attributes,
    ``packed_w`` the packed weight tensor; ``free_hw``: symbolic H and W in the input.
    Returns (model bytes, the dequantised weights as float64 (c, k*k, h, w), the bias or None).
    """
    from onnx import TensorProto, helper, numpy_helper

    from edgeconv.kernels import OP_VERSION, pack

    rng = np.random.default_rng(seed)
    h, w = pack.out_hw(in_hw, k, s)
    layout = layout or pack.layout_for(s, (h, w))
    weight = rng.standard_normal((c, k * k, h, w))
    packed, scales = pack.pack_weights(weight, in_hw, s, dtype, layout)
    if packed_w is not None:
        packed = packed_w
    b = {"none": None, "channel": rng.standard_normal(c),
         "pixel": rng.standard_normal((c, h, w))}[bias]
    inits = [numpy_helper.from_array(packed, "W")]
    names = ["x", "W", "", ""]
    if scales is not None:
        inits.append(numpy_helper.from_array(scales, "S"))
        names[2] = "S"
    if b is not None:
        inits.append(numpy_helper.from_array(pack.pack_bias(b, c, h, w, layout), "B"))
        names[3] = "B"
    while names[-1] == "":
        names.pop()
    kw = dict(kernel_size=k, stride=s, activation=act, layout=layout)
    kw.update(attrs or {})
    node = helper.make_node("TVConv", names, ["y"], domain="edgeconv", **kw)
    graph = helper.make_graph(
        [node], "tvconv", [helper.make_tensor_value_info(
            "x", TensorProto.FLOAT, ["N", c, *(("H", "W") if free_hw else in_hw)])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18),
                                                    helper.make_opsetid("edgeconv", OP_VERSION)])
    deq = pack.unpack_weights(packed, scales, w, layout).astype(np.float64)
    return model.SerializeToString(), deq, b
