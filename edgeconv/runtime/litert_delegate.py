"""The edgeconv LiteRT delegate: finding, self-testing and loading it (torch-free).

TFLite files exported with ``--formulation fused`` hold one ``STABLEHLO_COMPOSITE`` op named
``edgeconv.tvconv`` per TVConv layer (``edgeconv.export.litert_fused``). A stock LiteRT runs
each composite's decomposition (standard ops: the *portable body*); with the delegate library
``libedgeconv_litert.so`` loaded, each composite runs as one native kernel. From your own
code::

    from ai_edge_litert.interpreter import Interpreter, load_delegate
    d = load_delegate(path)          # path: `edgeconv kernels --delegate-path`
    it = Interpreter("model_fused.tflite", experimental_delegates=[d])

Inside edgeconv (:func:`delegates_for`, used by the TFLite backend) the library is loaded once
per process after a SELF-TEST: a tiny fused file shipped in ``edgeconv/kernels/data`` whose
decomposition body is deliberately wrong, run with the delegate and compared with its stored
numpy reference output, so a pass proves the delegate both loads and claims the composites.
On any load error or mismatch the delegate is dropped with ONE warning line on stderr and
fused files run their portable body.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

import numpy as np

COMPOSITE_NAME = "edgeconv.tvconv"
LIB_NAME = "libedgeconv_litert.so"
#: path of the delegate library (overrides the one next to libedgeconv_kernels.so)
ENV_PATH = "EDGECONV_LITERT_DELEGATE"
#: "0" never loads the delegate; "fail" makes the self-test fail (tests of the fallback)
ENV_SELFTEST = "EDGECONV_LITERT_SELFTEST"
KERNELS_DIR = Path(__file__).resolve().parent.parent / "kernels"
DATA_DIR = KERNELS_DIR / "data"
SELFTEST_MODEL = DATA_DIR / "tvconv_selftest.tflite"
SELFTEST_INPUT = DATA_DIR / "tvconv_selftest_input.npy"
SELFTEST_OUTPUT = DATA_DIR / "tvconv_selftest_output.npy"
SELFTEST_ATOL = 1e-4
#: what a model's composites run on, recorded by the TFLite backend (``execution_path``)
KERNEL = "kernel"
PORTABLE = "portable body"

_selftest: dict[str, tuple[bool, str]] = {}   # library path -> (passed, reason)
_warned: set[str] = set()


def delegate_path(required: bool = False) -> Path | None:
    """The delegate library (``EDGECONV_LITERT_DELEGATE`` overrides); None if not built."""
    env = os.environ.get(ENV_PATH)
    path = Path(env) if env else KERNELS_DIR / LIB_NAME
    if path.is_file():
        return path
    if required:
        from edgeconv.kernels import KernelsMissing

        raise KernelsMissing(f"the edgeconv LiteRT delegate is not built ({path} missing): "
                             "build it with `python -m edgeconv.kernels.build`")
    return None


def model_has_composite(data: bytes) -> bool:
    """Whether TFLite bytes hold an ``edgeconv.tvconv`` composite (the name is stored as a
    flatbuffer string in the op's StableHLOCompositeOptions)."""
    return COMPOSITE_NAME.encode() in bytes(data)


def _lib_strings(path: Path) -> dict:
    """version / isa from the library's optional C ABI (``unknown`` where absent)."""
    out = {"version": "unknown", "isa": "unknown"}
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        out["error"] = str(exc).splitlines()[0][:200]
        return out
    for key, sym in (("version", "edgeconv_litert_version"), ("isa", "edgeconv_litert_isa")):
        fn = getattr(lib, sym, None)
        if fn is not None:
            fn.restype = ctypes.c_char_p
            try:
                out[key] = fn().decode()
            except Exception:  # noqa: BLE001 - build info is informative only
                pass
    return out


def info(selftest: bool = False) -> dict:
    """Delegate library path, version and ISA (``available`` False when not built); with
    ``selftest`` also whether it passes the self-test here."""
    path = delegate_path()
    if path is None:
        env = os.environ.get(ENV_PATH)
        return {"available": False, "library": env or str(KERNELS_DIR / LIB_NAME),
                "op": COMPOSITE_NAME}
    out = {"available": True, "library": str(path), "op": COMPOSITE_NAME, **_lib_strings(path)}
    if selftest:
        ok, reason = _run_selftest(path)
        out["selftest"] = "passed" if ok else f"failed: {reason}"
    return out


def _interpreter_module(module=None):
    if module is not None:
        return module
    from edgeconv.runtime.runtimes import TFLITE, import_runtime

    return import_runtime(TFLITE)[0]


def make_interpreter(data: bytes, num_threads: int = 1, delegates=None, module=None):
    """An allocated interpreter for ``data`` with ``delegates`` (XNNPACK as usual)."""
    from edgeconv.quiet import third_party_output

    mod = _interpreter_module(module)
    with third_party_output():
        it = mod.Interpreter(model_content=bytes(data), num_threads=int(num_threads),
                             experimental_delegates=list(delegates) if delegates else None)
        it.allocate_tensors()
    return it


def _run(it, x: np.ndarray) -> np.ndarray:
    inp = it.get_input_details()[0]
    if tuple(inp["shape"]) != tuple(x.shape):
        it.resize_tensor_input(inp["index"], list(x.shape), strict=False)
        it.allocate_tensors()
    it.set_tensor(inp["index"], x.astype(np.float32, copy=False))
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).copy()


def _new_delegate(path: Path, threads: int, module=None):
    mod = _interpreter_module(module)
    return mod.load_delegate(str(path), {"num_threads": str(int(threads))})


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return lines[0][:200] if lines else type(exc).__name__


def _run_selftest(path: Path, module=None) -> tuple[bool, str]:
    """Once per process and library: the shipped one-file self-test with the delegate."""
    key = str(path.resolve())
    if key in _selftest:
        return _selftest[key]
    try:
        data = SELFTEST_MODEL.read_bytes()
        x = np.load(SELFTEST_INPUT)
        want = np.load(SELFTEST_OUTPUT)
        if os.environ.get(ENV_SELFTEST, "").strip().lower() == "fail":
            want = want + 1.0  # simulated mismatch
        got = _run(make_interpreter(data, 1, [_new_delegate(path, 1, module)], module), x)
        diff = float(np.abs(got.astype(np.float64) - want).max()) if got.shape == want.shape \
            else float("inf")
        result = (True, "") if diff <= SELFTEST_ATOL else \
            (False, f"self-test output differs by {diff:.3g}")
    except Exception as exc:  # noqa: BLE001 - load errors of any kind drop the delegate
        result = (False, _first_line(exc))
    _selftest[key] = result
    return result


def _warn_once(path: Path, reason: str) -> None:
    key = str(path)
    if key in _warned:
        return
    _warned.add(key)
    sys.stderr.write(f"edgeconv: LiteRT delegate {path} dropped ({reason}); fused TVConv "
                     "layers run their portable body\n")
    sys.stderr.flush()


def load_delegate(threads: int = 1, module=None):
    """A delegate instance for one interpreter, or None (not built, disabled with
    ``EDGECONV_LITERT_SELFTEST=0``, or dropped after a failed self-test: one warning)."""
    if os.environ.get(ENV_SELFTEST, "").strip() == "0":
        return None
    path = delegate_path()
    if path is None:
        return None
    ok, reason = _run_selftest(path, module)
    if ok:
        try:
            return _new_delegate(path, threads, module)
        except Exception as exc:  # noqa: BLE001
            ok, reason = False, _first_line(exc)
    _warn_once(path, reason)
    return None


def delegates_for(data: bytes, threads: int = 1, module=None) -> tuple[list, str | None]:
    """(experimental_delegates, execution path) for TFLite bytes: ``([], None)`` for files
    without the composite, ``([delegate], "kernel")`` or ``([], "portable body")``."""
    if not model_has_composite(data):
        return [], None
    delegate = load_delegate(threads, module)
    return ([delegate], KERNEL) if delegate is not None else ([], PORTABLE)


def reference(x: np.ndarray, packed: np.ndarray, scales: np.ndarray, bias: np.ndarray,
              kernel_size: int, stride: int, activation: str = "none") -> np.ndarray:
    """The composite's function in numpy float64, NHWC: x (N, H, W, C), packed (h, w, k*k, C)."""
    k, s, p = int(kernel_size), int(stride), int(kernel_size) // 2
    h, w = packed.shape[:2]
    wd = packed.astype(np.float64) * np.asarray(scales, np.float64)[None, None]
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (p, p), (p, p), (0, 0)))
    y = np.zeros((x.shape[0], h, w, x.shape[3]))
    for t in range(k * k):
        u, v = divmod(t, k)
        y += xp[:, u:u + s * (h - 1) + 1:s, v:v + s * (w - 1) + 1:s, :] * wd[:, :, t, :]
    y += np.asarray(bias, np.float64)
    if activation == "relu":
        y = np.maximum(y, 0.0)
    elif activation == "relu6":
        y = np.clip(y, 0.0, 6.0)
    return y


def bench_entry(execution_path: str) -> dict:
    """What ``edgeconv bench`` records for a file with composites (delegate build or not)."""
    out = {"runtime": "litert", "op": COMPOSITE_NAME, "path": execution_path,
           "layout": "h_w_kk_c"}
    if execution_path == KERNEL:
        built = info()
        out.update(library=built.get("library"), version=built.get("version"),
                   isa=built.get("isa"))
    return out
