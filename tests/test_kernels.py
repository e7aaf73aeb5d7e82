"""The native fused TVConv kernel, op level: every ISA path this CPU runs against the torch
reference and the scalar path, for every shape class (k 3/5, stride 1/2, odd and narrow sizes,
batch 1 and many, bias, activations, weight storage), and the ONNX Runtime custom op
(threads, ISA override, attribute and shape checks, the ABI across ORT versions)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).parent))
import _kernels  # noqa: E402

_REASON = _kernels.skip_reason()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=f"edgeconv kernels: {_REASON}")

from edgeconv.kernels import pack  # noqa: E402  (numpy only)
from edgeconv.ops.per_pixel import apply_per_pixel  # noqa: E402

# (N, C, H, W, k, s): direct-read (W >= 16) and scratch rows, odd sizes, tails of the
# 4-image loop, widths that are and are not multiples of 8 / 16
SHAPES = [(1, 3, 7, 9, 3, 1), (5, 4, 20, 21, 3, 1), (4, 8, 24, 24, 3, 1), (2, 3, 17, 16, 5, 1),
          (3, 5, 11, 13, 3, 2), (6, 2, 24, 24, 3, 2), (1, 3, 9, 17, 5, 2), (5, 2, 33, 19, 3, 1),
          (2, 4, 6, 6, 3, 1), (9, 2, 12, 40, 3, 2),
          # output rows narrower than a vector: the whole-vector stores of a row's tail spill
          # into the rows after it (one, or several when w < 8), never past the plane
          (3, 4, 5, 5, 3, 2), (2, 3, 3, 2, 3, 1), (2, 5, 4, 2, 5, 2), (5, 3, 12, 12, 3, 2),
          (6, 7, 12, 12, 3, 1),
          # more than one group of 4 images on planes of <= 24x24: channels in chunks, each
          # chunk's images group by group (several of the above too); k = 5 both ways, a tail
          # group of 1; float32 chunks of 3 channels with a last chunk of 1 (70 and 40 channels)
          (9, 3, 6, 6, 3, 1), (6, 3, 7, 7, 5, 2), (8, 5, 16, 16, 5, 1), (13, 2, 24, 24, 3, 1),
          (6, 70, 24, 24, 3, 1), (5, 40, 24, 24, 5, 2),
          # flat layout: planes whose taps reach past the neighbouring plane (k5, H = 2: every
          # plane copied for C = 4, the middle ones read in place for C = 6), a plane of exactly
          # one vector, AVX-512's 16-wide vectors then an overlapping 8-wide tail (36 = 16+16+4)
          (3, 4, 2, 5, 5, 1), (3, 6, 2, 5, 5, 1), (5, 3, 2, 4, 3, 1), (6, 9, 6, 6, 3, 1)]


def _layouts(shape):
    """Every layout the shape can be packed in: rows always, flat at stride 1 with h*w >= 8."""
    n, c, hh, ww, k, s = shape
    h, w = pack.out_hw((hh, ww), k, s)
    return [pack.LAYOUT] + ([pack.FLAT_LAYOUT] if s == 1 and h * w >= pack.WIDTH_ALIGN else [])


def _isas():
    from edgeconv import kernels

    return kernels.info()["available_isas"] if _REASON is None else ["scalar"]


def reference(x, weight, bias, k, s, act):
    """float64 torch reference of the fused node: per-pixel product + bias + activation."""
    h, w = weight.shape[-2:]
    b = None
    if bias is not None:
        b = torch.from_numpy(np.asarray(bias, np.float64))
        b = b.view(1, -1, 1, 1) if b.dim() == 1 else b.unsqueeze(0)
    y = apply_per_pixel(torch.from_numpy(x).double(), torch.from_numpy(weight).double()[None],
                        b, k, s, (h, w))
    if act == "relu":
        y = y.clamp_min(0)
    elif act == "relu6":
        y = y.clamp(0, 6)
    return y.numpy()


def _case(shape, seed, bias_kind):
    n, c, hh, ww, k, s = shape
    rng = np.random.default_rng(seed)
    h, w = pack.out_hw((hh, ww), k, s)
    x = rng.standard_normal((n, c, hh, ww)).astype(np.float32)
    weight = rng.standard_normal((c, k * k, h, w))
    bias = {"none": None, "channel": rng.standard_normal(c),
            "pixel": rng.standard_normal((c, h, w))}[bias_kind]
    return x, weight, bias


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "N{}C{}_{}x{}_k{}s{}".format(*s))
@pytest.mark.parametrize("isa", _isas())
def test_every_isa_matches_reference(isa, shape):
    n, c, hh, ww, k, s = shape
    for layout in _layouts(shape):
        for i, (bias_kind, act) in enumerate([("none", "none"), ("channel", "relu6"),
                                              ("pixel", "relu")]):
            x, weight, bias = _case(shape, i, bias_kind)
            packed, _ = pack.pack_weights(weight, (hh, ww), s, layout=layout)
            pb = pack.pack_bias(bias, c, *weight.shape[-2:], layout=layout)
            got = _kernels.run_isa(isa, x, packed, None, pb, k, s, act, layout=layout)
            ref = reference(x, weight, bias, k, s, act)
            assert np.isfinite(got).all()
            np.testing.assert_allclose(got, ref, atol=2e-5, rtol=1e-5,
                                       err_msg=f"{isa} {layout} {bias_kind} {act}")


@pytest.mark.parametrize("isa", _isas())
def test_flat_layout_keeps_images_apart(isa):
    """The flat layout reads planes in place, taps past a plane's edge landing in the next
    plane under a zero weight: a non-finite value in one image must still never reach another
    image's output (the planes at an image's edge are copied first)."""
    shape = (3, 5, 6, 6, 3, 1)
    x, weight, bias = _case(shape, 4, "channel")
    packed, _ = pack.pack_weights(weight, (6, 6), 1, layout=pack.FLAT_LAYOUT)
    pb = pack.pack_bias(bias, 5, 6, 6, layout=pack.FLAT_LAYOUT)
    clean = _kernels.run_isa(isa, x, packed, None, pb, 3, 1, layout=pack.FLAT_LAYOUT)
    x[0] = np.inf
    x[2] = np.nan
    got = _kernels.run_isa(isa, x, packed, None, pb, 3, 1, layout=pack.FLAT_LAYOUT)
    np.testing.assert_array_equal(got[1], clean[1])


@pytest.mark.parametrize("dtype", ["float16", "int8"])
@pytest.mark.parametrize("isa", _isas())
def test_low_precision_weights_are_dequantised_exactly(isa, dtype):
    """The kernel computes with exactly the dequantised weights (fp16 -> fp32, int8 * scale)."""
    cases = [(shape, layout) for shape in SHAPES[:6] + SHAPES[-2:] for layout in _layouts(shape)]
    for shape, layout in cases:
        n, c, hh, ww, k, s = shape
        x, weight, bias = _case(shape, 7, "channel")
        packed, scales = pack.pack_weights(weight, (hh, ww), s, dtype, layout)
        deq = pack.unpack_weights(packed, scales, weight.shape[-1], layout)
        got = _kernels.run_isa(isa, x, packed, scales, pack.pack_bias(bias, c, 1, 1, layout), k,
                               s, layout=layout)
        np.testing.assert_allclose(got, reference(x, deq, bias, k, s, "none"), atol=2e-5, rtol=1e-5)
        # and the storage error itself is what the dtype allows
        full = reference(x, np.where(pack.outside_taps((hh, ww), k, s)[None], 0, weight), bias,
                         k, s, "none")
        rel = np.abs(got - full).max() / np.abs(full).max()
        assert rel < (2e-3 if dtype == "float16" else 5e-2), rel


@pytest.mark.parametrize("isa", _isas())
@pytest.mark.parametrize("layout", [pack.LAYOUT, pack.FLAT_LAYOUT])
def test_simd_paths_agree_with_scalar(isa, layout):
    x, weight, bias = _case((7, 6, 48, 40, 3, 1), 3, "pixel")
    packed, _ = pack.pack_weights(weight, (48, 40), 1, layout=layout)
    pb = pack.pack_bias(bias, 6, 48, 40, layout=layout)
    a = _kernels.run_isa("scalar", x, packed, None, pb, 3, 1, "relu6", layout=layout)
    b = _kernels.run_isa(isa, x, packed, None, pb, 3, 1, "relu6", layout=layout)
    assert np.abs(a - b).max() <= 1e-5


def test_layout_choice_and_flat_packing():
    """Flat at stride 1 with a vector's worth of outputs, rows elsewhere; the flat tensor is
    the folded weights as they are (outside taps zeroed) and unpacks to them, int8 included."""
    assert pack.layout_for(1, (6, 6)) == pack.FLAT_LAYOUT
    assert pack.layout_for(1, (2, 3)) == pack.LAYOUT  # fewer than 8 outputs
    assert pack.layout_for(2, (12, 12)) == pack.LAYOUT
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((3, 9, 5, 7))
    packed, scales = pack.pack_weights(weight, (5, 7), 1)
    assert packed.shape == (3, 9, 5, 7) and scales is None
    zeroed = np.where(pack.outside_taps((5, 7), 3, 1)[None], 0, weight)
    np.testing.assert_array_equal(packed, zeroed.astype(np.float32))
    np.testing.assert_array_equal(pack.unpack_weights(packed, None, 7, pack.FLAT_LAYOUT),
                                  zeroed.astype(np.float32))
    q, sc = pack.pack_weights(weight, (5, 7), 1, "int8")
    assert q.shape == (3, 9, 5, 7) and sc.shape == (3, 9)
    assert np.abs(pack.unpack_weights(q, sc, 7, pack.FLAT_LAYOUT) - zeroed).max() <= \
        np.abs(zeroed).max() / 127
    for bad in ((2, pack.FLAT_LAYOUT), (1, "c_hw")):
        with pytest.raises(ValueError, match="layout"):
            pack.pack_weights(np.zeros((1, 9, 6, 6)), (12 if bad[0] == 2 else 6,) * 2, bad[0],
                              layout=bad[1])


def test_outside_taps_are_zero_in_the_layout():
    """Taps that read the zero padding carry zero weight: the direct-read rows rely on it."""
    weight = np.ones((2, 9, 5, 7))
    packed, _ = pack.pack_weights(weight, (10, 13), 2)
    assert packed.shape == (2, 5, 9, 8)
    assert (packed[..., 7:] == 0).all()  # padded columns
    # output (0, 0) reads input rows -1..1, cols -1..1: taps u=0 or v=0 are outside
    assert packed[0, 0, :, 0].reshape(3, 3).tolist() == [[0, 0, 0], [0, 1, 1], [0, 1, 1]]
    # last column j=6 reads input cols 11..13 of 13: v=2 (col 13) is outside
    assert packed[0, 2, :, 6].reshape(3, 3)[:, 2].tolist() == [0, 0, 0]
    assert packed[0, 2, :, 6].reshape(3, 3)[:, :2].min() == 1


def test_kernel_refuses_bad_arguments():
    x = np.zeros((1, 2, 8, 8), np.float32)
    packed, _ = pack.pack_weights(np.zeros((2, 9, 8, 8)), (8, 8), 1)
    with pytest.raises(RuntimeError, match="kernel_size"):
        _kernels.run_isa("scalar", x, packed, None, None, 4, 1)
    with pytest.raises(RuntimeError, match="stride"):
        _kernels.run_isa("scalar", x, packed, None, None, 3, 3)
    with pytest.raises(RuntimeError, match="not available"):
        _kernels.run_isa("no-such-isa", x, packed, None, None, 3, 1)
    q, _ = pack.pack_weights(np.zeros((2, 9, 8, 8)), (8, 8), 1, "int8")
    with pytest.raises(RuntimeError, match="scales"):
        _kernels.run_isa("scalar", x, q, None, None, 3, 1)
    with pytest.raises(RuntimeError, match="stride 1 only"):
        _kernels.run_isa("scalar", x, packed, None, None, 3, 2, layout=pack.FLAT_LAYOUT)
    tiny = np.zeros((1, 2, 2, 3), np.float32)
    with pytest.raises(RuntimeError, match="at least 8 output pixels"):
        _kernels.run_isa("scalar", tiny, np.zeros((2, 9, 2, 3), np.float32), None, None, 3, 1,
                         layout=pack.FLAT_LAYOUT)


# ------------------------------------------------------------------ the ONNX Runtime op
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.mark.parametrize("k,s", [(3, 1), (3, 2), (5, 1), (5, 2)])
def test_ort_op_threads_give_identical_results(k, s):
    data, deq, b = _kernels.node_model(24, (19, 33), k, s, bias="pixel", act="relu6")
    x = np.random.default_rng(1).standard_normal((5, 24, 19, 33)).astype(np.float32)
    y1 = _kernels.session(data, 1).run(None, {"x": x})[0]
    y2 = _kernels.session(data, 2).run(None, {"x": x})[0]
    assert np.array_equal(y1, y2)
    np.testing.assert_allclose(y1, reference(x, deq, b, k, s, "relu6"), atol=2e-5, rtol=1e-5)
    # dynamic batch: one image, and an empty batch
    assert _kernels.session(data, 2).run(None, {"x": x[:1]})[0].shape == (1, 24) + y1.shape[2:]
    assert _kernels.session(data, 1).run(None, {"x": x[:0]})[0].shape == (0, 24) + y1.shape[2:]


@pytest.mark.parametrize("dtype", ["float16", "int8"])
def test_ort_op_low_precision_weights(dtype):
    data, deq, b = _kernels.node_model(16, (24, 24), 3, 1, dtype=dtype, bias="channel", act="none")
    x = np.random.default_rng(2).standard_normal((3, 16, 24, 24)).astype(np.float32)
    y = _kernels.session(data, 2).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, reference(x, deq, b, 3, 1, "none"), atol=2e-5, rtol=1e-5)


def test_isa_override_from_the_environment(monkeypatch):
    data, deq, b = _kernels.node_model(8, (20, 20), 3, 1, bias="channel")
    x = np.random.default_rng(3).standard_normal((2, 8, 20, 20)).astype(np.float32)
    monkeypatch.setenv("EDGECONV_KERNEL_ISA", "scalar")
    y_scalar = _kernels.session(data).run(None, {"x": x})[0]
    monkeypatch.delenv("EDGECONV_KERNEL_ISA")
    y_auto = _kernels.session(data).run(None, {"x": x})[0]
    assert np.abs(y_scalar - y_auto).max() <= 1e-5
    monkeypatch.setenv("EDGECONV_KERNEL_ISA", "no-such-isa")
    with pytest.raises(Exception, match="EDGECONV_KERNEL_ISA=no-such-isa is not available"):
        _kernels.session(data).run(None, {"x": x})


@pytest.mark.parametrize("attrs,match", [({"layout": "other"}, "layout"),
                                         ({"kernel_size": 4}, "kernel_size"),
                                         ({"stride": 3}, "stride"),
                                         ({"activation": "gelu"}, "activation")])
def test_ort_op_refuses_bad_attributes(attrs, match):
    data, _, _ = _kernels.node_model(4, (8, 8), 3, 1, attrs=attrs)
    x = np.zeros((1, 4, 8, 8), np.float32)
    with pytest.raises(Exception, match=match):
        _kernels.session(data).run(None, {"x": x})


@pytest.mark.parametrize("k", [3, 5])
def test_ort_op_reads_both_layouts_and_version_1_files(k):
    """Stride 1 in the flat layout (what exports write) and in the rows layout, also as a
    layout-version-1 file (every file from before edgeconv kernels 1.1): the same numbers."""
    import onnx

    x = np.random.default_rng(5).standard_normal((6, 10, 13, 11)).astype(np.float32)
    outs = {}
    for layout in (pack.FLAT_LAYOUT, pack.LAYOUT):
        data, deq, b = _kernels.node_model(10, (13, 11), k, 1, bias="pixel", layout=layout)
        outs[layout] = _kernels.session(data, 2).run(None, {"x": x})[0]
        np.testing.assert_allclose(outs[layout], reference(x, deq, b, k, 1, "relu6"),
                                   atol=2e-5, rtol=1e-5, err_msg=layout)
    proto = onnx.load_from_string(data)  # the rows file, as layout version 1
    next(o for o in proto.opset_import if o.domain == "edgeconv").version = 1
    old = _kernels.session(proto.SerializeToString(), 1).run(None, {"x": x})[0]
    np.testing.assert_array_equal(old, outs[pack.LAYOUT])


@pytest.mark.parametrize("case,match", [("flat_stride2", "stride 1 only"),
                                        ("rows_tensor_flat_attr", "W shape")])
def test_ort_op_refuses_a_layout_that_does_not_fit(case, match):
    if case == "flat_stride2":
        data, _, _ = _kernels.node_model(4, (8, 8), 3, 2, attrs={"layout": pack.FLAT_LAYOUT})
        x = np.zeros((1, 4, 8, 8), np.float32)
    else:
        data, _, _ = _kernels.node_model(4, (8, 8), 3, 1, layout=pack.LAYOUT,
                                         attrs={"layout": pack.FLAT_LAYOUT})
        x = np.zeros((1, 4, 8, 8), np.float32)
    with pytest.raises(Exception, match=match):
        _kernels.session(data).run(None, {"x": x})


def test_ort_op_refuses_an_input_of_another_size():
    data, _, _ = _kernels.node_model(4, (8, 8), 3, 1, free_hw=True)
    with pytest.raises(Exception, match="W shape"):
        _kernels.session(data).run(None, {"x": np.zeros((1, 4, 10, 8), np.float32)})


def test_built_against_older_headers_loads_in_this_onnxruntime():
    """ORT's C API is ABI-stable upward: the library built against the 1.21 headers (API 21)
    registers and runs in the installed (newer) onnxruntime."""
    from edgeconv import kernels

    info = kernels.info()
    ver = tuple(int(v) for v in ort.__version__.split(".")[:2])
    assert info["ort_api_version"] <= ver[1] or ver[0] > 1
    data, deq, b = _kernels.node_model(4, (8, 8), 3, 1, bias="channel", act="none")
    x = np.ones((1, 4, 8, 8), np.float32)
    y = _kernels.session(data).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, reference(x, deq, b, 3, 1, "none"), atol=2e-5)
    assert info["isa"] in info["available_isas"] and info["layout"] == pack.LAYOUT
