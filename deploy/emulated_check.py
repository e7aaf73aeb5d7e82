#!/usr/bin/env python3
"""Run exported models on an emulated Raspberry Pi 4 CPU and compare with this machine.

    python deploy/emulated_check.py model.onnx model.tflite [--work DIR] [--json FILE]

What it does (x86_64 Debian/Ubuntu host, no root needed except for --cpuinfo unshare):

1. tools, cached in ``--work`` (default ``~/.cache/edgeconv/emulated``):
   * ``qemu-aarch64-static`` from Debian's ``qemu-user-static`` package
     (``apt-get download`` + ``dpkg-deb -x``; nothing is installed), unless one is on PATH;
   * an arm64 sysroot with Debian bookworm's ``python3.11`` (the Raspberry Pi OS
     Bookworm interpreter, glibc 2.36): the arm64 .debs and their dependencies,
     resolved and downloaded with a *private* apt configuration (the host's
     dpkg architectures and apt lists are left alone), then ``dpkg-deb -x``;
   * the aarch64 cp311 wheels of the base install (numpy, onnxruntime 1.31.1,
     ai-edge-litert 2.3.0, psutil, click, tqdm) via ``pip install --target
     --platform manylinux_2_28_aarch64 ... --only-binary=:all: --python-version 3.11``;
     with ``--tflite-runtime`` also tflite-runtime 2.14.0 + numpy<2 in a second target.
2. a reference run here (x86) through ``edgeconv.runtime.backends``: seeded random
   input at batch 1 (and 2 where the model accepts it), outputs saved;
3. the same code (this checkout's ``edgeconv`` package, pure Python) under
   ``qemu-aarch64-static -cpu cortex-a72`` with the sysroot's python3.11.
   onnxruntime reads /proc/cpuinfo at start-up and crashes on an x86 one, so
   the run sees a Cortex-A72 (Pi 4) cpuinfo: ``--cpuinfo unshare`` bind-mounts
   it over /proc/cpuinfo in a private mount namespace (``unshare -m``, root);
   ``--cpuinfo sysroot`` places it at ``<sysroot>/proc/cpuinfo`` where qemu's
   ``-L`` path redirection serves it (no privileges); ``auto`` (default) picks
   unshare when running as root, else sysroot. The runner checks it saw CPU part 0xd08;
4. outputs compared (``--rtol``/``--atol``); with ``--bench-smoke`` (default)
   ``edgeconv bench`` itself also runs once under emulation (memory children off:
   they would exec an aarch64 binary outside qemu).

It proves the models and the torch-free harness run correctly on the target ISA
and CPU features (Armv8.0 NEON, no dot-product), never speed: emulated timings
mean nothing. Exit status: 0 outputs match, 1 mismatch or emulated failure,
3 the tooling could not be had (the message says which step and why).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLING_UNAVAILABLE = 3
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
WHEELS = ["numpy", "onnxruntime==1.31.1", "ai-edge-litert==2.3.0", "psutil", "click", "tqdm"]
TFLITE_RUNTIME_WHEELS = ["numpy<2", "tflite-runtime==2.14.0"]
# Every manylinux tag a glibc 2.36 (Bookworm) aarch64 system accepts that wheels use;
# tflite-runtime 2.14.0 ships manylinux_2_34 only.
PLATFORMS = ["manylinux_2_36_aarch64", "manylinux_2_35_aarch64", "manylinux_2_34_aarch64",
             "manylinux_2_31_aarch64", "manylinux_2_28_aarch64", "manylinux_2_27_aarch64",
             "manylinux_2_17_aarch64", "manylinux2014_aarch64", "linux_aarch64"]
ROOT_PACKAGES = ["python3.11", "libstdc++6"]  # libstdc++ for onnxruntime / LiteRT
# Essential-tool dependencies the interpreter never needs at run time.
SKIP_PACKAGES = {"dpkg", "tar", "perl", "perl-base", "perl-modules-5.36", "install-info",
                 "libperl5.36", "mailcap", "mime-support", "readline-common",
                 "libtirpc-common", "media-types", "libgdbm-compat4"}
A72_CPUINFO = "".join(
    f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
    "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\n"
    "CPU revision\t: 3\n\n" for i in range(4)
) + "Hardware\t: BCM2835\nRevision\t: c03111\nModel\t\t: Raspberry Pi 4 Model B Rev 1.1\n"


class ToolingUnavailable(RuntimeError):
    """A step that needs the network, apt, pip or a privilege could not be done."""


def log(msg: str) -> None:
    print(f"[emulated-check] {msg}", file=sys.stderr, flush=True)


def _run(cmd, step: str, **kw) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    except FileNotFoundError as exc:
        raise ToolingUnavailable(f"{step}: {exc.filename} not found") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        raise ToolingUnavailable(f"{step} failed (exit {proc.returncode}): {tail}")
    return proc


# --------------------------------------------------------------------------- apt, privately
class PrivateApt:
    """apt-get/apt-cache with their own lists and cache under ``root`` (host untouched)."""

    def __init__(self, root: Path, mirror: str, security: str, suite: str):
        for tool in ("apt-get", "apt-cache", "dpkg-deb", "dpkg"):
            if shutil.which(tool) is None:
                raise ToolingUnavailable(f"{tool} not found: a Debian/Ubuntu host is needed to "
                                         "fetch qemu-user-static and the arm64 python3.11")
        if not Path(DEBIAN_KEYRING).exists():
            raise ToolingUnavailable(f"{DEBIAN_KEYRING} missing: apt-get install "
                                     "debian-archive-keyring")
        self.root = root
        self.host_arch = _run(["dpkg", "--print-architecture"], "dpkg").stdout.strip()
        for d in ("state/lists/partial", "cache/archives/partial", "etc/sources.list.d",
                  "etc/preferences.d"):
            (root / d).mkdir(parents=True, exist_ok=True)
        (root / "state/status").touch()
        opts = f"[arch={self.host_arch},arm64 signed-by={DEBIAN_KEYRING}]"
        (root / "etc/sources.list").write_text(
            f"deb {opts} {mirror} {suite} main\n"
            f"deb {opts} {mirror} {suite}-updates main\n"
            f"deb {opts} {security} {suite}-security main\n")
        self.opts = []
        for k, v in (("Dir::State", root / "state"), ("Dir::State::status", root / "state/status"),
                     ("Dir::Cache", root / "cache"),
                     ("Dir::Etc::SourceList", root / "etc/sources.list"),
                     ("Dir::Etc::SourceParts", root / "etc/sources.list.d"),
                     ("Dir::Etc::Preferences", root / "etc/preferences"),
                     ("Dir::Etc::PreferencesParts", root / "etc/preferences.d"),
                     ("APT::Architecture", self.host_arch), ("Acquire::Languages", "none"),
                     ("APT::Sandbox::User", "root" if os.geteuid() == 0 else "")):
            if v != "":
                self.opts += ["-o", f"{k}={v}"]
        self.opts += ["-o", f"APT::Architectures::={self.host_arch}",
                      "-o", "APT::Architectures::=arm64"]
        self._updated = False

    def update(self):
        if self._updated:
            return
        lists = self.root / "state/lists"
        fresh = any(lists.glob("*arm64_Packages*")) and \
            time.time() - max(p.stat().st_mtime for p in lists.glob("*Packages*")) < 86400
        if not fresh:
            log("apt-get update (private lists)")
            _run(["apt-get", *self.opts, "update"], "apt-get update", timeout=600)
        self._updated = True

    def depends(self, packages) -> list[str]:
        self.update()
        proc = _run(["apt-cache", *self.opts, "depends", "--recurse", "--no-recommends",
                     "--no-suggests", "--no-conflicts", "--no-breaks", "--no-replaces",
                     "--no-enhances", *packages], "apt-cache depends", timeout=300)
        out = []
        for line in proc.stdout.splitlines():
            name = line.strip()
            if line[:1].isalnum() and name.endswith(":arm64"):
                if name.split(":")[0] not in SKIP_PACKAGES:
                    out.append(name)
        return sorted(set(out))

    def download(self, packages, dest: Path) -> list[Path]:
        self.update()
        dest.mkdir(parents=True, exist_ok=True)
        _run(["apt-get", *self.opts, "download", *packages], "apt-get download", cwd=dest,
             timeout=900)
        return sorted(dest.glob("*.deb"))


def extract(debs, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        _run(["dpkg-deb", "-x", str(deb), str(target)], f"dpkg-deb -x {Path(deb).name}")


# --------------------------------------------------------------------------- tools
def ensure_qemu(work: Path, apt_factory) -> Path:
    for name in ("qemu-aarch64-static", "qemu-aarch64"):
        found = shutil.which(name)
        if found:
            return Path(found)
    exe = work / "qemu/usr/bin/qemu-aarch64-static"
    if not exe.exists():
        log("fetching qemu-user-static (apt-get download, not installed)")
        apt = apt_factory()
        debs = apt.download([f"qemu-user-static:{apt.host_arch}"], work / "debs-qemu")
        extract([d for d in debs if d.name.startswith("qemu-user-static")], work / "qemu")
    if not exe.exists():
        raise ToolingUnavailable("qemu-user-static did not contain qemu-aarch64-static")
    return exe


def ensure_sysroot(work: Path, apt_factory) -> Path:
    sysroot = work / "sysroot"
    py = sysroot / "usr/bin/python3.11"
    if not py.exists():
        apt = apt_factory()
        pkgs = apt.depends([f"{p}:arm64" for p in ROOT_PACKAGES])
        if not any(p.startswith("python3.11:") for p in pkgs):
            raise ToolingUnavailable("apt could not resolve python3.11:arm64 "
                                     "(is the mirror reachable and arm64 listed?)")
        log(f"fetching {len(pkgs)} arm64 packages for the python3.11 sysroot")
        debs = apt.download(pkgs, work / "debs-arm64")
        extract([d for d in debs if d.name.endswith("_arm64.deb")], sysroot)
    if not py.exists():
        raise ToolingUnavailable("the arm64 sysroot has no usr/bin/python3.11")
    return sysroot


def ensure_wheels(target: Path, requirements) -> Path:
    marker = target / ".edgeconv-requirements"
    want = "\n".join(requirements)
    if marker.exists() and marker.read_text() == want:
        return target
    log(f"pip install --target {target.name} (aarch64 cp311 wheels): {' '.join(requirements)}")
    if target.exists():
        shutil.rmtree(target)
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--target", str(target), "--only-binary=:all:", "--python-version", "3.11",
           "--implementation", "cp", "--abi", "cp311", "--abi", "abi3", "--abi", "none"]
    for plat in PLATFORMS:
        cmd += ["--platform", plat]
    _run(cmd + list(requirements), "pip install of the aarch64 wheels", timeout=1800)
    marker.write_text(want)
    return target


# --------------------------------------------------------------------------- runs
RUNNER = r'''
import json, platform, sys
import numpy as np
from edgeconv.runtime import backends as B

cfg = json.load(open(sys.argv[1]))
out = {"machine": platform.machine(), "python": platform.python_version(),
       "numpy": np.__version__, "cpuinfo_a72": "0xd08" in open("/proc/cpuinfo").read(),
       "models": {}}
for m in cfg["models"]:
    res = {}
    try:
        model = B.open_model(m["path"], threads=m["threads"])
        res["runtime"] = f"{model.runtime} {model.runtime_version}"
        outputs = {}
        for batch in m["batches"]:
            x = np.load(m["inputs"][str(batch)])
            model.set_batch(batch)
            outputs[str(batch)] = model.run(x)
        np.savez(m["out"], **outputs)
        res["ok"] = True
    except Exception as exc:
        res.update(ok=False, error=f"{type(exc).__name__}: {exc}")
    out["models"][m["path"]] = res
print("EMU_RESULT " + json.dumps(out))
'''


def reference_run(models, rundir: Path) -> list[dict]:
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from edgeconv.runtime import backends as B

    cfgs = []
    for i, path in enumerate(models):
        with B.open_model(path, threads=1) as m:
            batches = [1, 2] if m.dynamic_batch or m.backend == "tflite" else [1]
            inputs, ref, used = {}, {}, []
            for batch in batches:
                try:
                    shape = m.set_batch(batch)
                except B.UnsupportedConfig:
                    continue
                x = B.random_input(shape, m.input_dtype, seed=batch)
                f = rundir / f"in{i}_b{batch}.npy"
                np.save(f, x)
                inputs[str(batch)] = str(f)
                ref[str(batch)] = m.run(x).copy()
                used.append(batch)
            np.savez(rundir / f"ref{i}.npz", **ref)
            cfgs.append({"path": str(Path(path).resolve()), "threads": 2, "batches": used,
                         "inputs": inputs, "out": str(rundir / f"emu{i}.npz"),
                         "ref": str(rundir / f"ref{i}.npz"),
                         "host_runtime": f"{m.runtime} {m.runtime_version}"})
    return cfgs


def emulated_cmd(qemu: Path, sysroot: Path, cpuinfo_method: str, cpuinfo: Path, argv):
    base = [str(qemu), "-cpu", "cortex-a72", "-L", str(sysroot),
            str(sysroot / "usr/bin/python3.11"), *map(str, argv)]
    if cpuinfo_method == "unshare":
        script = 'mount --bind "$0" /proc/cpuinfo && exec "$@"'
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", script,
                str(cpuinfo), *base]
    return base


def choose_cpuinfo_method(requested: str, sysroot: Path, cpuinfo: Path) -> str:
    method = requested
    if method == "auto":
        method = "unshare" if os.geteuid() == 0 and shutil.which("unshare") else "sysroot"
    if method == "unshare":
        if shutil.which("unshare") is None:
            raise ToolingUnavailable("unshare (util-linux) not found; use --cpuinfo sysroot")
        probe = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                                'mount --bind "$0" /proc/cpuinfo && grep -q 0xd08 /proc/cpuinfo',
                                str(cpuinfo)], capture_output=True, text=True)
        if probe.returncode != 0:
            if requested == "unshare":
                raise ToolingUnavailable("unshare -m + bind mount of /proc/cpuinfo failed "
                                         f"(needs root / CAP_SYS_ADMIN): {probe.stderr.strip()}")
            method = "sysroot"
    fake = sysroot / "proc/cpuinfo"
    if method == "sysroot":
        fake.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cpuinfo, fake)
    elif fake.exists():
        fake.unlink()
    return method


def emu_env(paths) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in paths)
    env["PYTHONNOUSERSITE"] = "1"
    env["QEMU_CPU"] = "cortex-a72"
    return env


def run_emulated(qemu, sysroot, method, cpuinfo, site, cfgs, rundir, extra_env=None,
                 timeout=1800) -> dict:
    cfg_file = rundir / "config.json"
    cfg_file.write_text(json.dumps({"models": cfgs}))
    runner = rundir / "runner.py"
    runner.write_text(RUNNER)
    env = emu_env([site, ROOT])
    env.update(extra_env or {})
    proc = subprocess.run(emulated_cmd(qemu, sysroot, method, cpuinfo, [runner, cfg_file]),
                          capture_output=True, text=True, env=env, timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith("EMU_RESULT "):
            return json.loads(line[len("EMU_RESULT "):])
    tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
    raise RuntimeError(f"the emulated python failed (exit {proc.returncode}): {tail}")


def compare(cfgs, emu: dict, rtol: float, atol: float, tag: str) -> list[dict]:
    import numpy as np

    rows = []
    for cfg in cfgs:
        res = emu["models"].get(cfg["path"], {})
        row = {"model": cfg["path"], "run": tag, "host_runtime": cfg["host_runtime"],
               "emulated_runtime": res.get("runtime"), "ok": False, "batches": cfg["batches"]}
        if not res.get("ok"):
            row["error"] = res.get("error", "no result")
            rows.append(row)
            continue
        ref, got = np.load(cfg["ref"]), np.load(cfg["out"])
        diffs = []
        for b in map(str, cfg["batches"]):
            a, e = ref[b], got[b]
            if a.shape != e.shape:
                row["error"] = f"batch {b}: shape {e.shape} != host {a.shape}"
                break
            diffs.append(float(np.max(np.abs(a.astype(np.float64) - e.astype(np.float64))))
                         if a.size else 0.0)
            if not np.allclose(e, a, rtol=rtol, atol=atol):
                row["error"] = f"batch {b}: outputs differ beyond rtol={rtol} atol={atol}"
        row["max_abs_diff"] = max(diffs) if diffs else None
        row["ok"] = "error" not in row
        rows.append(row)
    return rows


def bench_smoke(qemu, sysroot, method, cpuinfo, site, models, rundir) -> dict:
    """`edgeconv bench` itself under emulation (1 thread, batch 1, a handful of runs)."""
    out = rundir / "bench_emulated.json"
    argv = ["-m", "edgeconv.cli", "bench", *models, "--threads", "1", "--batch", "1",
            "--warmup-runs", "1", "--warmup-secs", "0", "--min-runs", "3", "--min-secs", "0",
            "--memory-batch", "0", "--no-progress", "--json", out]
    proc = subprocess.run(emulated_cmd(qemu, sysroot, method, cpuinfo, argv),
                          capture_output=True, text=True, env=emu_env([site, ROOT]),
                          timeout=1800)
    res = {"exit_status": proc.returncode, "ok": proc.returncode == 0 and out.exists()}
    if out.exists():
        rep = json.loads(out.read_text())
        res["machine"] = rep["system"].get("machine")
        res["cpu_model"] = rep["system"].get("cpu_model")
        res["statuses"] = {m["name"]: m["status"] for m in rep["models"]}
        res["ok"] = res["ok"] and all(s == "ok" for s in res["statuses"].values())
    else:
        res["error"] = "\n".join(proc.stderr.strip().splitlines()[-6:])
    return res


# --------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Run ONNX/TFLite models under qemu-aarch64 "
                                             "(Cortex-A72) and compare with the host run.")
    ap.add_argument("models", nargs="+", help=".onnx / .tflite files")
    ap.add_argument("--work", default=os.environ.get(
        "EDGECONV_EMU_DIR", str(Path.home() / ".cache/edgeconv/emulated")),
        help="cache folder for qemu, the sysroot and the wheels")
    ap.add_argument("--cpuinfo", choices=("auto", "unshare", "sysroot"), default="auto")
    ap.add_argument("--mirror", default="http://deb.debian.org/debian")
    ap.add_argument("--security-mirror", default="http://deb.debian.org/debian-security")
    ap.add_argument("--suite", default="bookworm", help="Debian suite (Pi OS Bookworm = bookworm)")
    ap.add_argument("--tflite-runtime", action="store_true",
                    help="also run .tflite models with tflite-runtime 2.14.0 + numpy<2")
    ap.add_argument("--no-bench-smoke", dest="bench_smoke", action="store_false",
                    help="skip running `edgeconv bench` under emulation")
    ap.add_argument("--rtol", type=float, default=1e-4)
    ap.add_argument("--atol", type=float, default=1e-4)
    ap.add_argument("--json", help="write the comparison report here")
    args = ap.parse_args(argv)

    models = [str(Path(m).resolve()) for m in args.models]
    for m in models:
        if not Path(m).is_file():
            print(f"emulated_check: error: {m}: no such file", file=sys.stderr)
            return 2
    work = Path(args.work).expanduser().resolve()
    work.mkdir(parents=True, exist_ok=True)
    report = {"host": platform.machine(), "models": models, "work": str(work), "runs": []}
    try:
        if platform.system() != "Linux":
            raise ToolingUnavailable("qemu user-mode emulation needs a Linux host")
        if platform.machine() in ("aarch64", "arm64"):
            raise ToolingUnavailable("the host is already aarch64: run the models natively")
        apt_holder = {}

        def apt_factory():
            if "apt" not in apt_holder:
                apt_holder["apt"] = PrivateApt(work / "apt", args.mirror, args.security_mirror,
                                               args.suite)
            return apt_holder["apt"]

        qemu = ensure_qemu(work, apt_factory)
        sysroot = ensure_sysroot(work, apt_factory)
        site = ensure_wheels(work / "site-aarch64", WHEELS)
        cpuinfo = work / "cpuinfo-cortex-a72"
        cpuinfo.write_text(A72_CPUINFO)
        method = choose_cpuinfo_method(args.cpuinfo, sysroot, cpuinfo)
        report.update(qemu=str(qemu), sysroot=str(sysroot), cpuinfo_method=method)
        tfl_site = tfl_error = None
        if args.tflite_runtime:
            try:
                tfl_site = ensure_wheels(work / "site-aarch64-tflite-runtime",
                                         TFLITE_RUNTIME_WHEELS)
            except ToolingUnavailable as exc:  # optional part: report it, check the rest
                tfl_error = str(exc)
    except ToolingUnavailable as exc:
        print(f"emulated_check: tooling unavailable: {exc}", file=sys.stderr)
        return TOOLING_UNAVAILABLE

    ok = True
    with tempfile.TemporaryDirectory(prefix="edgeconv-emu-") as tmp:
        rundir = Path(tmp)
        cfgs = reference_run(models, rundir)
        log(f"running {len(cfgs)} model(s) under qemu-aarch64 -cpu cortex-a72 "
            f"(cpuinfo via {method})")
        try:
            emu = run_emulated(qemu, sysroot, method, cpuinfo, site, cfgs, rundir)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"emulated_check: {exc}", file=sys.stderr)
            return 1
        report.update(emulated_machine=emu["machine"], emulated_python=emu["python"],
                      emulated_numpy=emu["numpy"], saw_cortex_a72_cpuinfo=emu["cpuinfo_a72"])
        report["runs"] += compare(cfgs, emu, args.rtol, args.atol, "base wheels")
        ok = emu["machine"] == "aarch64" and emu["cpuinfo_a72"]

        tfl_cfgs = [c for c in cfgs if c["path"].endswith(".tflite")]
        if tfl_error and tfl_cfgs:
            report["runs"].append({"run": "tflite-runtime", "ok": False,
                                   "error": f"tooling unavailable: {tfl_error}"})
        if tfl_site is not None and tfl_cfgs:
            for c in tfl_cfgs:
                c["out"] = c["out"].replace(".npz", "_tflrt.npz")
            try:
                emu2 = run_emulated(qemu, sysroot, method, cpuinfo, tfl_site, tfl_cfgs, rundir,
                                    extra_env={"EDGECONV_TFLITE_RUNTIME": "tflite-runtime"})
                report["runs"] += compare(tfl_cfgs, emu2, args.rtol, args.atol,
                                          "tflite-runtime")
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                report["runs"].append({"run": "tflite-runtime", "ok": False, "error": str(exc)})
        if args.bench_smoke:
            log("running `edgeconv bench` under emulation (smoke: correctness, not speed)")
            report["bench_smoke"] = bench_smoke(qemu, sysroot, method, cpuinfo, site, models,
                                                rundir)
            ok = ok and report["bench_smoke"]["ok"]
    ok = ok and all(r["ok"] for r in report["runs"])
    report["ok"] = ok
    for r in report["runs"]:
        state = "OK  " if r["ok"] else "FAIL"
        diff = r.get("max_abs_diff")
        print(f"{state} {Path(r.get('model', '?')).name} [{r['run']}] host "
              f"{r.get('host_runtime')} vs aarch64 {r.get('emulated_runtime')}: batches "
              f"{r.get('batches')}, max |diff| {diff if diff is None else f'{diff:.3g}'}"
              + (f" ({r['error']})" if r.get("error") else ""))
    if "bench_smoke" in report:
        b = report["bench_smoke"]
        print(f"{'OK  ' if b['ok'] else 'FAIL'} edgeconv bench under emulation: "
              f"machine {b.get('machine')}, cpu {b.get('cpu_model')}, "
              f"statuses {b.get('statuses')}" + (f" ({b['error']})" if b.get("error") else ""))
    print(f"emulated aarch64 (python {report.get('emulated_python')}, numpy "
          f"{report.get('emulated_numpy')}, Cortex-A72 cpuinfo seen: "
          f"{report.get('saw_cortex_a72_cpuinfo')}): {'PASS' if ok else 'FAIL'}")
    if args.json:
        sys.path.insert(0, str(ROOT))
        from edgeconv.fileio import atomic_write_json

        atomic_write_json(args.json, report)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
