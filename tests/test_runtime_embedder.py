"""edgeconv.runtime.embedder: preprocessing, embeddings, thresholds (torch-free code)."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _unlock_models as TM  # noqa: E402

from edgeconv.data.images import save_image  # noqa: E402
from edgeconv.errors import EdgeconvError  # noqa: E402
from edgeconv.runtime.embedder import (Embedder, MetadataWarning, ThresholdError,  # noqa: E402
                                       read_tflite_metadata, select_threshold)

pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def models():
    return TM.model_dir()


@pytest.fixture(scope="module")
def faces():
    return TM.render([0, 0, 1, 2], [0, 1, 0, 0])


@pytest.fixture(scope="module")
def emb(models):
    e = Embedder(models / "face.onnx")
    yield e
    e.close()


def test_metadata_and_reference(emb, faces):
    assert emb.has_metadata and emb.input_size == (96, 96) and emb.name == "tiny_lda"
    assert emb.embedding_dim == TM.DIM and len(emb.sha256) == 64
    e = emb.embed(faces)
    f = TM.fitted()
    np.testing.assert_allclose(e, TM.embed_reference(faces, f["mu"], f["proj"]), atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert e.dtype == np.float32


def test_batch_equals_single_and_chunking(models, emb, faces):
    single = np.stack([emb.embed(f) for f in faces])
    np.testing.assert_allclose(emb.embed(list(faces)), single, atol=1e-6)
    many = np.concatenate([faces] * 10)  # 40 > MAX_BATCH: chunked
    np.testing.assert_allclose(emb.embed(many), np.concatenate([single] * 10), atol=1e-6)
    with Embedder(models / "fixed" / "face.onnx") as fixed:  # fixed batch 1: looped
        assert fixed.fixed_batch == 1
        np.testing.assert_allclose(fixed.embed(faces[:3]), single[:3], atol=1e-6)


def test_path_bytes_array_agree(tmp_path, emb, faces):
    p = save_image(tmp_path / "a.png", faces[0])
    a, b, c = emb.embed(p), emb.embed(p.read_bytes()), emb.embed(faces[0])
    np.testing.assert_allclose(a, c, atol=1e-6)
    np.testing.assert_allclose(b, c, atol=1e-6)
    assert emb.embed(str(p)).shape == (TM.DIM,)


def test_flip_test(models, faces):
    with Embedder(models / "face.onnx", flip=True) as ef, Embedder(models / "face.onnx") as e:
        got = ef.embed(faces[0])
        want = e.embed(faces[0]) + e.embed(np.ascontiguousarray(faces[0][:, ::-1]))
        np.testing.assert_allclose(got, want / np.linalg.norm(want), atol=1e-5)


def test_same_aspect_is_resized_like_training(tmp_path, emb, faces):
    from PIL import Image

    big = np.asarray(Image.fromarray(faces[0]).resize((192, 192), Image.BILINEAR))
    p = save_image(tmp_path / "big.png", big)
    assert float(emb.embed(p) @ emb.embed(faces[0])) > 0.98
    gray = tmp_path / "gray.png"
    Image.fromarray(faces[0]).convert("L").save(gray)  # grey -> RGB, like training
    assert emb.embed(gray).shape == (TM.DIM,)


def test_wrong_size_and_bad_arrays(tmp_path, emb, faces):
    wide = np.zeros((96, 128, 3), np.uint8)
    with pytest.raises(EdgeconvError, match="aligned face crop of 96x96"):
        emb.embed(wide)
    p = save_image(tmp_path / "wide.jpg", wide)
    with pytest.raises(EdgeconvError, match=r"wide\.jpg: image is 128x96"):
        emb.embed(p)
    with pytest.raises(EdgeconvError, match="too small|aligned face"):
        emb.embed(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(EdgeconvError, match=r"shape \(H, W, 3\)"):
        emb.embed(np.zeros((96, 96), np.uint8))
    with pytest.raises(EdgeconvError, match="uint8"):
        emb.embed(faces[0].astype(np.float32))
    with pytest.raises(EdgeconvError, match="expected an image path"):
        emb.embed(12)
    with pytest.raises(EdgeconvError, match="no images"):
        emb.embed([])


def test_corrupt_and_non_images(tmp_path, emb, faces):
    p = save_image(tmp_path / "ok.png", faces[0])
    data = p.read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "notes.png").write_text("not an image at all\n")
    (tmp_path / "empty.png").write_bytes(b"")
    cases = {"trunc.png": "corrupt or truncated|not a readable image",
             "notes.png": "not a PNG, JPEG, BMP or WebP image", "empty.png": "empty",
             "missing.png": "not found"}
    for name, pattern in cases.items():
        with pytest.raises(EdgeconvError, match=pattern):
            emb.embed(tmp_path / name)
    with pytest.raises(EdgeconvError, match="directory"):
        emb.embed(tmp_path)


def test_model_without_metadata_warns_and_infers(models, faces):
    with pytest.warns(MetadataWarning, match="no edgeconv metadata; assuming input 96x96 "
                                             r"\(from the model\)"):
        e = Embedder(models / "bare" / "face.onnx")
    with e:
        assert e.input_size == (96, 96) and not e.has_metadata
        with Embedder(models / "face.onnx") as ref:
            np.testing.assert_allclose(e.embed(faces[0]), ref.embed(faces[0]), atol=1e-6)
        with pytest.raises(ThresholdError, match="no calibrated"):
            e.threshold()
        assert e.threshold(threshold=0.5) == (0.5, "explicit --threshold")


def test_thresholds(emb):
    cal = TM.calibration()["far_thresholds"]
    thr, src = emb.threshold()  # 1e-3 not calibrated: the strictest calibrated one (1e-2)
    assert thr == pytest.approx(cal["1e-2"]) and "FAR 0.01" in src
    assert "200 impostor pairs (synthetic)" in src and "NOT resolvable" in src
    assert "NOT resolved" in emb.threshold_warning   # 200 pairs < 10 / 1e-2
    thr, src = emb.threshold(far="0.03")          # between the calibrated FARs: interpolated
    assert cal["1e-1"] <= thr <= cal["1e-2"] and "interpolated at FAR 0.03" in src
    assert "between the calibrated thresholds" in src   # this metadata stores no ROC
    assert emb.threshold(far="0.1")[0] == pytest.approx(cal["1e-1"])
    assert emb.threshold(far=1e-2, threshold=0.3) == (0.3, "explicit --threshold")
    with pytest.raises(ThresholdError, match=r"no threshold calibrated at FAR 0\.001 "
                                             r"\(calibrated: 0\.01, 0\.1\)"):
        emb.threshold(far="1e-3")
    for bad in ("abc", "0", "2"):
        with pytest.raises(EdgeconvError):
            emb.threshold(far=bad)
    with pytest.raises(EdgeconvError):
        emb.threshold(threshold=1.5)
    meta = {"verification": {"accuracy": 0.9, "threshold": 0.31}}
    with pytest.raises(ThresholdError, match="best-accuracy threshold 0.31"):
        select_threshold(meta)
    assert select_threshold({"verification": {"far_thresholds": {"1e-3": 0.4, "1e-4": 0.5}}}) \
        == (0.4, "calibrated at FAR 0.001")
    ver = {"far_thresholds": {"1e-3": 0.4, "1e-4": 0.5}, "num_different": 3000}
    thr, src = select_threshold({"verification": ver}, far="1e-4")
    assert thr == 0.5 and "NOT resolvable" in src


def test_metadata_options_respected(models, faces):
    meta = {"input_size": [96, 96], "layout": "NCHW", "color": "BGR", "scale": 1 / 255,
            "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    with Embedder(models / "bare" / "face.onnx", metadata=meta) as bgr, \
            Embedder(models / "face.onnx") as rgb:
        np.testing.assert_allclose(bgr.embed(faces[0]),
                                   rgb.embed(np.ascontiguousarray(faces[0][..., ::-1])),
                                   atol=1e-5)
    with pytest.raises(EdgeconvError, match="does not match"):
        Embedder(models / "face.onnx", metadata={"input_size": [112, 96]})


@pytest.mark.filterwarnings("ignore::edgeconv.runtime.embedder.MetadataWarning")
def test_flip_default_follows_calibration(models):
    meta = {"input_size": [96, 96], "verification": {"far_thresholds": {"1e-2": 0.5},
                                                     "flip_test": True}}
    with Embedder(models / "bare" / "face.onnx", metadata=meta) as e:
        assert e.flip
    with Embedder(models / "bare" / "face.onnx", metadata=meta, flip=False) as e:
        assert not e.flip
    with Embedder(models / "face.onnx") as e:
        assert not e.flip


def test_bad_model_files(tmp_path):
    (tmp_path / "x.onnx").write_bytes(b"garbage" * 10)
    with pytest.raises(EdgeconvError, match="not a readable ONNX model"):
        Embedder(tmp_path / "x.onnx")
    with pytest.raises(EdgeconvError, match="no such file"):
        Embedder(tmp_path / "nope.onnx")


def test_tflite_model_without_metadata():
    import _models

    reason = _models.tflite_unavailable_reason()
    if reason:
        pytest.skip(reason)
    try:
        path = _models.tiny_tflite()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    assert read_tflite_metadata(path) is None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        e = Embedder(path)
    assert any("assuming input 16x16" in str(w.message) for w in caught)
    with e:
        x = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
        out = e.embed(x)
        assert out.shape == (3, _models.C_OUT)
        ref = _models.reference_forward((x.transpose(0, 3, 1, 2) / 255.0 - 0.5) / 0.5)
        np.testing.assert_allclose(out, ref / np.linalg.norm(ref, axis=1, keepdims=True),
                                   atol=1e-4)


def test_tflite_metadata_reader_on_handmade_flatbuffer(tmp_path):
    """Model{buffers:[{}, {data}], metadata:[{name:"edgeconv", buffer:1}]} by hand."""
    flatbuffers = pytest.importorskip("flatbuffers")
    payload = b'{"model": "x", "input_size": [96, 96]}'
    b = flatbuffers.Builder(256)
    data = b.CreateByteVector(payload)
    b.StartObject(3)  # Buffer
    b.PrependUOffsetTRelativeSlot(0, data, 0)
    buf1 = b.EndObject()
    b.StartObject(3)
    buf0 = b.EndObject()
    b.StartVector(4, 2, 4)
    b.PrependUOffsetTRelative(buf1)
    b.PrependUOffsetTRelative(buf0)
    bufs = b.EndVector()
    name = b.CreateString("edgeconv")
    b.StartObject(2)  # Metadata
    b.PrependUOffsetTRelativeSlot(0, name, 0)
    b.PrependUint32Slot(1, 1, 0)
    md = b.EndObject()
    b.StartVector(4, 1, 4)
    b.PrependUOffsetTRelative(md)
    mds = b.EndVector()
    b.StartObject(8)  # Model
    b.PrependUOffsetTRelativeSlot(4, bufs, 0)
    b.PrependUOffsetTRelativeSlot(6, mds, 0)
    model = b.EndObject()
    b.Finish(model, file_identifier=b"TFL3")
    p = tmp_path / "m.tflite"
    p.write_bytes(bytes(b.Output()))
    assert read_tflite_metadata(p) == {"model": "x", "input_size": [96, 96]}
    assert read_tflite_metadata(p, name="other") is None
    (tmp_path / "junk.tflite").write_bytes(b"\x01\x02")
    assert read_tflite_metadata(tmp_path / "junk.tflite") is None


def test_image_models_are_siblings_on_one_base(models):
    """Embedder, Translator and Segmenter share ImageModel; none subclasses another, and each
    refuses the others' files in one line."""
    from edgeconv.runtime.image_model import ImageModel
    from edgeconv.runtime.translator import Translator
    from edgeconv.segmentation.runtime import Segmenter

    kinds = (Embedder, Translator, Segmenter)
    assert all(issubclass(k, ImageModel) for k in kinds)
    assert not any(issubclass(a, b) for a in kinds for b in kinds if a is not b)
    meta = {"format_version": 1, "kind": "segmenter", "classes": ["cup", "disc"],
            "input_size": [96, 96]}
    with pytest.raises(EdgeconvError, match="segmenter, not a face model"):
        Embedder(models / "face.onnx", metadata=meta, warmup=False)
    with pytest.raises(EdgeconvError, match="not an edgeconv translator"):
        Translator(models / "face.onnx", warmup=False)
    with pytest.raises(EdgeconvError, match="not an edgeconv segmenter"):
        Segmenter(models / "face.onnx", warmup=False)
