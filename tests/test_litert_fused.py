"""TFLite ``--formulation fused``: one ``edgeconv.tvconv`` STABLEHLO_COMPOSITE per TVConv layer,
a standard-op body any LiteRT runs, the edgeconv LiteRT delegate (when built) with its self-test
and one-warning fallback, and a torch-free device side.

Fast tests use a tiny two-layer model (converted once per module, ~15 s); the registered model
families at small inputs (112x96 included) are ``slow`` (a conversion takes minutes on 2 cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")
sys.path.insert(0, str(Path(__file__).parent))

from edgeconv.runtime import litert_delegate as ld  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
HAS_DELEGATE = ld.delegate_path() is not None
needs_delegate = pytest.mark.skipif(
    not HAS_DELEGATE, reason=f"the edgeconv LiteRT delegate is not built "
                             f"({ld.KERNELS_DIR / ld.LIB_NAME} missing)")
IN_HW = (14, 12)
MAX_ABS, MIN_COS = 1e-4, 0.99999


def _tiny_model():
    from torch import nn

    from edgeconv.ops.tvconv import FoldedTVConv

    g = torch.Generator().manual_seed(7)
    c = 8

    def folded(hw, stride, per_pixel):
        oh = tuple((n + 2 - 3) // stride + 1 for n in hw)
        w = torch.randn(1, c, 9, *oh, generator=g) * 0.4
        b = torch.randn(1, c, *(oh if per_pixel else (1, 1)), generator=g) * 0.2
        return FoldedTVConv(w, b, 3, stride, hw), oh

    l1, hw1 = folded(IN_HW, 1, True)
    l2, _ = folded(hw1, 2, False)
    conv = nn.Conv2d(c, c, 1)
    model = nn.Sequential(nn.Conv2d(3, c, 1), l1, nn.ReLU6(), conv, l2, nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 6)).eval()
    return model


def _convert(model, scales_seed: int | None = None):
    import copy

    from edgeconv.export import tflite_export as tfl
    from edgeconv.export.litert_fused import LiteRTFusedTVConv, batch_free_bodies, fuse_model_litert
    from edgeconv.quiet import third_party_output

    fused = copy.deepcopy(model)
    assert fuse_model_litert(fused) == 2
    if scales_seed is not None:  # float weights with scales other than the exporter's ones
        g = torch.Generator().manual_seed(scales_seed)
        for m in fused.modules():
            if isinstance(m, LiteRTFusedTVConv):
                m.scales.copy_(0.5 + torch.rand(m.scales.shape, generator=g))
    with third_party_output():
        data = tfl.export_tflite(fused.eval(), IN_HW, None)
    return batch_free_bodies(data)[0]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("litert_fused")
    model = _tiny_model()
    data = _convert(model)
    path = d / "tiny_fused.tflite"
    path.write_bytes(data)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 3, *IN_HW)).astype(np.float32)
    with torch.no_grad():
        import copy

        ref = copy.deepcopy(model).double()(torch.from_numpy(x).double()).numpy()
    np.save(d / "x.npy", x)
    np.save(d / "ref.npy", ref)
    return path, x, ref


def _check(ref, out):
    from edgeconv.export.parity import compare

    c = compare(ref, out)
    assert c["max_abs_diff"] <= MAX_ABS and c["min_cosine"] >= MIN_COS, c


def _run(data, x, delegates=None, threads=1):
    it = ld.make_interpreter(data, threads, delegates)
    return ld._run(it, x)


# --------------------------------------------------------------------------- graph
def test_one_composite_per_layer_and_no_inner_transposes(tiny):
    from edgeconv.export import tflite_export as tfl
    from edgeconv.export.litert_fused import composite_ops

    path, _, _ = tiny
    data = path.read_bytes()
    model_t = tfl._load(data)
    comps = composite_ops(model_t)
    assert len(comps) == 2 and all(si == 0 for si, _ in comps)
    assert [len(op.inputs) for _, op in comps] == [4, 4]
    ops = [d["op_name"] for d in ld.make_interpreter(data)._get_ops_details()
           if d["op_name"] != "DELEGATE"]
    # the only transposes: the NCHW interface's input and the head's (before the pooling)
    assert ops.count("TRANSPOSE") == 2 and ops[0] == "TRANSPOSE"
    between = ops[ops.index("STABLEHLO_COMPOSITE"):len(ops) - ops[::-1].index("STABLEHLO_COMPOSITE")]
    assert "TRANSPOSE" not in between
    assert ld.model_has_composite(data)


def test_body_takes_taps_with_depthwise_convs(tiny):
    """The portable body: k*k one-hot DEPTHWISE_CONV_2D per composite (LiteRT's builtin kernels
    run them fast and they carry any batch), no StridedSlice/Slice of the input, and W read
    as float32 as is (no Cast/Dequantize of the weights)."""
    from edgeconv.export import tflite_export as tfl
    from edgeconv.export.litert_fused import _op_name, composite_ops

    path, _, _ = tiny
    fb = tfl._schema()
    model_t = tfl._load(path.read_bytes())
    for _, comp in composite_ops(model_t):
        sg = model_t.subgraphs[comp.builtinOptions2.decompositionSubgraphIndex]
        codes = [_op_name(model_t, op) for op in sg.operators]
        ops = fb.BuiltinOperator
        assert codes.count(ops.DEPTHWISE_CONV_2D) == 9
        assert ops.STRIDED_SLICE not in codes
        assert ops.CAST not in codes and ops.DEQUANTIZE not in codes
        x_in = int(sg.inputs[0])
        assert not any(_op_name(model_t, op) == ops.SLICE and int(op.inputs[0]) == x_in
                       for op in sg.operators)


# --------------------------------------------------------------------------- parity
def test_portable_body_parity_batch_1_and_3(tiny):
    path, x, ref = tiny
    data = path.read_bytes()
    _check(ref[:1], _run(data, x[:1], []))
    _check(ref, _run(data, x, []))


@needs_delegate
def test_delegate_parity_batch_1_and_3(tiny):
    path, x, ref = tiny
    data = path.read_bytes()
    d = ld.load_delegate(1)
    assert d is not None, "the delegate failed its self-test"
    _check(ref[:1], _run(data, x[:1], [d]))
    _check(ref, _run(data, x, [ld.load_delegate(1)]))


@needs_delegate
def test_delegate_applies_scales_other_than_one(tiny):
    """The delegate skips float weights' scales only where every one is exactly 1."""
    path, x, _ = tiny
    data = _convert(_tiny_model(), scales_seed=3)
    body = _run(data, x, [])
    kernel = _run(data, x, [ld.load_delegate(1)])
    np.testing.assert_allclose(kernel, body, rtol=1e-5, atol=1e-5)
    ones = _run(path.read_bytes(), x, [ld.load_delegate(1)])
    assert np.abs(kernel - ones).max() > 1e-2  # the scales changed the result


def test_identical_results_at_1_and_2_threads(tiny):
    path, x, _ = tiny
    data = path.read_bytes()
    delegates = (lambda t: [ld.load_delegate(t)]) if HAS_DELEGATE else (lambda t: [])
    a = _run(data, x, delegates(1), threads=1)
    b = _run(data, x, delegates(2), threads=2)
    np.testing.assert_array_equal(a, b)


def test_selftest_file_body_is_poisoned():
    """A stock interpreter gets the self-test wrong: a pass proves the delegate ran."""
    data = ld.SELFTEST_MODEL.read_bytes()
    got = _run(data, np.load(ld.SELFTEST_INPUT), [])
    assert np.abs(got - np.load(ld.SELFTEST_OUTPUT)).max() > 100


# --------------------------------------------------------------------------- portability
_STOCK = textwrap.dedent("""
    import sys, numpy as np
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=sys.argv[1])
    x, ref = np.load(sys.argv[2]), np.load(sys.argv[3])
    inp = it.get_input_details()[0]
    it.resize_tensor_input(inp["index"], list(x.shape), strict=False)
    it.allocate_tensors()
    it.set_tensor(inp["index"], x)
    it.invoke()
    y = it.get_tensor(it.get_output_details()[0]["index"])
    assert not any(m.startswith("edgeconv") for m in sys.modules), "edgeconv imported"
    print(float(np.abs(y - ref).max()))
""")


def test_stock_litert_runs_the_fused_file(tiny):
    path, _, _ = tiny
    d = path.parent
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([sys.executable, "-c", _STOCK, str(path), str(d / "x.npy"),
                          str(d / "ref.npy")], capture_output=True, text=True, cwd=d, env=env,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert float(res.stdout.strip().splitlines()[-1]) <= MAX_ABS


_DEVICE = textwrap.dedent("""
    import sys, json, numpy as np
    from edgeconv.runtime.backends import open_model
    x = np.load(sys.argv[2])
    outs = []
    for _ in range(2):
        with open_model(sys.argv[1], threads=1) as m:
            m.set_batch(x.shape[0])
            outs.append(np.asarray(m.run(x)).tolist())
            path, uses = m.execution_path, m.uses_kernels
    print(json.dumps({"torch": "torch" in sys.modules, "path": path, "uses_kernels": uses,
                      "out": outs[0]}))
""")


def _device(path, env_extra):
    env = dict(os.environ, **env_extra)
    res = subprocess.run([sys.executable, "-c", _DEVICE, str(path), str(path.parent / "x.npy")],
                         capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1]), res.stderr


def test_device_side_imports_no_torch(tiny):
    path, _, ref = tiny
    out, _ = _device(path, {})
    assert out["torch"] is False
    assert out["path"] == (ld.KERNEL if HAS_DELEGATE else ld.PORTABLE)
    assert out["uses_kernels"] is HAS_DELEGATE
    _check(ref, np.asarray(out["out"]))


def test_broken_delegate_is_dropped_with_one_warning(tiny, tmp_path):
    path, _, ref = tiny
    bad = tmp_path / "libedgeconv_litert.so"
    bad.write_bytes(b"\x7fELF not really a library")
    out, err = _device(path, {ld.ENV_PATH: str(bad)})
    assert out["path"] == ld.PORTABLE and out["uses_kernels"] is False
    lines = [ln for ln in err.splitlines() if "edgeconv" in ln and "dropped" in ln]
    assert len(lines) == 1, err
    _check(ref, np.asarray(out["out"]))


@needs_delegate
def test_failed_selftest_drops_the_delegate_with_one_warning(tiny):
    path, _, ref = tiny
    out, err = _device(path, {ld.ENV_SELFTEST: "fail"})
    assert out["path"] == ld.PORTABLE
    assert len([ln for ln in err.splitlines() if "dropped" in ln]) == 1, err
    _check(ref, np.asarray(out["out"]))


def test_files_without_composite_load_nothing(tflite_file):
    assert ld.delegates_for(Path(tflite_file).read_bytes()) == ([], None)


# --------------------------------------------------------------------------- options
def test_weight_dtype_and_fused_are_tflite_options():
    from edgeconv.errors import EdgeconvError
    from edgeconv.export import formats as fmt
    from edgeconv.export.formulations import check_formulation_for, default_formulation

    assert default_formulation("tflite") == "tapconv"  # the TFLite table entry (edgeconv.export.formats)
    assert check_formulation_for("fused", "tflite", dynamic_batch=True) == "fused"
    fmt.validate_options(["tflite"], {"weight_dtype": "int8", "formulation": "fused"})
    with pytest.raises(EdgeconvError):
        fmt.validate_options(["tflite"], {"weight_dtype": "int8", "formulation": "tapconv"})


# --------------------------------------------------------------------------- model families
FAMILIES = [("mbv2_x0_1", 32, None), ("mbv2_x0_1", (112, 96), None),
            ("sfv2_x0_5", 32, 3), ("sfv2_x0_5", (112, 96), 1)]


@pytest.mark.slow
@pytest.mark.parametrize("name,size,batch", FAMILIES)
def test_every_family_exports_fused(tmp_path, name, size, batch):
    from test_export import make_ckpt

    from edgeconv.export.exporter import export_checkpoint

    ckpt = make_ckpt(tmp_path / "m.ckpt", name=name, size=size, seed=5)
    rep = export_checkpoint(ckpt, formats="tflite", output_dir=tmp_path / "out",
                            batch=batch or "dynamic", formulation="fused", echo=lambda *a: None)
    assert rep["formulation"] == {"tflite": "fused"}
    p = rep["parity"]["tflite"]
    assert p["max_abs_diff"] <= MAX_ABS and p["min_cosine"] >= MIN_COS
    if HAS_DELEGATE:
        assert p["delegate"]["passed"] and p["delegate"]["max_abs_diff"] <= MAX_ABS
    meta = json.loads(Path(rep["files"][0]["sidecar"]).read_text())
    assert meta["kernels"] == dict(meta["kernels"], runtime="litert", op="edgeconv.tvconv",
                                   layout="h_w_kk_c", kernel_version=1, weight_dtype="float16")
    assert meta["parity"]["portable"]["passed"]


def _delegate_models():
    from edgeconv.models.registry import model_names

    return model_names("face", takes_op=True)


@needs_delegate
@pytest.mark.slow
@pytest.mark.parametrize("size", ["96", "112", "112x96"])
@pytest.mark.parametrize("name", _delegate_models())
def test_delegate_parity_matrix(tmp_path, name, size):
    """Issue 21's parity acceptance: every registered face model at 96x96, 112x112 and 112x96,
    randomised affinity maps and BN stats, batch 1 and 3, float32 weights: the delegate within
    1e-4 / cosine 0.99999 of the float64 reference, and the same file without the delegate
    through the standard gate. A model whose TFLite file pins the batch is exported at 1 and 3."""
    from test_export import make_ckpt

    from edgeconv.config import parse_input_size
    from edgeconv.export.exporter import export_checkpoint
    from edgeconv.models.registry import model_spec

    hw = tuple(parse_input_size(size))
    ckpt = make_ckpt(tmp_path / f"{name}.ckpt", name=name, size=hw, seed=hw[0] * 7 + hw[1])
    batches = ["1", "3"] if model_spec(name).pins_batch else ["dynamic"]
    seen = set()
    for batch in batches:
        rep = export_checkpoint(ckpt, formats="tflite", output_dir=tmp_path / f"out{batch}",
                                batch=batch, formulation="fused", weight_dtype="float32",
                                echo=lambda *a: None)
        p = rep["parity"]["tflite"]
        d = p["delegate"]
        print(f"DELEGATE PARITY {name} {size} b{batch}: max abs diff {d['max_abs_diff']:.2e}, "
              f"min cosine {d['min_cosine']:.9f}; body {p['max_abs_diff']:.2e}")
        assert d["passed"] and d["max_abs_diff"] <= MAX_ABS and d["min_cosine"] >= MIN_COS, d
        assert p["passed"] and p["max_abs_diff"] <= MAX_ABS and p["min_cosine"] >= MIN_COS, p
        seen |= set(p["inputs"])
    assert {"faces_b1", "faces_b3", "random_b1", "random_b3"} <= seen
