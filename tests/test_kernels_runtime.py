"""The fused TVConv kernel on the device side: the embedder, bench and unlock commands load the
library by themselves for models of the ``edgeconv`` op domain (never for others), one line
where it is missing, ``edgeconv kernels [--path|--json]``, and all of it torch-free."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import _models  # noqa: E402

from edgeconv import kernels  # noqa: E402

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.skipif(
    not kernels.available(),
    reason="the edgeconv kernel library is not built here (python -m edgeconv.kernels.build)")

MISSING = {"EDGECONV_KERNELS_LIB": "/nonexistent"}
FAST = dict(warmup_runs=1, warmup_secs=0.0, min_runs=2, min_secs=0.0)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One small TVConv checkpoint exported twice: --formulation fused and col2im (~5 s)."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from edgeconv.export.exporter import export_checkpoint
    from edgeconv.train.checkpoint import init_checkpoint

    d = tmp_path_factory.mktemp("kernels_rt")
    ckpt = init_checkpoint("mbv2_x0_1", op="tvconv", input_size=32, output=d / "t.ckpt")
    quiet = lambda *a, **k: None  # noqa: E731
    export_checkpoint(ckpt, formats="onnx", output_dir=d / "fused", formulation="fused",
                      echo=quiet)
    export_checkpoint(ckpt, formats="onnx", output_dir=d / "col2im", formulation="col2im",
                      echo=quiet)
    fused = next((d / "fused").glob("*.onnx"))
    col2im = next((d / "col2im").glob("*.onnx"))
    # a fused file as exported before nodes carried function bodies: needs the library
    import onnx

    legacy = d / "legacy" / fused.name
    legacy.parent.mkdir()
    proto = onnx.load(str(fused))
    del proto.functions[:]
    legacy.write_bytes(proto.SerializeToString())
    shutil.copyfile(fused.with_name(fused.name + ".json"), legacy.with_name(legacy.name + ".json"))
    return {"dir": d, "fused": fused, "col2im": col2im, "legacy": legacy}


@pytest.fixture(scope="module")
def faces(exported):
    from edgeconv.data.images import save_image

    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8)
    paths = []
    for i, img in enumerate(imgs):
        p = exported["dir"] / f"face{i}.png"
        save_image(p, img)
        paths.append(p)
    return {"arrays": imgs, "paths": paths}


def cli(*args, env_extra=None, pythonpath_first=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "edgeconv.cli", *map(str, args)],
                          env=_models.cli_env(env_extra, pythonpath_first=pythonpath_first),
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_kernels_error(res, model_name):
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("edgeconv: error:")]
    assert len(lines) == 1, res.stderr
    assert lines[0] == f"edgeconv: error: {kernels.missing_message(model_name)}"
    assert "edgeconv.TVConv kernel" in lines[0] and "kernels.build" in lines[0]


# ----------------------------------------------------------------------------- detection
def test_only_edgeconv_domain_models_get_the_library(exported):
    from edgeconv.kernels import model_uses_kernels as uses_kernels
    from edgeconv.runtime.backends import open_model

    assert uses_kernels(exported["fused"])
    # every exported file carries the metadata key "edgeconv": that is no use of the domain
    assert not uses_kernels(exported["col2im"])
    assert not uses_kernels(exported["fused"].with_name(exported["fused"].name + ".json"))
    assert not uses_kernels(exported["dir"] / "nonexistent.onnx")
    with open_model(exported["fused"]) as m:
        assert m.uses_kernels
        # fused models run without ORT's NCHWc pass (its reorders around every kernel node)
        assert m.describe()["ort_disabled_optimizers"] == ["NchwcTransformer"]
    with open_model(exported["col2im"]) as m:
        assert not m.uses_kernels
        assert "ort_disabled_optimizers" not in m.describe()


def test_nchwc_ratio_against_a_hand_count():
    """The figure the exporter records: conv MACs (depthwise ones left out) per float that
    NCHWc reorders around the fused node would copy, counted by hand on a small graph."""
    onnx = pytest.importorskip("onnx")
    from onnx import helper, numpy_helper

    from edgeconv.export.fused_node import node_model
    from edgeconv.export.onnx_function import add_function_bodies
    from edgeconv.export.ort_layout import conv_macs_per_fused_float

    data, _, _ = node_model(8, (6, 6), 3, 1)
    proto = onnx.load_from_string(data)
    g = proto.graph
    rng = np.random.default_rng(0)
    # x4 -(1x1 4->8)-> x -[TVConv]-> y -(depthwise 3x3)-> d -(1x1 8->16)-> z
    g.input[0].CopyFrom(helper.make_tensor_value_info("x4", onnx.TensorProto.FLOAT, ["N", 4, 6, 6]))
    g.initializer.extend([
        numpy_helper.from_array(rng.standard_normal((8, 4, 1, 1)).astype(np.float32), "C1"),
        numpy_helper.from_array(rng.standard_normal((8, 1, 3, 3)).astype(np.float32), "DW"),
        numpy_helper.from_array(rng.standard_normal((16, 8, 1, 1)).astype(np.float32), "C2")])
    g.node.insert(0, helper.make_node("Conv", ["x4", "C1"], ["x"]))
    g.node.extend([helper.make_node("Conv", ["y", "DW"], ["d"], group=8, pads=[1, 1, 1, 1]),
                   helper.make_node("Conv", ["d", "C2"], ["z"])])
    g.output[0].CopyFrom(helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, None))
    assert add_function_bodies(proto) == 1
    macs = 8 * 36 * 4 + 16 * 36 * 8          # the two 1x1 convs; the depthwise one is not
    floats = 8 * 36 + 8 * 36                 # the fused node's input and output
    assert conv_macs_per_fused_float(proto.SerializeToString()) == pytest.approx(macs / floats)
    # no fused node: nothing to decide
    plain = helper.make_model(helper.make_graph(
        [helper.make_node("Conv", ["x4", "C1"], ["x"])], "plain", [g.input[0]],
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, None)], [g.initializer[-3]]))
    assert conv_macs_per_fused_float(plain.SerializeToString()) is None


@pytest.mark.parametrize("ratio,env,on", [
    (None, None, False), (10.1, None, False), (63.9, None, False), (64.0, None, True),
    (1163.7, None, True), (float("nan"), None, False), (True, None, False), ("999", None, False),
    (1163.7, "0", False), (10.1, "1", True)])
def test_nchwc_choice(ratio, env, on, monkeypatch):
    if env is None:
        monkeypatch.delenv("EDGECONV_ORT_NCHWC", raising=False)
    else:
        monkeypatch.setenv("EDGECONV_ORT_NCHWC", env)
    assert kernels.nchwc_wanted(ratio) is on
    assert ("disabled_optimizers" in kernels.session_kwargs(ratio)) is (not on)


def test_exported_file_records_the_nchwc_figure(exported, monkeypatch):
    """The recorded figure is the one computed from the file, and the session follows it."""
    from edgeconv.export.ort_layout import conv_macs_per_fused_float
    from edgeconv.metadata import read_onnx_metadata
    from edgeconv.runtime.backends import open_model

    monkeypatch.delenv("EDGECONV_ORT_NCHWC", raising=False)
    recorded = read_onnx_metadata(exported["fused"])["kernels"]["conv_macs_per_reordered_float"]
    assert recorded == pytest.approx(conv_macs_per_fused_float(exported["fused"].read_bytes()),
                                     abs=0.05)
    assert 0 < recorded < kernels.NCHWC_MIN_CONV_MACS_PER_FLOAT  # MB x0.1: off
    with open_model(exported["fused"]) as m:
        assert m.describe()["ort_disabled_optimizers"] == ["NchwcTransformer"]


def test_nchwc_policy_can_be_turned_back_on(exported, monkeypatch):
    from edgeconv.runtime.backends import open_model

    monkeypatch.setenv("EDGECONV_ORT_NCHWC", "1")
    with open_model(exported["fused"]) as m:
        assert "ort_disabled_optimizers" not in m.describe()


def test_a_kernel_refusal_is_reported_as_such(exported, monkeypatch):
    from edgeconv.runtime.backends import ModelFileError, open_model

    monkeypatch.setenv("EDGECONV_KERNEL_ISA", "no-such-isa")
    with pytest.raises(ModelFileError, match="edgeconv.TVConv: EDGECONV_KERNEL_ISA=no-such-isa"):
        open_model(exported["fused"])


# ----------------------------------------------------------------------------- embedder
def test_embedder_fused_matches_col2im(exported, faces):
    from edgeconv.runtime.embedder import Embedder

    with Embedder(exported["fused"]) as ef, Embedder(exported["col2im"]) as ec:
        assert ef.meta["kernels"]["op"] == "TVConv" and ef.meta["formulation"] == "fused"
        assert ef.model.uses_kernels and not ec.model.uses_kernels
        a, b = ef.embed(faces["arrays"]), ec.embed(faces["arrays"])
        assert a.shape == b.shape == (5, 512)
        assert float(np.abs(a - b).max()) <= 1e-4
        np.testing.assert_allclose(ef.embed([str(p) for p in faces["paths"]]), a, atol=1e-6)


def test_embedded_metadata_of_a_fused_model_without_sidecar(exported, tmp_path, monkeypatch):
    from edgeconv.metadata import load_metadata, read_onnx_metadata

    bare = tmp_path / "bare_fused.onnx"
    shutil.copyfile(exported["fused"], bare)
    meta = load_metadata(bare)  # no sidecar: read from the file's bytes
    assert meta["kernels"]["domain"] == "edgeconv" and meta["formulation"] == "fused"
    # reading metadata needs no runtime and no kernel library
    monkeypatch.setenv("EDGECONV_KERNELS_LIB", "/nonexistent")
    assert read_onnx_metadata(bare) == meta


def test_missing_library_in_process(exported, faces, monkeypatch):
    from edgeconv.runtime.embedder import Embedder

    monkeypatch.setenv("EDGECONV_KERNELS_LIB", "/nonexistent")
    with pytest.raises(kernels.KernelsMissing) as info:
        Embedder(exported["legacy"])  # no function bodies: the library is needed
    assert str(info.value) == kernels.missing_message(exported["legacy"].name)
    assert "\n" not in str(info.value)
    with Embedder(exported["fused"]) as ef:  # function bodies: runs them, no kernel
        assert not ef.model.uses_kernels
        assert ef.embed(faces["arrays"][:2]).shape == (2, 512)
    with Embedder(exported["col2im"]) as ec:  # a model that does not use it is unaffected
        assert ec.embed(faces["arrays"][:2]).shape == (2, 512)


# ----------------------------------------------------------------------------- bench
def test_bench_fused_one_configuration(exported):
    from edgeconv.profiling import bench as BN

    s = BN.BenchSettings(threads=[1], batches=[2], memory_batch=2, measure_spinning=False,
                         **FAST)
    report = BN.run_bench([exported["fused"]], s, progress=False)
    (m,) = report["models"]
    assert m["status"] == "ok", m["error"]
    (r,) = m["results"]
    assert r["status"] == "ok" and r["fps"] > 0, r
    (row,) = m["memory"]  # the memory child process registers the library too
    assert row["status"] == "ok" and row["peak_rss_mb"] > 0, row
    assert m["metadata"]["model"] == "mbv2_x0_1"
    info = kernels.info()
    assert m["kernels"] == {k: info[k] for k in ("version", "isa", "layout")}


def test_bench_missing_library_fails_once_per_model(exported, monkeypatch):
    from edgeconv.profiling import bench as BN

    monkeypatch.setenv("EDGECONV_KERNELS_LIB", "/nonexistent")
    logged = []
    s = BN.BenchSettings(threads=[1, 2], batches=[1, 2], memory_batch=1, measure_spinning=True,
                         **FAST)
    report = BN.run_bench([exported["legacy"], exported["col2im"]], s, progress=False,
                          log=logged.append)
    fused, col2im = report["models"]
    assert fused["status"] == "error"
    assert fused["error"] == kernels.missing_message(exported["legacy"].name)
    assert fused["results"] == [] and fused["memory"] == [] and fused["spinning"] is None
    assert logged == [f"edgeconv: error: {fused['error']}"]
    assert col2im["status"] == "ok" and all(r["status"] == "ok" for r in col2im["results"])
    assert "kernels" not in col2im


def test_bench_cli_missing_library_one_line_exit_2(exported, tmp_path):
    out = tmp_path / "r.json"
    res = cli("bench", exported["legacy"], exported["col2im"], "--threads", "1", "--batch", "1",
              "--min-runs", "2", "--min-secs", "0", "--warmup-secs", "0", "--memory-batch", "0",
              "--no-progress", "--json", out, env_extra=MISSING)
    assert_one_line_kernels_error(res, exported["legacy"].name)
    rep = json.loads(out.read_text())
    assert [m["status"] for m in rep["models"]] == ["error", "ok"]


# ----------------------------------------------------------------------------- unlock CLI
def test_unlock_commands_fused_and_missing_library(exported, faces, tmp_path):
    db = tmp_path / "t.db"
    face = faces["paths"][0]
    res = cli("enroll", exported["fused"], face, "--user", "alice", "--db", db)
    assert res.returncode == 0, res.stderr
    res = cli("verify", exported["fused"], face, "--user", "alice", "--db", db,
              "--threshold", "0.5")
    assert res.returncode == 0 and "ACCEPT" in res.stdout, (res.stdout, res.stderr)

    for args in (("verify", exported["legacy"], face, "--user", "alice", "--threshold", "0.5"),
                 ("enroll", exported["legacy"], face, "--user", "bob")):
        res = cli(*args, "--db", db, env_extra=MISSING)
        assert_one_line_kernels_error(res, exported["legacy"].name)
        assert res.stdout == ""
    res = cli("enroll", exported["col2im"], face, "--user", "carol", "--db", db,
              env_extra=MISSING)
    assert res.returncode == 0, res.stderr


# ----------------------------------------------------------------------------- edgeconv kernels
def test_kernels_command_outputs():
    from importlib import metadata

    info = kernels.info()
    res = cli("kernels")
    assert res.returncode == 0, res.stderr
    rows = dict(ln.split(":", 1) for ln in res.stdout.splitlines())
    rows = {k: v.strip() for k, v in rows.items()}
    assert rows["library"] == info["library"]
    assert rows["version"] == info["version"]
    assert rows["weight layout"] == ", ".join(info["layouts"])
    assert info["layouts"] == ["c_h_kk_w8", "c_kk_hw"] and info["op_versions"] == [1, 2]
    assert rows["op"] == "edgeconv.TVConv (writes version 2, reads 1..2)"
    assert rows["simd"].startswith(info["isa"])
    assert ", ".join(info["available_isas"]) in rows["simd"]
    assert f"ORT_API_VERSION {info['ort_api_version']}" in rows["ort headers"]
    assert rows["onnxruntime"].startswith(metadata.version("onnxruntime"))

    res = cli("kernels", "--path")
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"{kernels.library_path()}\n"
    assert Path(res.stdout.strip()).is_file()

    res = cli("kernels", "--json")
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert got.pop("onnxruntime_version") == metadata.version("onnxruntime")
    lite = got.pop("litert_delegate")  # the LiteRT delegate is reported beside the ORT library
    assert lite["op"] == "edgeconv.tvconv" and "available" in lite
    assert got == info

    res = cli("kernels", "--path", "--json")
    assert res.returncode == 2 and "exclusive" in res.stderr


def test_kernels_path_registers_in_plain_onnxruntime(exported):
    """The README snippet: a fused model from one's own ORT code."""
    import onnxruntime as ort

    path = cli("kernels", "--path").stdout.strip()
    so = ort.SessionOptions()
    so.register_custom_ops_library(path)
    sess = ort.InferenceSession(str(exported["fused"]), so, providers=["CPUExecutionProvider"])
    y = sess.run(None, {sess.get_inputs()[0].name: np.zeros((1, 3, 32, 32), np.float32)})[0]
    assert y.shape == (1, 512)


def test_kernels_command_missing_library_one_line_exit_2():
    res = cli("kernels", env_extra=MISSING)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    # the variable that points at nothing is named as such (not "not built")
    assert res.stderr.startswith("edgeconv: error: EDGECONV_KERNELS_LIB=/nonexistent: no such "
                                 "file")
    for flag in ("--path", "--json"):
        res = cli("kernels", flag, env_extra=MISSING)
        assert res.returncode == 2 and res.stdout == "", flag
        assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
        assert res.stderr.startswith("edgeconv: error: EDGECONV_KERNELS_LIB=/nonexistent: no "
                                     "such file")


# ----------------------------------------------------------------------------- torch-free
def test_fused_model_through_the_embedder_without_torch(exported, faces, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_models.BLOCK_TORCH_SITECUSTOMIZE)
    attempts = tmp_path / "torch-attempts.log"
    extra = {"EDGECONV_TORCH_ATTEMPTS": str(attempts)}
    code = (
        "import sys\n"
        "from edgeconv.runtime.embedder import Embedder\n"
        "with Embedder(sys.argv[1]) as e:\n"
        "    assert e.model.uses_kernels\n"
        "    print(e.embed(sys.argv[2:]).shape)\n"
        "assert 'torch' not in sys.modules\n"
    )
    env = _models.cli_env(extra, pythonpath_first=str(site))
    probe = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True,
                           text=True)
    assert probe.returncode != 0 and "blocked" in probe.stderr  # the hook is active
    attempts.unlink()
    res = subprocess.run([sys.executable, "-c", code, str(exported["fused"]),
                          *map(str, faces["paths"][:2])],
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "(2, 512)"
    res = cli("kernels", env_extra=extra, pythonpath_first=str(site))
    assert res.returncode == 0, res.stderr
    assert not attempts.exists(), attempts.read_text()
