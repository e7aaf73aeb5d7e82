"""`edgeconv export`: folded graphs (no generator ops), parity gate, metadata, atomic writes.

Fast tests: one small TVConv model (mbv2_x0_1, tiny generator, 32x32 input, randomised
affinity maps and BN stats) exported once to ONNX + TFLite and inspected by several tests;
ONNX-only exports for the failure cases. The registered-model matrix at 96/112 is in
tests/test_export_slow.py (``-m slow``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

sys.path.insert(0, str(Path(__file__).parent))
from test_cli import run_cli  # noqa: E402
from test_ops import randomise  # noqa: E402

SMALL = dict(inter_channels=8, inter_layers=1)
GENERATOR_ONNX_OPS = {"LayerNormalization", "ReduceMean", "Sqrt", "Pow", "Div"}


def make_ckpt(path, name="mbv2_x0_1", op="tvconv", size=32, metrics=None, seed=0):
    from edgeconv.train.checkpoint import random_checkpoint

    random_checkpoint(path, name, op, size, seed, op_kwargs=SMALL if op == "tvconv" else None,
                      metrics=metrics)
    return path


def expected_convs(ckpt_path, formulation="tapconv"):
    """Conv nodes the folded graph must hold: the model's own convs + the formulation's taps."""
    from edgeconv.ops.folding import fold_model
    from edgeconv.ops.tvconv import FoldedTVConv
    from edgeconv.train.checkpoint import load_model

    model, _ = load_model(ckpt_path)
    folded = fold_model(model, fuse_bn=True)
    own = sum(isinstance(m, torch.nn.Conv2d) for m in folded.modules())
    tv = [m for m in folded.modules() if isinstance(m, FoldedTVConv)]
    taps = {"tapconv": 9, "onehot": 1, "slices": 0, "onehot_tap": 0, "col2im": 0}[formulation]
    if formulation == "col2im":  # strided layers fall back to tapconv
        return own + 9 * sum(m.stride != 1 for m in tv), len(tv), model
    return own + taps * len(tv), len(tv), model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    pytest.importorskip("litert_torch")
    pytest.importorskip("ai_edge_litert")
    d = tmp_path_factory.mktemp("export")
    ckpt = make_ckpt(d / "small.ckpt", metrics={
        "verification": {"accuracy": 0.875, "accuracy_std": 0.02, "threshold": 0.41,
                         "pairs": "synthetic"}})
    res = run_cli("export", ckpt, "-o", d / "out", "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.strip().splitlines()[-1])
    return d, ckpt, report


def test_files_and_parity_report(exported):
    d, ckpt, report = exported
    names = sorted(p.name for p in (d / "out").iterdir())
    assert names == ["small.onnx", "small.onnx.json", "small.tflite", "small.tflite.json"]
    for f in ("onnx", "tflite"):
        p = report["parity"][f]
        assert p["passed"] and p["max_abs_diff"] <= 1e-4 and p["min_cosine"] >= 0.99999
        assert {"faces_b1", "faces_b3", "random_b1", "random_b3"} == set(p["inputs"])
    assert report["formulation"]["onnx"] == "fused"  # edgeconv.TVConv + function bodies
    assert report["faces"] == "edgeconv.data.synthetic.SyntheticFaces"


def test_onnx_graph_has_no_generator_ops(exported):
    d, ckpt, _ = exported
    proto = onnx.load(str(d / "out" / "small.onnx"))
    onnx.checker.check_model(proto)
    ops = [n.op_type for n in proto.graph.node]
    assert not GENERATOR_ONNX_OPS & set(ops), set(ops)
    n_conv, n_tv, model = expected_convs(ckpt, "slices")  # the model's own convs only
    assert n_tv == 17
    assert ops.count("Conv") == n_conv
    # the default: one edgeconv.TVConv node per TVConv layer, each with its function body
    assert ops.count("TVConv") == n_tv and "Col2Im" not in ops
    assert {(f.domain, f.name) for f in proto.functions} == {("edgeconv", "TVConv")}
    # no affinity map (1, cA, h, w) and no generator weight survives as a constant
    shapes = {tuple(i.dims) for i in proto.graph.initializer}
    gen_shapes = {tuple(p.shape) for n, p in model.named_parameters()
                  if "weight_gen" in n or "affinity" in n}
    assert not shapes & gen_shapes
    # BatchNorm fused away
    assert "BatchNormalization" not in ops
    # dynamic batch
    dim0 = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim0.dim_param and not dim0.dim_value


def test_tflite_graph_has_no_generator_ops(exported):
    from edgeconv.export.tflite_export import tflite_op_names

    d, ckpt, _ = exported
    ops = tflite_op_names((d / "out" / "small.tflite").read_bytes())
    n_conv, n_tv, _ = expected_convs(ckpt)
    assert "RSQRT" not in ops and "SQUARED_DIFFERENCE" not in ops  # LayerNorm's pieces
    assert ops.get("MEAN", 0) == 1  # only the head's global pool
    assert ops.get("CONV_2D", 0) + ops.get("DEPTHWISE_CONV_2D", 0) == n_conv


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_dynamic_batch_runs_1_and_3_and_matches_eager(exported, fmt):
    from edgeconv.export.tflite_export import make_interpreter, run_tflite
    from edgeconv.train.checkpoint import load_model

    d, ckpt, _ = exported
    model, _ = load_model(ckpt)
    path = d / "out" / f"small.{fmt}"
    for n in (1, 3):
        x = np.random.default_rng(n).standard_normal((n, 3, 32, 32)).astype(np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        if fmt == "onnx":
            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            out = sess.run(None, {"input": x})[0]
        else:
            out = run_tflite(make_interpreter(path.read_bytes()), x)
        assert out.shape == (n, 512)
        assert np.abs(out - ref).max() <= 1e-4


def test_metadata_in_file_and_sidecar(exported):
    from edgeconv.export.tflite_export import read_tflite_metadata
    from edgeconv.metadata import load_metadata, read_onnx_metadata, read_sidecar

    d, _, _ = exported
    onnx_path, tfl_path = d / "out" / "small.onnx", d / "out" / "small.tflite"
    embedded, side = read_onnx_metadata(onnx_path), read_sidecar(onnx_path)
    for meta in (embedded, side):
        assert meta["model"] == "mbv2_x0_1" and meta["op"] == "tvconv" and meta["width"] == 0.1
        assert meta["input_size"] == [32, 32] and meta["layout"] == "NCHW"
        assert meta["color"] == "RGB" and meta["mean"] == [0.5] * 3 and meta["std"] == [0.5] * 3
        assert meta["embedding_dim"] == 512 and meta["macs"] > 0
        assert meta["params_train"] > meta["params_inference"] > 0 and "params" not in meta
        assert meta["verification"]["threshold"] == 0.41
        assert meta["verification"]["accuracy"] == 0.875
        assert meta["folding"] == "exact" and meta["format"] == "onnx"
        assert meta["edgeconv_version"] and meta["format_version"] == 1
    assert load_metadata(onnx_path)["model"] == "mbv2_x0_1"
    import hashlib

    assert side["sha256"] == hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    tmeta = read_tflite_metadata(tfl_path)
    assert tmeta["format"] == "tflite" and tmeta["verification"]["threshold"] == 0.41
    assert read_sidecar(tfl_path)["metadata_embedded"] is True
    # the embedded-metadata file still runs
    from edgeconv.export.tflite_export import make_interpreter, run_tflite

    assert run_tflite(make_interpreter(tfl_path.read_bytes()),
                      np.zeros((1, 3, 32, 32), np.float32)).shape == (1, 512)


def test_macs_match_depthwise_model(exported):
    """Folded TVConv costs exactly the depthwise model's MACs (paper convention)."""
    from edgeconv.metadata import read_sidecar
    from edgeconv.models import create_model
    from edgeconv.profiling.macs import count_macs

    d, _, _ = exported
    dw_macs, _ = count_macs(create_model("mbv2_x0_1", op="depthwise", input_size=32).eval(),
                            (32, 32))
    assert read_sidecar(d / "out" / "small.onnx")["macs"] == pytest.approx(dw_macs, rel=0.02)


@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory):
    return make_ckpt(tmp_path_factory.mktemp("ck") / "s.ckpt", name="mbv2_x0_1", size=32, seed=1)


@pytest.mark.parametrize("formulation,batch", [("slices", "2"), ("onehot", "dynamic"),
                                               ("onehot_tap", "dynamic"), ("tapconv", "dynamic"),
                                               ("col2im", "3")])
def test_every_exact_formulation_passes_parity_onnx(small_ckpt, tmp_path, formulation, batch):
    from edgeconv.export.exporter import export_checkpoint

    rep = export_checkpoint(small_ckpt, formats="onnx", output_dir=tmp_path, batch=batch,
                            formulation=formulation, echo=lambda *a: None)
    assert rep["formulation"] == {"onnx": formulation}
    p = rep["parity"]["onnx"]
    assert p["max_abs_diff"] <= 1e-4 and p["min_cosine"] >= 0.99999
    assert torch.is_grad_enabled()  # exporting leaves the caller's autograd state alone
    proto = onnx.load(str(tmp_path / "s.onnx"))
    n_conv, _, _ = expected_convs(small_ckpt, formulation)
    assert [n.op_type for n in proto.graph.node].count("Conv") == n_conv
    dim0 = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert (dim0.dim_value == int(batch)) if batch != "dynamic" else bool(dim0.dim_param)


def test_parity_failure_leaves_nothing_behind(small_ckpt, tmp_path, monkeypatch):
    from edgeconv.export import onnx_export

    real = onnx_export.run

    def corrupted(data, inputs, dynamic_batch=True):
        outs = real(data, inputs, dynamic_batch)
        return {k: v + 1e-3 for k, v in outs.items()}

    monkeypatch.setattr(onnx_export, "run", corrupted)
    out = tmp_path / "out"
    # the standard-op form (the default fused file is gated through onnx_function's runs)
    res = run_cli("export", small_ckpt, "--format", "onnx", "--formulation", "col2im", "-o",
                  out)
    assert res.returncode == 2
    assert "parity check failed" in res.stderr and "nothing written" in res.stderr
    assert "Traceback" not in res.stderr
    assert not out.exists() or list(out.iterdir()) == []


def test_write_failure_removes_partial_files(tmp_path):
    """A crash while writing the second file removes the first: all or nothing."""
    from edgeconv.export.pipeline import write_all as _write_all

    out = tmp_path / "out"
    with pytest.raises(TypeError):
        _write_all([(out / "a.onnx", b"abc", {"x": 1}), (out / "b.onnx", None, {})])
    assert list(out.iterdir()) == []
    _write_all([(out / "a.onnx", b"abc", {"x": 1})])
    assert sorted(p.name for p in out.iterdir()) == ["a.onnx", "a.onnx.json"]
    assert (out / "a.onnx").stat().st_mode & 0o777 == 0o644


def test_lowrank_option_reports_cost(small_ckpt, tmp_path):
    from edgeconv.export.exporter import export_checkpoint

    rep1 = export_checkpoint(small_ckpt, formats="onnx", output_dir=tmp_path, lowrank="1",
                             echo=lambda *a: None)
    assert rep1["lowrank"]["max_rank"] == 1
    # random affinity maps: rank 1 is NOT exact, and the cost is reported honestly
    assert rep1["lowrank"]["vs_exact"]["min_cosine_faces"] < 0.99999
    assert rep1["parity"]["onnx"]["passed"]  # the graph matches the model it claims to be
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s_lowrank1.onnx", "s_lowrank1.onnx.json"]
    meta = json.loads((tmp_path / "s_lowrank1.onnx.json").read_text())
    assert meta["folding"] == "lowrank" and meta["lowrank"]["ranks"] == [1] * 17
    ops = [n.op_type for n in onnx.load(str(tmp_path / "s_lowrank1.onnx")).graph.node]
    n_conv, n_tv, _ = expected_convs(small_ckpt, "slices")
    assert ops.count("Conv") == n_conv + n_tv  # one depthwise conv per TVConv layer


def test_lowrank_full_rank_is_exact_eager(small_ckpt):
    from edgeconv.ops.folding import fold_model
    from edgeconv.export.lowrank import lowrank_model
    from edgeconv.train.checkpoint import load_model

    model, _ = load_model(small_ckpt)
    low, layers = lowrank_model(fold_model(model, fuse_bn=True), 9)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (low(x) - model(x)).abs().max() < 1e-4
    # 2x2 maps have only 4 singular values: full rank there is 4
    ranks = {layer["rank"] for layer in layers}
    assert 9 in ranks and ranks <= {9, 4}
    assert max(layer["rel_weight_error"] for layer in layers) < 1e-6


def test_lowrank_decomposition_tolerance():
    from edgeconv.export.lowrank import decompose
    from edgeconv.ops.tvconv import TVConv

    layer = randomise(TVConv(8, stride=2, in_hw=(12, 12), inter_channels=8, inter_layers=1)).eval()
    folded = layer.fold()
    for tol in (0.3, 0.05, 1e-6):
        low = decompose(folded, tol)
        err = (low.dense_weight() - folded.weight).norm() / folded.weight.norm()
        assert err <= tol + 1e-6 and abs(err - low.rel_error) < 1e-5
    x = torch.randn(2, 8, 12, 12)
    full = decompose(folded, 9)
    assert (full(x) - folded(x)).abs().max() < 1e-5


@pytest.mark.parametrize("formulation", ["slices", "onehot", "onehot_tap", "tapconv", "col2im"])
@pytest.mark.parametrize("stride", [1, 2])
def test_formulations_match_reference_eager(formulation, stride):
    from edgeconv.ops.tvconv import TVConv

    op = randomise(TVConv(6, stride=stride, in_hw=(11, 9), inter_channels=8, inter_layers=1,
                          bias=True)).eval()
    folded = op.fold()
    x = torch.randn(3, 6, 11, 9)
    ref = op(x)
    folded.set_formulation(formulation)
    assert (folded(x) - ref).abs().max() < 1e-5
    assert folded.state_dict().keys() == {"weight", "bias"}  # aux kernels are not state


def test_fp16_weights_tflite(exported):
    from edgeconv.export.tflite_export import (make_interpreter, read_tflite_metadata,
                                               run_tflite, tflite_op_names, to_fp16_weights)

    d, _, _ = exported
    data = (d / "out" / "small.tflite").read_bytes()
    half, n = to_fp16_weights(data)
    assert n > 0 and len(half) < 0.6 * len(data)
    assert tflite_op_names(half).get("DEQUANTIZE") == n
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    a, b = run_tflite(make_interpreter(data), x), run_tflite(make_interpreter(half), x)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.999 and np.abs(a - b).max() > 0  # really float16
    assert read_tflite_metadata(half)["model"] == "mbv2_x0_1"


# ------------------------------------------------------------------ CLI errors
def _expect_export_refusal(ckpt, out, fragment, *extra):
    res = run_cli("export", ckpt, "-o", out, "--format", "onnx", *extra)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().count("\n") == 0, res.stderr
    assert fragment in res.stderr, res.stderr
    assert not Path(out).exists() or list(Path(out).iterdir()) == []


def test_cli_bad_checkpoints_exit_2_nothing_written(small_ckpt, tmp_path):
    out = tmp_path / "out"
    _expect_export_refusal(tmp_path / "nope.ckpt", out, "no such file")
    data = Path(small_ckpt).read_bytes()
    (tmp_path / "trunc.ckpt").write_bytes(data[: len(data) // 2])
    _expect_export_refusal(tmp_path / "trunc.ckpt", out, "corrupt or truncated")
    (tmp_path / "junk.ckpt").write_bytes(b"\x00garbage" * 100)
    _expect_export_refusal(tmp_path / "junk.ckpt", out, "junk.ckpt")
    ck = torch.load(small_ckpt, weights_only=True)
    ck["model_config"]["name"] = "mbv2_x0_2"
    torch.save(ck, tmp_path / "wrong.ckpt")
    _expect_export_refusal(tmp_path / "wrong.ckpt", out, "weights do not fit mbv2_x0_2")


def test_cli_pickle_exploit_refused_nothing_executed(tmp_path):
    import pickle

    from test_cli import _Exploit

    marker = tmp_path / "pwned"
    for kind in ("zip", "pickle"):
        path = tmp_path / f"evil_{kind}.ckpt"
        payload = {"format": "edgeconv.checkpoint", "format_version": 1, "x": _Exploit(marker)}
        if kind == "zip":
            torch.save(payload, path)
        else:
            path.write_bytes(pickle.dumps(payload, protocol=2))
        _expect_export_refusal(path, tmp_path / "out", "refused")
    assert not marker.exists()


def test_cli_option_validation(small_ckpt, tmp_path):
    out = tmp_path / "out"
    _expect_export_refusal(small_ckpt, out, "--fp16 applies to format(s) tflite", "--fp16")
    _expect_export_refusal(small_ckpt, out, "unknown export format 'coreml'",
                           "--format", "coreml")
    _expect_export_refusal(small_ckpt, out, "built for 32x32", "--input-size", "48")
    _expect_export_refusal(small_ckpt, out, "--batch 0: must be at least 1", "--batch", "0")
    _expect_export_refusal(small_ckpt, out, "--opset must be", "--opset", "7")
    _expect_export_refusal(small_ckpt, out, "--lowrank takes", "--lowrank", "1.5")
    _expect_export_refusal(small_ckpt, out, "unknown --formulation", "--formulation", "magic")
    for form in ("onehot", "slices"):  # their TFLite graphs pin the batch
        res = run_cli("export", small_ckpt, "-o", out, "--format", "tflite", "--formulation", form)
        assert res.returncode == 2 and "--batch N" in res.stderr and not out.exists()
    res = run_cli("export", small_ckpt, "-o", out, "--format", "tflite", "--opset", "17")
    assert res.returncode == 2 and "--opset applies to format(s) onnx" in res.stderr
    _expect_export_refusal(small_ckpt, out, "col2im is ONNX only", "--format", "onnx,tflite",
                           "--formulation", "col2im")
    _expect_export_refusal(small_ckpt, out, "needs ONNX opset >= 18", "--opset", "17",
                           "--formulation", "col2im")


def test_opset17_onnx_default_is_fused_with_opset17_bodies(small_ckpt, tmp_path):
    """--opset 17 is honoured: the default fused nodes' function bodies use opset 17 ops."""
    from edgeconv.export.exporter import export_checkpoint

    rep = export_checkpoint(small_ckpt, formats="onnx", output_dir=tmp_path, opset=17,
                            echo=lambda *a: None)
    assert rep["formulation"] == {"onnx": "fused"}
    assert rep["parity"]["onnx"]["function_body"]["max_abs_diff"] <= 1e-4
    proto = onnx.load(str(tmp_path / "s.onnx"))
    assert proto.opset_import[0].version == 17
    assert {o.version for f in proto.functions for o in f.opset_import} == {17}
    assert "Col2Im" not in {n.op_type for n in proto.graph.node}
    assert json.loads((tmp_path / "s.onnx.json").read_text())["formulation"] == "fused"


def test_depthwise_model_exports_and_lowrank_refused(tmp_path):
    from edgeconv.export.exporter import export_checkpoint

    ck = make_ckpt(tmp_path / "dw.ckpt", name="mbv2_x0_1", op="depthwise", size=32)
    rep = export_checkpoint(ck, formats="onnx", output_dir=tmp_path / "o", echo=lambda *a: None)
    assert rep["parity"]["onnx"]["max_abs_diff"] <= 1e-4 and rep["formulation"] == {"onnx": None}
    _expect_export_refusal(ck, tmp_path / "o2", "--lowrank applies to TVConv", "--lowrank", "2")


def test_cli_import_stays_light():
    import subprocess

    code = ("import sys, edgeconv.cli, edgeconv.export.formats\n"
            "heavy = [m for m in ('torch', 'onnx', 'onnxruntime', 'litert_torch') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_batch_free_head_is_exact():
    from edgeconv.export.tflite_export import GlobalAvgPool, batch_free_head
    from edgeconv.models import create_model

    model = randomise(create_model("mbv2_x0_1", op="depthwise", input_size=32).eval())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        assert batch_free_head(model) == 1
        assert any(isinstance(m, GlobalAvgPool) for m in model.modules())
        assert (model(x) - ref).abs().max() < 1e-5


def test_parity_gate_allows_the_float32_floor_and_reports_it(small_ckpt, tmp_path):
    """The gate's absolute limit is max(1e-4, 2 x the float32 eager model's own error)."""
    from edgeconv.export import parity as par
    from edgeconv.export.exporter import export_checkpoint

    ref = {"a": np.array([[1.0, 2.0, 3.0]])}
    assert par.float32_floor(ref, {"a": np.array([[1.0, 2.0, 3.0 + 3e-4]])}) == pytest.approx(1e-4)
    assert par.float32_floor(ref, {"a": ref["a"].copy()}) == 0.0
    rep = export_checkpoint(small_ckpt, formats="onnx", output_dir=tmp_path,
                            weight_dtype="float32", echo=lambda *a: None)
    p = rep["parity"]["onnx"]
    assert 0.0 <= p["float32_floor"] < 1e-4
    assert p["tolerance"]["max_abs_diff"] == max(1e-4, 2 * p["float32_floor"])
    # the default storage (float16 weights) is gated at its own bound, never looser than that
    rep = export_checkpoint(small_ckpt, formats="onnx", output_dir=tmp_path / "d",
                            echo=lambda *a: None)
    p = rep["parity"]["onnx"]
    assert p["tolerance"]["max_abs_diff"] == max(par.FUSED_TOLERANCE["float16"][0],
                                                 2 * p["float32_floor"])
    assert p["tolerance"]["min_cosine"] == par.MIN_COSINE and p["max_abs_diff"] <= 1e-4


def test_export_never_replaces_another_models_files(tmp_path):
    """Issue #11 item 1: tvconv/last.ckpt then depthwise/last.ckpt into one folder."""
    (tmp_path / "tvconv").mkdir()
    (tmp_path / "depthwise").mkdir()
    tv = make_ckpt(tmp_path / "tvconv" / "last.ckpt", op="tvconv", seed=1)
    dw = make_ckpt(tmp_path / "depthwise" / "last.ckpt", op="depthwise", seed=2)
    out = tmp_path / "out"
    res = run_cli("export", tv, "-o", out, "--format", "onnx")
    assert res.returncode == 0, res.stderr
    assert f"wrote {out / 'last.onnx'}" in res.stdout
    before = (out / "last.onnx").read_bytes(), (out / "last.onnx.json").read_bytes()
    res = run_cli("export", dw, "-o", out, "--format", "onnx")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "already exists and holds mbv2_x0_1 (tvconv) from another checkpoint" in res.stderr
    assert ((out / "last.onnx").read_bytes(), (out / "last.onnx.json").read_bytes()) == before
    res = run_cli("export", tv, "-o", out, "--format", "onnx")      # its own files: fine
    assert res.returncode == 0, res.stderr
    res = run_cli("export", dw, "-o", out, "--format", "onnx", "--force")
    assert res.returncode == 0, res.stderr
    assert json.loads((out / "last.onnx.json").read_text())["op"] == "depthwise"


def test_filtergen_dynamic_batch_tflite_refused_before_converting(tmp_path):
    ckpt = make_ckpt(tmp_path / "fg.ckpt", op="filtergen", size=32)
    res = run_cli("export", ckpt, "--format", "onnx,tflite", "-o", tmp_path / "o")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "filtergen generates its filters per image" in res.stderr
    assert "--batch N" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
    assert "parity" not in res.stdout        # refused before any format was converted
