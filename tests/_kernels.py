"""Test helpers for the native kernel: a ctypes entry to one ISA path and single-node graphs."""

from __future__ import annotations

import ctypes

import numpy as np

WTYPE = {np.dtype("float32"): 0, np.dtype("float16"): 1, np.dtype("int8"): 2}
ACT = {"none": 0, "relu": 1, "relu6": 2}


def skip_reason() -> str | None:
    from edgeconv import kernels

    try:
        kernels.load()
    except kernels.KernelsMissing as exc:
        return str(exc)
    return None


def run_isa(isa: str, x, packed, scales, bias, k: int, s: int, act: str = "none") -> np.ndarray:
    """The kernel's ISA path ``isa`` called directly (single thread, no runtime)."""
    from edgeconv import kernels
    from edgeconv.kernels import pack

    lib = kernels.load()
    x = np.ascontiguousarray(x, np.float32)
    n, c, h_in, w_in = x.shape
    h, w = pack.out_hw((h_in, w_in), k, s)
    y = np.full((n, c, h, w), np.nan, np.float32)
    err = ctypes.create_string_buffer(256)
    bias_mode = 0 if bias is None else (1 if bias.ndim == 1 else 2)

    def ptr(a):
        return None if a is None else a.ctypes.data_as(ctypes.c_void_p)

    rc = lib.edgeconv_tvconv_run(isa.encode(), ptr(x), ptr(y), ptr(packed), WTYPE[packed.dtype],
                                 ptr(scales), ptr(bias), bias_mode, ACT[act], ctypes.c_int64(n),
                                 ctypes.c_int64(c), ctypes.c_int64(h_in), ctypes.c_int64(w_in),
                                 k, s, err, len(err))
    if rc != 0:
        raise RuntimeError(err.value.decode())
    return y


def node_model(c: int, in_hw, k: int, s: int, dtype: str = "float32", bias: str = "channel",
               act: str = "relu6", seed: int = 0, attrs: dict | None = None, packed_w=None,
               free_hw: bool = False):
    """A one-node ONNX model (dynamic batch) and the float64 weights it holds."""
    from onnx import TensorProto, helper, numpy_helper

    from edgeconv.kernels import pack

    rng = np.random.default_rng(seed)
    h, w = pack.out_hw(in_hw, k, s)
    weight = rng.standard_normal((c, k * k, h, w))
    packed, scales = pack.pack_weights(weight, in_hw, s, dtype)
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
        inits.append(numpy_helper.from_array(pack.pack_bias(b, c, h, w), "B"))
        names[3] = "B"
    while names[-1] == "":
        names.pop()
    kw = dict(kernel_size=k, stride=s, activation=act, layout=pack.LAYOUT)
    kw.update(attrs or {})
    node = helper.make_node("TVConv", names, ["y"], domain="edgeconv", **kw)
    graph = helper.make_graph(
        [node], "tvconv", [helper.make_tensor_value_info(
            "x", TensorProto.FLOAT, ["N", c, *(("H", "W") if free_hw else in_hw)])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18),
                                                    helper.make_opsetid("edgeconv", 1)])
    deq = pack.unpack_weights(packed, scales, w).astype(np.float64)
    return model.SerializeToString(), deq, b


def session(data: bytes, threads: int = 1):
    import onnxruntime as ort

    from edgeconv import kernels

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    kernels.register(so)
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
