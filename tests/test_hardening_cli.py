"""CLI refusals: one line on stderr, exit 2, no traceback, nothing written.

Models that would need gigabytes or output no embedding, training folders with one identity,
and resuming that would move a run backwards or write where -o did not say.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _unlock_models as TM  # noqa: E402

from edgeconv.data.images import save_image  # noqa: E402

from test_cli import run_in_process  # noqa: E402

onnx = pytest.importorskip("onnx")


def cli(*args):
    res = run_in_process(*map(str, args))
    return res.returncode, res.stdout, res.stderr


def one_line_error(code, err, pattern):
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert pattern in err, err


def _onnx(path, in_shape, out_shape, meta=None):
    from onnx import TensorProto, helper

    nodes = [helper.make_node("ReduceMean", ["input"], ["embedding"], keepdims=0,
                              axes=list(range(1, len(in_shape))) if len(out_shape) == 1
                              else [2, 3])]
    graph = helper.make_graph(nodes, "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                             in_shape)],
                              [helper.make_tensor_value_info("embedding", TensorProto.FLOAT,
                                                             out_shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    if meta is not None:
        helper.set_model_props(model, {"edgeconv": json.dumps(meta)})
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def face(tmp_path_factory):
    d = tmp_path_factory.mktemp("f")
    return save_image(d / "a.png", TM.render([0], [0])[0])


@pytest.mark.parametrize("in_shape,out_shape,pattern", [
    ([200000, 3, 96, 96], [200000, 3], "GiB per run"),           # fixed batch: 22 GB
    ([1, 3, 100000, 100000], [1, 3], "larger than 4096 pixels"),
    (["N", 3, 96, 96], ["N"], "an embedding model outputs a vector"),  # scalar per image
])
def test_models_refused_before_allocating(tmp_path, face, in_shape, out_shape, pattern):
    m = _onnx(tmp_path / "m.onnx", in_shape, out_shape)
    for cmd in (["identify", m, "--db", tmp_path / "t.db", face],
                ["enroll", m, "--user", "zed", "--db", tmp_path / "t.db", face]):
        code, _, err = cli(*cmd)
        one_line_error(code, err, pattern)
    assert not (tmp_path / "t.db").exists()


def test_scalar_output_at_run_time_refused(tmp_path, face):
    # declared [N, 3] but really one number per image: caught when the output arrives
    from onnx import TensorProto, helper

    nodes = [helper.make_node("ReduceMean", ["input"], ["embedding"], keepdims=0)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "input", TensorProto.FLOAT, ["N", 3, 96, 96])], [helper.make_tensor_value_info(
            "embedding", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    m = tmp_path / "s.onnx"
    onnx.save(model, str(m))
    code, _, err = cli("identify", m, "--db", tmp_path / "t.db", face)
    one_line_error(code, err, "vector per image")


def test_wrong_type_metadata_one_line(tmp_path, face):
    m = _onnx(tmp_path / "w.onnx", ["N", 3, 96, 96], ["N", 3],
              meta={"input_size": "ninety-six", "std": [0.5, 0.5, 0.5]})
    code, _, err = cli("identify", m, "--db", tmp_path / "t.db", face)
    one_line_error(code, err, "metadata input_size")


# ----------------------------------------------------------------------------- training
def test_train_on_one_identity_refused(tmp_path):
    root = tmp_path / "faces"
    for i in range(3):
        save_image(root / "only_alice" / f"{i}.png", TM.render([0], [i])[0])
    code, _, err = cli("train", "--data", root, "--input-size", "32", "--epochs", "1",
                       "-o", tmp_path / "run", "--no-progress")
    one_line_error(code, err, "holds 1 identity")
    assert not (tmp_path / "run").exists()


TINY_CLI = ["--input-size", "32", "--tvconv-inter-channels", "8", "--tvconv-inter-layers", "1",
            "--identities", "8", "--images-per-identity", "4", "--batch-size", "16",
            "--val-pairs", "40", "--no-progress", "--threads", "1"]


@pytest.fixture(scope="module")
def run_two_epochs(tmp_path_factory):
    """RUN after 2 epochs, with RUN/old.ckpt a copy of the state after epoch 1."""
    run = tmp_path_factory.mktemp("resume") / "run"
    code, _, err = cli("train", *TINY_CLI, "--epochs", "1", "-o", run)
    assert code == 0, err
    shutil.copy(run / "last.ckpt", run / "old.ckpt")
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["epochs"] == 1
    return run


def test_resume_never_moves_last_backwards(run_two_epochs, tmp_path):
    pytest.importorskip("torch")
    from edgeconv.train.checkpoint import load_checkpoint, save_checkpoint

    run = tmp_path / "run"
    shutil.copytree(run_two_epochs, run)
    # make last.ckpt further on than old.ckpt (epoch 2 of a 3-epoch run)
    ck = load_checkpoint(run / "last.ckpt")
    ck["training"]["epoch"] = 2
    save_checkpoint(run / "last.ckpt", ck)
    before = (run / "last.ckpt").read_bytes()
    code, _, err = cli("train", "--resume", run / "old.ckpt")
    one_line_error(code, err, "would move the run back")
    assert (run / "last.ckpt").read_bytes() == before


def test_resume_writes_where_o_says_and_says_so(run_two_epochs, tmp_path):
    pytest.importorskip("torch")
    from edgeconv.train.checkpoint import load_checkpoint, save_checkpoint

    run = tmp_path / "run"
    shutil.copytree(run_two_epochs, run)
    ck = load_checkpoint(run / "old.ckpt")
    ck["training"]["config"]["epochs"] = 2                 # one more epoch to go
    save_checkpoint(run / "old.ckpt", ck)
    before = (run / "last.ckpt").read_bytes()
    (run / ".last.ckpt.abc123.tmp").write_bytes(b"")        # what a kill -9 leaves
    new = tmp_path / "branch"
    code, out, err = cli("train", "--resume", run / "old.ckpt", "-o", new)
    assert code == 0, err
    assert f"resuming from {run / 'old.ckpt'} (epoch 1), writing to {new}" in out + err
    assert f"-> {new / 'last.ckpt'}" in out
    assert load_checkpoint(new / "last.ckpt")["training"]["epoch"] == 2
    assert (run / "last.ckpt").read_bytes() == before       # the original run is untouched
    # resuming in place cleans the stale temporary file
    ck2 = load_checkpoint(run / "last.ckpt")
    ck2["training"]["config"]["epochs"] = 2
    save_checkpoint(run / "last.ckpt", ck2)
    code, out, err = cli("train", "--resume", run)
    assert code == 0, err
    assert not (run / ".last.ckpt.abc123.tmp").exists()
    assert "removed 1 temporary file(s)" in out + err
