"""The whole export parity matrix (slow: run with ``pytest -m slow tests/test_export_slow.py``).

Every registered model x op (depthwise, tvconv) at 96x96 and 112x112 (stride-2 layers
included), exported to ONNX and TFLite, run in ONNX Runtime and the LiteRT interpreter at
batch 1 and 3, against the eager model with randomised affinity maps and BatchNorm stats:
max abs diff <= 1e-4 and embedding cosine >= 0.99999. TFLite conversion takes minutes per
model on 2 cores: expect a long run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")

sys.path.insert(0, str(Path(__file__).parent))
from test_cli import run_cli  # noqa: E402
from test_export import make_ckpt  # noqa: E402

pytestmark = pytest.mark.slow

from edgeconv.models.registry import model_names, model_spec  # noqa: E402

# every registered face model an op goes into (a new one is in the matrix by registering it)
MODELS = model_names("face", takes_op=True)


def test_matrix_covers_every_registered_model():
    assert len(MODELS) >= 8 and all(model_spec(m).task == "face" for m in MODELS)


@pytest.mark.parametrize("size", [96, 112])
@pytest.mark.parametrize("op", ["depthwise", "tvconv"])
@pytest.mark.parametrize("name", MODELS)
def test_export_parity_matrix(tmp_path, name, op, size):
    from edgeconv.export.exporter import export_checkpoint

    ckpt = make_ckpt(tmp_path / f"{name}.ckpt", name=name, op=op, size=size, seed=size)
    if model_spec(name).pins_batch:
        # e.g. ShuffleNetV2's channel shuffle pins the batch in a TFLite file (known
        # limitation, test_shufflenet_tflite_dynamic_batch_refused): TFLite at a fixed batch
        rep = export_checkpoint(ckpt, formats="onnx", output_dir=tmp_path / "out",
                                echo=lambda *a: None)
        rep_t = export_checkpoint(ckpt, formats="tflite", output_dir=tmp_path / "out",
                                  batch="3", echo=lambda *a: None)
        rep["parity"]["tflite"] = rep_t["parity"]["tflite"]
    else:
        rep = export_checkpoint(ckpt, formats="onnx,tflite", output_dir=tmp_path / "out",
                                echo=lambda *a: None)
    for fmt in ("onnx", "tflite"):
        p = rep["parity"][fmt]
        print(f"PARITY {name} {op} {size} {fmt}: max abs diff {p['max_abs_diff']:.2e}, "
              f"min cosine {p['min_cosine']:.9f}")  # visible with -s
        assert p["max_abs_diff"] <= 1e-4, (fmt, p)
        assert p["min_cosine"] >= 0.99999, (fmt, p)
        assert {"faces_b3", "random_b3"} <= set(p["inputs"])
    assert sorted(f.name for f in (tmp_path / "out").iterdir()) == sorted(
        [f"{name}.onnx", f"{name}.onnx.json", f"{name}.tflite", f"{name}.tflite.json"])


def test_shufflenet_tflite_dynamic_batch_refused(tmp_path):
    ckpt = make_ckpt(tmp_path / "s.ckpt", name="sfv2_x0_5", op="tvconv", size=96)
    res = run_cli("export", ckpt, "--format", "tflite", "-o", tmp_path / "o")
    assert res.returncode == 2 and "--batch N" in res.stderr and "channel shuffle" in res.stderr
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_cli_fp16_tflite(tmp_path):
    ckpt = make_ckpt(tmp_path / "m.ckpt", name="mbv2_x0_5", op="tvconv", size=96)
    res = run_cli("export", ckpt, "--format", "tflite", "--fp16", "-o", tmp_path / "o", "--json")
    assert res.returncode == 0, res.stderr
    rep = json.loads(res.stdout.strip().splitlines()[-1])
    assert rep["parity"]["tflite"]["min_cosine"] >= 0.999
    meta = json.loads((tmp_path / "o" / "m_fp16.tflite.json").read_text())
    assert meta["precision"] == "float16-weights" and meta["fp16_tensors"] > 0
