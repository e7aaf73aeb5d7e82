"""Hostile inputs, class 4: what used to end in a traceback ends in one line and exit 2:
metadata nested 100,000 deep or holding a non-UTF-8 byte (ONNX metadata_props, TFLite
metadata, the sidecar), a face model labelled a translator, an external-data location with a
NUL byte, and any error the runtime raises while running the user's file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _unlock_models as TM  # noqa: E402
from _hostile import cli, refused  # noqa: E402

from edgeconv.data.images import save_image  # noqa: E402
from edgeconv.errors import EdgeconvError  # noqa: E402
from edgeconv.metadata import parse_metadata_json  # noqa: E402

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

DEEP = '{"model": "x", "deep": ' + "[" * 100_000 + "]" * 100_000 + "}"


@pytest.fixture(scope="module")
def face(tmp_path_factory):
    return save_image(tmp_path_factory.mktemp("f") / "a.png", TM.render([0], [0])[0])


def _with_props(path: Path, value: str, sidecar: bool = False) -> Path:
    """The tiny model with metadata_props['edgeconv'] = value (no sidecar)."""
    m = onnx.load(str(TM.model_dir() / "face.onnx"))
    del m.metadata_props[:]
    onnx.helper.set_model_props(m, {"edgeconv": value})
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(path))
    return path


def _enroll(tmp_path, model, face, *extra):
    return cli("enroll", model, face, "--user", "zed", "--db", tmp_path / "t.db", *extra)


@pytest.mark.parametrize("raw,pattern", [
    (DEEP.encode(), "nested deeper than"),
    (b'{"model": "\xff"}', "not UTF-8"),
    (b'{"model": ', "corrupt"),
    (b"[1, 2]", "must be a JSON object"),
])
def test_parser_bounds(raw, pattern):
    with pytest.raises(EdgeconvError, match=pattern):
        parse_metadata_json(raw, "m.onnx")


def test_onnx_metadata_nested_100000_deep(tmp_path, face):
    model = _with_props(tmp_path / "m" / "face.onnx", DEEP)
    refused(_enroll(tmp_path, model, face), "nested deeper than")


def test_onnx_metadata_not_utf8(tmp_path, face):
    model = _with_props(tmp_path / "m" / "face.onnx", '{"model": "MARKER"}')
    data = model.read_bytes()
    assert data.count(b"MARKER") == 1
    model.write_bytes(data.replace(b"MARKER", b"MA\xffKER"))
    refused(_enroll(tmp_path, model, face), "UTF-8")


@pytest.mark.parametrize("raw,pattern", [(DEEP.encode(), "nested deeper than"),
                                         (b'{"model": "\xfe\xff"}', "not UTF-8")])
def test_sidecar_hostile(tmp_path, face, raw, pattern):
    model = TM.make_model(tmp_path / "m" / "face.onnx", embed=False)
    (model.parent / "face.onnx.json").write_bytes(raw)
    refused(_enroll(tmp_path, model, face), pattern)


@pytest.mark.parametrize("raw,pattern", [(DEEP.encode(), "nested deeper than"),
                                         (b'{"a": "\xc3\x28"}', "not UTF-8")])
def test_tflite_metadata_hostile(monkeypatch, raw, pattern):
    from edgeconv.metadata import files as metadata

    monkeypatch.setattr(metadata, "_tflite_metadata_bytes", lambda buf, name: raw)
    with pytest.raises(EdgeconvError, match=pattern):
        metadata.tflite_metadata_from_bytes(b"\0" * 16, "m.tflite")


def test_face_model_labelled_translator(tmp_path, face):
    meta = {"format_version": 1, "kind": "translator", "direction": "nir2rgb",
            "input_size": [96, 96], "model": "fake"}
    tr = _with_props(tmp_path / "t" / "tr.onnx", json.dumps(meta))
    res = _enroll(tmp_path, TM.model_dir() / "face.onnx", face, "--translate", tr)
    refused(res, "labelled a translator")


def test_external_data_location_with_nul(tmp_path, face):
    from onnx import TensorProto

    m = onnx.load(str(TM.model_dir() / "face.onnx"))
    t = next(i for i in m.graph.initializer if i.name == "proj")
    t.ClearField("raw_data")
    del t.float_data[:]
    t.data_location = TensorProto.EXTERNAL
    e = t.external_data.add()
    e.key, e.value = "location", "we\0ights.bin"
    p = tmp_path / "m" / "face.onnx"
    p.parent.mkdir()
    p.write_bytes(m.SerializeToString())
    refused(_enroll(tmp_path, p, face), "external data")


def test_runtime_error_while_running(tmp_path, face):
    """A model that loads but fails on every input (a reshape that cannot hold)."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Reshape", ["input", "shape"], ["embedding"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 96, 96])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 32])],
        [numpy_helper.from_array(np.array([-1, 7], np.int64), "shape")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    p = tmp_path / "m" / "bad.onnx"
    p.parent.mkdir()
    onnx.save(m, str(p))
    err = refused(_enroll(tmp_path, p, face), "the runtime failed running the model")
    assert "\x1b[" not in err


@pytest.mark.parametrize("attrs,msg", [
    ({"kernel_size": (1 << 32) + 3}, "kernel_size 4294967299"),
    ({"stride": (1 << 32) + 1}, "stride 4294967297"),
    ({"kernel_size": 5}, "do not fit kernel_size 5"),
])
def test_fused_node_attributes_that_disagree_are_refused_at_open(tmp_path, attrs, msg):
    """A fused node whose attributes disagree with its tensors: one line when the file is
    opened (attributes >= 2^32 do not wrap), never an ORT InvalidArgument at run time."""
    pytest.importorskip("onnx")
    import sys as _sys
    from pathlib import Path as _P

    _sys.path.insert(0, str(_P(__file__).resolve().parent))
    import _kernels

    from edgeconv.runtime.backends import ModelFileError, open_model

    data, _, _ = _kernels.node_model(8, (12, 12), 3, 1, attrs=attrs)
    path = tmp_path / "bad_fused.onnx"
    path.write_bytes(data)
    with pytest.raises(ModelFileError) as info:
        open_model(path)
    text = str(info.value)
    assert msg in text and "\n" not in text and "bad_fused.onnx" in text
