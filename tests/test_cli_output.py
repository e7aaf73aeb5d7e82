"""What a person reads: no progress floods when redirected, help that explains itself."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_cli import run_cli  # noqa: E402

TINY = ["--input-size", "32", "--tvconv-inter-channels", "8", "--tvconv-inter-layers", "1",
        "--identities", "8", "--images-per-identity", "4", "--epochs", "3",
        "--batch-size", "16", "--val-pairs", "40", "--threads", "1"]


def test_train_redirected_prints_lines_not_carriage_returns(tmp_path):
    pytest.importorskip("torch")
    # the real console entry point, stderr a pipe (as in a log file or CI), --progress on
    res = run_cli("train", *TINY, "--progress", "-o", tmp_path / "run", subprocess_=True)
    assert res.returncode == 0, res.stderr
    assert "\r" not in res.stderr and "\r" not in res.stdout
    lines = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("epoch ")]
    assert [ln.split()[1] for ln in lines] == ["1/3", "2/3", "3/3"]


def test_progress_lines_are_throttled(capsys, monkeypatch):
    from edgeconv import progress

    monkeypatch.setattr(progress, "stderr_is_terminal", lambda: False)
    clock = iter(range(0, 1000, 7))                     # 7 s per update
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    bar = progress.Progress(20, "work", unit="img", every=30)
    for _ in range(20):
        bar.update(1)
    bar.close()
    err = capsys.readouterr().err
    assert "\r" not in err
    assert 3 <= len(err.splitlines()) <= 5 and err.startswith("work: ")


NOISE = ("[START]", "LiteRT-Torch Convert", "absl", "oneDNN", "torchao", "KernelPreference",
         "Estimated count of arithmetic ops", "XNNPACK delegate")


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("litert_torch")
    from edgeconv.train.checkpoint import init_checkpoint

    return init_checkpoint("mbv2_x0_1", op="tvconv", input_size=[32, 32], embedding_dim=128,
                           seed=0, output=tmp_path_factory.mktemp("q") / "tiny.ckpt")


def test_tflite_export_and_bench_print_only_our_lines(tiny_ckpt, tmp_path):
    res = run_cli("export", tiny_ckpt, "-o", tmp_path, "--format", "tflite", subprocess_=True)
    assert res.returncode == 0, res.stderr
    text = res.stdout + res.stderr
    assert [n for n in NOISE if n in text] == [], text
    assert "parity tflite" in text and f"wrote {tmp_path / 'tiny.tflite'}" in text
    res = run_cli("bench", tmp_path / "tiny.tflite", "--threads", "1", "--batch", "1",
                  subprocess_=True)
    assert res.returncode == 0, res.stderr
    assert [n for n in NOISE if n in res.stdout + res.stderr] == []


@pytest.mark.slow
def test_verbose_shows_the_converter_log(tiny_ckpt, tmp_path):
    res = run_cli("-v", "export", tiny_ckpt, "-o", tmp_path, "--format", "tflite",
                  subprocess_=True)
    assert res.returncode == 0, res.stderr
    assert "LiteRT-Torch Convert" in res.stdout + res.stderr


def _fake_report():
    def res(backend, t, b, fps):
        return {"backend": backend, "threads": t, "batch": b, "status": "ok", "fps": fps}

    models = []
    for name, scale, acc in (("tv.onnx", 1.0, 0.97), ("dw.onnx", 3.0, 0.98)):
        models.append({"name": name, "results": [res("onnxruntime", t, b, scale * 100 * t * b)
                                                 for t in (1, 2) for b in (1, 8)],
                       "memory": [{"backend": "onnxruntime", "threads": 1, "status": "ok",
                                   "peak_rss_mb": 60.0 * scale}],
                       "metadata": {"verification": {"accuracy": acc}, "macs": 2.73e6},
                       "best": {"fps": scale * 1600}})
    return {"models": models, "settings": {"memory_batch": 1, "batches": [1, 8]},
            "system": {"cpu_model": "test cpu"}}


def test_bench_plot_overlays_models_per_backend_with_a_memory_panel(tmp_path):
    pytest.importorskip("matplotlib")
    from edgeconv.profiling.bench_plot import memory_bars, throughput_panels, write_plots

    rep = _fake_report()
    panels = throughput_panels(rep)
    assert [b for b, _ in panels] == ["onnxruntime"]           # one panel, both models in it
    assert {k for k in panels[0][1]} == {("tv.onnx", 1), ("tv.onnx", 2), ("dw.onnx", 1),
                                         ("dw.onnx", 2)}
    batch, bars = memory_bars(rep)
    assert batch == 1 and [lb for lb, _ in bars] == ["tv.onnx [onnxruntime, 1t]",
                                                      "dw.onnx [onnxruntime, 1t]"]
    written = write_plots(rep, tmp_path / "b.png")
    assert [p.name for p in written] == ["b.png", "b_accuracy.png"]
    from PIL import Image

    w, h = Image.open(written[0]).size
    assert w > 1.5 * h          # two panels side by side: throughput + memory
    w2, h2 = Image.open(written[1]).size
    assert w2 < 1.8 * h2        # equal MACs: no empty MACs panel, one panel only


def test_roc_legend_sits_below_the_curves(tmp_path):
    pytest.importorskip("matplotlib")
    import numpy as np

    from edgeconv.train.verification import roc_plot

    far = np.logspace(-5, 0, 50)
    curves = {"tvconv": {"roc": {"far": far, "tar": np.sqrt(far) ** 0.2}},
              "depthwise": {"roc": {"far": far, "tar": np.sqrt(far) ** 0.1}}}
    p = roc_plot(tmp_path / "roc.png", curves)
    from PIL import Image

    img = np.asarray(Image.open(p).convert("L"))
    assert img.shape[0] > img.shape[1] * 0.8        # taller: room for the legend underneath


# ----------------------------------------------------------------------------- messages
def test_messages_name_the_problem_not_internals(tmp_path):
    from PIL import Image  # noqa: F401  (pillow is a base dependency)

    loop = tmp_path / "loop.ckpt"
    loop.symlink_to(tmp_path / "loop.ckpt")
    dangling = tmp_path / "gone.png"
    dangling.symlink_to(tmp_path / "nowhere.png")
    text = tmp_path / "notes.ckpt"
    text.write_text("hello, not a checkpoint\n")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    cases = [(("info", loop), "a symbolic link loop"),
             (("info", text), "not an edgeconv checkpoint (not a PyTorch file"),
             (("verify", "nomodel.onnx", "--user", "a", dangling), None),
             (("info", tmp_path / "absent.ckpt"), "not found (no such file)")]
    for args, pattern in cases:
        res = run_cli(*args)
        assert res.returncode == 2, (args, res.stderr)
        assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
        assert "object at 0x" not in res.stderr
        if pattern:
            assert pattern in res.stderr, (args, res.stderr)
    assert "possibly code" not in run_cli("info", text).stderr
    from edgeconv.data.images import load_image
    from edgeconv.errors import EdgeconvError

    with pytest.raises(EdgeconvError) as exc:
        load_image(broken)
    assert "object at 0x" not in str(exc.value) and "broken.png" in str(exc.value)
    with pytest.raises(EdgeconvError, match="symbolic link to .*nowhere.png.*does not exist"):
        load_image(dangling)


def test_info_prints_a_readable_summary(tmp_path):
    pytest.importorskip("torch")
    from edgeconv.train.checkpoint import init_checkpoint, load_checkpoint, save_checkpoint

    ck = init_checkpoint("mbv2_x0_1", op="tvconv", input_size=[32, 32], embedding_dim=64,
                         seed=0, output=tmp_path / "m.ckpt",
                         op_kwargs={"inter_channels": 8, "inter_layers": 1})
    d = load_checkpoint(ck)
    d["metrics"]["train_loss"] = 12.535822000259008
    d["metrics"]["verification"] = {
        "accuracy": 0.9764999999999999, "accuracy_std": 0.0083815, "eer": 0.026000000000000023,
        "far_thresholds": {"1e-3": 0.96741234567}, "tar_at_far": {"1e-3": 0.5490000001},
        "calibration": {"source": "synthetic calibration split", "num_genuine": 1800,
                        "num_impostors": 717600}}
    save_checkpoint(ck, d)
    out = run_cli("info", ck).stdout
    assert "{" not in out and "0.9764999" not in out and "12.5358" not in out
    assert "accuracy 97.65% +- 0.84" in out and "EER 2.60%" in out
    assert "FAR 1e-3: thr 0.9674, TAR 54.9%" in out and "717600 impostor pairs" in out
    assert "training form" in out and "inference form" in out


def test_extras_keep_an_onnx_only_install_small():
    import tomllib

    root = Path(__file__).resolve().parent.parent
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert not any(r.startswith("litert-torch") for r in extras["export"])
    assert any(r.startswith("litert-torch") for r in extras["tflite"])
    assert any(r.startswith("pydantic") and "<2.12" in r for r in extras["tflite"])
    assert "tflite" in extras["all"][0] and "export" in extras["all"][0]
    from edgeconv.export.formats import EXPORT_FORMATS

    assert EXPORT_FORMATS["tflite"].extra == "tflite" and EXPORT_FORMATS["onnx"].extra == "export"
