"""A UNIT direction exported as a translator file: exact export forms, parity in ONNX Runtime
and LiteRT, metadata, the torch-free runtime and ``unlock --translate`` end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

SIZE = 16


@pytest.fixture(scope="module")
def unit_ckpt(tmp_path_factory):
    """A tiny UNIT trained 2 epochs (not a good translator: the plumbing is under test)."""
    from edgeconv.translate.train import TranslateConfig, translate_train

    d = tmp_path_factory.mktemp("unit")
    cfg = TranslateConfig(unit={"width": 4, "n_res": 2, "shared": 1, "dis_layers": 2},
                          identities=4, images_per_identity=2, size=SIZE, epochs=2,
                          batch_size=4, output=str(d / "run"))
    return Path(translate_train(cfg, log=lambda *a: None)["last"])


@pytest.fixture(scope="module")
def exported(unit_ckpt, tmp_path_factory):
    from edgeconv.export.translator import export_translator

    d = tmp_path_factory.mktemp("tx")
    formats = "onnx,tflite" if _has_litert() else "onnx"
    reports = {dr: export_translator(unit_ckpt, dr, formats=formats, output_dir=d,
                                     echo=lambda *a: None)
               for dr in ("nir2rgb", "rgb2nir")}
    return d, reports


def _has_litert():
    try:
        import ai_edge_litert  # noqa: F401
        import litert_torch  # noqa: F401
    except ImportError:
        return False
    return True


# ----------------------------------------------------------------------------- exact forms
@pytest.mark.parametrize("k,s,p,op,hw", [(3, 2, 1, 1, (5, 7)), (4, 2, 1, 0, (4, 4)),
                                         (3, 2, 0, 0, (3, 6)), (5, 3, 2, 1, (4, 5))])
def test_transposed_conv_rewrites_are_exact(k, s, p, op, hw):
    from edgeconv.export.translator import CroppedConvTranspose, ZeroInsertConv

    torch.manual_seed(0)
    ct = nn.ConvTranspose2d(6, 5, k, stride=s, padding=p, output_padding=op).eval()
    x = torch.randn(3, 6, *hw)
    with torch.no_grad():
        ref = ct(x)
        assert torch.allclose(ZeroInsertConv(ct, hw)(x), ref, atol=1e-5)
        if op <= p:
            assert torch.allclose(CroppedConvTranspose(ct)(x), ref, atol=1e-5)


@pytest.mark.parametrize("direction", ["nir2rgb", "rgb2nir"])
def test_deployable_folds_the_channel_adapters_exactly(unit_ckpt, direction):
    from edgeconv.export.translator import deployable, load_direction, tflite_form

    net, _, cin, cout = load_direction(unit_ckpt, direction)
    assert (cin, cout) == ((1, 3) if direction == "nir2rgb" else (3, 1))
    x = torch.rand(2, 3, SIZE, SIZE) * 2 - 1
    with torch.no_grad():
        ref = net(x)
        assert ref.shape == (2, 3, SIZE, SIZE)
        if cout == 1:  # a NIR target is replicated to three channels
            assert torch.equal(ref[:, 0], ref[:, 2])
        if cin == 1:   # a NIR source is the channel mean: only the mean matters
            y = torch.rand(2, 3, SIZE, SIZE) * 2 - 1
            y = y - y.mean(1, keepdim=True) + x.mean(1, keepdim=True)
            assert torch.allclose(net(y), ref, atol=1e-5)
        dep = deployable(net)
        assert torch.allclose(dep(x), ref, atol=1e-5)
        for dyn in (True, False):
            assert torch.allclose(tflite_form(dep, SIZE, dyn)(x), ref, atol=1e-5)
        # the reference network itself is untouched by the folding
        first = next(m for m in net.encoder.modules() if isinstance(m, nn.Conv2d))
        assert first.in_channels == cin


# ----------------------------------------------------------------------------- export
def test_export_parity_and_metadata_in_both_runtimes(exported):
    from edgeconv.metadata import read_tflite_metadata

    d, reports = exported
    for direction, rep in reports.items():
        assert set(rep["parity"]) == ({"onnx", "tflite"} if _has_litert() else {"onnx"})
        for fmt_name, summary in rep["parity"].items():
            assert summary["passed"] and summary["max_abs_diff"] <= 1e-4, (direction, fmt_name)
            assert {"faces_b1", "faces_b3", "random_b1", "random_b3"} == set(summary["inputs"])
        for f in rep["files"]:
            side = json.loads(Path(f["sidecar"]).read_text())
            assert side["kind"] == "translator" and side["direction"] == direction
            assert side["domains"] == dict(zip(("input", "output"),
                                               ("nir", "rgb") if direction == "nir2rgb"
                                               else ("rgb", "nir")))
            assert side["input_size"] == [SIZE, SIZE] and side["mean"] == [0.5] * 3
            assert side["metadata_embedded"] and side["macs"] > 0
            assert side["checkpoint"]["sha256"]
            if f["path"].endswith(".tflite"):
                emb = read_tflite_metadata(f["path"])
                assert emb["direction"] == direction and emb["upsampling"] == "zero_insert_conv"


def test_runtime_translator_matches_torch(exported, unit_ckpt):
    from edgeconv.export.translator import load_direction, source_faces
    from edgeconv.runtime.translator import Translator

    d, reports = exported
    for direction in ("nir2rgb", "rgb2nir"):
        net, *_ = load_direction(unit_ckpt, direction)
        x = source_faces(direction, 3, SIZE, seed=5)
        imgs = np.round((x.transpose(0, 2, 3, 1) + 1) * 127.5).astype(np.uint8)
        with torch.no_grad():
            y = net(torch.from_numpy(imgs.astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1))
        want = ((y.clamp(-1, 1) + 1) * 127.5).numpy().transpose(0, 2, 3, 1)
        for f in reports[direction]["files"]:
            with Translator(f["path"]) as tr:
                assert tr.direction == direction and tr.input_size == (SIZE, SIZE)
                out = tr.translate_images(imgs)
                assert out.shape == imgs.shape and out.dtype == np.uint8
                assert np.abs(out.astype(np.float64) - want).max() <= 1.0
                assert tr.translate(imgs[0]).shape == (SIZE, SIZE, 3)


def test_fixed_batch_tflite_translator_runs_any_number_of_images(unit_ckpt, tmp_path):
    """A --batch 2 TFLite file (TRANSPOSE_CONV form) bakes its batch in: the runtime feeds it
    padded chunks of 2 instead of resizing it."""
    if not _has_litert():
        pytest.skip("litert-torch / ai-edge-litert not installed")
    from edgeconv.export.translator import export_translator, source_faces
    from edgeconv.runtime.translator import Translator

    rep = export_translator(unit_ckpt, "nir2rgb", formats="tflite", batch=2,
                            output_dir=tmp_path, echo=lambda *a: None)
    path = rep["files"][0]["path"]
    x = source_faces("nir2rgb", 3, SIZE, seed=1)
    imgs = np.round((x.transpose(0, 2, 3, 1) + 1) * 127.5).astype(np.uint8)
    with Translator(path) as tr:
        assert tr.meta["upsampling"] == "transpose_conv" and tr.fixed_batch == 2
        three = tr.translate_images(imgs)
        one = tr.translate_images(imgs[2:])
    assert three.shape == (3, SIZE, SIZE, 3)
    np.testing.assert_array_equal(three[2:], one)


def test_files_of_the_other_kind_are_refused(exported, tmp_path):
    import _unlock_models as TM

    from edgeconv.errors import EdgeconvError
    from edgeconv.runtime.embedder import Embedder
    from edgeconv.runtime.translator import Translator

    d, reports = exported
    onnx_file = next(f["path"] for f in reports["nir2rgb"]["files"] if f["path"].endswith(".onnx"))
    with pytest.raises(EdgeconvError, match="an image translator .*--translate"):
        Embedder(onnx_file)
    face = TM.make_model(tmp_path / "face.onnx")
    with pytest.raises(EdgeconvError, match="not an edgeconv translator file"):
        Translator(face)


def test_translator_metadata_is_validated():
    from edgeconv.metadata import MetadataError, validate_metadata

    good = {"kind": "translator", "direction": "nir2rgb", "input_size": [32, 32],
            "domains": {"input": "nir", "output": "rgb"}, "output_range": [-1.0, 1.0]}
    validate_metadata(good, "t.onnx")
    for bad, what in ((dict(good, direction="nir2x"), "direction"),
                      (dict(good, domains={"input": "rgb", "output": "rgb"}), "domains"),
                      (dict(good, input_channels=1), "input_channels"),
                      (dict(good, output_range=[1, 1]), "output_range"),
                      (dict(good, kind="gan"), "kind"),
                      ({k: v for k, v in good.items() if k != "input_size"}, "input_size")):
        with pytest.raises(MetadataError, match=what):
            validate_metadata(bad, "t.onnx")


def test_export_cli_refusals(unit_ckpt, tmp_path):
    from test_cli import run_in_process

    r = run_in_process("export", unit_ckpt, "-o", tmp_path)
    assert r.returncode != 0 and "a UNIT translation checkpoint" in r.stderr
    assert "--direction" in r.stderr and "Traceback" not in r.stderr
    r = run_in_process("export", unit_ckpt, "--direction", "nir2rgb", "--lowrank", "2")
    assert r.returncode != 0 and "--lowrank applies to face models" in r.stderr
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------- unlock
def test_unlock_translate_end_to_end_without_torch(exported, tmp_path):
    """enroll RGB photos; verify / unlock a NIR probe through the translator, torch-free;
    the score is the face model's score of the translator's output."""
    import _unlock_models as TM
    from test_unlock import cli_subprocess

    from edgeconv.data.images import save_image
    from edgeconv.export.translator import source_faces
    from edgeconv.runtime.embedder import Embedder
    from edgeconv.runtime.translator import Translator

    d, reports = exported
    tx = next(f["path"] for f in reports["nir2rgb"]["files"] if f["path"].endswith(".onnx"))
    face = TM.make_model(tmp_path / "m" / "face.onnx")
    rgb = TM.render([0, 0, 0], [0, 1, 2])
    paths = [save_image(tmp_path / f"r{i}.png", im) for i, im in enumerate(rgb)]
    nir = np.round((source_faces("nir2rgb", 1, SIZE, seed=3).transpose(0, 2, 3, 1) + 1)
                   * 127.5).astype(np.uint8)[0]
    probe = save_image(tmp_path / "probe_nir.png", nir)
    db = tmp_path / "t.db"
    res = cli_subprocess("enroll", face, "--user", "ann", "--db", db, *paths)
    assert res.returncode == 0, res.stderr
    res = cli_subprocess("verify", face, probe, "--user", "ann", "--db", db, "--translate", tx,
                         "--threshold", "-1", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["accepted"] and out["translator"]["direction"] == "nir2rgb"
    assert out["translator"]["translate_ms"] > 0
    with Embedder(face) as emb, Translator(tx) as tr:
        from edgeconv.runtime.store import TemplateStore

        with TemplateStore(db, create=False) as store:
            t = store.get_for_model("ann", emb.sha256, emb.label)
        want = float(emb.embed_images(tr.translate(str(probe))) @ t.embedding)
        plain = float(emb.embed(str(probe)) @ t.embedding)
    assert out["score"] == pytest.approx(want, abs=1e-5)
    assert abs(want - plain) > 1e-4          # the translator really ran
    res = cli_subprocess("unlock", face, probe, "--user", "ann", "--db", db, "--translate", tx,
                         "--threshold", "0.9999")
    assert res.returncode == 1 and "probe translated nir2rgb" in res.stdout, res.stderr
    assert "1 attempt(s)" not in res.stdout and "4 attempt(s) left" in res.stdout
    res = cli_subprocess("unlock", face, probe, "--user", "ann", "--db", db, "--translate",
                         tmp_path / "missing.onnx")
    assert res.returncode == 2 and "Traceback" not in res.stderr


def test_bench_measures_a_translator_like_any_model(exported, tmp_path):
    from test_cli import run_in_process

    d, reports = exported
    files = [f["path"] for f in reports["nir2rgb"]["files"]]
    out = tmp_path / "bench.json"
    r = run_in_process("bench", *files, "--threads", "1", "--batch", "1,2", "--json", out)
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())
    assert len(rep["models"]) == len(files)
    for entry in rep["models"]:
        assert entry["status"] == "ok" and entry["best"]["fps"] > 0
        assert {(x["batch"], x["status"]) for x in entry["results"]} == {(1, "ok"), (2, "ok")}
        assert entry["input"]["input_shape"][1:] == [3, SIZE, SIZE]


def test_info_summarises_a_translation_checkpoint(unit_ckpt):
    from test_cli import run_in_process

    r = run_in_process("info", unit_ckpt, "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["epochs"] == "2/2" and d["unit_config"]["width"] == 4
    assert d["data"]["size"] == SIZE and d["params"] > 0 and "recon" in d["last_epoch_losses"]
    r = run_in_process("info", unit_ckpt)
    assert r.returncode == 0 and "UNIT translator" in r.stdout
