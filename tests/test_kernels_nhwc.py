"""The NHWC fused kernel (the LiteRT delegate's math) and the delegate library itself.

The kernel is called through the C ABI of ``libedgeconv_litert.so`` (``edgeconv_tvconv_nhwc_run``)
for every ISA this CPU runs, against a float64 numpy reference; the delegate library is loaded
by the stock ``ai_edge_litert`` interpreter. Skips with the reason where the library is not built
(``python -m edgeconv.kernels.build``).
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeconv.kernels import pack

REPO = Path(__file__).resolve().parent.parent
LIB = Path(os.environ.get("EDGECONV_LITERT_DELEGATE",
                          REPO / "edgeconv" / "kernels" / "libedgeconv_litert.so"))
WTYPE = {np.dtype("float32"): 0, np.dtype("float16"): 1, np.dtype("int8"): 2}
ACT = {"none": 0, "relu": 1, "relu6": 2}

pytestmark = pytest.mark.skipif(not LIB.is_file(), reason=f"edgeconv litert delegate not built "
                                f"({LIB} missing): python -m edgeconv.kernels.build")


def _lib():
    lib = ctypes.CDLL(str(LIB))
    lib.edgeconv_tvconv_nhwc_run.restype = ctypes.c_int
    lib.edgeconv_tvconv_nhwc_run.argtypes = [
        ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int,
        ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int64,
        ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int, ctypes.c_int, ctypes.c_int,
        ctypes.c_char_p, ctypes.c_int]
    lib.edgeconv_litert_available_isas.restype = ctypes.c_char_p
    lib.edgeconv_litert_delegate_info.restype = ctypes.c_char_p
    lib.edgeconv_litert_parse_attrs.restype = ctypes.c_int
    lib.edgeconv_litert_parse_attrs.argtypes = [ctypes.c_char_p, ctypes.c_size_t,
                                                ctypes.POINTER(ctypes.c_int),
                                                ctypes.POINTER(ctypes.c_int),
                                                ctypes.POINTER(ctypes.c_int)]
    return lib


def isas():
    if not LIB.is_file():
        return ["scalar"]
    return _lib().edgeconv_litert_available_isas().decode().split(",")


def _ptr(a):
    return None if a is None else a.ctypes.data


def run_nhwc(isa, x, packed, scales, bias, k, s, act="none", threads=1, dims=None):
    """The kernel through the C ABI; raises RuntimeError with the library's message."""
    lib = _lib()
    n, hh, ww, c = x.shape if dims is None else dims
    if dims is None and k in (3, 5) and s in (1, 2):
        h, w = pack.out_hw((hh, ww), k, s)
        y = np.full((n, h, w, c), np.nan, np.float32)
    else:  # hostile calls: must be refused before anything is written
        y = np.zeros(x.size + 64, np.float32)
    err = ctypes.create_string_buffer(256)
    bias_mode = 0 if bias is None else (1 if bias.ndim == 1 else 2)
    rc = lib.edgeconv_tvconv_nhwc_run(isa.encode(), _ptr(x), _ptr(y), _ptr(packed),
                                      WTYPE[packed.dtype], _ptr(scales), _ptr(bias), bias_mode,
                                      ACT[act], n, c, hh, ww, k, s, threads, err, len(err))
    if rc != 0:
        raise RuntimeError(err.value.decode())
    return y


def reference(x, weight, bias, k, s, act):
    """float64: x (N,H,W,C), weight (C, k*k, h, w) dequantised, bias None/(C,)/(C,h,w)."""
    n, hh, ww, c = x.shape
    p = k // 2
    h, w = pack.out_hw((hh, ww), k, s)
    xp = np.zeros((n, hh + 2 * p, ww + 2 * p, c))
    xp[:, p:p + hh, p:p + ww] = x
    y = np.zeros((n, h, w, c))
    for u in range(k):
        for v in range(k):
            sl = xp[:, u:u + s * (h - 1) + 1:s, v:v + s * (w - 1) + 1:s]
            y += sl * weight[:, u * k + v].transpose(1, 2, 0)[None]
    if bias is not None:
        y += bias if bias.ndim == 1 else bias.transpose(1, 2, 0)
    if act == "relu":
        y = np.maximum(y, 0)
    elif act == "relu6":
        y = np.clip(y, 0, 6)
    return y


def case(c, hw, k, s, n, dtype="float32", bias="channel", seed=0):
    rng = np.random.default_rng(seed)
    h, w = pack.out_hw(hw, k, s)
    x = rng.standard_normal((n, *hw, c)).astype(np.float32)
    weight = rng.standard_normal((c, k * k, h, w))
    packed, scales = pack.pack_weights_nhwc(weight, hw, s, dtype)
    deq = pack.unpack_weights_nhwc(packed, scales).astype(np.float64)
    b = {"none": None, "channel": rng.standard_normal(c),
         "pixel": rng.standard_normal((c, h, w))}[bias]
    return x, packed, scales, b, deq, pack.pack_bias_nhwc(b, c, h, w)


def check(isa, c, hw, k, s, n, dtype="float32", bias="channel", act="none", threads=1):
    x, packed, scales, b, deq, bk = case(c, hw, k, s, n, dtype, bias)
    y = run_nhwc(isa, x, packed, scales, bk, k, s, act, threads)
    ref = reference(x.astype(np.float64), deq, b, k, s, act)
    assert y.shape == ref.shape
    if ref.size:
        tol = 1e-4 * max(1.0, float(np.abs(ref).max()))
        assert np.abs(y - ref).max() <= tol, (isa, c, hw, k, s, n, dtype, bias, act)


# ---------------------------------------------------------------- pack (numpy only)

@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
def test_pack_nhwc_round_trip_and_zero_outside_taps(dtype):
    rng = np.random.default_rng(1)
    hw, k, s = (7, 6), 5, 2
    h, w = pack.out_hw(hw, k, s)
    weight = rng.standard_normal((5, k * k, h, w))
    packed, scales = pack.pack_weights_nhwc(weight, hw, s, dtype)
    assert packed.shape == (h, w, k * k, 5) and packed.dtype == np.dtype(dtype)
    assert (scales is None) == (dtype != "int8")
    if scales is not None:
        assert scales.shape == (k * k, 5) and scales.dtype == np.float32
    back = pack.unpack_weights_nhwc(packed, scales)
    outside = pack.outside_taps(hw, k, s)
    assert np.all(back[:, outside] == 0)
    tol = {"float32": 1e-6, "float16": 1e-2, "int8": 0.05}[dtype]
    inside = np.where(outside[None], 0.0, weight)
    assert np.abs(back - inside).max() <= tol * np.abs(weight).max()
    # the same numbers as the NCHW layout
    nchw, sc = pack.pack_weights(weight, hw, s, "float32")
    np.testing.assert_array_equal(pack.unpack_weights(nchw, sc, w, pack.layout_for(s, (h, w))),
                                  pack.unpack_weights_nhwc(*pack.pack_weights_nhwc(weight, hw, s)))
    assert pack.NHWC_LAYOUT == "h_w_kk_c"
    with pytest.raises(ValueError):
        pack.pack_weights_nhwc(weight, (8, 8), s)
    bias = rng.standard_normal((5, h, w))
    assert pack.pack_bias_nhwc(bias, 5, h, w).shape == (h, w, 5)
    assert pack.pack_bias_nhwc(bias[:, :1, :1], 5, h, w).shape == (5,)
    assert pack.pack_bias_nhwc(None, 5, h, w) is None


# ---------------------------------------------------------------- kernel vs reference

SHAPES = [(1, 1), (2, 3), (6, 6), (12, 12), (7, 5), (48, 48)]


@pytest.mark.parametrize("isa", isas())
@pytest.mark.parametrize("k,s", [(3, 1), (3, 2), (5, 1), (5, 2)])
@pytest.mark.parametrize("c", [1, 7, 8, 16, 24, 37])
def test_nhwc_matches_reference_every_shape_class(isa, k, s, c):
    for i, hw in enumerate(SHAPES):
        n = [0, 1, 3, 4, 5, 9][i % 6]
        dtype = ["float32", "float16", "int8"][(i + c) % 3]
        bias = ["none", "channel", "pixel"][(i + k) % 3]
        act = ["none", "relu", "relu6"][(i + s + c) % 3]
        check(isa, c, hw, k, s, n, dtype, bias, act)


@pytest.mark.parametrize("isa", isas())
@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
@pytest.mark.parametrize("bias", ["none", "channel", "pixel"])
@pytest.mark.parametrize("act", ["none", "relu", "relu6"])
def test_nhwc_weight_types_biases_activations(isa, dtype, bias, act):
    check(isa, 24, (12, 12), 3, 1, 5, dtype, bias, act)
    check(isa, 37, (9, 10), 5, 2, 3, dtype, bias, act)


@pytest.mark.parametrize("isa", isas())
@pytest.mark.parametrize("hw,k,s,n", [((96, 96), 3, 1, 4), ((96, 96), 5, 2, 1),
                                     ((48, 48), 3, 2, 5), ((6, 6), 5, 1, 9), ((12, 12), 3, 1, 3)])
def test_nhwc_larger_shapes(isa, hw, k, s, n):
    check(isa, 16, hw, k, s, n, "float16", "pixel", "relu6")


@pytest.mark.parametrize("isa", isas())
def test_nhwc_threads_are_bit_identical(isa):
    for c, hw, k, s, n in [(24, (48, 48), 3, 1, 5), (37, (13, 11), 5, 2, 3), (8, (2, 3), 3, 1, 4)]:
        x, packed, scales, _, _, bk = case(c, hw, k, s, n, "int8", "pixel")
        y1 = run_nhwc(isa, x, packed, scales, bk, k, s, "relu", threads=1)
        for t in (2, 3, 7):
            yt = run_nhwc(isa, x, packed, scales, bk, k, s, "relu", threads=t)
            assert np.array_equal(y1, yt, equal_nan=True), (isa, c, hw, k, s, t)


def test_isas_agree_closely():
    names = isas()
    x, packed, scales, b, deq, bk = case(37, (20, 20), 5, 1, 5, "float16", "pixel")
    ys = [run_nhwc(i, x, packed, scales, bk, 5, 1, "none") for i in names]
    for y in ys[1:]:
        assert np.abs(y - ys[0]).max() <= 1e-5 * max(1.0, float(np.abs(ys[0]).max()))


# ---------------------------------------------------------------- hostile arguments

def test_nhwc_hostile_arguments_return_an_error_never_crash():
    x, packed, scales, _, _, bk = case(8, (6, 6), 3, 1, 2, "int8", "channel")
    bad = {
        "k=7": dict(k=7), "s=3": dict(s=3), "k=0": dict(k=0), "s=0": dict(s=0),
        "negative N": dict(dims=(-1, 6, 6, 8)), "negative H": dict(dims=(2, -6, 6, 8)),
        "C=0": dict(dims=(2, 6, 6, 0)), "W=0": dict(dims=(2, 6, 0, 8)),
        "huge": dict(dims=(2**40, 2**20, 2**20, 8)),
        "overflow": dict(dims=(2**30, 2**30, 2**30, 2**30)),
        "int64 max": dict(dims=(2**62, 2**62, 2**62, 2**62)),
    }
    for what, kw in bad.items():
        args = dict(isa="scalar", x=x, packed=packed, scales=scales, bias=bk, k=3, s=1)
        args.update(kw)
        with pytest.raises(RuntimeError) as exc:
            run_nhwc(**args)
        assert str(exc.value), what
    lib = _lib()
    err = ctypes.create_string_buffer(128)
    y = np.zeros((2, 6, 6, 8), np.float32)
    base = ["scalar".encode(), _ptr(x), _ptr(y), _ptr(packed), 2, _ptr(scales), _ptr(bk), 1, 0,
            2, 8, 6, 6, 3, 1, 1, err, len(err)]
    for idx, val, what in [(1, None, "null x"), (2, None, "null y"), (3, None, "null w"),
                           (5, None, "int8 without scales"), (6, None, "bias without data"),
                           (4, 9, "weight type"), (7, 5, "bias mode"), (8, 7, "activation"),
                           (0, b"no-such-isa", "isa")]:
        args = list(base)
        args[idx] = val
        assert lib.edgeconv_tvconv_nhwc_run(*args) == 1, what
        assert err.value, what
    # a tiny error buffer and none at all are fine too
    args = list(base)
    args[13] = 7
    args[16], args[17] = None, 0
    assert lib.edgeconv_tvconv_nhwc_run(*args) == 1
    args[16], args[17] = ctypes.create_string_buffer(1), 1
    assert lib.edgeconv_tvconv_nhwc_run(*args) == 1
    assert lib.edgeconv_tvconv_nhwc_run(*base) == 0  # and the valid call runs


# ---------------------------------------------------------------- the composite attributes

def _flex_attrs(**attrs):
    flexbuffers = pytest.importorskip("flatbuffers.flexbuffers")
    return bytes(flexbuffers.Dumps(attrs))


def _parse(data: bytes):
    lib = _lib()
    k, s, a = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    ok = lib.edgeconv_litert_parse_attrs(data, len(data), ctypes.byref(k), ctypes.byref(s),
                                         ctypes.byref(a))
    return (k.value, s.value, a.value) if ok else None


GOOD = dict(kernel_size=5, stride=2, activation="relu6", layout="h_w_kk_c", kernel_version=1)


def test_attribute_reader_accepts_the_contract():
    assert _parse(_flex_attrs(**GOOD)) == (5, 2, 2)
    assert _parse(_flex_attrs(**{**GOOD, "kernel_size": 3, "stride": 1, "activation": "none"})) == (3, 1, 0)
    # wide integers, extra keys of other types are fine
    assert _parse(_flex_attrs(**GOOD, extra=1.5, big=2**40, name="x" * 300)) == (5, 2, 2)


def test_attribute_reader_rejects_bad_and_hostile_buffers():
    for bad in [dict(GOOD, kernel_size=7), dict(GOOD, stride=3), dict(GOOD, activation="gelu"),
                dict(GOOD, layout="c_h_kk_w8"), dict(GOOD, kernel_version=2),
                dict(GOOD, kernel_size="3"), {k: v for k, v in GOOD.items() if k != "stride"},
                dict(GOOD, kernel_size=2**62)]:
        assert _parse(_flex_attrs(**bad)) is None, bad
    data = _flex_attrs(**GOOD)
    assert _parse(b"") is None and _parse(b"\x01") is None and _parse(b"\x00\x00\x00") is None
    for cut in range(1, len(data)):
        assert _parse(data[cut:]) is None
        _parse(data[:cut])  # must not crash (may or may not parse)
    rng = np.random.default_rng(0)
    arr = np.frombuffer(data, np.uint8)
    for _ in range(3000):  # random byte flips: never a crash
        m = arr.copy()
        idx = rng.integers(0, len(m), rng.integers(1, 4))
        m[idx] = rng.integers(0, 256, len(idx))
        _parse(m.tobytes())
    for _ in range(500):
        _parse(rng.integers(0, 256, rng.integers(3, 64)).astype(np.uint8).tobytes())
    # huge offsets / sizes / widths
    for tail in [b"\xff\xff\x24\x01", b"\x00\xff\x24\x08", b"\x05\x24\x03", b"\x05\x27\x01"]:
        assert _parse(data[:-4] + tail) is None


# ---------------------------------------------------------------- the delegate library

def test_delegate_library_exports_and_loads():
    lib = _lib()
    for sym in ("tflite_plugin_create_delegate", "tflite_plugin_destroy_delegate",
                "edgeconv_litert_delegate_info", "edgeconv_litert_claimed_nodes",
                "edgeconv_litert_isa", "edgeconv_litert_version", "edgeconv_tvconv_nhwc_run"):
        assert hasattr(lib, sym), sym
    assert b"edgeconv.tvconv" in lib.edgeconv_litert_delegate_info()
    out = subprocess.run(["nm", "-D", "--defined-only", str(LIB)], capture_output=True, text=True)
    if out.returncode == 0:  # nothing from ORT, no TfLite* symbols of our own
        assert "Ort" not in out.stdout and " TfLite" not in out.stdout


_LOAD_SCRIPT = r"""
import ctypes, sys
from ai_edge_litert.interpreter import load_delegate
path = sys.argv[1]
d = load_delegate(path)
lib = ctypes.CDLL(path)
lib.edgeconv_litert_claimed_nodes.restype = ctypes.c_int
lib.edgeconv_litert_claimed_nodes.argtypes = [ctypes.c_void_p]
lib.edgeconv_litert_isa.restype = ctypes.c_char_p
lib.edgeconv_litert_isa.argtypes = [ctypes.c_void_p]
assert lib.edgeconv_litert_claimed_nodes(d._delegate_ptr) == 0
assert lib.edgeconv_litert_claimed_nodes(None) == -1
print("isa", lib.edgeconv_litert_isa(d._delegate_ptr).decode())
d2 = load_delegate(path, options={"isa": "scalar", "num_threads": "2"})
assert lib.edgeconv_litert_isa(d2._delegate_ptr) == b"scalar"
for opts in ({"no_such_option": "1"}, {"isa": "no-such-isa"}, {"num_threads": "many"},
             {"num_threads": "100000"}):
    try:
        load_delegate(path, options=opts)
    except Exception as exc:
        print("rejected", sorted(opts), type(exc).__name__)
    else:
        raise SystemExit(f"accepted {opts}")
print("OK")
"""


def test_load_delegate_with_stock_litert_and_bad_options_fail_cleanly():
    pytest.importorskip("ai_edge_litert.interpreter")
    proc = subprocess.run([sys.executable, "-c", _LOAD_SCRIPT, str(LIB)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    assert proc.stdout.count("rejected") == 4 and "OK" in proc.stdout


# ---------------------------------------------------------------- a converted composite

def _composite_tflite(c, hw, k, s, dtype, bias, act, n):
    """A .tflite with one edgeconv.tvconv composite (litert-torch), and its packed tensors."""
    torch = pytest.importorskip("torch")
    litert_torch = pytest.importorskip("litert_torch")
    from litert_torch.backend.composite.stablehlo_composite_builder import (
        StableHLOCompositeBuilder)

    rng = np.random.default_rng(3)
    h, w = pack.out_hw(hw, k, s)
    packed, scales = pack.pack_weights_nhwc(rng.standard_normal((c, k * k, h, w)), hw, s, dtype)
    scales = np.ones((k * k, c), np.float32) if scales is None else scales
    b = {"channel": rng.standard_normal(c), "pixel": rng.standard_normal((h, w, c))}[bias]
    b = b.astype(np.float32)

    class TV(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("W", torch.from_numpy(packed.copy()))
            self.register_buffer("S", torch.from_numpy(scales))
            self.register_buffer("B", torch.from_numpy(b))

        def forward(self, x):
            comp = StableHLOCompositeBuilder("edgeconv.tvconv", attr=dict(
                kernel_size=k, stride=s, activation=act, layout="h_w_kk_c", kernel_version=1))
            x, W, S, B = comp.mark_inputs(x, self.W, self.S, self.B)
            p = k // 2
            xp = torch.nn.functional.pad(x, (0, 0, p, p, p, p))
            wf = W.to(torch.float32) * S
            y = B + torch.zeros(x.shape[0], h, w, x.shape[3])
            for u in range(k):
                for v in range(k):
                    y = y + xp[:, u:u + s * (h - 1) + 1:s, v:v + s * (w - 1) + 1:s] * wf[:, :, u * k + v]
            y = torch.relu(y) if act == "relu" else torch.clamp(y, 0, 6) if act == "relu6" else y
            return comp.mark_outputs(y)

    em = litert_torch.convert(TV().eval(), (torch.zeros(n, *hw, c),))
    data = em.tflite_model() if hasattr(em, "tflite_model") else None
    if data is None:
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            em.export(f"{tmp}/m.tflite")
            data = Path(f"{tmp}/m.tflite").read_bytes()
    deq = pack.unpack_weights_nhwc(packed, scales if dtype == "int8" else None).astype(np.float64)
    if dtype != "int8":
        deq = deq * scales.T[:, :, None, None]
    bref = b if b.ndim == 1 else b.transpose(2, 0, 1)
    return bytes(data), deq, bref


_RUN_COMPOSITE = r"""
import ctypes, sys, numpy as np
from ai_edge_litert.interpreter import Interpreter, load_delegate
lib_path, model, xfile, threads, out = sys.argv[1:6]
lib = ctypes.CDLL(lib_path)
lib.edgeconv_litert_claimed_nodes.argtypes = [ctypes.c_void_p]
d = load_delegate(lib_path, options={"num_threads": threads})
it = Interpreter(model_path=model, experimental_delegates=[d], num_threads=int(threads))
x = np.load(xfile)
inp = it.get_input_details()[0]
if list(inp["shape"]) != list(x.shape):
    it.resize_tensor_input(inp["index"], list(x.shape))
try:
    it.allocate_tensors()
    it.set_tensor(inp["index"], x)
    it.invoke()
except Exception as exc:
    print("ERROR", str(exc).splitlines()[0]); print("claimed", lib.edgeconv_litert_claimed_nodes(d._delegate_ptr)); raise SystemExit(0)
np.save(out, it.get_tensor(it.get_output_details()[0]["index"]))
print("claimed", lib.edgeconv_litert_claimed_nodes(d._delegate_ptr))
"""


def _run_composite(tmp_path, data, x, threads=1):
    """Runs in a subprocess (a delegate bug must not take pytest down): (y or error, claimed)."""
    model, xf, out = tmp_path / "m.tflite", tmp_path / "x.npy", tmp_path / "y.npy"
    model.write_bytes(data)
    np.save(xf, x)
    proc = subprocess.run([sys.executable, "-c", _RUN_COMPOSITE, str(LIB), str(model), str(xf),
                           str(threads), str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    claimed = int(proc.stdout.split("claimed")[-1].split()[0])
    if "ERROR" in proc.stdout:
        return proc.stdout.split("ERROR", 1)[1].splitlines()[0], claimed
    return np.load(out), claimed


@pytest.mark.parametrize("c,hw,k,s,dtype,bias,act", [
    (8, (6, 6), 3, 1, "float32", "channel", "relu"),
    (37, (9, 7), 5, 2, "float16", "pixel", "relu6"),
    (16, (12, 12), 3, 2, "int8", "channel", "none"),
])
def test_delegate_runs_a_converted_composite(tmp_path, c, hw, k, s, dtype, bias, act):
    pytest.importorskip("ai_edge_litert.interpreter")
    data, deq, b = _composite_tflite(c, hw, k, s, dtype, bias, act, n=2)
    rng = np.random.default_rng(0)
    for n in (2, 5, 1):  # the converted batch, then resized ones
        x = rng.standard_normal((n, *hw, c)).astype(np.float32)
        y1, claimed = _run_composite(tmp_path, data, x, threads=1)
        assert claimed == 1 and not isinstance(y1, str), y1
        ref = reference(x.astype(np.float64), deq, b, k, s, act)
        assert np.abs(y1 - ref).max() <= 1e-4 * max(1.0, float(np.abs(ref).max()))
        y2, _ = _run_composite(tmp_path, data, x, threads=2)
        assert np.array_equal(y1, y2)


def test_delegate_hostile_composites(tmp_path):
    """Bad attributes: not claimed, the decomposition runs; bad tensors: a clean error."""
    pytest.importorskip("ai_edge_litert.interpreter")
    flatbuffers = pytest.importorskip("flatbuffers")
    from ai_edge_litert import schema_py_generated as schema
    from flatbuffers import flexbuffers

    data, deq, b = _composite_tflite(8, (6, 6), 3, 1, "float32", "channel", "relu", n=2)
    x = np.random.default_rng(1).standard_normal((2, 6, 6, 8)).astype(np.float32)
    ref = reference(x.astype(np.float64), deq, b, 3, 1, "relu")
    good = dict(kernel_size=3, stride=1, activation="relu", layout="h_w_kk_c", kernel_version=1)

    def variant(attrs=None, raw=None, wshape=None, wtype=None):
        m = schema.ModelT.InitFromPackedBuf(data, 0)
        g = m.subgraphs[0]
        op = next(o for o in g.operators if o.builtinOptions2 is not None)
        if attrs is not None:
            op.builtinOptions2.compositeAttributes = list(flexbuffers.Dumps(attrs))
        if raw is not None:
            op.builtinOptions2.compositeAttributes = list(raw)
        if wshape is not None:
            g.tensors[op.inputs[1]].shape = wshape
        if wtype is not None:
            g.tensors[op.inputs[1]].type = wtype
        fb = flatbuffers.Builder(0)
        fb.Finish(m.Pack(fb), file_identifier=b"TFL3")
        return bytes(fb.Output())

    unclaimed = [variant(attrs={**good, "layout": "c_h_kk_w8"}),
                 variant(attrs={**good, "kernel_size": 7}),
                 variant(attrs={k: v for k, v in good.items() if k != "stride"}),
                 variant(raw=b"\xff" * 40), variant(raw=bytes(flexbuffers.Dumps(good))[:-7]),
                 variant(raw=b"")]
    for i, d in enumerate(unclaimed):
        y, claimed = _run_composite(tmp_path, d, x)
        assert claimed == 0 and not isinstance(y, str), (i, y)
        assert np.abs(y - ref).max() <= 1e-4 * max(1.0, float(np.abs(ref).max()))  # the body
    for d in [variant(wshape=[6, 6, 9, 4]), variant(wtype=2),
              variant(attrs={**good, "kernel_size": 5})]:
        err, claimed = _run_composite(tmp_path, d, x)
        assert claimed == 1 and isinstance(err, str) and "edgeconv.tvconv delegate" in err, err
