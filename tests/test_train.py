"""Training: AM-Softmax, schedule, checkpoints, exact resume, Ctrl-C, safe loading, CLI."""

from __future__ import annotations

import io
import json
import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgeconv.errors import EdgeconvError  # noqa: E402
from edgeconv.train.config import TrainConfig, scale_milestones  # noqa: E402

TINY = dict(model="mbv2_x0_1", op="tvconv", input_size=[32, 32],
            op_kwargs={"inter_channels": 8, "inter_layers": 1}, identities=8,
            images_per_identity=4, epochs=2, batch_size=16, val_pairs=40)

TINY_CLI = ["--input-size", "32", "--tvconv-inter-channels", "8", "--tvconv-inter-layers", "1",
            "--identities", "8", "--images-per-identity", "4", "--epochs", "2",
            "--batch-size", "16", "--val-pairs", "40", "--no-progress"]


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _train(**kw):
    from edgeconv.train.loop import train

    return train(log=lambda m: None, progress=False, **kw)


def _tensors_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- AM-Softmax
def test_am_softmax_matches_formula_and_normalises_weights():
    from edgeconv.train.losses import AMSoftmax

    torch.manual_seed(0)
    head = AMSoftmax(16, 5, scale=32.0, margin=0.35)
    emb, y = torch.randn(8, 16), torch.randint(0, 5, (8,))
    loss, cos = head(emb, y)
    w = head.weight / head.weight.norm(dim=1, keepdim=True)
    e = emb / emb.norm(dim=1, keepdim=True)
    ref_cos = e @ w.t()
    logits = 32.0 * (ref_cos - 0.35 * torch.nn.functional.one_hot(y, 5))
    assert torch.allclose(cos, ref_cos, atol=1e-6)
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(logits, y), atol=1e-5)
    # class weights are L2-normalised: rescaling them changes nothing
    with torch.no_grad():
        head.weight.mul_(torch.rand(5, 1) * 10 + 0.1)
    assert torch.allclose(head(emb, y)[0], loss, atol=1e-5)
    # the margin makes the loss larger
    assert AMSoftmax.forward(head, emb, y)[0] > torch.nn.functional.cross_entropy(32 * ref_cos, y)


def test_milestones_scaled_to_epochs():
    assert scale_milestones(38) == [22, 30, 35]
    assert scale_milestones(10) == [6, 8, 9]
    assert scale_milestones(2) == [1, 2]
    assert TrainConfig(epochs=19).resolve().milestones == [11, 15, 18]
    assert TrainConfig(epochs=5, milestones=[4, 2]).resolve().milestones == [2, 4]
    with pytest.raises(EdgeconvError):
        TrainConfig(epochs=0).resolve()


def test_rng_state_survives_weights_only_checkpoint(tmp_path):
    from edgeconv.train.loop import capture_rng, restore_rng

    state = capture_rng()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.save({"rng": state}, tmp_path / "r.pt")
    loaded = torch.load(tmp_path / "r.pt", weights_only=True)["rng"]
    torch.manual_seed(123), np.random.seed(123), random.seed(123)
    restore_rng(loaded)
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0])
    assert np.array_equal(got[1], expected[1])
    assert got[2] == expected[2]


# --------------------------------------------------------------------------- runs
@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """An uninterrupted 2-epoch tiny run (shared by the resume tests)."""
    out = tmp_path_factory.mktemp("full") / "run"
    summary = _train(config=TrainConfig(output=str(out), **TINY))
    return out, summary


def test_run_folder_contents(full_run):
    from edgeconv.train.checkpoint import load_checkpoint

    out, summary = full_run
    assert summary["epochs_done"] == 2
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["op_kwargs"] == {"inter_channels": 8, "inter_layers": 1}
    assert cfg["milestones"] == [1, 2] and cfg["lr"] == 0.1 and cfg["am_margin"] == 0.35
    hist = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2]
    assert all(np.isfinite(h["loss"]) and h["images_per_s"] > 0 for h in hist)
    assert hist[1]["lr"] == pytest.approx(0.01)  # milestone 1 -> lr x 0.1 for epoch 2
    ckpt = load_checkpoint(out / "last.ckpt")  # weights_only=True inside
    t = ckpt["training"]
    assert t["epoch"] == 2 and t["complete"] is True
    assert {"optimizer", "scheduler", "head", "rng", "config"} <= set(t)
    assert t["head"]["weight"].shape == (8, 512)
    ver = ckpt["metrics"]["verification"]
    assert set(ver["far_thresholds"]) == {"1e-3", "1e-4"}
    assert 0.0 <= ver["accuracy"] <= 1.0 and ver["pairs"]["count"] == 40
    best = load_checkpoint(out / "best.ckpt")
    assert best["training"]["epoch"] == summary["best_epoch"]


def test_resume_is_bit_exact(full_run, tmp_path):
    from edgeconv.train.checkpoint import load_checkpoint

    out, _ = full_run
    part = tmp_path / "part"
    first = _train(config=TrainConfig(output=str(part), **TINY), stop_after=1)
    assert first["epochs_done"] == 1
    assert load_checkpoint(part / "last.ckpt")["training"]["epoch"] == 1
    _train(resume=str(part / "last.ckpt"))
    a, b = load_checkpoint(out / "last.ckpt"), load_checkpoint(part / "last.ckpt")
    assert _tensors_equal(a["state_dict"], b["state_dict"])
    assert _tensors_equal(a["training"]["head"], b["training"]["head"])
    ma = a["training"]["optimizer"]["state"]
    mb = b["training"]["optimizer"]["state"]
    assert all(torch.equal(ma[k]["momentum_buffer"], mb[k]["momentum_buffer"]) for k in ma)
    assert a["training"]["history"][1]["loss"] == b["training"]["history"][1]["loss"]


def test_ctrl_c_keeps_last_complete_checkpoint_and_resumes_exactly(full_run, tmp_path):
    from edgeconv.train.checkpoint import load_checkpoint

    out, _ = full_run
    run = tmp_path / "run"

    def hook(trainer, epoch, step):
        if epoch == 1 and step == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train(config=TrainConfig(output=str(run), **TINY), step_hook=hook)
    ckpt = load_checkpoint(run / "last.ckpt")
    assert ckpt["training"]["epoch"] == 1
    assert not list(run.glob(".*.tmp"))  # no half-written files left behind
    _train(resume=str(run))  # a run folder resolves to its last.ckpt
    final = load_checkpoint(run / "last.ckpt")
    assert final["training"]["epoch"] == 2
    assert _tensors_equal(final["state_dict"], load_checkpoint(out / "last.ckpt")["state_dict"])


def test_existing_run_is_not_overwritten(full_run):
    out, _ = full_run
    before = (out / "last.ckpt").read_bytes()
    with pytest.raises(EdgeconvError, match="already holds a run"):
        _train(config=TrainConfig(output=str(out), **TINY))
    assert (out / "last.ckpt").read_bytes() == before


def test_resume_needs_training_state(tmp_path):
    from edgeconv.train.checkpoint import init_checkpoint

    path = init_checkpoint("mbv2_x0_1", op="depthwise", input_size=32, output=tmp_path / "m.ckpt")
    with pytest.raises(EdgeconvError, match="no training state"):
        _train(resume=str(path))


def test_batch_larger_than_data_is_a_user_error(tmp_path):
    cfg = TrainConfig(output=str(tmp_path / "r"), **dict(TINY, batch_size=64))
    with pytest.raises(EdgeconvError, match="larger than the data set"):
        _train(config=cfg)


def test_image_folder_training(tmp_path):
    """--data PATH: an ImageFolder (one folder per identity) trains like the synthetic set."""
    from edgeconv.data.images import save_image
    from edgeconv.data.synthetic import SyntheticFaces

    ds = SyntheticFaces(4, 4, size=32, seed=3)
    for i in range(len(ds)):
        img, label = ds[i]
        save_image(tmp_path / "faces" / f"id{label}" / f"{i}.png", img)
    cfg = TrainConfig(output=str(tmp_path / "r"), data=str(tmp_path / "faces"), val="none",
                      **{k: v for k, v in TINY.items() if k not in ("identities", "images_per_identity")})
    cfg.epochs = 1
    summary = _train(config=cfg)
    assert summary["epochs_done"] == 1 and summary["best_accuracy"] is None
    from edgeconv.train.checkpoint import load_checkpoint

    assert load_checkpoint(tmp_path / "r" / "last.ckpt")["training"]["head"]["weight"].shape[0] == 4


# --------------------------------------------------------------------------- malicious files
class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _malicious_checkpoint(path: Path, marker: Path) -> Path:
    buf = io.BytesIO()
    torch.save({"format": "edgeconv.checkpoint", "format_version": 1,
                "model_config": {"name": "mbv2_x0_1", "op": "depthwise"},
                "state_dict": {}, "training": {"payload": _Evil(marker)}}, buf)
    path.write_bytes(buf.getvalue())
    return path


def test_malicious_checkpoint_refused_by_train_resume_and_eval(tmp_path):
    from tests.test_cli import run_in_process

    marker = tmp_path / "PWNED"
    bad = _malicious_checkpoint(tmp_path / "last.ckpt", marker)
    # sanity: plain pickle-based loading WOULD run the payload
    assert b"system" in bad.read_bytes()
    for args in (["train", "--resume", str(bad)], ["train", "--resume", str(tmp_path)],
                 ["eval", str(bad)]):
        res = run_in_process(*args)
        assert res.returncode == 2, (args, res.stderr)
        assert "refused" in res.stderr and "Traceback" not in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
        assert not marker.exists()


def test_plain_pickle_checkpoint_refused(tmp_path):
    from tests.test_cli import run_in_process

    marker = tmp_path / "PWNED2"
    bad = tmp_path / "evil.ckpt"
    bad.write_bytes(pickle.dumps(_Evil(marker)))
    res = run_in_process("eval", str(bad))
    assert res.returncode == 2 and not marker.exists()


# --------------------------------------------------------------------------- CLI
def test_cli_train_then_eval(tmp_path):
    from edgeconv.train.checkpoint import load_checkpoint
    from tests.test_cli import run_in_process

    out = tmp_path / "cli"
    res = run_in_process("train", *TINY_CLI, "-o", out)
    assert res.returncode == 0, res.stderr
    assert "done: 2 epoch(s)" in res.stdout
    res = run_in_process("eval", out / "last.ckpt", "--num-pairs", "60", "--target-far", "0.05")
    assert res.returncode == 0, res.stderr
    assert "acc" in res.stdout and "threshold at FAR 5e-2" in res.stdout
    report = json.loads((out / "eval_last.json").read_text())
    assert report["pairs"] == 60 and len(report["kfold"]["fold_accuracies"]) == 10
    assert (out / "eval_last_roc.png").read_bytes()[:4] == b"\x89PNG"
    ver = load_checkpoint(out / "last.ckpt")["metrics"]["verification"]
    # thresholds from the calibration split (all pairs of 300 unseen identities x 4 images)
    assert set(ver["far_thresholds"]) == {"1e-2", "1e-3", "1e-4", "5e-2"}
    assert ver["calibration"]["num_impostors"] == 717600 == ver["num_impostors"]
    assert ver["target_threshold"] == ver["far_thresholds"]["5e-2"]
    assert "calibration: 717600 impostor" in res.stdout and "open-set test" in res.stdout
    assert ver["target_far"] == 0.05 and ver["pairs"]["count"] == 60
    assert "test split" in ver["pairs"]["source"]
    assert ver["threshold"] == pytest.approx(report["threshold"])
    # resuming a finished run is refused in one line (it used to print "done" having
    # written nothing) and keeps the weights
    before = load_checkpoint(out / "last.ckpt")["state_dict"]
    res = run_in_process("train", "--resume", out / "last.ckpt", "--no-progress")
    assert res.returncode == 2 and "the run is complete" in res.stderr, res.stderr
    assert _tensors_equal(before, load_checkpoint(out / "last.ckpt")["state_dict"])


def test_cli_user_errors(tmp_path):
    from tests.test_cli import run_in_process

    res = run_in_process("train", "--op", "depthwise", "--tvconv-inter-channels", "8",
                         "-o", tmp_path / "x")
    assert res.returncode == 2 and "--tvconv-" in res.stderr
    res = run_in_process("train", "--data", tmp_path / "nope", "--input-size", "32",
                         "-o", tmp_path / "y", "--no-progress")
    assert res.returncode == 2 and "nope" in res.stderr
    res = run_in_process("eval", tmp_path / "missing.ckpt")
    assert res.returncode == 2 and "no such file" in res.stderr


def test_training_input_matches_eval_normalisation_and_flips_deterministically():
    from edgeconv.data.images import normalize
    from edgeconv.train.loop import epoch_generator, to_input

    imgs = np.random.default_rng(0).integers(0, 256, (16, 8, 8, 3), dtype=np.uint8)
    x = to_input(torch.from_numpy(imgs), "cpu", None)
    assert torch.allclose(x, torch.from_numpy(normalize(imgs)), atol=1e-6)
    a = to_input(torch.from_numpy(imgs), "cpu", epoch_generator(0, 3, 0))
    b = to_input(torch.from_numpy(imgs), "cpu", epoch_generator(0, 3, 0))
    c = to_input(torch.from_numpy(imgs), "cpu", epoch_generator(0, 3, 1))  # another rank
    assert torch.equal(a, b) and not torch.equal(a, c)
    flipped = [bool(torch.equal(a[i], x[i].flip(-1))) for i in range(16)]
    assert all(flipped[i] or torch.equal(a[i], x[i]) for i in range(16))
    assert 0 < sum(flipped) < 16


def test_schedules_and_warmups():
    cfg = TrainConfig(epochs=10, lr=0.2, schedule="cosine", warmup_epochs=1,
                      margin_warmup_epochs=2, am_margin=0.3).resolve()
    import math

    cosine = lambda e: 0.2 * 0.5 * (1 + math.cos(math.pi * e / 10))  # noqa: E731
    assert cfg.lr_at(0.0) == 0.0 and cfg.lr_at(0.5) == pytest.approx(0.5 * cosine(0.5))
    assert cfg.lr_at(1.0) == pytest.approx(cosine(1.0))
    assert cfg.lr_at(5.0) == pytest.approx(0.1) and cfg.lr_at(10.0) == pytest.approx(0.0)
    assert all(cfg.lr_at(e) >= cfg.lr_at(e + 0.25) for e in (1, 2.5, 4, 7, 9.5))
    assert cfg.margin_at(0.0) == 0.0 and cfg.margin_at(1.0) == pytest.approx(0.15)
    assert cfg.margin_at(2.0) == cfg.margin_at(9.0) == pytest.approx(0.3)
    step = TrainConfig(epochs=38).resolve()           # the published MultiStep, no warm-up
    assert [step.lr_at(e) for e in (0, 21.9, 22, 30, 35)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.001, 0.0001])
    assert step.margin_at(0.0) == step.am_margin
    for bad in (dict(schedule="linear"), dict(warmup_epochs=-1),
                dict(margin_warmup_epochs=float("nan"))):
        with pytest.raises(EdgeconvError):
            TrainConfig(**bad).resolve()


def test_cosine_warmup_run_resumes_exactly_and_sets_lr_and_margin_per_step(tmp_path):
    from edgeconv.train.checkpoint import load_checkpoint

    tiny = dict(TINY, schedule="cosine", warmup_epochs=1, margin_warmup_epochs=2, lr=0.05,
                generator_lr_mult=0.5, generator_weight_decay=0.0)
    seen = []

    def hook(trainer, epoch, step):
        rest, gen = trainer.optimizer.param_groups
        assert gen["lr"] == pytest.approx(0.5 * rest["lr"]) and gen["weight_decay"] == 0.0
        names = {id(p): n for n, p in trainer.module.named_parameters()}
        assert all("affinity" in names[id(p)] or "_gen." in names[id(p)] for p in gen["params"])
        assert len(gen["params"]) + len(rest["params"]) == len(names)
        seen.append((epoch, step, rest["lr"], trainer.head.margin))

    full = _train(config=TrainConfig(output=str(tmp_path / "full"), **tiny), step_hook=hook)
    steps = len(seen) // 2
    e = [ep + st / steps for ep, st, _, _ in seen]
    cfg = TrainConfig(**tiny).resolve()
    assert [s[2] for s in seen] == pytest.approx([cfg.lr_at(x) for x in e])
    assert [s[3] for s in seen] == pytest.approx([cfg.margin_at(x) for x in e])
    assert seen[0][2] == 0.0 and seen[-1][3] < cfg.am_margin   # warm-ups really ramp
    part = tmp_path / "part"
    _train(config=TrainConfig(output=str(part), **tiny), stop_after=1)
    _train(resume=str(part / "last.ckpt"))
    a, b = load_checkpoint(full["last"]), load_checkpoint(part / "last.ckpt")
    assert _tensors_equal(a["state_dict"], b["state_dict"])
