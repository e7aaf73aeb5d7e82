"""The default ONNX export of a TVConv model: ``edgeconv.TVConv`` nodes that carry model-local
function bodies (edgeconv.export.onnx_function). The file passes the ONNX checker and shape
inference, runs in a stock ONNX Runtime without the kernel library (a subprocess that never
imports edgeconv) and in onnx's ReferenceEvaluator, runs the kernel where the library is
registered, and a file of another layout version (edgeconv opset 99) is refused by the kernel
library and runs its body."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
sys.path.insert(0, str(Path(__file__).parent))
import _kernels  # noqa: E402
from test_export import make_ckpt  # noqa: E402

_REASON = _kernels.skip_reason()
needs_kernels = pytest.mark.skipif(_REASON is not None, reason=f"edgeconv kernels: {_REASON}")
QUIET = dict(echo=lambda *a: None)
SIZE = 32


def _reference(ckpt, x: np.ndarray) -> np.ndarray:
    """The float64 function of the training-form model (the exporter's parity reference)."""
    from edgeconv.train.checkpoint import load_model

    model, _ = load_model(ckpt)
    with torch.no_grad():
        return model.double().eval()(torch.from_numpy(x).double()).numpy()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from edgeconv.export.exporter import export_checkpoint

    d = tmp_path_factory.mktemp("onnx_function")
    ckpt = make_ckpt(d / "m.ckpt", size=SIZE, seed=11)
    lines: list[str] = []
    rep = export_checkpoint(ckpt, formats="onnx", output_dir=d / "out", echo=lines.append)
    x = np.random.default_rng(0).standard_normal((3, 3, SIZE, SIZE)).astype(np.float32)
    return {"ckpt": ckpt, "report": rep, "path": d / "out" / "m.onnx", "lines": lines, "x": x,
            "ref": _reference(ckpt, x), "dir": d}


def _profiled_ops(data, x, with_kernels: bool, tmp_path) -> tuple[np.ndarray, set]:
    """Output and the op types ONNX Runtime's profiler saw run."""
    from edgeconv import kernels

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.enable_profiling = True
    so.profile_file_prefix = str(tmp_path / "prof")
    if with_kernels:
        kernels.register(so)
    sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    y = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    events = json.loads(Path(sess.end_profiling()).read_text())
    ops = {e["args"]["op_name"] for e in events
           if e.get("cat") == "Node" and "op_name" in e.get("args", {})}
    return y, ops


def test_default_export_is_fused_with_function_bodies(exported):
    rep, path = exported["report"], exported["path"]
    assert rep["formulation"] == {"onnx": "fused"} and path.exists()
    assert path.name == "m.onnx"  # the default file name (no _fused suffix)
    assert any(ln == "m.onnx: 17 TVConv layers as edgeconv.TVConv (edgeconv kernel where "
               "loaded, standard-op body elsewhere)" for ln in exported["lines"])
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True,
                                                 data_prop=True)
    out = inferred.graph.output[0].type.tensor_type
    assert out.elem_type == onnx.TensorProto.FLOAT and len(out.shape.dim) == 2
    nodes = [n for n in proto.graph.node if n.domain == "edgeconv"]
    assert len(nodes) == 17 and {n.op_type for n in nodes} == {"TVConv"}
    bodies = {(f.domain, f.name, f.overload) for f in proto.functions}
    assert all(("edgeconv", "TVConv", n.overload) in bodies for n in nodes)
    assert all(n.overload.startswith(("k3s1_", "k3s2_")) for n in nodes)
    assert proto.ir_version >= 10
    assert {(o.domain, o.version) for o in proto.opset_import} >= {("edgeconv", 2)}
    meta = json.loads({p.key: p.value for p in proto.metadata_props}["edgeconv"])
    k = meta["kernels"]
    # the default storage of the per-pixel weights is float16 (computed in float32), said once
    assert k["function_body"] is True and k["weight_dtype"] == "float16"
    assert any(ln.startswith("weights onnx   fused TVConv layers store float16 per-pixel "
                             "weights") and "the default" in ln for ln in exported["lines"])
    inits = {i.name: i for i in proto.graph.initializer}
    w_inputs = [inits[n.input[1]] for n in nodes if n.input[1] in inits]
    assert len(w_inputs) == 17 and {i.data_type for i in w_inputs} == {onnx.TensorProto.FLOAT16}
    assert {"domain", "op", "op_version", "layout", "library_version", "library"} <= set(k)
    assert meta["parity"]["function_body"]["max_abs_diff"] <= 1e-4


def test_stock_onnxruntime_without_the_library(exported, tmp_path):
    """A process that never imports edgeconv runs the file (function bodies) within 1e-4 of
    the float64 reference, and ORT's profiler sees only standard ops."""
    np.save(tmp_path / "x.npy", exported["x"])
    code = (
        "import json, sys, numpy as np, onnxruntime as ort\n"
        "so = ort.SessionOptions(); so.enable_profiling = True\n"
        f"so.profile_file_prefix = {str(tmp_path / 'p')!r}\n"
        "s = ort.InferenceSession(sys.argv[1], so, providers=['CPUExecutionProvider'])\n"
        "y = s.run(None, {'input': np.load(sys.argv[2])})[0]\n"
        "ev = json.load(open(s.end_profiling()))\n"
        "ops = sorted({e['args']['op_name'] for e in ev if e.get('cat') == 'Node'"
        " and 'op_name' in e.get('args', {})})\n"
        "np.save(sys.argv[3], y)\n"
        "print(json.dumps({'ops': ops, 'edgeconv': any(m.startswith('edgeconv')"
        " for m in sys.modules)}))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", code, str(exported["path"]),
                           str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["edgeconv"] is False and "TVConv" not in info["ops"]
    assert {"Col2Im", "Slice", "Mul", "Add"} <= set(info["ops"])  # stride 1 / stride 2
    y = np.load(tmp_path / "y.npy")
    assert np.abs(y - exported["ref"]).max() <= 1e-4


def test_reference_evaluator_runs_the_bodies(exported):
    """onnx's ReferenceEvaluator (pure numpy, no ONNX Runtime) on the whole small model. It
    keys model-local functions by (domain, name) and ignores IR 10 overloads (onnx 1.23), so
    the bodies are inlined first by onnx.inliner, which resolves overloads."""
    from onnx.inliner import inline_local_functions
    from onnx.reference import ReferenceEvaluator

    proto = inline_local_functions(onnx.load(str(exported["path"])))
    assert not proto.functions and not [n for n in proto.graph.node if n.domain == "edgeconv"]
    x = exported["x"][:1]
    y = ReferenceEvaluator(proto).run(None, {"input": x})[0]
    assert np.abs(y - exported["ref"][:1]).max() <= 1e-4


@pytest.mark.parametrize("k,s,dtype,bias,act,hw,opset,layout", [
    (3, 1, "float32", "channel", "relu6", (12, 12), 18, None),
    (3, 2, "int8", "pixel", "relu", (13, 11), 18, None),
    (5, 1, "float16", "none", "none", (7, 9), 18, None),
    (5, 2, "float32", "pixel", "relu6", (10, 10), 18, None),
    (3, 2, "int8", "none", "relu", (3, 3), 18, None),
    (3, 1, "int8", "pixel", "relu6", (9, 10), 13, None),
    (5, 1, "float32", "channel", "none", (6, 5), 17, None),
    # stride 1 in the rows layout (layout-version-1 files; planes of < 8 outputs)
    (3, 1, "int8", "pixel", "relu6", (12, 13), 18, "c_h_kk_w8"),
    (3, 1, "float16", "channel", "none", (9, 10), 13, "c_h_kk_w8"),
    (3, 1, "float32", "pixel", "relu", (2, 3), 18, None)])
def test_every_body_variant_matches_the_reference(k, s, dtype, bias, act, hw, opset, layout):
    """One-node models of each variant (stride 1 at opset >= 18: Col2Im; otherwise strided
    Slices; each layout): stock ORT and ReferenceEvaluator vs float64."""
    from onnx.reference import ReferenceEvaluator

    from edgeconv.export.onnx_function import add_function_bodies
    from edgeconv.kernels import pack
    from edgeconv.ops.per_pixel import apply_per_pixel

    c = 6
    data, deq, b = _kernels.node_model(c, hw, k, s, dtype, bias, act, layout=layout)
    proto = onnx.load_from_string(data)
    proto.opset_import[0].version = opset
    h, w = pack.out_hw(hw, k, s)
    flat = (layout or pack.layout_for(s, (h, w))) == pack.FLAT_LAYOUT
    proto.graph.output[0].CopyFrom(onnx.helper.make_tensor_value_info(
        "y", onnx.TensorProto.FLOAT, ["N", c, h, w]))
    assert add_function_bodies(proto) == 1
    onnx.checker.check_model(proto, full_check=True)
    body_ops = {n.op_type for n in proto.functions[0].node}
    assert ("Col2Im" in body_ops) == (s == 1 and opset >= 18)
    assert proto.functions[0].overload.endswith("_flat") == flat
    x = np.random.default_rng(1).standard_normal((2, c, *hw)).astype(np.float32)
    bias_t = None if b is None else torch.from_numpy(np.asarray(b, np.float64)).reshape(
        c, *((1, 1) if np.ndim(b) == 1 else (h, w)))
    ref = apply_per_pixel(torch.from_numpy(x).double(), torch.from_numpy(deq).unsqueeze(0),
                          bias_t, k, s, (h, w)).numpy()
    ref = {"relu": np.maximum(ref, 0), "relu6": np.clip(ref, 0, 6), "none": ref}[act]
    so = ort.SessionOptions()
    so.log_severity_level = 3
    y_ort = ort.InferenceSession(proto.SerializeToString(), so,
                                 providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    y_ref = ReferenceEvaluator(proto).run(None, {"x": x})[0]
    assert y_ort.shape == ref.shape
    assert np.abs(y_ort - ref).max() <= 1e-4 and np.abs(y_ref - ref).max() <= 1e-4


@needs_kernels
def test_the_kernel_runs_where_the_library_is_registered(exported, tmp_path):
    data = exported["path"].read_bytes()
    x = exported["x"]
    y_kernel, ops_kernel = _profiled_ops(data, x, True, tmp_path)
    y_body, ops_body = _profiled_ops(data, x, False, tmp_path)
    assert "TVConv" in ops_kernel and "Slice" not in ops_kernel and "Pad" not in ops_kernel
    assert "TVConv" not in ops_body and "Slice" in ops_body
    assert np.abs(y_kernel - y_body).max() <= 1e-4
    assert np.abs(y_kernel - exported["ref"]).max() <= 1e-4
    from edgeconv.runtime.backends import open_model

    with open_model(exported["path"]) as m:
        assert m.uses_kernels is True
        assert np.abs(m.run(x) - y_kernel).max() <= 1e-5  # other session options


def _with_opset(path: Path, out: Path, version: int, bodies: bool = True) -> Path:
    proto = onnx.load(str(path))
    for o in proto.opset_import:
        if o.domain == "edgeconv":
            o.version = version
    if not bodies:
        del proto.functions[:]
    out.write_bytes(proto.SerializeToString())
    return out


@needs_kernels
def test_another_layout_version_is_refused_by_the_kernel_and_runs_the_body(exported, tmp_path):
    """edgeconv opset 99: the library reads layout version 1 only, so it is not registered
    (one stderr line) and the file runs its function bodies; without bodies: one-line error."""
    from edgeconv import kernels

    f99 = _with_opset(exported["path"], tmp_path / "v99.onnx", 99)
    code = ("import sys, numpy as np\n"
            "from edgeconv.runtime.backends import open_model\n"
            "m = open_model(sys.argv[1]); m2 = open_model(sys.argv[1])\n"
            "y = m.run(np.load(sys.argv[2])); np.save(sys.argv[3], y)\n"
            "print('uses_kernels', m.uses_kernels, m2.uses_kernels)\n")
    np.save(tmp_path / "x.npy", exported["x"])
    proc = subprocess.run([sys.executable, "-c", code, str(f99), str(tmp_path / "x.npy"),
                           str(tmp_path / "y.npy")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "uses_kernels False False" in proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr  # said once, for two sessions
    assert "layout version 99" in lines[0] and "the kernel refuses it" in lines[0]
    assert "standard-op body" in lines[0]
    assert np.abs(np.load(tmp_path / "y.npy") - exported["ref"]).max() <= 1e-4
    # the library's declared range (capi) is what is checked
    lo, hi = kernels.op_versions()
    assert lo <= kernels.OP_VERSION <= hi < 99
    # without function bodies such a file cannot run here: one line
    bare = _with_opset(exported["path"], tmp_path / "v99_bare.onnx", 99, bodies=False)
    so = ort.SessionOptions()
    with pytest.raises(kernels.KernelsMissing, match="layout version 99") as info:
        kernels.register_for_model(so, bare, bare.name)
    assert "\n" not in str(info.value)


def test_without_the_library_the_runtime_runs_the_body(exported, tmp_path):
    """EDGECONV_KERNELS_LIB pointing nowhere: open_model works, uses_kernels is False, one
    stderr line says the portable body runs; an old fused file without bodies still refuses."""
    env = dict(os.environ, EDGECONV_KERNELS_LIB=str(tmp_path / "missing.so"))
    bare = _with_opset(exported["path"], tmp_path / "bare.onnx", 1, bodies=False)
    code = ("import sys, numpy as np\n"
            "from edgeconv.runtime.backends import open_model\n"
            "from edgeconv.kernels import KernelsMissing\n"
            "m = open_model(sys.argv[1]); open_model(sys.argv[1])\n"
            "np.save(sys.argv[3], m.run(np.load(sys.argv[2])))\n"
            "print('uses_kernels', m.uses_kernels)\n"
            "try:\n    open_model(sys.argv[4])\nexcept KernelsMissing as e:\n"
            "    print('refused', e)\n")
    np.save(tmp_path / "x.npy", exported["x"])
    proc = subprocess.run([sys.executable, "-c", code, str(exported["path"]),
                           str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), str(bare)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "uses_kernels False" in proc.stdout
    assert ("refused bare.onnx uses the fused edgeconv.TVConv kernel and carries no"
            in proc.stdout)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "m.onnx: the edgeconv kernels are not available here" in lines[0]
    assert "portable standard-op body" in lines[0]
    assert np.abs(np.load(tmp_path / "y.npy") - exported["ref"]).max() <= 1e-4


def test_default_export_without_the_library(tmp_path):
    """The default export needs no kernel library: the bodies are gated, the kernel is not."""
    from edgeconv.export.exporter import export_checkpoint

    ckpt = make_ckpt(tmp_path / "m.ckpt", name="sfv2_x0_5", size=SIZE, seed=2)
    env = dict(os.environ, EDGECONV_KERNELS_LIB=str(tmp_path / "missing.so"))
    proc = subprocess.run([sys.executable, "-m", "edgeconv.cli", "export", str(ckpt), "--format",
                           "onnx", "-o", str(tmp_path / "o")], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "m.onnx: 19 TVConv layers as edgeconv.TVConv" in proc.stdout
    assert "edgeconv kernel: not run (the edgeconv kernels are not built" in proc.stdout
    side = json.loads((tmp_path / "o" / "m.onnx.json").read_text())
    assert side["formulation"] == "fused" and side["kernels"]["library_version"] is None
    assert side["parity"]["kernel"]["skipped"] and side["parity"]["max_abs_diff"] <= 1e-4
    del export_checkpoint


FAMILIES = ["mbv2_x0_1", "sfv2_x0_5"]


def _registry_models():
    from edgeconv.models import list_models

    return list_models(takes_op=True)  # MLP-Mixer takes no op


def test_families_cover_the_registry():
    assert {m.split("_")[0] for m in _registry_models()} == {m.split("_")[0] for m in FAMILIES}


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=() if n in FAMILIES else pytest.mark.slow) for n in _registry_models()])
def test_every_registered_model_exports_fused_with_bodies_by_default(tmp_path, name):
    from edgeconv.export.exporter import export_checkpoint
    from edgeconv.export.onnx_function import has_function_bodies

    ckpt = make_ckpt(tmp_path / "m.ckpt", name=name, size=SIZE, seed=7)
    rep = export_checkpoint(ckpt, formats="onnx", output_dir=tmp_path, **QUIET)
    assert rep["formulation"] == {"onnx": "fused"}
    p = rep["parity"]["onnx"]
    assert p["passed"] and p["function_body"]["max_abs_diff"] <= 1e-4
    assert p["function_body"]["min_cosine"] >= 0.99999
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert has_function_bodies(proto)
    assert any(n.domain == "edgeconv" for n in proto.graph.node)


def test_depthwise_export_is_unchanged_and_weight_dtype_refused(tmp_path):
    """A depthwise model has no TVConv layer: its default ONNX file has no edgeconv domain and
    no function, and --weight-dtype (the fused layers' storage) is refused in one line."""
    from edgeconv.errors import EdgeconvError
    from edgeconv.export.exporter import export_checkpoint

    ckpt = make_ckpt(tmp_path / "d.ckpt", op="depthwise", size=SIZE)
    with pytest.raises(EdgeconvError, match=r"--weight-dtype .* \(op 'depthwise'\) has none"):
        export_checkpoint(ckpt, formats="onnx", output_dir=tmp_path, weight_dtype="int8", **QUIET)
    rep = export_checkpoint(ckpt, formats="onnx", output_dir=tmp_path, **QUIET)
    assert rep["formulation"] == {"onnx": None}
    proto = onnx.load(str(tmp_path / "d.onnx"))
    assert not proto.functions and "edgeconv" not in {o.domain for o in proto.opset_import}
