"""deploy/emulated_check.py: models under qemu-aarch64 (Cortex-A72) match the x86 run.

The end-to-end check is ``slow`` (downloads qemu-user-static, an arm64 python3.11
sysroot and aarch64 wheels once into a cache, then emulates); it skips with the
script's reason when that tooling cannot be had. The comparison logic is tested fast.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import _models  # noqa: E402

SCRIPT = _models.REPO / "deploy" / "emulated_check.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("emulated_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_compare_flags_mismatch_and_shape_errors(tmp_path):
    ec = _load_script()
    ref = {"1": np.ones((1, 4), np.float32), "2": np.ones((2, 4), np.float32)}
    np.savez(tmp_path / "ref.npz", **ref)
    cases = {
        "same": {"1": ref["1"] + 1e-7, "2": ref["2"]},
        "off": {"1": ref["1"] + 0.1, "2": ref["2"]},
        "shape": {"1": ref["1"], "2": np.ones((1, 4), np.float32)},
    }
    cfgs, emu = [], {"models": {}}
    for name, outs in cases.items():
        np.savez(tmp_path / f"{name}.npz", **outs)
        cfgs.append({"path": name, "batches": [1, 2], "ref": str(tmp_path / "ref.npz"),
                     "out": str(tmp_path / f"{name}.npz"), "host_runtime": "x"})
        emu["models"][name] = {"ok": True, "runtime": "y"}
    cfgs.append({"path": "crashed", "batches": [1], "ref": "", "out": "", "host_runtime": "x"})
    emu["models"]["crashed"] = {"ok": False, "error": "RuntimeError: boom"}
    rows = {r["model"]: r for r in ec.compare(cfgs, emu, 1e-4, 1e-4, "t")}
    assert rows["same"]["ok"] and rows["same"]["max_abs_diff"] < 1e-6
    assert not rows["off"]["ok"] and "differ" in rows["off"]["error"]
    assert rows["off"]["max_abs_diff"] == pytest.approx(0.1, rel=1e-5)
    assert not rows["shape"]["ok"] and "shape" in rows["shape"]["error"]
    assert not rows["crashed"]["ok"] and "boom" in rows["crashed"]["error"]


def test_emulated_command_uses_cortex_a72_and_cpuinfo(tmp_path):
    ec = _load_script()
    q, root, info = Path("/q/qemu-aarch64-static"), tmp_path / "sysroot", tmp_path / "cpuinfo"
    plain = ec.emulated_cmd(q, root, "sysroot", info, ["x.py"])
    assert plain[:3] == [str(q), "-cpu", "cortex-a72"] and plain[-1] == "x.py"
    wrapped = ec.emulated_cmd(q, root, "unshare", info, ["x.py"])
    assert wrapped[:2] == ["unshare", "-m"] and str(info) in wrapped and "/proc/cpuinfo" in \
        wrapped[wrapped.index("-c") + 1]
    assert "0xd08" in ec.A72_CPUINFO and ec.A72_CPUINFO.count("processor") == 4


@pytest.mark.slow
def test_models_match_on_emulated_cortex_a72(tmp_path):
    pytest.importorskip("onnx")
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the emulated check runs on an x86_64 Linux host")
    if shutil.which("apt-get") is None and shutil.which("qemu-aarch64-static") is None:
        pytest.skip("no apt-get to fetch qemu-user-static and the arm64 sysroot")
    models = [_models.make_onnx(tmp_path / "dyn.onnx"),
              _models.make_onnx(tmp_path / "fixed.onnx", batch=1)]
    if _models.tflite_unavailable_reason() is None:
        try:
            models.append(_models.tiny_tflite())
        except RuntimeError:
            pass
    work = os.environ.get("EDGECONV_EMU_DIR",
                          str(Path.home() / ".cache" / "edgeconv" / "emulated"))
    out = tmp_path / "emu.json"
    res = subprocess.run([sys.executable, str(SCRIPT), *map(str, models), "--work", work,
                          "--json", str(out)],
                         capture_output=True, text=True, timeout=3600)
    if res.returncode == 3:
        pytest.skip(res.stderr.strip().splitlines()[-1])
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    rep = json.loads(out.read_text())
    assert rep["ok"] and rep["emulated_machine"] == "aarch64"
    assert rep["saw_cortex_a72_cpuinfo"] is True
    assert {Path(r["model"]).name for r in rep["runs"]} == {Path(m).name for m in models}
    assert all(r["ok"] and r["max_abs_diff"] < 1e-4 for r in rep["runs"])
    assert rep["bench_smoke"]["ok"] and rep["bench_smoke"]["machine"] == "aarch64"
