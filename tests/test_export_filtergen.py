"""filtergen through export: its filters are computed per image inside the exported graph.

Fast: ONNX (dynamic batch, parity-gated) of filtergen MobileNetV2 and ShuffleNetV2 at small
width. Slow (``-m slow``): every registered model, and TFLite (fixed batch 1: litert-torch's
dynamic-batch file cannot be resized through the per-image filter reshapes).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

sys.path.insert(0, str(Path(__file__).parent))
from test_ops import randomise  # noqa: E402

FG = dict(feature_dim=8, repository_size=4)


def make_fg_ckpt(path, name, size=32):
    from edgeconv.models import create_model
    from edgeconv.ops.filtergen import FilterGenConv
    from edgeconv.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = randomise(create_model(name, op="filtergen", input_size=size, op_kwargs=FG)).eval()
    with torch.no_grad():  # a strong per-image part, as after training
        for m in model.modules():
            if isinstance(m, FilterGenConv):
                m.mapping.weight.normal_(0, 1.0)
    save_checkpoint(path, model)
    return path, model


def _export_and_check(tmp_path, name, formats="onnx", batch="dynamic"):
    from edgeconv.export.exporter import export_checkpoint
    from edgeconv.metadata import load_metadata

    ckpt, model = make_fg_ckpt(tmp_path / f"{name}.ckpt", name)
    rep = export_checkpoint(ckpt, formats=formats, output_dir=tmp_path / "out", batch=batch,
                            echo=lambda *a, **k: None)
    for fmt in formats.split(","):
        parity = rep["parity"][fmt]
        assert parity["passed"] and parity["min_cosine"] >= 0.99999
        path = tmp_path / "out" / f"{name}.{fmt}"
        assert path.exists()
        assert load_metadata(path)["op"] == "filtergen"
    return tmp_path / "out" / f"{name}.onnx", model


@pytest.mark.parametrize("name", ["mbv2_x0_1", "sfv2_x0_5"])
def test_filtergen_onnx_per_image_filters(tmp_path, name):
    onnx_path, model = _export_and_check(tmp_path, name)
    proto = onnx.load(str(onnx_path))
    ops = {n.op_type for n in proto.graph.node}
    assert "MatMul" in ops or "Gemm" in ops  # coefficients x repository, per image
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1, 3, 32, 32)).astype(np.float32)
    b = rng.standard_normal((1, 3, 32, 32)).astype(np.float32)
    alone = sess.run(None, {sess.get_inputs()[0].name: a})[0]
    pair = sess.run(None, {sess.get_inputs()[0].name: np.concatenate([a, b])})[0]
    with torch.no_grad():
        ref = model(torch.from_numpy(np.concatenate([a, b]))).numpy()
    # per-image: image A's embedding does not depend on its batch companion ...
    assert np.abs(pair[:1] - alone).max() < 1e-4 * max(1.0, np.abs(alone).max())
    # ... and the exported graph matches the eager model at batch 2
    assert np.abs(pair - ref).max() < 1e-4 * max(1.0, np.abs(ref).max())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mbv2_x0_1", "mbv2_x0_2", "mbv2_x0_3", "mbv2_x0_5", "mbv2_x1_0",
                                  "sfv2_x0_5", "sfv2_x1_0", "sfv2_x1_5"])
def test_filtergen_onnx_every_model(tmp_path, name):
    _export_and_check(tmp_path, name)


@pytest.mark.slow
def test_filtergen_tflite_fixed_batch(tmp_path):
    pytest.importorskip("litert_torch")
    _export_and_check(tmp_path, "mbv2_x0_1", formats="onnx,tflite", batch="1")
