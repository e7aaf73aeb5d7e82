"""Hostile inputs, class 5: no exit 0 on failure, no false "done". A bench whose every
configuration failed exits 2; resuming a finished run (with or without a larger --epochs)
is refused in one line and writes nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _hostile import cli, refused  # noqa: E402


def _failing_model(path: Path) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Reshape", ["input", "shape"], ["embedding"])], "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 96, 96])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 32])],
        [numpy_helper.from_array(np.array([-1, 7], np.int64), "shape")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def test_bench_with_every_configuration_failed_exits_nonzero(tmp_path):
    pytest.importorskip("onnxruntime")
    m = _failing_model(tmp_path / "bad.onnx")
    res = cli("bench", m, "--no-progress", "--memory-batch", "0", "--threads", "1",
              "--batch", "1,2", "--min-runs", "1", "--min-secs", "0", "--warmup-secs", "0",
              "--warmup-runs", "0", "--json", tmp_path / "r.json")
    refused(res, "every configuration failed for bad.onnx")
    assert (tmp_path / "r.json").exists()  # the report (with the reasons) is still written


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("run") / "run"
    res = cli("train", "--model", "mbv2_x0_1", "--op", "depthwise", "--input-size", "32",
              "--identities", "4", "--images-per-identity", "2", "--epochs", "1",
              "--batch-size", "8", "--val", "none", "--threads", "1", "--no-progress",
              "-o", out, timeout=300)
    assert res.returncode == 0, res.stderr
    return out


@pytest.mark.parametrize("extra,pattern", [
    (["--epochs", "3"], "--epochs 3 with --resume"),
    ([], "the run is complete (epoch 1 of 1)"),
])
def test_resume_of_a_finished_run_refused(finished_run, tmp_path, extra, pattern):
    before = (finished_run / "last.ckpt").read_bytes()
    res = cli("train", "--resume", finished_run / "last.ckpt", *extra, "-o", tmp_path / "run2",
              "--no-progress", timeout=120)
    refused(res, pattern)
    assert "done" not in res.stdout
    assert not (tmp_path / "run2").exists()
    assert (finished_run / "last.ckpt").read_bytes() == before
