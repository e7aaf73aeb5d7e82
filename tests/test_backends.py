"""edgeconv.runtime.backends: open ONNX / TFLite files, shapes, batches, clear file errors."""

from __future__ import annotations

import os
import sys
import types

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import _models  # noqa: E402

from edgeconv.errors import EdgeconvError  # noqa: E402
from edgeconv.runtime import backends as B  # noqa: E402

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    return {
        "dyn": _models.make_onnx(d / "dyn.onnx"),
        "fixed": _models.make_onnx(d / "fixed.onnx", batch=1),
        "spatial": _models.make_onnx(d / "spatial.onnx", spatial=("H", "W")),
        "two": _models.make_onnx(d / "two.onnx", two_inputs=True),
    }


def test_onnx_dynamic_batch_runs_and_matches_reference(onnx_files):
    with B.open_model(onnx_files["dyn"], threads=2) as m:
        assert m.backend == "onnxruntime" and m.threads == 2
        assert m.input_name == "input" and m.output_name == "embedding"
        assert m.declared_input_shape == (None, 3, 16, 16)
        assert m.dynamic_batch is True
        assert m.input_dtype == np.float32
        for batch in (1, 5):
            shape = m.set_batch(batch)
            assert shape == (batch, 3, 16, 16)
            x = B.random_input(shape, m.input_dtype, seed=batch)
            y = m.run(x)
            assert y.shape == (batch, _models.C_OUT)
            np.testing.assert_allclose(y, _models.reference_forward(x), rtol=1e-4, atol=1e-5)


def test_onnx_spinning_setting_is_applied(onnx_files):
    for flag in (True, False):
        with B.open_model(onnx_files["dyn"], threads=2, allow_spinning=flag) as m:
            assert m.allow_spinning is flag
            assert m.run(np.zeros((1, 3, 16, 16), np.float32)).shape == (1, _models.C_OUT)


def test_fixed_batch_refuses_other_batches(onnx_files):
    with B.open_model(onnx_files["fixed"]) as m:
        assert m.dynamic_batch is False
        assert m.set_batch(1) == (1, 3, 16, 16)
        with pytest.raises(B.UnsupportedConfig) as exc:
            m.set_batch(4)
        assert exc.value.kind == "unsupported_batch"
        assert "fixed batch 1" in str(exc.value)


def test_symbolic_spatial_dims_need_an_input_size(onnx_files):
    with B.open_model(onnx_files["spatial"]) as m:
        with pytest.raises(B.UnsupportedConfig) as exc:
            m.set_batch(2)
        assert exc.value.kind == "unsupported_input"
        assert m.set_batch(2, input_size=(16, 16)) == (2, 3, 16, 16)
        x = np.ones((2, 3, 16, 16), np.float32)
        np.testing.assert_allclose(m.run(x), _models.reference_forward(x), rtol=1e-4, atol=1e-5)


def test_multi_input_model_is_refused_clearly(onnx_files):
    with pytest.raises(B.UnsupportedConfig, match="2 inputs"):
        B.open_model(onnx_files["two"])


@pytest.mark.parametrize("content, suffix, message", [
    (None, ".onnx", "no such file"),
    (b"", ".onnx", "empty file"),
    (b"this is not a protobuf at all \xff\xfe" * 4, ".onnx", "not a readable ONNX model"),
    (b"\x00" * 64, ".tflite", "not a TFLite model"),
    (b"garbage-bytes", ".bin", "unknown model type"),
])
def test_bad_files_raise_model_file_error_naming_the_file(tmp_path, content, suffix, message):
    path = tmp_path / f"bad{suffix}"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(B.ModelFileError) as exc:
        B.open_model(path)
    assert message in str(exc.value)
    assert str(path) in str(exc.value)
    assert isinstance(exc.value, EdgeconvError)


def test_truncated_onnx_is_a_model_file_error(onnx_files, tmp_path):
    data = onnx_files["dyn"].read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(B.ModelFileError, match="not a readable ONNX model"):
        B.open_model(cut)


def test_directory_is_not_a_model(tmp_path):
    d = tmp_path / "dir.onnx"
    d.mkdir()
    with pytest.raises(B.ModelFileError, match="not a file"):
        B.check_model_file(d)


def test_backend_names_and_mismatch(onnx_files):
    assert B.normalize_backend("ORT") == "onnxruntime"
    assert B.normalize_backend("litert") == "tflite"
    with pytest.raises(EdgeconvError, match="unknown backend"):
        B.normalize_backend("tensorrt")
    with pytest.raises(EdgeconvError, match="cannot run a onnxruntime model"):
        B.open_model(onnx_files["dyn"], backend="tflite")
    with pytest.raises(EdgeconvError, match="threads 0: must be at least 1"):
        B.open_model(onnx_files["dyn"], threads=0)


def test_random_input_dtypes_are_deterministic():
    a = B.random_input((2, 3), np.float32, seed=1)
    assert a.dtype == np.float32 and np.array_equal(a, B.random_input((2, 3), np.float32, 1))
    q = B.random_input((100,), np.uint8)
    assert q.dtype == np.uint8 and q.max() > 128
    s = B.random_input((100,), np.int8)
    assert s.dtype == np.int8 and s.min() < 0


def test_tflite_backend_resizes_batch_and_matches_reference(tflite_file):
    with B.open_model(tflite_file, threads=2) as m:
        assert m.backend == "tflite"
        assert m.runtime in B.TFLITE_RUNTIMES
        assert m.declared_input_shape == (1, 3, 16, 16)
        for batch in (1, 3):
            shape = m.set_batch(batch)
            assert shape == (batch, 3, 16, 16)
            x = B.random_input(shape, m.input_dtype, seed=batch)
            y = m.run(x)
            assert y.shape == (batch, _models.C_OUT)
            np.testing.assert_allclose(y, _models.reference_forward(x), rtol=1e-4, atol=1e-5)


def test_truncated_tflite_is_a_model_file_error(tflite_file, tmp_path):
    data = tflite_file.read_bytes()
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(B.ModelFileError, match="not a readable TFLite model"):
        B.open_model(cut)


def test_tflite_detected_by_identifier_without_suffix(tflite_file, tmp_path):
    other = tmp_path / "model.bin"
    other.write_bytes(tflite_file.read_bytes())
    assert B.backend_for_path(other) == "tflite"


def test_tflite_falls_back_to_tflite_runtime(monkeypatch):
    """With ai-edge-litert unimportable, a tflite_runtime module is used instead."""
    fake_pkg = types.ModuleType("tflite_runtime")
    fake_interp = types.ModuleType("tflite_runtime.interpreter")
    fake_interp.Interpreter = object
    fake_pkg.interpreter = fake_interp
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime", fake_pkg)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", fake_interp)
    mod, name = B.import_runtime("tflite")
    assert name == "tflite-runtime" and mod is fake_interp


def test_no_tflite_runtime_is_a_clear_error(monkeypatch):
    for name in ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime",
                 "tflite_runtime.interpreter"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(EdgeconvError, match="no TFLite interpreter"):
        B.import_runtime("tflite")


def test_forced_runtime_order(monkeypatch):
    from edgeconv.runtime import runtimes as R

    monkeypatch.setenv(B.TFLITE_RUNTIME_ENV, "tflite-runtime")
    assert R._tflite_order() == ("tflite-runtime", "ai-edge-litert")
    monkeypatch.delenv(B.TFLITE_RUNTIME_ENV)
    assert R._tflite_order()[0] == "ai-edge-litert"
