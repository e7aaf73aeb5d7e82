"""``edgeconv export --formulation fused``: one edgeconv.TVConv node per folded TVConv with its
BatchNorm and activation, packed weights in float32 / float16 / int8, the parity gate run with
the kernel library loaded, metadata saying what the file needs, and the option checks."""

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

from edgeconv.models.registry import model_names  # noqa: E402

_REASON = _kernels.skip_reason()
needs_kernels = pytest.mark.skipif(_REASON is not None, reason=f"edgeconv kernels: {_REASON}")
QUIET = dict(echo=lambda *a: None)


def _export(ckpt, out, **kw):
    from edgeconv.export.exporter import export_checkpoint

    return export_checkpoint(ckpt, formats="onnx", output_dir=out, formulation="fused", **QUIET, **kw)


def _ops(path):
    proto = onnx.load(str(path))
    ops: dict = {}
    for n in proto.graph.node:
        ops[(n.domain or "ai.onnx", n.op_type)] = ops.get((n.domain or "ai.onnx", n.op_type), 0) + 1
    return proto, ops


# TVConv layers per model (sfv2: every block's branch2 + the 3 branch1 of the strided blocks)
N_TVCONV = {"mbv2_x0_1": 17, "sfv2_x0_5": 16 + 3}


@needs_kernels
@pytest.mark.parametrize("name,act", [("mbv2_x0_1", "relu6"), ("sfv2_x0_5", "none")])
def test_fused_export_one_node_per_layer_with_bn_and_activation(tmp_path, name, act):
    ckpt = make_ckpt(tmp_path / "m.ckpt", name=name, size=32, seed=3)
    rep = _export(ckpt, tmp_path / "out")  # the default storage: float16 weights
    assert rep["formulation"] == {"onnx": "fused"}
    p = rep["parity"]["onnx"]
    assert p["max_abs_diff"] <= 1e-3 and p["min_cosine"] >= 0.99999
    path = tmp_path / "out" / "m_fused.onnx"
    proto, ops = _ops(path)
    n_tv = N_TVCONV[name]
    assert ops[("edgeconv", "TVConv")] == n_tv
    assert ("ai.onnx", "BatchNormalization") not in ops and ("ai.onnx", "Mul") not in ops
    nodes = [n for n in proto.graph.node if n.op_type == "TVConv"]
    assert {a.s.decode() for n in nodes for a in n.attribute if a.name == "activation"} == {act}
    assert {a.i for n in nodes for a in n.attribute if a.name == "stride"} == {1, 2}
    if act == "relu6":  # the activation is in the node: no Clip reads a TVConv output
        tv_out = {n.output[0] for n in nodes}
        assert not [n for n in proto.graph.node if n.op_type == "Clip" and n.input[0] in tv_out]
    assert {(o.domain, o.version) for o in proto.opset_import} >= {("edgeconv", 2)}
    # stride-1 layers in the flat layout (rows where a plane has < 8 outputs: 2x2 at 32x32),
    # stride-2 layers in rows; the metadata lists both
    layouts = {(next(a.i for a in n.attribute if a.name == "stride"),
                next(a.s.decode() for a in n.attribute if a.name == "layout")) for n in nodes}
    assert {(1, "c_kk_hw"), (2, "c_h_kk_w8")} <= layouts <= {(1, "c_kk_hw"), (2, "c_h_kk_w8"),
                                                             (1, "c_h_kk_w8")}
    meta = json.loads(dict((m.key, m.value) for m in proto.metadata_props)["edgeconv"])
    assert meta["formulation"] == "fused"
    assert meta["kernels"]["domain"] == "edgeconv" and meta["kernels"]["weight_dtype"] == "float16"
    assert meta["kernels"]["layouts"] == ["c_h_kk_w8", "c_kk_hw"]
    assert meta["kernels"]["layout"] == "c_h_kk_w8,c_kk_hw" and meta["kernels"]["library_version"]
    assert json.loads((tmp_path / "out" / "m_fused.onnx.json").read_text())["kernels"] == meta["kernels"]


@needs_kernels
def test_fused_weight_dtypes_keep_the_embedding(tmp_path):
    ckpt = make_ckpt(tmp_path / "m.ckpt", size=32, seed=4)
    sizes = {}
    for dtype, min_cos in (("float32", 0.99999), ("float16", 0.99999), ("int8", 0.999)):
        rep = _export(ckpt, tmp_path / "out", weight_dtype=dtype)
        p = rep["parity"]["onnx"]
        assert p["min_cosine"] >= min_cos, (dtype, p)
        assert p["tolerance"]["min_cosine"] == min_cos
        path = Path(rep["files"][0]["path"])
        sizes[dtype] = path.stat().st_size
        proto = onnx.load(str(path))
        w = {i.name: i for i in proto.graph.initializer}
        node = next(n for n in proto.graph.node if n.op_type == "TVConv")
        assert w[node.input[1]].data_type == {"float32": 1, "float16": 10, "int8": 3}[dtype]
        assert (len(node.input) > 2 and node.input[2] != "") == (dtype == "int8")
    assert sizes["int8"] < sizes["float16"] < sizes["float32"]


@needs_kernels
def test_fused_matches_the_portable_export(tmp_path):
    """The same checkpoint as fused and col2im files: the same embeddings in ONNX Runtime."""
    from edgeconv import kernels
    from edgeconv.export.exporter import export_checkpoint

    ckpt = make_ckpt(tmp_path / "m.ckpt", size=32, seed=5)
    _export(ckpt, tmp_path)
    export_checkpoint(ckpt, formats="onnx", output_dir=tmp_path, formulation="col2im", **QUIET)
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    so = ort.SessionOptions()
    kernels.register(so)
    fused = ort.InferenceSession(str(tmp_path / "m_fused.onnx"), so).run(None, {"input": x})[0]
    plain = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"input": x})[0]
    assert np.abs(fused - plain).max() <= 1e-4


def test_fused_options_are_checked_up_front(tmp_path):
    from edgeconv.errors import EdgeconvError
    from edgeconv.export.exporter import export_checkpoint

    ckpt = tmp_path / "never-read.ckpt"
    with pytest.raises(EdgeconvError, match="needs --formulation fused"):
        export_checkpoint(ckpt, formats="onnx", formulation="col2im", weight_dtype="float16",
                          **QUIET)
    with pytest.raises(EdgeconvError, match="--weight-dtype must be one of"):
        export_checkpoint(ckpt, formats="onnx", formulation="fused", weight_dtype="bf16", **QUIET)
    with pytest.raises(EdgeconvError, match="needs --formulation fused"):  # TFLite: tapconv
        export_checkpoint(ckpt, formats="tflite", weight_dtype="int8", **QUIET)
    with pytest.raises(EdgeconvError, match="cannot be combined with --lowrank"):
        export_checkpoint(ckpt, formats="onnx", formulation="fused", lowrank=2, **QUIET)


def test_fused_export_without_the_library_gates_the_function_bodies(tmp_path):
    """The fused file no longer needs the library to be exported: its function bodies are
    gated in stock ONNX Runtime, the kernel run is reported as not run; the explicit
    --formulation fused keeps its _fused file name."""
    ckpt = make_ckpt(tmp_path / "m.ckpt", size=32)
    env = dict(os.environ, EDGECONV_KERNELS_LIB=str(tmp_path / "missing.so"))
    proc = subprocess.run([sys.executable, "-m", "edgeconv.cli", "export", str(ckpt), "--format",
                           "onnx", "--formulation", "fused", "-o", str(tmp_path / "o")],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "standard-op function bodies" in proc.stdout and "kernels are not built" in proc.stdout
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["m_fused.onnx",
                                                                  "m_fused.onnx.json"]


@needs_kernels
def test_fuse_model_is_idempotent_and_eager_equals_folded(tmp_path):
    import copy

    from edgeconv.ops.folding import fold_model
    from edgeconv.export.fused import FusedTVConv, fuse_model
    from edgeconv.models import create_model
    from test_ops import randomise

    model = randomise(create_model("mbv2_x0_1", op="tvconv", input_size=32,
                                   op_kwargs={"inter_channels": 8, "inter_layers": 1}), 2).eval()
    folded = fold_model(model, fuse_bn=True)
    fused = copy.deepcopy(folded)
    assert fuse_model(fused) == 17
    assert fuse_model(fused) == 0  # nothing left to fuse
    assert sum(isinstance(m, FusedTVConv) for m in fused.modules()) == 17
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert (fused(x) - folded(x)).abs().max() < 1e-4


MODELS = model_names("face", takes_op=True)  # every face model with TVConv


@needs_kernels
@pytest.mark.slow
@pytest.mark.parametrize("size", ["96", "112", "112x96"])
@pytest.mark.parametrize("name", MODELS)
def test_fused_parity_matrix(tmp_path, name, size):
    """Every registered model at 96x96, 112x112 and 112x96, randomised affinity maps and BN
    stats, batch 1 and 3: fp32 weights within 1e-4 / cosine 0.99999; fp16 and int8 reported."""
    from edgeconv.config import parse_input_size

    hw = tuple(parse_input_size(size))
    ckpt = make_ckpt(tmp_path / f"{name}.ckpt", name=name, size=hw, seed=hw[0] + hw[1])
    for dtype in ("float32", "float16", "int8"):
        rep = _export(ckpt, tmp_path / "out", weight_dtype=dtype)
        p = rep["parity"]["onnx"]
        print(f"FUSED PARITY {name} {size} {dtype}: max abs diff {p['max_abs_diff']:.2e}, "
              f"min cosine {p['min_cosine']:.9f} on {','.join(p['inputs'])}")
        assert p["passed"]
