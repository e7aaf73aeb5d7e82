"""Segmentation task (issue 25): renderer, metrics, folders, models, export, device command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeconv.errors import EdgeconvError
from edgeconv.segmentation import metrics as M
from edgeconv.segmentation.data import balanced_batches, decode_mask, lodo_split, pair_folder
from edgeconv.segmentation.fundus import CENTRES, FundusRenderer

ROOT = Path(__file__).resolve().parents[1]
EDGECONV = str(Path(sys.executable).parent / "edgeconv")
TV_SMALL = dict(inter_channels=8, inter_layers=1)


# ----------------------------------------------------------------------------- renderer
def test_renderer_is_deterministic_whatever_the_order():
    a = FundusRenderer(64, seed=3)
    b = FundusRenderer(64, seed=3)
    later = [b.render(2, i) for i in (4, 1)]        # another order, another instance
    first = a.render(2, 1)
    assert np.array_equal(first[0], later[1][0]) and np.array_equal(first[1], later[1][1])
    assert not np.array_equal(a.render(2, 4)[0], FundusRenderer(64, seed=4).render(2, 4)[0])


def test_masks_cup_inside_disc_and_disc_size():
    r = FundusRenderer(256, seed=0)
    for c in range(len(CENTRES)):
        for i in range(2):
            img, m = r.render(c, i)
            assert img.shape == (256, 256, 3) and img.dtype == np.uint8
            assert m.shape == (2, 256, 256) and set(np.unique(m)) <= {0, 1}
            cup, disc = m.astype(bool)
            assert cup.any() and not (cup & ~disc).any()            # cup inside disc
            width = np.flatnonzero(disc.any(0))
            assert 70 <= width[-1] - width[0] + 1 <= 120            # ~80-110 px at 256
            rows_c, rows_d = np.flatnonzero(cup.any(1)), np.flatnonzero(disc.any(1))
            assert 0.15 <= len(rows_c) / len(rows_d) <= 0.75         # vertical CDR 0.2-0.7


def test_four_centres_differ():
    r = FundusRenderer(64, seed=0)
    means = np.array([r.render_many(c, 3)[0].reshape(-1, 3).mean(0) for c in range(4)])
    d = np.abs(means[:, None] - means[None]).max(-1)
    assert (d + np.eye(4) * 100).min() > 3.0                   # every pair differs in tone


# ----------------------------------------------------------------------------- metrics
def _sq(y0, y1, x0, x1, n=20):
    m = np.zeros((n, n), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_dice_and_distances_by_hand():
    g = _sq(5, 15, 5, 15)                        # 100 px
    p = _sq(5, 15, 7, 17)                        # shifted 2 px right: overlap 80
    assert M.dice(p, g) == pytest.approx(80.0)
    d = M.surface_distances(g, g)
    assert d == {"hd95": 0.0, "asd": 0.0}
    assert M.surface_distances(p, g)["hd95"] == pytest.approx(2.0)


def test_empty_prediction_is_the_worst_not_perfect():
    g = _sq(5, 15, 5, 15)
    empty = np.zeros_like(g)
    assert M.dice(empty, g) == 0.0
    d = M.surface_distances(empty, g)
    assert d["hd95"] == pytest.approx(np.hypot(20, 20)) and d["asd"] == d["hd95"]
    assert M.dice(empty, empty) == 100.0 and M.surface_distances(empty, empty)["hd95"] == 0.0
    s = M.score(np.zeros((2, 20, 20), np.uint8), np.stack([g, g]).astype(np.uint8))
    assert s["cup"]["dsc"] == 0.0 and s["disc"]["hd95"] == pytest.approx(np.hypot(20, 20))


def test_postprocess_keeps_largest_component_and_fills_holes():
    prob = np.zeros((2, 20, 20))
    prob[1, 2:12, 2:12] = 0.9                    # big disc with a hole ...
    prob[1, 6, 6] = 0.1
    prob[1, 15:18, 15:18] = 0.8                  # ... and a small blob that must go
    prob[0, 4:8, 4:8] = 0.7
    prob[0, 14:16, 0:2] = 0.9                    # cup blob outside: smaller, removed
    out = M.postprocess(prob)
    assert out[1].sum() == 100 and out[1, 6, 6] == 1 and out[1, 16, 16] == 0
    assert out[0].sum() == 16 and not (out[0] & ~out[1]).any()
    labels, n = M.label_components(_sq(0, 2, 0, 2) | _sq(2, 4, 2, 4))
    assert n == 1                                # diagonal touch: one 8-connected component
    assert M.label_components(_sq(0, 2, 0, 2) | _sq(2, 4, 2, 4), 4)[1] == 2


# ----------------------------------------------------------------------------- data
def test_mask_encoding_and_refusals(tmp_path):
    m = decode_mask(np.array([[0, 128, 255]], np.uint8), "m")
    assert m[:, 0].tolist() == [[1, 0, 0], [1, 1, 0]]       # cup, disc (disc includes cup)
    with pytest.raises(EdgeconvError, match="not allowed"):
        decode_mask(np.array([[0, 1, 255]], np.uint8), "m")
    (tmp_path / "image").mkdir()
    (tmp_path / "mask").mkdir()
    from edgeconv.data.images import save_image

    save_image(tmp_path / "image" / "a.png", np.zeros((8, 8, 3), np.uint8))
    save_image(tmp_path / "mask" / "b.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(EdgeconvError, match="does not match"):
        pair_folder(tmp_path / "image", tmp_path / "mask")


def test_lodo_split_and_balanced_batches():
    from edgeconv.segmentation.data import synthetic_domains

    doms = synthetic_domains(5, 32, 0)
    train, val, test = lodo_split(doms, 2, holdout=0.2)
    assert test is doms[2] and len(train) == len(val) == 3
    assert all(len(t) + len(v) == 5 for t, v in zip(train, val))
    batches = list(balanced_batches([4, 4, 4], 6, epoch=0))
    assert all(sorted({d for d, _ in b}) == [0, 1, 2] and len(b) == 6 for b in batches)


def _cli(*args, env=None, timeout=600):
    return subprocess.run([EDGECONV, *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def _write_domains(root: Path, bad_value: bool = False, mismatch: bool = False):
    from edgeconv.data.images import save_image
    from edgeconv.segmentation.overlay import mask_to_png_array
    from edgeconv.segmentation.runtime import _encode_gray

    r = FundusRenderer(32, 0)
    for c in range(4):
        for sub in ("image", "mask"):
            (root / f"d{c}" / sub).mkdir(parents=True)
        for i in range(3):
            img, m = r.render(c, i)
            save_image(root / f"d{c}" / "image" / f"{i}.png", img)
            arr = mask_to_png_array(m)
            if bad_value and c == 1:
                arr[0, 0] = 7
            stem = f"x{i}" if mismatch and c == 2 else str(i)
            (root / f"d{c}" / "mask" / f"{stem}.png").write_bytes(_encode_gray(arr))


@pytest.mark.parametrize("kind,match", [("mismatch", "does not match"),
                                        ("bad_value", "not allowed")])
def test_bad_folders_one_line_exit_2(tmp_path, kind, match):
    _write_domains(tmp_path, **{kind: True})
    r = _cli("seg-train", "--data", str(tmp_path), "--size", "32", "--width", "0.25",
             "--epochs", "1", "-o", str(tmp_path / "run"))
    assert r.returncode == 2 and match in r.stderr and len(r.stderr.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- models
@pytest.mark.parametrize("aspp", ["plain", "ir_depthwise", "ir_tvconv"])
def test_variant_forward_backward_fold(aspp):
    import torch

    from edgeconv.ops.folding import fold_model
    from edgeconv.ops.tvconv import FoldedTVConv
    from edgeconv.segmentation.models import create_segmenter

    torch.manual_seed(0)
    m = create_segmenter(aspp, width=0.25, input_size=32,
                         op_kwargs=TV_SMALL if aspp == "ir_tvconv" else None)
    x = torch.randn(3, 3, 32, 32)
    y = m(x)
    assert y.shape == (3, 2, 32, 32)
    y.square().mean().backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)
    m.eval()
    f = fold_model(m, fuse_bn=True)
    with torch.no_grad():
        assert (m(x) - f(x)).abs().max().item() < 1e-4
    assert sum(isinstance(k, FoldedTVConv) for k in f.modules()) == (3 if aspp == "ir_tvconv" else 0)
    assert not any(isinstance(k, torch.nn.BatchNorm2d) for k in f.modules())
    if aspp == "ir_tvconv":
        assert m.aspp.branches[1][0].conv[3].out_hw == (2, 2)    # h = w = input / 16


def test_aspp_op_mismatch_is_one_line():
    from edgeconv.models import create_model

    with pytest.raises(EdgeconvError, match="op 'tvconv'"):
        create_model("deeplabv3p_mbv2", op="depthwise", input_size=32, aspp="ir_tvconv")


def _export(tmp_path, aspp, formats):
    import torch

    from edgeconv.export.exporter import export_checkpoint
    from edgeconv.segmentation.models import create_segmenter
    from edgeconv.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    m = create_segmenter(aspp, width=0.25, input_size=32,
                         op_kwargs=TV_SMALL if aspp == "ir_tvconv" else None)
    for k in m.modules():
        if isinstance(k, torch.nn.BatchNorm2d):
            k.running_mean.uniform_(-0.2, 0.2)
            k.running_var.uniform_(0.5, 1.5)
    ck = tmp_path / f"{aspp}.ckpt"
    save_checkpoint(ck, m, metrics={"trained": False})
    return export_checkpoint(ck, formats=formats, output_dir=tmp_path, echo=lambda *a: None)


@pytest.mark.slow
@pytest.mark.parametrize("aspp", ["plain", "ir_depthwise", "ir_tvconv"])
def test_export_parity_both_runtimes(tmp_path, aspp):
    rep = _export(tmp_path, aspp, "onnx,tflite")
    for f in ("onnx", "tflite"):
        assert rep["parity"][f]["max_abs_diff"] <= 1e-4
    meta = json.loads(Path(rep["files"][0]["sidecar"]).read_text())
    assert meta["kind"] == "segmenter" and meta["classes"] == ["cup", "disc"]
    assert "embedding_dim" not in meta and meta["input_size"] == [32, 32]


# ----------------------------------------------------------------------------- device side
@pytest.fixture(scope="module")
def plain_onnx(tmp_path_factory):
    d = tmp_path_factory.mktemp("seg_onnx")
    rep = _export(d, "plain", "onnx")
    return Path(rep["files"][0]["path"])


@pytest.mark.slow  # exports an ONNX file first (minutes on a busy 2-core machine)
def test_segment_runs_torch_free_and_refuses_other_sizes(plain_onnx, tmp_path):
    from edgeconv.data.images import save_image

    save_image(tmp_path / "a.png", FundusRenderer(32, 0).render(0, 0)[0])
    save_image(tmp_path / "big.png", FundusRenderer(64, 0).render(1, 0)[0])   # same aspect
    save_image(tmp_path / "wide.png", np.zeros((32, 48, 3), np.uint8))
    fake = tmp_path / "fake_torch"
    fake.mkdir()
    (fake / "torch.py").write_text("raise ImportError('torch imported on the device side')\n")
    env = {"PYTHONPATH": str(fake)}
    out = tmp_path / "out"
    r = _cli("segment", str(plain_onnx), str(tmp_path / "a.png"), str(tmp_path / "big.png"),
             "-o", str(out), env=env)
    assert r.returncode == 0, r.stderr
    from PIL import Image

    m = np.asarray(Image.open(out / "big_mask.png"))
    assert m.shape == (64, 64) and set(np.unique(m)) <= {0, 128, 255}
    assert (out / "a_overlay.png").exists()
    r = _cli("segment", str(plain_onnx), str(tmp_path / "wide.png"), "-o", str(out), env=env)
    assert r.returncode == 2 and "48x32" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
