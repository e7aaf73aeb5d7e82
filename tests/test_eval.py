"""Evaluation: pair sources (synthetic splits, pair lists, .bin), flip test, checkpoint write-back."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgeconv.errors import EdgeconvError  # noqa: E402


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def ckpt_path(tmp_path_factory):
    from edgeconv.train.checkpoint import init_checkpoint

    return init_checkpoint("mbv2_x0_1", op="depthwise", input_size=32,
                           output=tmp_path_factory.mktemp("ck") / "m.ckpt")


def test_far_key():
    from edgeconv.train.evaluate import far_key

    assert far_key(1e-3) == "1e-3" and far_key(1e-4) == "1e-4"
    assert far_key(5e-4) == "5e-4" and far_key(0.05) == "5e-2" and far_key(2.5e-3) == "2.5e-3"


def test_synthetic_val_and_test_splits_are_disjoint():
    from edgeconv.data.synthetic import VALIDATION_IDENTITY_OFFSET
    from edgeconv.train.evaluate import load_pairs

    val = load_pairs("synthetic", size=(32, 32), num_pairs=40, identities=8, split="val")
    test = load_pairs("synthetic", size=(32, 32), num_pairs=40, identities=8, split="test")
    assert val.left.shape == (40, 32, 32, 3) and val.num_same == 20
    assert not np.array_equal(val.left, test.left)
    again = load_pairs("synthetic", size=(32, 32), num_pairs=40, identities=8, split="val")
    assert np.array_equal(val.left, again.left)  # deterministic
    assert VALIDATION_IDENTITY_OFFSET > 8
    with pytest.raises(EdgeconvError):
        load_pairs("synthetic", size=(32, 32), split="train")


def test_evaluate_pairs_identical_images_are_perfect():
    """Genuine pairs of the SAME image score 1.0: accuracy 100 %, EER 0 (pixels as embedding)."""
    from edgeconv.data.pairs import PairSet
    from edgeconv.data.synthetic import SyntheticFaces
    from edgeconv.train.evaluate import evaluate_pairs

    model = torch.nn.Flatten().train()
    imgs = SyntheticFaces(40, 1, size=32, seed=5).materialize()
    left = imgs.copy()
    right = imgs.copy()
    same = np.arange(40) % 2 == 0
    right[~same] = np.roll(imgs, 1, axis=0)[~same]
    res = evaluate_pairs(model, PairSet(left, right, same), flip=True, target_far=1e-2)
    # every genuine pair outranks every impostor: perfect ROC; the 10-fold threshold (chosen
    # on the other folds) may still let a near-duplicate impostor through
    assert res["eer"] == 0.0 and res["auc"] == pytest.approx(1.0) and res["flip_test"] is True
    assert res["accuracy"] >= 0.95 and len(res["kfold"]["fold_accuracies"]) == 10
    assert res["tar_at_far"][0]["tar"] == 1.0
    assert res["pairs"] == 40 and set(res["far_thresholds"]) == {"1e-2", "1e-3", "1e-4"}
    assert res["target_threshold"] == res["far_thresholds"]["1e-2"]
    assert model.training is True  # embed() evaluates in eval mode, then restores the mode


def test_flip_test_changes_scores(ckpt_path):
    from edgeconv.train.checkpoint import load_model
    from edgeconv.train.evaluate import evaluate_pairs, load_pairs

    model, _ = load_model(ckpt_path)
    pairs = load_pairs("synthetic", size=(32, 32), num_pairs=40, split="test")
    a = evaluate_pairs(model, pairs, flip=False)
    b = evaluate_pairs(model, pairs, flip=True)
    assert a["flip_test"] is False and b["flip_test"] is True
    assert a["roc"] != b["roc"] or a["threshold"] != b["threshold"]


def test_eval_pair_list_and_bin(ckpt_path, tmp_path):
    import shutil

    from edgeconv.data.images import save_image
    from edgeconv.data.insightface_bin import write_bin
    from edgeconv.data.pairs import write_pair_list
    from edgeconv.train.checkpoint import load_checkpoint
    from edgeconv.train.evaluate import evaluate_checkpoint, load_pairs

    pairs = load_pairs("synthetic", size=(32, 32), num_pairs=40, split="test")
    rows = []
    for k in range(len(pairs)):
        lp, rp = tmp_path / "img" / f"{k}_l.png", tmp_path / "img" / f"{k}_r.png"
        save_image(lp, pairs.left[k])
        save_image(rp, pairs.right[k])
        rows.append((lp, rp, bool(pairs.is_same[k])))
    write_pair_list(tmp_path / "pairs.txt", rows)
    write_bin(tmp_path / "pairs.bin", pairs)
    ck = shutil.copy(ckpt_path, tmp_path / "m.ckpt")
    lines = []
    a = evaluate_checkpoint(ck, pairs=str(tmp_path / "pairs.txt"), echo=lines.append)
    b = evaluate_checkpoint(ck, pairs=str(tmp_path / "pairs.bin"), echo=lines.append,
                            output_dir=tmp_path / "rep", name="bin")
    assert a["accuracy"] == b["accuracy"] and a["threshold"] == b["threshold"]  # lossless PNG
    assert (tmp_path / "eval_m.json").exists() and (tmp_path / "eval_m_roc.png").exists()
    assert json.loads((tmp_path / "rep" / "bin.json").read_text())["pairs"] == 40
    ver = load_checkpoint(ck)["metrics"]["verification"]
    assert ver["pairs"]["source"].endswith("pairs.bin")
    assert {"accuracy", "accuracy_std", "threshold", "far_thresholds", "eer", "pairs"} <= set(ver)
    assert load_checkpoint(ck)["metrics"]["seed"] == 0  # other metrics are kept
    assert any("acc" in ln for ln in lines)


def test_eval_size_mismatch_and_no_write(ckpt_path, tmp_path):
    from edgeconv.data.insightface_bin import write_bin
    from edgeconv.train.evaluate import evaluate_checkpoint, load_pairs

    # a .bin at another size is resized by the loader, so the model still gets 32x32
    pairs = load_pairs("synthetic", size=(48, 48), num_pairs=20, split="test")
    write_bin(tmp_path / "p48.bin", pairs)
    before = ckpt_path.read_bytes()
    res = evaluate_checkpoint(ckpt_path, pairs=str(tmp_path / "p48.bin"), write_back=False,
                              plot=False, output_dir=tmp_path, echo=lambda m: None)
    assert res["pairs"] == 20
    assert ckpt_path.read_bytes() == before
    with pytest.raises(EdgeconvError, match="not found"):
        evaluate_checkpoint(ckpt_path, pairs=str(tmp_path / "nope.txt"), echo=lambda m: None)
    with pytest.raises(EdgeconvError, match="target-far"):
        evaluate_checkpoint(ckpt_path, target_far=2.0, echo=lambda m: None)
