"""edgeconv bench as a real process: torch-free (children included), Ctrl-C -> partial + 130."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import _models  # noqa: E402

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def dyn_onnx(tmp_path_factory):
    return _models.make_onnx(tmp_path_factory.mktemp("proc") / "dyn.onnx")


def test_bench_never_imports_torch(dyn_onnx, tflite_file, tmp_path):
    """A meta-path hook (also active in the memory children) makes torch unimportable and
    logs every attempt; the bench must succeed and nothing may have tried."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_models.BLOCK_TORCH_SITECUSTOMIZE)
    attempts = tmp_path / "torch-attempts.log"
    env = _models.cli_env({"EDGECONV_TORCH_ATTEMPTS": str(attempts)},
                          pythonpath_first=str(site))
    probe = subprocess.run([sys.executable, "-c", "import torch"], env=env,
                           capture_output=True, text=True)
    assert probe.returncode != 0 and "blocked" in probe.stderr  # the hook is active
    attempts.unlink()

    out = tmp_path / "r.json"
    res = subprocess.run(
        _models.bench_cmd(dyn_onnx, tflite_file, "--threads", "1", "--batch", "1,2",
                          "--min-runs", "2", "--min-secs", "0.01", "--warmup-secs", "0",
                          "--memory-batch", "2", "--no-progress", "--json", out),
        env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert not attempts.exists(), attempts.read_text()
    rep = json.loads(out.read_text())
    assert [m["status"] for m in rep["models"]] == ["ok", "ok"]
    mem_rows = [r for m in rep["models"] for r in m["memory"]]
    assert len(mem_rows) == 2 and all(r["status"] == "ok" for r in mem_rows)
    assert all(r["net_peak_rss_mb"] > 0 for r in mem_rows)


def test_harness_modules_do_not_import_torch_or_heavy_packages():
    code = (
        "import sys\n"
        "import edgeconv.profiling.bench, edgeconv.profiling.bench_report\n"
        "import edgeconv.profiling.memory, edgeconv.profiling.sysinfo, edgeconv.runtime\n"
        "heavy = [m for m in ('torch', 'onnx', 'matplotlib', 'litert_torch', 'onnxruntime',\n"
        "         'ai_edge_litert') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], env=_models.cli_env(),
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def _read_until(proc, pattern: bytes, timeout: float) -> bytes:
    os.set_blocking(proc.stderr.fileno(), False)
    buf, end = b"", time.monotonic() + timeout
    while time.monotonic() < end:
        chunk = proc.stderr.read()
        if chunk:
            buf += chunk
            if re.search(pattern, buf):
                return buf
        elif proc.poll() is not None:
            break
        time.sleep(0.02)
    return buf


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_writes_partial_results_and_exits_130(dyn_onnx, tmp_path):
    out_json, out_csv = tmp_path / "p.json", tmp_path / "p.csv"
    # 2 threads x 4 batches x 0.3 s: long enough to interrupt after the first result
    proc = subprocess.Popen(
        _models.bench_cmd(dyn_onnx, dyn_onnx, "--threads", "1,2", "--batch", "1,2,4,8",
                          "--min-secs", "0.3", "--warmup-secs", "0", "--memory-batch", "0",
                          "--json", out_json, "--csv", out_csv),
        env=dict(_models.cli_env(), EDGECONV_PROGRESS_SECONDS="0"),  # a line per config
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        # a test run started in the background (`cmd &`, nohup) inherits SIGINT = SIG_IGN and
        # Python keeps it ignored, as background jobs should: give the child the default
        # disposition of an interactive Ctrl-C instead
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        seen = _read_until(proc, rb"\b[1-9]\d*/\d+ ", timeout=60)  # "bench: 1/8 cfg": one done
        assert re.search(rb"\b[1-9]\d*/\d+ ", seen), seen[-500:]
        assert proc.poll() is None, ("the bench finished before it could be interrupted",
                                     seen[-300:])
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out[-500:], err[-1000:])
    assert b"interrupted" in err
    rep = json.loads(out_json.read_text())
    assert rep["partial"] is True and rep["interrupted"] is True
    done = [r for m in rep["models"] for r in m["results"]]
    assert 1 <= len(done) < 2 * 2 * 4  # some, not all (2 models x 2 threads x 4 batches)
    assert all(r["status"] == "ok" for r in done)
    assert rep["models"][-1]["status"] in ("not_run", "interrupted")
    lines = out_csv.read_text().splitlines()
    assert len(lines) == 1 + len(done)
    assert all(line.endswith(",true") for line in lines[1:])  # the partial column
