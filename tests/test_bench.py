"""edgeconv bench: sweep shape, failure isolation, reports (JSON/CSV/PNG), bad model files."""

from __future__ import annotations

import csv
import itertools
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import _models  # noqa: E402

from edgeconv.profiling import bench as BN  # noqa: E402
from edgeconv.profiling import bench_report as R  # noqa: E402

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

FAST = dict(warmup_runs=1, warmup_secs=0.0, min_runs=3, min_secs=0.02)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    return {
        "dyn": _models.make_onnx(d / "dyn.onnx"),
        "fixed": _models.make_onnx(d / "fixed.onnx", batch=1),
        # symbolic batch but a Reshape baked to [1, 8]: batch 2 fails inside ORT at run time
        "baked": _models.make_onnx(d / "baked.onnx", reshape_to=[1, _models.C_OUT]),
    }


def _settings(**kw):
    base = dict(threads=[1, 2], batches=[1, 2, 3], memory_batch=0, measure_spinning=False, **FAST)
    base.update(kw)
    return BN.BenchSettings(**base)


def test_sweep_covers_every_combination_once(models, tflite_file):
    s = _settings()
    report = BN.run_bench([models["dyn"], tflite_file], s, progress=False)
    assert report["partial"] is False
    by_name = {m["name"]: m for m in report["models"]}
    for name, backend in (("dyn.onnx", "onnxruntime"), (tflite_file.name, "tflite")):
        m = by_name[name]
        assert m["status"] == "ok"
        combos = [(r["backend"], r["threads"], r["batch"]) for r in m["results"]]
        assert sorted(combos) == sorted(itertools.product([backend], s.threads, s.batches))
        for r in m["results"]:
            assert r["status"] == "ok", r
            lat = r["latency_ms"]
            assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
            assert lat["min"] <= lat["mean"] <= lat["max"]
            assert r["runs"] >= s.min_runs and r["timed_secs"] >= s.min_secs
            assert r["warmup_runs"] >= s.warmup_runs
            assert r["init_ms"] > 0 and r["first_inference_ms"] > 0
            assert r["fps"] == pytest.approx(r["batch"] / (lat["mean"] / 1000.0))
        best = max(m["results"], key=lambda r: r["fps"])
        assert (m["best"]["threads"], m["best"]["batch"]) == (best["threads"], best["batch"])


def test_one_failure_never_stops_the_sweep(models):
    report = BN.run_bench([models["fixed"], models["baked"], models["dyn"]],
                          _settings(threads=[1]), progress=False)
    fixed, baked, dyn = report["models"]
    status = {r["batch"]: r for r in fixed["results"]}
    assert status[1]["status"] == "ok"
    for b in (2, 3):
        assert status[b]["status"] == "failed"
        assert status[b]["failure"]["kind"] == "unsupported_batch"
        assert "fixed batch 1" in status[b]["failure"]["reason"]
        assert status[b]["fps"] is None
    assert fixed["best"]["batch"] == 1
    baked_status = {r["batch"]: r for r in baked["results"]}
    assert baked_status[1]["status"] == "ok"
    assert baked_status[2]["status"] == "failed" and baked_status[2]["failure"]["reason"]
    assert all(r["status"] == "ok" for r in dyn["results"]) and len(dyn["results"]) == 3


def test_backend_filter_skips_other_formats(models, tflite_file):
    report = BN.run_bench([models["dyn"], tflite_file], _settings(backends=["tflite"],
                          threads=[1], batches=[1]), progress=False)
    onnx_entry, tfl_entry = report["models"]
    assert onnx_entry["status"] == "skipped" and onnx_entry["results"] == []
    assert [r["backend"] for r in tfl_entry["results"]] == ["tflite"]


def test_spinning_measured_both_ways(models):
    report = BN.run_bench([models["dyn"]], _settings(threads=[1, 2], batches=[1],
                          measure_spinning=True), progress=False)
    spin = report["models"][0]["spinning"]
    assert spin["sweep_setting"] == "on"
    assert spin["threads"] == 2 and spin["batch"] == 1
    for key in ("on", "off"):
        assert spin[key]["status"] == "ok" and spin[key]["fps"] > 0
    assert all(r["ort_allow_spinning"] is True for r in report["models"][0]["results"])


def test_memory_children_subtract_the_baseline(models):
    report = BN.run_bench([models["dyn"]], _settings(threads=[1], batches=[1, 2],
                          memory_batch=2), progress=False)
    m = report["models"][0]
    (row,) = m["memory"]
    assert row["status"] == "ok", row
    for key in ("peak_rss_mb", "uss_mb", "pss_mb", "baseline_peak_rss_mb", "baseline_uss_mb"):
        assert row[key] > 0, key
    assert row["net_peak_rss_mb"] == pytest.approx(row["peak_rss_mb"]
                                                   - row["baseline_peak_rss_mb"])
    assert row["net_uss_mb"] == pytest.approx(row["uss_mb"] - row["baseline_uss_mb"])
    assert row["net_peak_rss_mb"] > 0  # an ORT session costs memory
    assert row["peak_rss_mb"] >= row["rss_mb"]  # peak read last
    assert row["peak_source"] in ("VmHWM", "ru_maxrss")
    base = report["memory_baselines"]["onnxruntime"]
    assert base["model"] is None and base["pid"] != os.getpid()
    at_mem_batch = [r for r in m["results"] if r["batch"] == 2][0]
    assert at_mem_batch["peak_rss_mb"] == row["peak_rss_mb"]
    assert [r for r in m["results"] if r["batch"] == 1][0]["peak_rss_mb"] is None


def test_memory_failure_for_unsupported_batch_is_recorded(models):
    report = BN.run_bench([models["fixed"]], _settings(threads=[1], batches=[1],
                          memory_batch=4), progress=False)
    (row,) = report["models"][0]["memory"]
    assert row["status"] == "failed"
    assert row["failure"]["kind"] == "unsupported_batch"
    assert report["models"][0]["best"]["batch"] == 1


def _write_meta(model_path, acc, macs):
    meta = {"format_version": 1, "model": model_path.stem, "input_size": [16, 16],
            "macs": macs, "params": 1000, "verification": {"accuracy": acc}}
    (model_path.parent / (model_path.name + ".json")).write_text(json.dumps(meta))


def test_cli_reports_json_csv_png(models, tmp_path, capsys):
    from edgeconv.cli import main

    a = _models.make_onnx(tmp_path / "a.onnx")
    b = _models.make_onnx(tmp_path / "b.onnx", seed=1)
    _write_meta(a, 0.91, 2_000_000)
    _write_meta(b, 0.95, 4_000_000)
    out = tmp_path / "out"
    out.mkdir()
    args = ["bench", str(a), str(b), str(models["fixed"]), "--threads", "1,2", "--batch", "1,2",
            "--warmup-runs", "1", "--warmup-secs", "0", "--min-runs", "3", "--min-secs", "0.02",
            "--memory-batch", "0", "--no-progress", "--json", str(out / "r.json"),
            "--csv", str(out / "r.csv"), "--plot", str(out / "r.png")]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 0
    console = capsys.readouterr().out
    assert "best configuration per model" in console and "cores:" in console

    rep = json.loads((out / "r.json").read_text())
    assert rep["schema"] == "edgeconv.bench" and rep["version"] == 1
    assert rep["partial"] is False
    for key in ("settings", "system", "thermal", "warnings", "definitions", "models",
                "runtimes", "memory_baselines"):
        assert key in rep
    sysinfo = rep["system"]
    assert sysinfo["cores"]["logical"] >= 1 and sysinfo["cpu_model"]
    for lib in ("numpy", "onnxruntime", "ai-edge-litert", "tflite-runtime", "python", "platform"):
        assert lib in sysinfo["libraries"]
    assert set(rep["thermal"]) == {"before", "after"}
    for d in ("peak_rss_mb", "uss_mb", "fps", "latency_ms", "first_inference_ms"):
        assert d in rep["definitions"]
    models_out = rep["models"]
    assert [m["name"] for m in models_out] == ["a.onnx", "b.onnx", "fixed.onnx"]
    for m in models_out:
        assert m["best"] and {"backend", "threads", "batch", "fps"} <= set(m["best"])
        for r in m["results"]:
            assert {"backend", "threads", "batch", "fps", "latency_ms", "status", "peak_rss_mb",
                    "uss_mb", "init_ms", "first_inference_ms", "failure"} <= set(r)
            if r["status"] == "ok":
                assert {"mean", "p50", "p90", "p99"} <= set(r["latency_ms"])
    assert models_out[0]["metadata"]["verification"]["accuracy"] == 0.91
    assert models_out[1]["metadata"]["macs"] == 4_000_000

    with open(out / "r.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and list(rows[0]) == R.CSV_COLUMNS
    assert len(rows) == sum(len(m["results"]) for m in models_out) == 12
    assert {r["partial"] for r in rows} == {"false"}
    assert sum(r["best"] == "true" for r in rows) == 3
    assert any(r["status"] == "failed" and r["failure_kind"] == "unsupported_batch" for r in rows)

    for png in (out / "r.png", out / "r_accuracy.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size > 5000
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # atomic writes


def test_accuracy_plot_needs_two_models_with_metadata(models, tmp_path):
    pytest.importorskip("matplotlib")
    from edgeconv.profiling.bench_plot import accuracy_points, write_plots

    report = BN.run_bench([models["dyn"]], _settings(threads=[1], batches=[1]), progress=False)
    assert accuracy_points(report) == []
    written = write_plots(report, tmp_path / "one.png")
    assert [p.name for p in written] == ["one.png"]


def test_bad_model_files_exit_2_and_the_good_one_is_measured(models, tmp_path, capsys):
    from edgeconv.cli import main

    missing = tmp_path / "missing.onnx"
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07 definitely not onnx \xff" * 8)
    data = models["dyn"].read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 2])
    bad_tfl = tmp_path / "bad.tflite"
    bad_tfl.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 10)
    out = tmp_path / "r.json"
    opts = ["--threads", "1", "--batch", "1,2", "--min-runs", "2", "--min-secs", "0.01",
            "--warmup-secs", "0", "--memory-batch", "0", "--no-progress", "--json", str(out)]
    # a missing file is refused before anything runs or prints: one line, exit 2
    with pytest.raises(SystemExit) as exc:
        main(["bench", str(missing), str(models["dyn"]), *opts])
    assert exc.value.code == 2
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err.strip().splitlines() == [
        f"edgeconv: error: {missing}: model file not found (no such file)"]
    assert not out.exists()
    # files that exist but do not load: reported one line each, the good one is measured
    with pytest.raises(SystemExit) as exc:
        main(["bench", str(garbage), str(models["dyn"]), str(truncated), str(bad_tfl), *opts])
    assert exc.value.code == 2
    err_lines = [ln for ln in capsys.readouterr().err.splitlines()
                 if ln.startswith("edgeconv: error:")]
    for bad in (garbage, truncated, bad_tfl):
        hits = [ln for ln in err_lines if str(bad) in ln]
        assert len(hits) == 1, (bad, err_lines)
    assert len(err_lines) == 3
    rep = json.loads(out.read_text())
    by_name = {m["name"]: m for m in rep["models"]}
    assert by_name["dyn.onnx"]["status"] == "ok" and len(by_name["dyn.onnx"]["results"]) == 2
    for name in ("garbage.onnx", "truncated.onnx", "bad.tflite"):
        assert by_name[name]["status"] == "error" and by_name[name]["error"]


def test_bench_inputs_checked_before_the_sweep(models, tmp_path, capsys):
    from edgeconv.cli import main

    cases = [(["--backend", "tflite"], "a onnx file, and no requested backend runs it"),
             (["--json", str(tmp_path / "nope" / "x.json")], "does not exist (edgeconv does not"),
             (["--csv", str(tmp_path / "nope" / "x.csv")], "does not exist")]
    for extra, pattern in cases:
        with pytest.raises(SystemExit) as exc:
            main(["bench", str(models["dyn"]), "--no-progress", *extra])
        cap = capsys.readouterr()
        assert exc.value.code == 2 and cap.out == "", (extra, cap)
        assert len(cap.err.strip().splitlines()) == 1 and pattern in cap.err, (extra, cap.err)
    assert not (tmp_path / "nope").exists()


def test_memory_batch_is_labelled_and_flagged(models, tmp_path, capsys):
    from edgeconv.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["bench", str(models["dyn"]), "--threads", "1", "--batch", "1", "--min-runs", "2",
              "--min-secs", "0.01", "--warmup-secs", "0", "--memory-batch", "2",
              "--no-progress"])
    cap = capsys.readouterr()
    assert exc.value.code == 0, cap.err
    assert "peak memory is measured at batch 2 (--memory-batch), which is not among --batch 1" \
        in cap.err
    assert "peak memory at batch 2, a batch not among --batch" in cap.out
    warnings = [ln for ln in cap.err.splitlines() if "warning:" in ln]
    assert all(w.split("warning: ", 1)[1] not in cap.out for w in warnings)  # said once


def test_unknown_backend_is_a_user_error(models, capsys):
    from edgeconv.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["bench", str(models["dyn"]), "--backend", "tensorrt", "--no-progress"])
    assert exc.value.code == 2
    assert "unknown backend" in capsys.readouterr().err


def test_console_report_lists_failures_and_warnings(models):
    import psutil

    over = (psutil.cpu_count(logical=False) or psutil.cpu_count()) + 1
    report = BN.run_bench([models["fixed"]], _settings(threads=[1, over], batches=[1, 2]),
                          progress=False)
    text = R.format_report(report)
    assert "failed configurations:" in text and "unsupported_batch" in text
    assert any(f"threads {over} exceed" in w for w in report["warnings"])
    assert f"warning: threads {over} exceed" in text


def test_every_file_says_what_ran_and_pairs_get_a_verdict(models):
    report = BN.run_bench([models["dyn"]], _settings(threads=[1], batches=[1]), progress=False)
    assert report["models"][0]["execution"] == "standard ops"
    from edgeconv.profiling.bench_report import verdicts

    def m(name, op, fps, backend="onnxruntime", execution="kernel"):
        return {"name": name, "status": "ok", "results": [], "execution": execution,
                "metadata": {"model": name.split(".")[0], "op": op},
                "best": {"backend": backend, "threads": 1, "batch": 8, "fps": fps}}

    rep = {"models": [m("tv.onnx", "tvconv", 300.0), m("dw.onnx", "depthwise", 200.0),
                      m("dw2.onnx", "depthwise", 100.0),
                      m("tv.tflite", "tvconv", 50.0, "tflite", "portable body")]}
    lines = verdicts(rep)
    # two tvconv-vs-depthwise pairs in ORT; same-op pairs and cross-backend pairs get none
    assert len(lines) == 2
    assert lines[0].startswith("onnxruntime: tv tvconv [kernel] (tv.onnx) is 1.50x the max "
                               "FPS of dw depthwise [kernel] (dw.onnx)")
    assert "3.00x" in lines[1]
    rep["models"][1]["best"]["fps"] = 600.0
    assert verdicts(rep)[0].startswith("onnxruntime: dw depthwise [kernel] (dw.onnx) is 2.00x")
