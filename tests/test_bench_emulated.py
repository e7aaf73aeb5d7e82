"""deploy/emulated_check.py: models under qemu-aarch64 (Cortex-A72) match the x86 run.

The end-to-end checks are ``slow`` (download qemu-user-static, an arm64 python3.11
sysroot, aarch64 wheels and, for the fused kernel, Debian's aarch64 cross g++ once into a
cache, then emulate); they skip with the script's reason when that tooling cannot be had.
The comparison and ELF-check logic is tested fast.
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


def test_compare_checks_the_cosine_of_every_sample(tmp_path):
    ec = _load_script()
    ref = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)
    got = ref.copy()
    got[1] = [0.0, 1.0, 5e-5]  # within atol, but the cosine of sample 1 is below 1 - 1e-9
    np.savez(tmp_path / "ref.npz", **{"2": ref})
    np.savez(tmp_path / "got.npz", **{"2": got})
    cfg = [{"path": "m", "batches": [2], "ref": str(tmp_path / "ref.npz"),
            "out": str(tmp_path / "got.npz"), "host_runtime": "x"}]
    emu = {"models": {"m": {"ok": True, "runtime": "y", "uses_kernels": True}}}
    (row,) = ec.compare(cfg, emu, 0.0, 1e-4, "t")
    assert row["ok"] and row["min_cosine"] < 1 and row["uses_kernels"] is True
    (row,) = ec.compare(cfg, emu, 0.0, 1e-4, "t", min_cos=1 - 1e-12)
    assert not row["ok"] and "cosine" in row["error"]
    assert ec.min_cosine(np.zeros((2, 3)), np.zeros((2, 3))) == 1.0


def test_kernel_rows_need_the_expected_isa_and_library():
    ec = _load_script()
    emu = {"kernels": {"isa": "scalar", "available_isas": ["scalar", "neon"],
                       "library": "/w/lib.so"}}
    rows = [{"ok": True, "uses_kernels": True}]
    ec.check_kernel_rows(rows, emu, "neon", "/w/lib.so")
    assert not rows[0]["ok"] and "expected 'neon'" in rows[0]["error"]
    rows = [{"ok": True, "uses_kernels": True}]
    ec.check_kernel_rows(rows, emu, "scalar", "/w/lib.so")
    assert rows[0]["ok"] and rows[0]["isa"] == "scalar"
    rows = [{"ok": True}]
    ec.check_kernel_rows(rows, {"kernels": {"error": "KernelsMissing: x"}}, "neon", "/w/lib.so")
    assert not rows[0]["ok"] and "did not load" in rows[0]["error"]


READELF_V = """
Version symbols section '.gnu.version' contains 5 entries:
 Addr: 0x0000000000000a40  Offset: 0x000a40  Link: 3 (.dynsym)
  000:   0 (*local*)       3 (GLIBCXX_3.4)   4 (GLIBC_2.17)

Version needs section '.gnu.version_r' contains 2 entries:
 Addr: 0x0000000000000b58  Offset: 0x000b58  Link: 4 (.dynstr)
  000000: Version: 1  File: libstdc++.so.6  Cnt: 2
  0x0010:   Name: GLIBCXX_3.4.32  Flags: none  Version: 5
  0x0020:   Name: GLIBCXX_3.4  Flags: none  Version: 3
  0x0030: Version: 1  File: libc.so.6  Cnt: 1
  0x0040:   Name: GLIBC_2.17  Flags: none  Version: 4
"""


def test_elf_check_flags_what_bookworm_cannot_load():
    ec = _load_script()
    versions = ec.parse_version_needs(READELF_V)
    assert versions == {"libstdc++.so.6": ["GLIBCXX_3.4.32", "GLIBCXX_3.4"],
                        "libc.so.6": ["GLIBC_2.17"]}
    ok = {"machine": "AArch64", "needed": ["libstdc++.so.6", "libc.so.6"],
          "versions": {"libstdc++.so.6": ["GLIBCXX_3.4.30"], "libc.so.6": ["GLIBC_2.36"]}}
    assert ec.elf_problems(ok) == []
    bad = {"machine": "Advanced Micro Devices X86-64", "needed": ["libstdc++.so.6", "libfoo.so"],
           "versions": versions | {"libc.so.6": ["GLIBC_2.38"]}}
    problems = " | ".join(ec.elf_problems(bad))
    assert "not AArch64" in problems and "libfoo.so" in problems
    assert "GLIBCXX_3.4.32" in problems and "GLIBC_2.38" in problems
    assert "GLIBCXX_3.4 " not in problems + " "


def _skip_unless_emulation_host():
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the emulated check runs on an x86_64 Linux host")
    if shutil.which("apt-get") is None and shutil.which("qemu-aarch64-static") is None:
        pytest.skip("no apt-get to fetch qemu-user-static and the arm64 sysroot")


def _work_dir() -> str:
    return os.environ.get("EDGECONV_EMU_DIR",
                          str(Path.home() / ".cache" / "edgeconv" / "emulated"))


@pytest.mark.slow
def test_models_match_on_emulated_cortex_a72(tmp_path):
    pytest.importorskip("onnx")
    _skip_unless_emulation_host()
    models = [_models.make_onnx(tmp_path / "dyn.onnx"),
              _models.make_onnx(tmp_path / "fixed.onnx", batch=1)]
    if _models.tflite_unavailable_reason() is None:
        try:
            models.append(_models.tiny_tflite())
        except RuntimeError:
            pass
    work = _work_dir()
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


@pytest.mark.slow
def test_fused_model_matches_on_emulated_cortex_a72(tmp_path):
    """The kernel library cross-built for aarch64 loads under emulation, picks NEON by itself,
    and a fused model (float32/float16/int8 weights) matches the x86 run with NEON and with
    the scalar path; the library needs nothing Raspberry Pi OS Bookworm lacks."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    _skip_unless_emulation_host()
    out = tmp_path / "emu.json"
    res = subprocess.run([sys.executable, str(SCRIPT), "--fused", "--work", _work_dir(),
                          "--json", str(out)], capture_output=True, text=True, timeout=3600)
    if res.returncode == 3:
        pytest.skip(res.stderr.strip().splitlines()[-1])
    print(res.stdout)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rep = json.loads(out.read_text())
    assert rep["ok"] and rep["emulated_machine"] == "aarch64" and rep["saw_cortex_a72_cpuinfo"]
    kern = rep["kernels"]
    assert kern["machine"] == "AArch64" and kern["elf_ok"] is True, kern
    assert set(kern["needed"]) <= {"libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1"}
    assert kern["emulated"]["neon"]["isa"] == "neon"
    assert "neon" in kern["emulated"]["neon"]["available_isas"]
    assert kern["emulated"]["scalar"]["isa"] == "scalar"
    runs = {(Path(r["model"]).name, r["run"]): r for r in rep["runs"]}
    exported = [Path(e["path"]).name for e in rep["fused_exports"]]
    assert len(exported) == 3
    for name in exported:
        for tag in ("neon", "scalar"):
            r = runs[(name, f"kernels {tag}")]
            assert r["ok"] and r["isa"] == tag and r["uses_kernels"] is not False, r
            assert r["max_abs_diff"] <= 1e-4 and r["min_cosine"] >= 0.99999, r
            assert r["batches"] == [1, 5] and r["sample_similarity"] < 0.99999, r
    assert rep["bench_smoke"]["ok"], rep["bench_smoke"]
    assert all(s == "ok" for s in rep["bench_smoke"]["statuses"].values())


def test_litert_rows_fail_on_a_portable_body_fallback():
    """A fused .tflite file that ran its portable body (delegate not used), a wrong ISA or
    unclaimed composites fails the LiteRT check; the delegate's run passes."""
    ec = _load_script()
    info = {"available": True, "library": "/w/lib.so", "isa": "neon", "selftest": "passed"}
    cfg = [{"path": "m", "composites": 17}]

    def rows_for(res, want="neon", lit=info):
        rows = [{"ok": True}]
        ec.check_litert_rows(rows, cfg, {"litert": lit, "models": {"m": dict(ok=True, **res)}},
                             want, "/w/lib.so")
        return rows[0]

    good = {"execution_path": "kernel", "uses_kernels": True,
            "delegate": {"isa": "neon", "claimed_nodes": 17}}
    row = rows_for(good)
    assert row["ok"] and row["isa"] == "neon" and row["claimed_nodes"] == 17
    row = rows_for({"execution_path": "portable body", "uses_kernels": False, "delegate": None})
    assert not row["ok"] and "portable body" in row["error"]
    assert not rows_for(good, want="scalar")["ok"]
    row = rows_for(dict(good, delegate={"isa": "neon", "claimed_nodes": 3}))
    assert not row["ok"] and "claimed 3" in row["error"]
    row = rows_for(good, lit=dict(info, selftest="failed: x"))
    assert not row["ok"] and "self-test" in row["error"]
    row = rows_for(good, lit=dict(info, library="/elsewhere.so"))
    assert not row["ok"] and "/elsewhere.so" in row["error"]


@pytest.mark.slow
def test_litert_delegate_matches_on_emulated_cortex_a72(tmp_path):
    """The LiteRT delegate cross-built for aarch64 loads under emulation, passes its self-test,
    claims every edgeconv.tvconv composite of a fused .tflite file (float32 weights)
    with NEON selected by itself and with scalar forced, and matches the x86 run with the x86
    delegate at batches 1 and 3; the library needs nothing Raspberry Pi OS Bookworm lacks."""
    pytest.importorskip("torch")
    pytest.importorskip("litert_torch")
    _skip_unless_emulation_host()
    out = tmp_path / "emu.json"
    res = subprocess.run([sys.executable, str(SCRIPT), "--litert-fused", "--work", _work_dir(),
                          "--json", str(out)], capture_output=True, text=True, timeout=3600)
    if res.returncode == 3:
        pytest.skip(res.stderr.strip().splitlines()[-1])
    print(res.stdout)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rep = json.loads(out.read_text())
    assert rep["ok"] and rep["emulated_machine"] == "aarch64" and rep["saw_cortex_a72_cpuinfo"]
    lit = rep["litert"]
    assert lit["machine"] == "AArch64" and lit["elf_ok"] is True, lit
    assert set(lit["needed"]) <= {"libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1"}
    assert lit["emulated"]["neon"]["isa"] == "neon"
    assert lit["emulated"]["scalar"]["isa"] == "scalar"
    assert all(e["selftest"] == "passed" for e in lit["emulated"].values())
    runs = {(Path(r["model"]).name, r["run"]): r for r in rep["runs"]}
    exported = [Path(e["path"]).name for e in rep["litert_exports"]]
    assert exported and all(n.endswith(".tflite") for n in exported)
    for name in exported:
        for tag in ("neon", "scalar"):
            r = runs[(name, f"litert {tag}")]
            assert r["ok"] and r["isa"] == tag and r["execution_path"] == "kernel", r
            assert r["uses_kernels"] is True and r["claimed_nodes"] == r["composites"] > 0, r
            assert r["max_abs_diff"] <= 1e-4 and r["min_cosine"] >= 0.99999, r
            assert r["batches"] == [1, 3] and r["sample_similarity"] < 0.99999, r
    assert rep["bench_smoke"]["ok"], rep["bench_smoke"]
    assert all(s == "ok" for s in rep["bench_smoke"]["statuses"].values())
