"""The runtime on files written by the real exporter (slow: minutes; `pytest -m slow`).

An untrained checkpoint does not separate identities, so this checks the plumbing:
metadata (sidecar and embedded, ONNX and TFLite), preprocessing, ONNX/TFLite agreement
and the CLI flow with an explicit threshold.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _unlock_models as TM  # noqa: E402
from test_unlock import cli  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    pytest.importorskip("litert_torch")
    from edgeconv.export.exporter import export_checkpoint
    from edgeconv.train.checkpoint import init_checkpoint

    d = tmp_path_factory.mktemp("export")
    ckpt = init_checkpoint("mbv2_x0_1", op="tvconv", input_size=None, embedding_dim=512,
                           seed=0, output=d / "tiny.ckpt")
    export_checkpoint(ckpt, formats="onnx,tflite", output_dir=d / "out", echo=lambda *a: None)
    return d / "out"


def test_runtime_reads_exported_models(exported, tmp_path):
    from edgeconv.runtime.embedder import Embedder
    from edgeconv.metadata import read_tflite_metadata

    faces = TM.render([0, 1], [0, 0])
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in ("tiny.onnx", "tiny.tflite"):
        shutil.copy(exported / f, bare / f)  # no sidecar: embedded metadata only
    assert read_tflite_metadata(bare / "tiny.tflite")["model"] == "mbv2_x0_1"
    outs = []
    for p in (exported / "tiny.onnx", exported / "tiny.tflite", bare / "tiny.onnx",
              bare / "tiny.tflite"):
        with Embedder(p) as e:
            assert e.has_metadata and e.input_size == (96, 96) and e.embedding_dim == 512
            assert e.name == "mbv2_x0_1"
            outs.append(e.embed(faces))
    for o in outs[1:]:
        np.testing.assert_allclose(o, outs[0], atol=1e-4)


def test_cli_flow_on_exported_model(exported, tmp_path):
    db = tmp_path / "t.db"
    img = tmp_path / "a.png"
    from edgeconv.data.images import save_image

    save_image(img, TM.render([0], [0])[0])
    model = exported / "tiny.onnx"
    assert cli("enroll", model, "--user", "a", "--db", db, img)[0] == 0
    code, _, err = cli("verify", model, "--user", "a", "--db", db, img)
    assert code == 2 and "no calibrated" in err  # an untrained export has no calibration
    code, out, _ = cli("verify", model, "--user", "a", "--db", db, "--threshold", "0.5", img)
    assert code == 0 and "mbv2_x0_1 tvconv x0.1 (onnx)" not in out
    code, _, err = cli("verify", exported / "tiny.tflite", "--user", "a", "--db", db,
                       "--threshold", "0.5", img)
    assert code == 2 and "mbv2_x0_1 tvconv x0.1 (onnx)" in err and "cannot be compared" in err
    code, out, _ = cli("users", "list", "--db", db)
    assert code == 0 and "mbv2_x0_1 tvconv x0.1 (onnx)" in out    # op, width and format shown
