"""Test helpers for the native kernel: a ctypes entry to one ISA path and single-node graphs."""

from __future__ import annotations

import ctypes

import numpy as np

from edgeconv.export.fused_node import node_model  # noqa: F401 (tests import it from here)

WTYPE = {np.dtype("float32"): 0, np.dtype("float16"): 1, np.dtype("int8"): 2}
ACT = {"none": 0, "relu": 1, "relu6": 2}


def skip_reason() -> str | None:
    from edgeconv import kernels

    try:
        kernels.load()
    except kernels.KernelsMissing as exc:
        return str(exc)
    return None


def _layout_code(layout: str) -> int:
    """The C ABI's code of a layout (edgeconv::Layout: rows 0, flat 1)."""
    from edgeconv.kernels import pack

    return pack.LAYOUTS.index(layout)


def run_isa(isa: str, x, packed, scales, bias, k: int, s: int, act: str = "none",
            layout: str | None = None) -> np.ndarray:
    """The kernel's ISA path ``isa`` called directly (single thread, no runtime); ``layout``
    of ``packed`` (default: ``pack.layout_for``, as ``pack.pack_weights``)."""
    from edgeconv import kernels
    from edgeconv.kernels import pack

    lib = kernels.load()
    x = np.ascontiguousarray(x, np.float32)
    n, c, h_in, w_in = x.shape
    h, w = pack.out_hw((h_in, w_in), k, s) if k > 0 and s > 0 else (0, 0)
    layout = layout or (pack.layout_for(s, (h, w)) if s > 0 else pack.LAYOUT)
    y = np.full((n, c, max(h, 0), max(w, 0)), np.nan, np.float32)
    err = ctypes.create_string_buffer(256)
    bias_mode = 0 if bias is None else (1 if bias.ndim == 1 else 2)

    def ptr(a):
        return None if a is None else a.ctypes.data_as(ctypes.c_void_p)

    rc = lib.edgeconv_tvconv_run_layout(isa.encode(), _layout_code(layout), ptr(x), ptr(y),
                                        ptr(packed), WTYPE[packed.dtype],
                                 ptr(scales), ptr(bias), bias_mode, ACT[act], ctypes.c_int64(n),
                                 ctypes.c_int64(c), ctypes.c_int64(h_in), ctypes.c_int64(w_in),
                                 k, s, err, len(err))
    if rc != 0:
        raise RuntimeError(err.value.decode())
    return y


def session(data: bytes, threads: int = 1):
    import onnxruntime as ort

    from edgeconv import kernels

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    kernels.register(so)
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
