"""Metadata: the model file's embedded metadata is the authority, every value is validated,
and the model identity covers external data and sidecar-only metadata."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _unlock_models as TM  # noqa: E402

from edgeconv.data.images import save_image  # noqa: E402
from edgeconv.runtime.embedder import Embedder, file_sha256  # noqa: E402
from edgeconv.metadata import (MetadataError, onnx_external_locations,  # noqa: E402
                               validate_metadata)

from test_cli import run_in_process  # noqa: E402

onnx = pytest.importorskip("onnx")


def cli(*args):
    res = run_in_process(*args)
    return res.returncode, res.stdout, res.stderr


@pytest.fixture
def model(tmp_path):
    src = TM.model_dir() / "face.onnx"
    dst = tmp_path / "m" / "face.onnx"
    dst.parent.mkdir()
    shutil.copy(src, dst)
    shutil.copy(src.with_name("face.onnx.json"), dst.with_name("face.onnx.json"))
    return dst


def _edit_sidecar(model, **changes):
    side = model.with_name(model.name + ".json")
    meta = json.loads(side.read_text())
    for key, value in changes.items():
        target = meta
        *path, last = key.split(".")
        for p in path:
            target = target[p]
        target[last] = value
    side.write_text(json.dumps(meta))


@pytest.mark.parametrize("key,value", [
    ("verification.far_thresholds", {"1e-2": -1.0}), ("verification.threshold", -1.0),
    ("mean", [0.4, 0.5, 0.5]), ("std", [0.25, 0.25, 0.25]), ("color", "BGR"),
    ("scale", 1.0), ("input_size", [112, 112])])
def test_a_sidecar_that_disagrees_is_refused(model, key, value):
    _edit_sidecar(model, **{key: value})
    with pytest.raises(MetadataError, match="disagrees with the metadata embedded"):
        Embedder(model)


def test_sidecar_threshold_attack_cannot_unlock(model, tmp_path):
    ids, idx = np.zeros(3, int), np.arange(3)
    faces = [save_image(tmp_path / f"a{i}.png", im) for i, im in enumerate(TM.render(ids, idx))]
    db = tmp_path / "t.db"
    assert cli("enroll", model, "--user", "alice", "--db", db, *faces)[0] == 0
    before = db.read_bytes()
    _edit_sidecar(model, **{"verification.far_thresholds": {"1e-2": -1.0}})
    black = save_image(tmp_path / "black.png", np.zeros((96, 96, 3), np.uint8))
    code, out, err = cli("unlock", model, "--user", "alice", "--db", db, "--far", "1e-2", black)
    assert code == 2 and out == "" and "disagrees" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert db.read_bytes() == before                     # nothing recorded


def test_a_stale_sidecar_is_refused(model):
    _edit_sidecar(model, sha256="0" * 64)
    with pytest.raises(MetadataError, match="describes another file"):
        Embedder(model)


def test_an_agreeing_sidecar_or_none_is_fine(model):
    e = Embedder(model)
    assert e.metadata_source == "embedded" and e.sha256 == file_sha256(model)
    model.with_name("face.onnx.json").unlink()
    e2 = Embedder(model)
    assert e2.metadata_source == "embedded" and e2.meta == e.meta


def test_sidecar_only_metadata_is_bound_into_the_identity(tmp_path):
    m = TM.make_model(tmp_path / "s" / "face.onnx", embed=False)
    with pytest.warns(UserWarning, match="nothing vouches for"):
        e = Embedder(m)
    assert e.metadata_source == "sidecar only" and e.sha256 != file_sha256(m)
    _edit_sidecar(m, **{"verification.far_thresholds": {"1e-2": -1.0}})
    with pytest.warns(UserWarning):
        e2 = Embedder(m)
    assert e2.sha256 != e.sha256                         # templates of e no longer match


@pytest.mark.parametrize("meta,pattern", [
    ({"verification": {"far_thresholds": {"1e-3": float("nan")}}}, "finite number in"),
    ({"verification": {"far_thresholds": {"1e-3": 1.5}}}, r"\[-1, 1\]"),
    ({"verification": {"far_thresholds": {"1e-3": "0.5"}}}, "finite number"),
    ({"verification": {"far_thresholds": {"often": 0.5}}}, "not a false-accept rate"),
    ({"verification": {"threshold": float("inf")}}, "threshold"),
    ({"verification": {"flip_test": "yes"}}, "true or false"),
    ({"verification": {"calibration": {"roc": [[2, 0.5]]}}}, "roc"),
    ({"verification": []}, "must be an object"),
    ({"std": [0, 0.5, 0.5]}, "std must be > 0"), ({"std": -1}, "std must be > 0"),
    ({"mean": [1, 2]}, "1 or 3 finite"), ({"mean": "0.5"}, "1 or 3 finite"),
    ({"scale": 0}, "scale"), ({"scale": True}, "scale"),
    ({"input_size": [0, 96]}, "input_size"), ({"input_size": [100000, 96]}, "input_size"),
    ({"input_size": "96"}, "input_size"), ({"input_size": [96.5, 96]}, "input_size"),
    ({"layout": "CHWN"}, "layout"), ({"color": 3}, "color"),
    ({"embedding_dim": -3}, "embedding_dim"), ({"model": ["x"]}, "model must be text"),
])
def test_metadata_values_validated(meta, pattern):
    with pytest.raises(MetadataError, match=pattern):
        validate_metadata(meta, "m.onnx")


def test_embedded_bad_value_refused_in_one_line(tmp_path):
    import onnx.helper as h

    m = TM.make_model(tmp_path / "b" / "face.onnx")
    proto = onnx.load(str(m))
    meta = json.loads(proto.metadata_props[0].value)
    meta["std"] = [0.0, 0.5, 0.5]
    del proto.metadata_props[:]
    h.set_model_props(proto, {"edgeconv": json.dumps(meta)})
    onnx.save(proto, str(m))
    m.with_name("face.onnx.json").unlink()
    code, out, err = cli("identify", m, "--db", tmp_path / "t.db", m)
    assert code == 2 and "metadata std must be > 0" in err and "Traceback" not in err


def _external(tmp_path):
    m = TM.make_model(tmp_path / "x" / "face.onnx")
    proto = onnx.load(str(m))
    m.with_name("face.onnx.json").unlink()              # the sidecar's sha256 changes below
    onnx.save(proto, str(m), save_as_external_data=True, all_tensors_to_one_file=True,
              location="face.weights", size_threshold=0)
    return m


def test_identity_covers_external_data(tmp_path):
    m = _external(tmp_path)
    assert onnx_external_locations(m.read_bytes()) == ["face.weights"]
    e = Embedder(m)
    assert e.sha256 != file_sha256(m)
    w = m.with_name("face.weights")
    data = bytearray(w.read_bytes())
    data[-1] ^= 1                                        # swap (a bit of) the weights
    w.write_bytes(bytes(data))
    assert Embedder(m).sha256 != e.sha256


def test_external_data_outside_the_model_folder_refused(tmp_path):
    m = _external(tmp_path)
    proto = onnx.load(str(m), load_external_data=False)
    for t in proto.graph.initializer:
        for entry in t.external_data:
            if entry.key == "location":
                entry.value = "../evil.weights"
    shutil.copy(m.with_name("face.weights"), tmp_path / "evil.weights")
    onnx.save(proto, str(m))
    with pytest.raises(Exception, match="outside the model's folder|external"):
        Embedder(m)
