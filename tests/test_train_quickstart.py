"""`edgeconv quickstart`: both models trained, evaluated and compared, as steps."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_quickstart_tiny(tmp_path):
    """The whole flow on tiny settings: train, evaluate, profile, export (ONNX), bench, report."""
    pytest.importorskip("onnx")
    from edgeconv.metadata import load_metadata
    from edgeconv.quickstart import STEPS, QuickstartOptions, run_quickstart

    seen = []

    def extra_step(ctx):  # how later steps are appended
        seen.append(sorted(ctx.evals))

    lines = []
    opts = QuickstartOptions(output=str(tmp_path / "qs"), identities=8, images_per_identity=4,
                             epochs=1, tvconv_epochs=1, batch_size=16, val_pairs=40,
                             test_pairs=40,
                             embedding_dim=32, inter_channels=8, progress=False,
                             export_formats="onnx", bench_threads=(1,), bench_batches=(1, 2),
                             bench_min_secs=0.05, bench_memory_batch=1, trial_users=4,
                             trial_enrol_images=2, trial_attempts=2, trial_impostors=6,
                             trial_claims=3)
    ctx = run_quickstart(opts, steps=STEPS + [("extra", extra_step)], echo=lines.append)
    out = tmp_path / "qs"
    assert seen == [["depthwise", "tvconv"]]
    assert set(ctx.timings) == {"plan", "train", "evaluate", "profile", "export", "bench",
                                "unlock", "report", "extra", "total"}
    # the budget planned the run (a 1-epoch recipe is never cut below or raised above 1)
    assert ctx.extra["plan"].epochs == {"tvconv": 1, "depthwise": 1}
    assert ctx.extra["machine_images_per_s"] > 0
    for op in ("tvconv", "depthwise"):
        assert (out / op / "last.ckpt").exists()
        assert (out / f"eval_{op}.json").exists()
        onnx_files = list((out / "export" / op).glob("*.onnx"))
        assert len(onnx_files) == 1
        meta = load_metadata(onnx_files[0])
        assert meta["op"] == op and meta["input_size"] == [32, 32]
        # the calibrated thresholds travel with the exported model, with their counts:
        # all pairs of 300 unseen identities x 4 images
        ver = meta["verification"]
        assert "1e-3" in ver["far_thresholds"] and "1e-4" in ver["far_thresholds"]
        cal = ver["calibration"]
        assert cal["num_impostors"] == 1200 * 1199 // 2 - 300 * 6 and cal["num_genuine"] == 1800
        assert cal["resolvable"]["1e-4"] and len(cal["roc"]) >= 10
        assert ver["far_thresholds"]["1e-3"] == cal["far_thresholds"]["1e-3"]
        assert ver["open_set"]["num_impostors"] == cal["num_impostors"]
        assert ctx.extra["fps"][op]["onnx"] > 0
        # the unlock trial ran on the exported file, torch-free code, with its threshold
        trial = ctx.extra["unlock"][str(onnx_files[0])]
        assert trial["genuine"]["attempts"] == 4 * 2 and trial["impostor"]["attempts"] == 6 * 3
        assert trial["impostor_1n"]["attempts"] == 6
        assert trial["threshold"] == pytest.approx(ver["far_thresholds"]["1e-3"])
        assert 0 <= trial["genuine_accept"] <= 1 and 0 <= trial["impostor_accept"] <= 1
        assert ctx.extra["files"][str(onnx_files[0])]["peak_rss_mb"] > 0
    assert (out / "roc.png").read_bytes()[:4] == b"\x89PNG"
    bench = json.loads((out / "bench.json").read_text())
    assert {len(m["results"]) for m in bench["models"]} == {2}  # threads (1,) x batches (1, 2)
    table = (out / "summary.md").read_text()
    assert "| tvconv |" in table and "| depthwise |" in table and "+-" in table
    assert "genuine accept" in table and "impostor accept 1:1" in table
    assert "peak memory (MB)" in table and "_fused" not in table
    summary = json.loads((out / "summary.json").read_text())
    res = summary["results"]
    # folded TVConv and depthwise have the same inference MACs
    assert res["tvconv"]["macs"] == res["depthwise"]["macs"] > 0
    assert res["tvconv"]["params_train"] > res["depthwise"]["params_train"]  # the generator
    assert res["tvconv"]["params_inference"] > res["depthwise"]["params_inference"]  # its maps
    # the run's own generator settings (not the profile defaults): same count as `info`
    from edgeconv.train.checkpoint import describe_checkpoint

    info = describe_checkpoint(res["tvconv"]["checkpoint"], as_json=True)
    assert info["params_train"] == res["tvconv"]["params_train"]
    assert info["params_inference"] == res["tvconv"]["params_inference"]
    assert summary["timings_s"]["export"] >= 0
    assert any("| tvconv |" in ln for ln in lines)


def test_quickstart_cli_help_is_torch_free():
    from tests.test_cli import run_cli

    res = run_cli("quickstart", "--help", block_torch=True)
    assert res.returncode == 0 and "depthwise twin" in res.stdout


def test_quickstart_cli_hands_its_budget_to_the_run(monkeypatch):
    """`edgeconv quickstart --budget M` (the README's option) reaches the run's options, the
    default is 15 minutes, and a bad value is one line with exit 2 (nothing trains)."""
    import edgeconv.quickstart as qs
    from tests.test_cli import run_cli

    seen = []
    monkeypatch.setattr(qs, "run_quickstart", lambda opts, echo=None: seen.append(opts))
    assert run_cli("quickstart", "-o", "unused", "--budget", "7.5").returncode == 0
    assert run_cli("quickstart", "-o", "unused").returncode == 0
    assert [o.budget_min for o in seen] == [7.5, 15.0]
    for bad in ("-1", "nan", "100000"):
        res = run_cli("quickstart", "--budget", bad)
        assert res.returncode == 2 and "--budget" in res.stderr and "Traceback" not in res.stderr


def test_quickstart_help_describes_every_option():
    from edgeconv.cli import cli
    from tests.test_cli import run_cli

    cmd = cli.commands["quickstart"]
    undocumented = [p.name for p in cmd.params if getattr(p, "help", None) in (None, "")
                    and p.name != "help"]
    assert undocumented == []
    out = run_cli("quickstart", "--help", block_torch=True).stdout
    for word in ("evaluate", "export", "benchmark", "unlock", "Square face-crop size"):
        assert word in out


def test_quickstart_exports_each_format_in_its_fast_form(monkeypatch):
    """TVConv's TFLite file is exported fused where the LiteRT delegate is built (the default
    tapconv is what a stock LiteRT runs fastest), ONNX keeps its default (already fused);
    depthwise keeps every default."""
    from edgeconv.export import litert_fused
    from edgeconv.quickstart import export_plan

    monkeypatch.setattr(litert_fused, "kernel_available", lambda: True)
    assert export_plan("tvconv", "onnx,tflite") == [(["onnx"], None), (["tflite"], "fused")]
    assert export_plan("depthwise", "onnx,tflite") == [(["onnx", "tflite"], None)]
    monkeypatch.setattr(litert_fused, "kernel_available", lambda: False)
    assert export_plan("tvconv", "onnx,tflite") == [(["onnx", "tflite"], None)]
