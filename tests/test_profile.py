"""MACs profiler: the paper's table, the counting convention, per-layer numbers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("fvcore")

from edgeconv.ops.folding import fold_model  # noqa: E402
from edgeconv.models import create_model  # noqa: E402
from edgeconv.profiling.macs import count_macs, count_params  # noqa: E402
from edgeconv.profiling.report import PAPER_TABLE, profile_model  # noqa: E402


@pytest.mark.parametrize("name", list(PAPER_TABLE))
def test_macs_table_depthwise_and_folded_tvconv(name):
    paper_macs, paper_params = PAPER_TABLE[name]
    dw = create_model(name).eval()
    macs, analysis = count_macs(dw)
    assert abs(macs / 1e6 - paper_macs) < 0.01
    assert not analysis.unsupported_ops(), "an op was silently dropped"
    assert abs(count_params(dw) / 1e6 - paper_params) < 0.001
    tv = fold_model(create_model(name, op="tvconv", op_kwargs=dict(inter_channels=8,
                                                                   inter_layers=0)).eval())
    tv_macs, tv_analysis = count_macs(tv)
    assert abs(tv_macs / 1e6 - paper_macs) < 0.01
    assert not tv_analysis.unsupported_ops()


def test_profile_record_tvconv_generator_and_map():
    r = profile_model("mbv2_x0_1", "tvconv", layers=True)
    for key in ("model", "op", "input_size", "macs", "params_train", "params_inference",
                "tvconv_map_bytes"):
        assert key in r
    assert r["input_size"] == [96, 96]
    assert abs(r["macs"] / 1e6 - 22.47) < 0.01
    # cached map = depthwise MACs in floats (facts: ~4.1 M values, 16.3 MB fp32 for MB x0.1)
    assert 16.0e6 < r["tvconv_map_bytes"] < 16.6e6
    # generator left in the graph: ~4.2 GMACs per forward for MB x0.1
    assert 4.1e9 < r["generator_macs"] < 4.4e9
    assert r["macs_with_generator"] == r["macs"] + r["generator_macs"]
    assert sum(r["layers"].values()) == r["macs"]


def test_profile_depthwise_has_no_map_and_112_input_costs_more():
    r96 = profile_model("sfv2_x0_5", "depthwise")
    r112 = profile_model("sfv2_x0_5", "depthwise", input_size=(112, 112))
    assert r96["tvconv_map_bytes"] == 0 and "generator_macs" not in r96
    assert r112["macs"] > r96["macs"] * 1.3
    assert "paper_macs_m" not in r112


def test_profile_cli_json():
    out = subprocess.run([sys.executable, "-m", "edgeconv.cli", "profile", "mbv2_x0_1", "--op",
                          "depthwise", "--json"], capture_output=True, text=True, check=True)
    lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert rec["model"] == "mbv2_x0_1" and rec["op"] == "depthwise"
    assert rec["macs"] == 22474240 and rec["params_train"] == 324672


def test_param_counts_agree_everywhere(tmp_path):
    """One definition: info, profile (with the run's generator settings) and the export
    metadata give the same two numbers; the inference count is the ONNX graph's constants."""
    import numpy as np
    import onnx

    from edgeconv.export.exporter import export_checkpoint
    from edgeconv.profiling.report import profile_model
    from edgeconv.train.checkpoint import describe_checkpoint, init_checkpoint

    kw = {"inter_channels": 16, "inter_layers": 1}
    ck = init_checkpoint("mbv2_x0_1", op="tvconv", input_size=[32, 32], embedding_dim=512,
                         seed=0, output=tmp_path / "m.ckpt", op_kwargs=kw)
    info = describe_checkpoint(ck, as_json=True)
    prof = profile_model("mbv2_x0_1", "tvconv", (32, 32), op_kwargs=kw)
    # the standard-op form: its constants are the inference-form parameters (the default fused
    # file stores the per-pixel weights in the kernel's layout, padded to 8 columns)
    export_checkpoint(ck, formats="onnx", output_dir=tmp_path / "out", formulation="col2im",
                      echo=lambda *a: None)
    meta = json.loads((tmp_path / "out" / "m.onnx.json").read_text())
    for key in ("params_train", "params_inference"):
        assert info[key] == prof[key] == meta[key], key
    graph = onnx.load(str(tmp_path / "out" / "m.onnx")).graph
    consts = sum(int(np.prod(t.dims)) for t in graph.initializer)
    consts += sum(int(np.prod(a.t.dims)) for n in graph.node if n.op_type == "Constant"
                  for a in n.attribute if a.name == "value")
    # the graph adds shape and layout constants of its own (about 1 %)
    assert abs(consts - meta["params_inference"]) <= 0.02 * meta["params_inference"]
    assert prof["params_train"] > prof["params_inference"]    # generators > their cached maps
