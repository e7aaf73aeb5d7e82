"""ctypes entry to the native training kernels of the per-pixel product (torch-free).

``edgeconv_tvconv_train`` (``src/tvconv_train_impl.h``) computes, on float32 buffers in the
natural layouts, the forward product, the input gradient or the weight gradient;
:mod:`edgeconv.ops.per_pixel_train` calls it from its autograd function when the library is
built and falls back to torch ops otherwise. ``EDGECONV_TRAIN_KERNELS=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import os
from functools import lru_cache

FORWARD, GRAD_INPUT, GRAD_WEIGHT = 0, 1, 2
ENV = "EDGECONV_TRAIN_KERNELS"


class TrainKernelError(RuntimeError):
    """The native training kernel refused its arguments (one line)."""


@lru_cache(maxsize=1)
def _entry():
    from edgeconv.kernels import KernelsMissing, load

    try:
        lib = load()
    except KernelsMissing:
        return None
    fn = getattr(lib, "edgeconv_tvconv_train", None)
    if fn is None:  # a library built before the training kernels existed
        return None
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                   ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                   ctypes.c_int64, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                   ctypes.c_int]
    return fn


def available() -> bool:
    """True when the library is built with the training kernels and not turned off."""
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return _entry() is not None


def run(mode: int, a_ptr: int, b_ptr: int, out_ptr: int, shape, kernel_size: int,
        stride: int, threads: int = 1, isa: str | None = None) -> None:
    """Run one training kernel on raw float32 buffers; ``shape`` = (N, C, H, W) of x."""
    fn = _entry()
    if fn is None:
        raise TrainKernelError("the edgeconv training kernels are not available")
    n, c, h, w = (int(v) for v in shape)
    err = ctypes.create_string_buffer(256)
    want = isa if isa is not None else os.environ.get("EDGECONV_KERNEL_ISA")
    rc = fn(want.encode() if want else None, int(mode), a_ptr, b_ptr, out_ptr, n, c, h, w,
            int(kernel_size), int(stride), int(threads), err, len(err))
    if rc != 0:
        raise TrainKernelError(f"edgeconv training kernel: {err.value.decode(errors='replace')}")
