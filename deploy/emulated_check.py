#!/usr/bin/env python3
"""Run exported models on an emulated Raspberry Pi 4 CPU and compare with this machine.

    python deploy/emulated_check.py model.onnx model.tflite [--work DIR] [--json FILE]
    python deploy/emulated_check.py --fused [model.onnx ...]   # + the fused TVConv kernel
    python deploy/emulated_check.py --litert-fused [model.tflite ...]  # + the LiteRT delegate

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

5. the fused TVConv kernel (``--fused``, or any given ONNX model with ``edgeconv.TVConv``
   nodes): ``libedgeconv_kernels.so`` cross-built for aarch64 with ``--cxx``, else an
   ``aarch64-linux-gnu-g++`` on PATH, else Debian's ``g++-aarch64-linux-gnu`` (the cross
   packages, and any of their host libraries the host lacks, ``apt-get download`` +
   ``dpkg-deb -x`` into ``--work``, run through a wrapper with ``--sysroot``; nothing is
   installed); its ELF checked with readelf (aarch64, needs only libc/libm/libstdc++/libgcc_s,
   symbol versions no newer than Raspberry Pi OS Bookworm's: glibc 2.36, GLIBCXX_3.4.30;
   else rebuilt with ``-static-libstdc++ -static-libgcc``). With ``--fused`` a small model
   is exported here (torch): ``edgeconv init mbv2_x0_1 --op tvconv --input-size 32``,
   randomised (affinity maps, BatchNorms, conv weights: a fresh model's embedding hardly
   depends on its input, the run checks that it does), then ``edgeconv export --format onnx
   --formulation fused`` once per ``--fused-weight-dtypes``, against a host (x86) library
   built from the same sources into ``--work`` (the checkout's own is left alone). The kernel
   models run here (reference, batches 1 and 5) and twice under emulation with the aarch64
   library registered: ``EDGECONV_KERNEL_ISA`` unset (the NEON path must be selected) and
   ``=scalar``; each must match the host run within ``--fused-atol`` (max |diff|, 1e-4) and
   ``--fused-min-cosine`` (per embedding, 0.99999).
6. the LiteRT delegate (``--litert-fused``, also part of ``--fused``, or any given .tflite
   file holding ``edgeconv.tvconv`` composites): ``libedgeconv_litert.so`` cross-built for
   aarch64 with ``edgeconv/kernels/build.py::build_litert`` (no runtime headers; the NEON
   path) by the same compiler, with the same ELF check (and static-runtime rebuild). A small
   model is exported here (the same randomised ``mbv2_x0_1`` checkpoint; torch +
   litert-torch): ``edgeconv export --format tflite --formulation fused`` once per
   ``--litert-weight-dtypes`` (default float32; ``float32,float16`` adds float16 weights,
   one more conversion of minutes), its delegate gate run with a host (x86)
   delegate built from the same sources into ``--work``. The files (dynamic batch) run here
   through ``edgeconv.runtime.backends.open_model`` (batches 1 and 3; the host delegate must
   claim every composite) and twice under emulation with ``EDGECONV_LITERT_DELEGATE`` pointing
   at the aarch64 library: ``EDGECONV_KERNEL_ISA`` unset (the delegate, which reads it when
   LiteRT creates it, must select ``neon``) and ``=scalar``. Each emulated run must load that
   library, pass the delegate's self-test, run every file on it (the backend's
   ``execution_path`` "kernel", ``uses_kernels`` True: a fallback to the portable body
   FAILS), with the expected ISA and all composite nodes claimed (the delegate's own
   ``edgeconv_litert_isa`` / ``edgeconv_litert_claimed_nodes``), and match the host run
   within ``--fused-atol`` and ``--fused-min-cosine``. The aarch64 ai-edge-litert wheel
   (``WHEELS``, pinned as in pyproject.toml; manylinux_2_27_aarch64) must be in the site.

It proves the models and the torch-free harness run correctly on the target ISA
and CPU features (Armv8.0 NEON, no dot-product), never speed: emulated timings
mean nothing. Exit status: 0 outputs match, 1 mismatch, emulated failure or a kernel that
does not build / fails the ELF check, 3 the tooling could not be had (the message says which
step and why: qemu, sysroot, wheels, cross compiler, ONNX Runtime headers, torch (and
litert-torch) for the export).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import shlex
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
CROSS_PREFIX = "aarch64-linux-gnu-"
CROSS_PACKAGES = ["g++-aarch64-linux-gnu"]  # Debian's default aarch64 cross g++ (12 on bookworm)
# What the kernel library may need on the Pi, and the newest symbol versions Raspberry Pi OS
# Bookworm provides (glibc 2.36, libstdc++6/libgcc-s1 12.2).
KERNEL_ALLOWED_NEEDED = {"libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1",
                         "ld-linux-aarch64.so.1"}
BOOKWORM_MAX_VERSIONS = {"GLIBC": (2, 36), "GLIBCXX": (3, 4, 30), "CXXABI": (1, 3, 13),
                         "GCC": (12, 0, 0)}
STATIC_RUNTIME_FLAGS = ["-static-libstdc++", "-static-libgcc"]
FUSED_MODEL, FUSED_INPUT_SIZE = "mbv2_x0_1", "32"
FUSED_BATCHES = (1, 5)  # 5: the kernel's four-image FMA chains and a remainder image
LITERT_BATCHES = (1, 3)  # the fused .tflite file is dynamic-batch (resized at run time)
LITERT_LIB_NAME = "libedgeconv_litert.so"
# what the emulated runs must not inherit from this host (set per run where meant)
HOST_ONLY_ENV = ("EDGECONV_KERNELS_LIB", "EDGECONV_KERNEL_ISA", "EDGECONV_LITERT_DELEGATE",
                 "EDGECONV_LITERT_SELFTEST")
A72_CPUINFO = "".join(
    f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
    "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\n"
    "CPU revision\t: 3\n\n" for i in range(4)
) + "Hardware\t: BCM2835\nRevision\t: c03111\nModel\t\t: Raspberry Pi 4 Model B Rev 1.1\n"


class ToolingUnavailable(RuntimeError):
    """A step that needs the network, apt, pip or a privilege could not be done."""


class CheckFailed(RuntimeError):
    """A real failure of what is checked (a kernel that does not build, a failed export)."""


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

    def depends(self, packages, arch: str = "arm64") -> list[str]:
        """The recursive dependency closure: its arm64 packages (``name:arm64``, less
        SKIP_PACKAGES), or with ``arch="host"`` its host-architecture and ``all`` ones."""
        self.update()
        proc = _run(["apt-cache", *self.opts, "depends", "--recurse", "--no-recommends",
                     "--no-suggests", "--no-conflicts", "--no-breaks", "--no-replaces",
                     "--no-enhances", *packages], "apt-cache depends", timeout=300)
        out = []
        for line in proc.stdout.splitlines():
            name = line.strip()
            if not line[:1].isalnum():
                continue
            if arch == "arm64":
                if name.endswith(":arm64") and name.split(":")[0] not in SKIP_PACKAGES:
                    out.append(name)
            elif ":" not in name:
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


# --------------------------------------------------------------------------- kernels
CROSS_WRAPPER = """#!/bin/sh
# Written by deploy/emulated_check.py: Debian's aarch64 cross {tool}, unpacked with dpkg-deb -x
# under R (nothing installed); its host libraries (libbfd, ...) come from R too.
R={root}
LD_LIBRARY_PATH="{libpath}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}"
export LD_LIBRARY_PATH
exec "$R/usr/bin/{prefix}{tool}" {extra}"$@"
"""
PROBE_CPP = ('#include <vector>\n'
             'extern "C" int probe() { return int(std::vector<int>(3).size()); }\n')


def _installed_on_host(package: str) -> bool:
    proc = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", package],
                          capture_output=True, text=True)
    return proc.returncode == 0 and proc.stdout.startswith("ii")


def _probe_cxx(cxx: Path, work: Path) -> None:
    """Compile and link a tiny shared library: the compiler runs here and links for aarch64."""
    with tempfile.TemporaryDirectory(dir=work, prefix=".probe-") as tmp:
        src, out = Path(tmp) / "probe.cpp", Path(tmp) / "libprobe.so"
        src.write_text(PROBE_CPP)
        _run([str(cxx), "-O2", "-std=c++17", "-fPIC", "-shared", str(src), "-o", str(out)],
             f"the aarch64 C++ compiler {cxx} (probe build)", timeout=300)


def ensure_cross_cxx(work: Path, apt_factory, requested: str | None = None) -> Path:
    """An aarch64 C++ compiler: ``requested``, else one on PATH, else Debian's cross g++
    unpacked into ``work/cross`` (apt-get download + dpkg-deb -x) behind a wrapper."""
    if requested:
        found = shutil.which(requested)
        if not found:
            raise ToolingUnavailable(f"--cxx {requested}: not found")
        cxx = Path(found)
    elif shutil.which(CROSS_PREFIX + "g++"):
        cxx = Path(shutil.which(CROSS_PREFIX + "g++"))
    else:
        root = work / "cross"
        cxx = root / "bin" / (CROSS_PREFIX + "g++")
        if not cxx.exists():
            apt = apt_factory()
            pkgs = apt.depends(CROSS_PACKAGES, arch="host")
            if not any(p.startswith("g++-") and p.endswith(CROSS_PREFIX[:-1]) for p in pkgs):
                raise ToolingUnavailable("apt could not resolve g++-aarch64-linux-gnu")
            # the cross packages, and the host libraries they need that this host lacks
            # (never a libc: the host's own must be used)
            want = [p for p in pkgs
                    if "aarch64-linux-gnu" in p or p.endswith("-arm64-cross")
                    or (p not in ("libc6", "libc6-dev") and not _installed_on_host(p))]
            log(f"fetching the aarch64 cross compiler ({len(want)} packages; apt-get download "
                "+ dpkg-deb -x, not installed)")
            debs = apt.download(want, work / "debs-cross")
            if root.exists():
                shutil.rmtree(root)
            extract([d for d in debs if d.name.split("_")[0] in want], root)
            if not (root / "usr/bin" / (CROSS_PREFIX + "g++")).exists():
                raise ToolingUnavailable(f"the cross packages hold no usr/bin/{CROSS_PREFIX}g++")
            libdirs = sorted({f"$R/{d.relative_to(root)}" for base in ("usr/lib", "lib")
                              for d in (root / base).glob("*-linux-gnu*")
                              if d.is_dir() and not d.name.startswith("aarch64")})
            (root / "bin").mkdir(exist_ok=True)
            # --sysroot: the libc.so linker script names /usr/aarch64-linux-gnu/lib/...,
            # which the linker then finds under R
            for tool, extra in (("readelf", ""), ("g++", '--sysroot="$R" ')):
                w = root / "bin" / (CROSS_PREFIX + tool)
                w.write_text(CROSS_WRAPPER.format(tool=tool, root=shlex.quote(str(root)),
                                                  libpath=":".join(libdirs), prefix=CROSS_PREFIX,
                                                  extra=extra))
                w.chmod(0o755)
    _probe_cxx(cxx, work)
    return cxx


def find_readelf(cxx: Path) -> str | None:
    name = Path(cxx).name
    if name.endswith("g++"):
        sibling = Path(cxx).with_name(name[:-3] + "readelf")
        if sibling.exists():
            return str(sibling)
    return shutil.which(CROSS_PREFIX + "readelf") or shutil.which("readelf")


def parse_version_needs(text: str) -> dict[str, list[str]]:
    """``readelf -V`` output -> {needed library: [symbol versions]} (.gnu.version_r only)."""
    out: dict[str, list[str]] = {}
    inside, cur = False, None
    for line in text.splitlines():
        if line.startswith("Version needs section"):
            inside, cur = True, None
            continue
        if line.strip() and not line.startswith(" "):
            inside = False
        if not inside:
            continue
        m = re.search(r"File: (\S+)", line)
        if m:
            cur = m.group(1)
            out.setdefault(cur, [])
            continue
        m = re.search(r"Name: (\S+)", line)
        if m and cur:
            out[cur].append(m.group(1))
    return out


def _vtuple(text: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(x) for x in text.split("."))
    except ValueError:
        return None


def elf_deps(readelf: str, lib: Path) -> dict:
    header = _run([readelf, "-h", "-W", str(lib)], "readelf -h").stdout
    dyn = _run([readelf, "-d", "-W", str(lib)], "readelf -d").stdout
    vers = _run([readelf, "-V", "-W", str(lib)], "readelf -V").stdout
    machine = re.search(r"Machine:\s+(.+)", header)
    versions = parse_version_needs(vers)
    newest: dict[str, str] = {}
    for names in versions.values():
        for name in names:
            prefix, _, ver = name.partition("_")
            old = newest.get(prefix)
            if _vtuple(ver) and (old is None or _vtuple(ver) > _vtuple(old.partition("_")[2])):
                newest[prefix] = name
    return {"machine": machine.group(1).strip() if machine else None,
            "needed": re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dyn),
            "versions": versions, "newest_versions": newest}


def elf_problems(deps: dict) -> list[str]:
    """Why the library would not load on Raspberry Pi OS Bookworm (aarch64); [] if it would."""
    problems = []
    if deps.get("machine") and "aarch64" not in deps["machine"].lower():
        problems.append(f"ELF machine is {deps['machine']}, not AArch64")
    extra = sorted(set(deps["needed"]) - KERNEL_ALLOWED_NEEDED)
    if extra:
        problems.append(f"needs {', '.join(extra)} (allowed: "
                        f"{', '.join(sorted(KERNEL_ALLOWED_NEEDED))})")
    for lib, names in deps["versions"].items():
        for name in names:
            prefix, _, ver = name.partition("_")
            limit = BOOKWORM_MAX_VERSIONS.get(prefix)
            if limit is None:
                continue
            v = _vtuple(ver)
            if v is None or v > limit:
                problems.append(f"{lib} {name} is newer than Bookworm's "
                                f"{prefix}_{'.'.join(map(str, limit))}")
    return problems


def _kernel_build_module():
    spec = importlib.util.spec_from_file_location(
        "_edgeconv_kernel_build", ROOT / "edgeconv" / "kernels" / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def ort_include() -> Path:
    kb = _kernel_build_module()
    try:
        return kb.find_ort_include()
    except kb.BuildError as exc:
        raise ToolingUnavailable(f"ONNX Runtime headers for the kernel build: {exc}") from None


def _build_key(kb, compiler: str, extra_flags, include=None) -> str:
    """What a library build depends on: every source and header, the build script, the
    compiler (its resolved path and size) and the flags."""
    import hashlib

    h = hashlib.sha256()
    for f in sorted([*kb.SRC.glob("*.cpp"), *kb.SRC.glob("*.h"), Path(kb.__file__)]):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    exe = Path(shutil.which(compiler) or compiler).resolve()
    h.update(f"{exe}\0{exe.stat().st_size if exe.exists() else 0}\0"
             f"{' '.join(extra_flags or [])}\0{include}".encode())
    return h.hexdigest()


def _cached_build(out: Path, what: str, compiler: str, extra_flags, include, build) -> Path:
    """``build()`` unless ``out`` was built from the same sources, compiler and flags (a
    ``.key`` file next to it): cross builds take minutes on a loaded host."""
    kb = _kernel_build_module()
    if shutil.which(compiler) is None:
        raise ToolingUnavailable(f"{what}: no C++ compiler '{compiler}' (apt-get install g++)")
    key = _build_key(kb, compiler, extra_flags, include)
    stamp = out.with_name(out.name + ".key")
    if out.exists() and stamp.exists() and stamp.read_text() == key:
        log(f"{what}: up to date (same sources, compiler and flags): {out}")
        return out
    stamp.unlink(missing_ok=True)
    t0 = time.time()
    try:
        build()
    except kb.BuildError as exc:
        raise CheckFailed(f"{what} does not build: {exc}") from None
    stamp.write_text(key)
    log(f"built {what} in {time.time() - t0:.1f}s: {out}")
    return out


def build_kernels(out: Path, include: Path, cxx: str | None, what: str,
                  extra_flags=None) -> Path:
    kb = _kernel_build_module()
    compiler = cxx or os.environ.get("CXX") or "g++"
    return _cached_build(out, what, compiler, extra_flags, include,
                         lambda: kb.build(out, include, cxx=compiler, extra_flags=extra_flags))


def build_litert(out: Path, cxx: str | None, what: str, extra_flags=None) -> Path:
    """The LiteRT delegate library (``build.py::build_litert``: no runtime headers)."""
    kb = _kernel_build_module()
    compiler = cxx or os.environ.get("CXX") or "g++"
    return _cached_build(out, what, compiler, extra_flags, None,
                         lambda: kb.build_litert(out, cxx=compiler, extra_flags=extra_flags))


def _build_elf_checked(out: Path, cxx: Path, build, what: str, extra: dict) -> dict:
    """``build(extra_flags, what)`` for aarch64, then the ELF check; rebuilt with static
    libstdc++/libgcc when only the symbol versions are too new for Bookworm."""
    readelf = find_readelf(cxx)
    res = {"library": str(out), "cxx": str(cxx), "readelf": readelf, "static_libstdcxx": False,
           **extra}
    build(None, what)
    if readelf is None:
        res.update(elf_ok=None, elf_problems=["no readelf to check the library with"])
        return res
    deps = elf_deps(readelf, out)
    problems = elf_problems(deps)
    if problems and all("newer than" in p for p in problems):
        log(f"rebuilding with {' '.join(STATIC_RUNTIME_FLAGS)}: {'; '.join(problems)}")
        build(STATIC_RUNTIME_FLAGS, f"{what} (static libstdc++)")
        res["static_libstdcxx"] = True
        deps = elf_deps(readelf, out)
        problems = elf_problems(deps)
    res.update(deps, elf_ok=not problems, elf_problems=problems)
    return res


def build_aarch64_kernels(work: Path, cxx: Path, include: Path) -> dict:
    """Cross-build the ORT library, check its ELF; static libstdc++/libgcc if versions too new."""
    out = work / "kernels-aarch64" / "libedgeconv_kernels.so"
    return _build_elf_checked(
        out, cxx, lambda flags, what: build_kernels(out, include, str(cxx), what,
                                                    extra_flags=flags),
        "the aarch64 kernel library", {"ort_include": str(include)})


def build_aarch64_litert(work: Path, cxx: Path) -> dict:
    """Cross-build the LiteRT delegate library (NEON path), with the same ELF check."""
    out = work / "kernels-aarch64" / LITERT_LIB_NAME
    return _build_elf_checked(
        out, cxx, lambda flags, what: build_litert(out, str(cxx), what, extra_flags=flags),
        "the aarch64 LiteRT delegate library", {})


# A fresh checkpoint hides mistakes: its affinity maps are all ones (every pixel gets the same
# weights), its BatchNorms are identities and its convolutions so small that the embedding
# hardly depends on the input (cosine 1.0000000 between two random inputs' embeddings), so a
# wrong kernel would pass. Randomise as the tests do (edgeconv.models.randomise) and give
# every Conv2d normal weights of variance 0.75 / fan_in: different random inputs then give
# embeddings with cosine ~0.998 and max |diff| ~0.1 (the run checks it: sample_similarity),
# while float32 rounding stays ~1e-6 (at He's 2 / fan_in the network amplifies it to ~5e-3,
# past any useful tolerance).
RANDOMISE = r'''
import sys
import torch
from torch import nn
from edgeconv.train.checkpoint import load_model, save_checkpoint

path, seed, tests_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
from edgeconv.models.randomise import randomise  # affinity maps, LayerNorm, BatchNorm

model, _ = load_model(path)
randomise(model, seed)
g = torch.Generator().manual_seed(seed + 1)
with torch.no_grad():
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.weight[0].numel()
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (0.75 / fan_in) ** 0.5)
save_checkpoint(path, model)
'''


def export_fused_models(outdir: Path, dtypes, env: dict, fmt: str = "onnx") -> list[dict]:
    """Export the small fused model on this host (torch), once per weight dtype; returns
    ``{"path", "weight_dtype", "parity"}`` per file (parity: the export's own check, the host
    kernel in ONNX Runtime, or the host LiteRT delegate and the portable body with
    ``fmt="tflite"``, vs the eager torch model). Both formats share one randomised
    checkpoint in ``outdir``."""
    require_export_tools(fmt)
    outdir = outdir.resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    ckpt = outdir / f"{FUSED_MODEL}_tvconv.ckpt"

    def py(what, *args) -> str:
        proc = subprocess.run([sys.executable, *map(str, args)], capture_output=True,
                              text=True, env=env, timeout=1800, cwd=outdir)
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
            raise CheckFailed(f"{what} failed (exit {proc.returncode}): {tail}")
        return proc.stdout

    def cli(*args) -> str:
        return py(f"edgeconv {args[0]}", "-m", "edgeconv.cli", *args)

    log(f"exporting {FUSED_MODEL} (tvconv, {FUSED_INPUT_SIZE}px) --format {fmt} "
        f"--formulation fused, weights {', '.join(dtypes)}")
    if not ckpt.exists():
        cli("init", FUSED_MODEL, "--op", "tvconv", "--input-size", FUSED_INPUT_SIZE, "--seed",
            "0", "-o", ckpt)
        py("randomising the checkpoint", "-c", RANDOMISE, ckpt, "0", str(ROOT / "tests"))
    exported = []
    for dt in dtypes:
        t0 = time.time()
        out = cli("export", ckpt, "--format", fmt, "--formulation", "fused",
                  "--weight-dtype", dt, "--name", FUSED_MODEL, "-o", outdir, "--json")
        try:
            rep = json.loads(next(ln for ln in reversed(out.splitlines()) if ln.startswith("{")))
            path = outdir / rep["files"][0]["path"]  # absolute paths stay as they are
        except (StopIteration, ValueError, KeyError, IndexError):
            raise CheckFailed(f"edgeconv export --json printed no file report: {out[-300:]}")
        log(f"exported {path.name} in {time.time() - t0:.0f}s")
        exported.append({"path": str(path.resolve()), "weight_dtype": dt, "format": fmt,
                         "parity": rep.get("parity", {}).get(fmt)})
    return exported


# --------------------------------------------------------------------------- runs
# Shared by the emulated runner and the host reference run: the state of the edgeconv LiteRT
# delegate an interpreter was given (its own C ABI, through the handle LiteRT loaded).
DELEGATE_STATE = r'''
import ctypes


def delegate_state(delegates):
    """ISA and claimed nodes of the live edgeconv delegate(s) an interpreter was given."""
    if not delegates:
        return None
    states = []
    for d in delegates:
        lib, ptr = d._library, ctypes.c_void_p(d._get_native_delegate_pointer())
        lib.edgeconv_litert_claimed_nodes.restype = ctypes.c_int
        lib.edgeconv_litert_claimed_nodes.argtypes = [ctypes.c_void_p]
        lib.edgeconv_litert_isa.restype = ctypes.c_char_p
        lib.edgeconv_litert_isa.argtypes = [ctypes.c_void_p]
        states.append({"claimed_nodes": lib.edgeconv_litert_claimed_nodes(ptr),
                       "isa": lib.edgeconv_litert_isa(ptr).decode()})
    return states[0] if len(states) == 1 else states
'''
RUNNER = DELEGATE_STATE + r'''
import json, os, platform, sys
import numpy as np
from edgeconv.runtime import backends as B

cfg = json.load(open(sys.argv[1]))
out = {"machine": platform.machine(), "python": platform.python_version(),
       "numpy": np.__version__, "cpuinfo_a72": "0xd08" in open("/proc/cpuinfo").read(),
       "models": {}}
if cfg.get("kernels"):
    out["kernel_isa_env"] = os.environ.get("EDGECONV_KERNEL_ISA")
    try:
        import edgeconv.kernels as K
        out["kernels"] = K.info()
    except Exception as exc:
        out["kernels"] = {"error": f"{type(exc).__name__}: {exc}"}
captured = []
if cfg.get("litert"):  # the LiteRT delegate: which library, ISA, and the nodes it claimed
    from edgeconv.runtime import litert_delegate as LD

    out["kernel_isa_env"] = os.environ.get("EDGECONV_KERNEL_ISA")
    try:
        out["litert"] = LD.info(selftest=True)
    except Exception as exc:
        out["litert"] = {"error": f"{type(exc).__name__}: {exc}"}
    _delegates_for = LD.delegates_for

    def _capture(*a, **k):  # the TFLite backend imports it at model creation
        res = _delegates_for(*a, **k)
        captured.append(res[0])
        return res

    LD.delegates_for = _capture


for m in cfg["models"]:
    res = {}
    try:
        del captured[:]
        model = B.open_model(m["path"], threads=m["threads"])
        res["runtime"] = f"{model.runtime} {model.runtime_version}"
        res["uses_kernels"] = getattr(model, "uses_kernels", None)
        res["execution_path"] = getattr(model, "execution_path", None)
        if cfg.get("litert"):
            res["delegate"] = delegate_state(captured[-1] if captured else [])
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


def sample_similarity(ref_npz: str) -> float | None:
    """The largest cosine between two different samples of one reference batch: near 1, the
    outputs hardly depend on the input and a parity check could not tell a wrong kernel."""
    import numpy as np

    best = None
    with np.load(ref_npz) as ref:
        for b in ref.files:
            y = np.asarray(ref[b], np.float64)
            if y.ndim < 1 or len(y) < 2:
                continue
            y = y.reshape(len(y), -1)
            y = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-300)
            cos = y @ y.T
            off = float(np.max(cos[~np.eye(len(y), dtype=bool)]))
            best = off if best is None else max(best, off)
    return best


def count_composites(path) -> int:
    """The ``edgeconv.tvconv`` composite ops of a .tflite file (a plain interpreter's op list)."""
    sys.path.insert(0, str(ROOT))
    from edgeconv.runtime.litert_delegate import make_interpreter

    it = make_interpreter(Path(path).read_bytes())
    return sum(1 for op in it._get_ops_details() if "COMPOSITE" in str(op.get("op_name", "")))


def reference_run(models, rundir: Path, batch_sizes=(1, 2), prefix: str = "",
                  litert: bool = False) -> list[dict]:
    """Seeded inputs and this host's outputs; with ``litert`` also the host delegate's state
    (``execution_path``, ISA, claimed nodes) and the file's composite count."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from edgeconv.runtime import backends as B
    from edgeconv.runtime import litert_delegate as LD

    captured: list = []
    scope: dict = {}
    if litert:
        exec(DELEGATE_STATE, scope)
    cfgs = []
    for i, path in enumerate(models):
        i = f"{prefix}{i}"
        orig = LD.delegates_for
        if litert:
            def _capture(*a, **k):
                res = orig(*a, **k)
                captured.append(res[0])
                return res
            LD.delegates_for = _capture
        try:
            m = B.open_model(path, threads=1)
        finally:
            LD.delegates_for = orig
        host = {}
        if litert:
            host = {"host_execution_path": m.execution_path, "host_uses_kernels": m.uses_kernels,
                    "host_delegate": scope["delegate_state"](captured[-1] if captured else []),
                    "composites": count_composites(path)}
        with m:
            batches = list(batch_sizes) if m.dynamic_batch or m.backend == "tflite" else [1]
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
                         "host_runtime": f"{m.runtime} {m.runtime_version}", **host})
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
    # the host's kernel library / ISA choice mean nothing on the target: set per run
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP",
                        *HOST_ONLY_ENV)}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in paths)
    env["PYTHONNOUSERSITE"] = "1"
    env["QEMU_CPU"] = "cortex-a72"
    return env


def run_emulated(qemu, sysroot, method, cpuinfo, site, cfgs, rundir, extra_env=None,
                 timeout=1800, kernels: bool = False, litert: bool = False) -> dict:
    cfg_file = rundir / "config.json"
    cfg_file.write_text(json.dumps({"models": cfgs, "kernels": kernels, "litert": litert}))
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


def min_cosine(a, b) -> float:
    """The smallest cosine similarity between matching samples (rows of the batch)."""
    import numpy as np

    a = np.asarray(a, np.float64)
    a = a.reshape(len(a), -1) if a.ndim else a.reshape(1, -1)
    b = np.asarray(b, np.float64).reshape(a.shape)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    dot = np.sum(a * b, axis=1)
    both_zero = (na == 0) & (nb == 0)
    cos = np.where(both_zero, 1.0, dot / np.maximum(na * nb, 1e-300))
    return float(cos.min()) if cos.size else 1.0


def compare(cfgs, emu: dict, rtol: float, atol: float, tag: str,
            min_cos: float | None = None) -> list[dict]:
    """Emulated outputs vs the host's: np.allclose(rtol, atol) per batch, and with
    ``min_cos`` also the cosine of every sample."""
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
        if "uses_kernels" in res:
            row["uses_kernels"] = res["uses_kernels"]
        ref, got = np.load(cfg["ref"]), np.load(cfg["out"])
        diffs, cosines = [], []
        for b in map(str, cfg["batches"]):
            a, e = ref[b], got[b]
            if a.shape != e.shape:
                row["error"] = f"batch {b}: shape {e.shape} != host {a.shape}"
                break
            diffs.append(float(np.max(np.abs(a.astype(np.float64) - e.astype(np.float64))))
                         if a.size else 0.0)
            if a.size:
                cosines.append(min_cosine(a, e))
            if not np.allclose(e, a, rtol=rtol, atol=atol):
                row["error"] = f"batch {b}: outputs differ beyond rtol={rtol} atol={atol}"
            elif min_cos is not None and cosines and cosines[-1] < min_cos:
                row["error"] = f"batch {b}: cosine {cosines[-1]:.8f} < {min_cos}"
        row["max_abs_diff"] = max(diffs) if diffs else None
        row["min_cosine"] = min(cosines) if cosines else None
        row["ok"] = "error" not in row
        rows.append(row)
    return rows


def bench_smoke(qemu, sysroot, method, cpuinfo, site, models, rundir, extra_env=None) -> dict:
    """`edgeconv bench` itself under emulation (1 thread, batch 1, a handful of runs)."""
    env = emu_env([site, ROOT])
    env.update(extra_env or {})
    out = rundir / "bench_emulated.json"
    argv = ["-m", "edgeconv.cli", "bench", *models, "--threads", "1", "--batch", "1",
            "--warmup-runs", "1", "--warmup-secs", "0", "--min-runs", "3", "--min-secs", "0",
            "--memory-batch", "0", "--no-progress", "--json", out]
    proc = subprocess.run(emulated_cmd(qemu, sysroot, method, cpuinfo, argv),
                          capture_output=True, text=True, env=env, timeout=1800)
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


def neon_vs_scalar(rows, prefix: str = "kernels") -> dict:
    """Max |diff| between the emulated NEON and scalar outputs of each kernel model (0.0 would
    mean the forced ISA changed nothing); rows of runs ``f"{prefix} neon"`` / ``scalar``."""
    import numpy as np

    outs: dict[str, dict[str, str]] = {}
    for r in rows:
        if r.get("ok") and r.get("emulated_out"):
            outs.setdefault(r["model"], {})[r["run"]] = r["emulated_out"]
    res = {}
    neon, scalar = f"{prefix} neon", f"{prefix} scalar"
    for model, runs in outs.items():
        if {neon, scalar} <= set(runs):
            with np.load(runs[neon]) as a, np.load(runs[scalar]) as b:
                res[Path(model).name] = max(
                    float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) for k in a.files)
    return res


def check_kernel_rows(rows, emu: dict, want_isa: str, library: str) -> None:
    """Mark kernel rows failed unless the emulated run loaded ``library`` with ``want_isa``."""
    info = emu.get("kernels") or {}
    problem = None
    if "error" in info or not info:
        problem = f"edgeconv.kernels did not load: {info.get('error', 'no kernel information')}"
    elif info.get("isa") != want_isa:
        problem = (f"the kernel selected ISA {info.get('isa')!r}, expected {want_isa!r} "
                   f"(available: {','.join(info.get('available_isas', []))})")
    elif Path(info.get("library", "")) != Path(library):
        problem = f"edgeconv.kernels loaded {info.get('library')}, not {library}"
    for r in rows:
        r["isa"] = info.get("isa")
        if r.get("uses_kernels") is False:
            problem = problem or "the session did not register the kernel library"
        if problem:
            r["ok"] = False
            r["error"] = "; ".join(x for x in (r.get("error"), problem) if x)


def check_litert_rows(rows, cfgs, emu: dict, want_isa: str, library: str) -> None:
    """Mark LiteRT rows failed unless the emulated run loaded ``library``, passed its
    self-test, and every file ran on the delegate (``execution_path`` "kernel") with
    ``want_isa`` and all its composite nodes claimed: a silent fallback to the portable body
    is a failure."""
    info = emu.get("litert") or {}
    problem = None
    if not info or "error" in info:
        problem = ("edgeconv.runtime.litert_delegate did not report: "
                   f"{info.get('error', 'no delegate information')}")
    elif not info.get("available"):
        problem = f"the delegate library {info.get('library')} is not there"
    elif Path(info.get("library", "")) != Path(library):
        problem = f"the delegate loaded from {info.get('library')}, not {library}"
    elif info.get("selftest") != "passed":
        problem = f"the delegate's self-test: {info.get('selftest')}"
    for r, c in zip(rows, cfgs):
        res = emu.get("models", {}).get(c["path"], {})
        d = res.get("delegate") or {}
        if isinstance(d, list):  # more than one edgeconv delegate: never expected
            d = {"isa": ",".join(x.get("isa", "?") for x in d), "claimed_nodes": None}
        r.update(isa=d.get("isa"), claimed_nodes=d.get("claimed_nodes"),
                 composites=c.get("composites"), execution_path=res.get("execution_path"),
                 uses_kernels=res.get("uses_kernels"))
        why = problem
        if why is None and res.get("ok"):
            if res.get("execution_path") != "kernel" or res.get("uses_kernels") is not True:
                why = (f"execution path {res.get('execution_path')!r} (uses_kernels "
                       f"{res.get('uses_kernels')}): the delegate was not used, the portable "
                       "body ran")
            elif d.get("isa") != want_isa:
                why = f"the delegate ran ISA {d.get('isa')!r}, expected {want_isa!r}"
            elif not c.get("composites") or d.get("claimed_nodes") != c["composites"]:
                why = (f"the delegate claimed {d.get('claimed_nodes')} of the file's "
                       f"{c.get('composites')} composite nodes")
        if why:
            r["ok"] = False
            r["error"] = "; ".join(x for x in (r.get("error"), why) if x)


def require_export_tools(fmt: str = "onnx") -> None:
    mods, flag, extra = ((("torch", "onnx"), "--fused", "export") if fmt == "onnx" else
                         (("torch", "litert_torch"), "--litert-fused", "tflite"))
    for mod in mods:
        if importlib.util.find_spec(mod) is None:
            raise ToolingUnavailable(f"{flag} exports a model on this host and needs {mod} "
                                     f"(pip install -e '.[{extra}]')")


def _finish(report: dict, ok: bool, json_path: str | None) -> int:
    report["ok"] = ok
    if json_path:
        sys.path.insert(0, str(ROOT))
        from edgeconv.fileio import atomic_write_json

        atomic_write_json(json_path, report)
    return 0 if ok else 1


def print_kernels(kern: dict, what: str = "kernel library") -> None:
    needed = ", ".join(kern.get("needed", [])) or "?"
    newest = ", ".join(kern.get("newest_versions", {}).values()) or "?"
    state = {True: "OK  ", False: "FAIL", None: "??  "}[kern.get("elf_ok")]
    static = ", static libstdc++/libgcc" if kern["static_libstdcxx"] else ""
    verdict = (f"({'; '.join(kern['elf_problems'])})" if kern.get("elf_problems")
               else "(Raspberry Pi OS Bookworm: glibc <= 2.36, GLIBCXX <= 3.4.30)")
    print(f"{state} aarch64 {what} {kern['library']} ({kern.get('machine')}; "
          f"{Path(kern['cxx']).name}{static}): needs {needed}; newest symbol versions "
          f"{newest} {verdict}")
    runs = []
    for tag, info in kern.get("emulated", {}).items():
        info = info or {}
        avail = info.get("available_isas")
        runs.append(f"{tag} run -> {info.get('isa')}"
                    + (f" (available {','.join(avail)})" if avail else "")
                    + (f", self-test {info['selftest']}" if info.get("selftest") else ""))
    if runs or kern.get("host_isa"):
        print(f"     {what.split()[0]} ISA: host {kern.get('host_isa')}; emulated "
              f"{', '.join(runs)}")
    if kern.get("neon_vs_scalar_max_abs_diff"):
        print("     emulated NEON vs scalar max |diff|: " + ", ".join(
            f"{m} {d:.3g}" for m, d in kern["neon_vs_scalar_max_abs_diff"].items()))


# --------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Run ONNX/TFLite models under qemu-aarch64 "
                                             "(Cortex-A72) and compare with the host run.")
    ap.add_argument("models", nargs="*", help=".onnx / .tflite files (fused ONNX models too)")
    ap.add_argument("--work", default=os.environ.get(
        "EDGECONV_EMU_DIR", str(Path.home() / ".cache/edgeconv/emulated")),
        help="cache folder for qemu, the sysroot, the wheels, the cross compiler and the "
             "kernel builds")
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
    ap.add_argument("--fused", action="store_true",
                    help=f"also export a small fused TVConv model here ({FUSED_MODEL}, "
                         f"{FUSED_INPUT_SIZE}px; needs torch), cross-build the kernel library "
                         "for aarch64 and check its NEON (auto-selected) and scalar paths "
                         "under emulation against the host run")
    ap.add_argument("--fused-weight-dtypes", default="float32,float16,int8",
                    help="--fused: one exported model per weight storage type")
    ap.add_argument("--litert-fused", action="store_true",
                    help=f"export the small fused model as .tflite here ({FUSED_MODEL}, "
                         f"{FUSED_INPUT_SIZE}px; needs torch + litert-torch), cross-build the "
                         "LiteRT delegate library for aarch64 and check its NEON "
                         "(auto-selected) and scalar paths under emulation against the host "
                         "run with the host delegate (also part of --fused)")
    ap.add_argument("--litert-weight-dtypes", default="float32",
                    help="--litert-fused: one exported .tflite file per weight storage type")
    ap.add_argument("--fused-atol", type=float, default=1e-4,
                    help="kernel models: largest allowed max |diff| vs the host")
    ap.add_argument("--fused-min-cosine", type=float, default=0.99999,
                    help="kernel models: smallest allowed cosine per embedding")
    ap.add_argument("--cxx", help="aarch64 C++ compiler for the kernel library (default: "
                                  "aarch64-linux-gnu-g++ on PATH, else Debian's cross g++ "
                                  "fetched into --work)")
    ap.add_argument("--json", help="write the comparison report here")
    args = ap.parse_args(argv)
    if not args.models and not args.fused and not args.litert_fused:
        ap.error("give model files, --fused, --litert-fused, or both")

    models = [str(Path(m).resolve()) for m in args.models]
    for m in models:
        if not Path(m).is_file():
            print(f"emulated_check: error: {m}: no such file", file=sys.stderr)
            return 2
    sys.path.insert(0, str(ROOT))
    from edgeconv.kernels import LIB_NAME, model_uses_kernels
    from edgeconv.runtime.litert_delegate import model_has_composite

    given_kernel = [m for m in models if m.endswith(".onnx") and model_uses_kernels(m)]
    given_litert = [m for m in models
                    if m.endswith(".tflite") and model_has_composite(Path(m).read_bytes())]
    need_kernels = args.fused or bool(given_kernel)
    export_litert = args.fused or args.litert_fused
    need_litert = export_litert or bool(given_litert)
    dtypes = [d.strip() for d in args.fused_weight_dtypes.split(",") if d.strip()]
    lit_dtypes = [d.strip() for d in args.litert_weight_dtypes.split(",") if d.strip()]
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

        if args.fused:
            require_export_tools()
        if export_litert:
            require_export_tools("tflite")
        qemu = ensure_qemu(work, apt_factory)
        sysroot = ensure_sysroot(work, apt_factory)
        site = ensure_wheels(work / "site-aarch64", WHEELS)
        if need_litert and not any(site.glob("ai_edge_litert-*.dist-info")):
            raise ToolingUnavailable(f"{site} holds no aarch64 ai-edge-litert wheel "
                                     f"(requirements: {' '.join(WHEELS)})")
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
        if need_kernels:
            include = ort_include()
        if need_kernels or need_litert:
            cross_cxx = ensure_cross_cxx(work, apt_factory, args.cxx)
    except ToolingUnavailable as exc:
        print(f"emulated_check: tooling unavailable: {exc}", file=sys.stderr)
        return TOOLING_UNAVAILABLE

    kern = None
    if need_kernels:
        try:
            kern = build_aarch64_kernels(work, cross_cxx, include)
            # the host reference (and the export's own check) use a host library built from
            # the same sources, not whatever the checkout holds
            host_lib = build_kernels(work / f"kernels-{platform.machine()}" / LIB_NAME, include,
                                     None, "the host kernel library")
        except ToolingUnavailable as exc:
            print(f"emulated_check: tooling unavailable: {exc}", file=sys.stderr)
            return TOOLING_UNAVAILABLE
        except CheckFailed as exc:
            print(f"emulated_check: FAIL: {exc}", file=sys.stderr)
            report["error"] = str(exc)
            return _finish(report, False, args.json)
        kern["host_library"] = str(host_lib)
        report["kernels"] = kern
        log(f"aarch64 library ELF: {kern.get('machine')}, needs {kern.get('needed')}, newest "
            f"versions {list(kern.get('newest_versions', {}).values())}: "
            + ("ok" if kern["elf_ok"] else "; ".join(kern["elf_problems"])))
        os.environ["EDGECONV_KERNELS_LIB"] = str(host_lib)  # for reference_run in this process

    lit = None
    if need_litert:
        try:
            lit = build_aarch64_litert(work, cross_cxx)
            host_delegate = build_litert(work / f"kernels-{platform.machine()}" / LITERT_LIB_NAME,
                                         None, "the host LiteRT delegate library")
        except ToolingUnavailable as exc:
            print(f"emulated_check: tooling unavailable: {exc}", file=sys.stderr)
            return TOOLING_UNAVAILABLE
        except CheckFailed as exc:
            print(f"emulated_check: FAIL: {exc}", file=sys.stderr)
            report["error"] = str(exc)
            return _finish(report, False, args.json)
        lit["host_library"] = str(host_delegate)
        report["litert"] = lit
        log(f"aarch64 delegate ELF: {lit.get('machine')}, needs {lit.get('needed')}, newest "
            f"versions {list(lit.get('newest_versions', {}).values())}: "
            + ("ok" if lit["elf_ok"] else "; ".join(lit["elf_problems"])))
        # the host reference and the export's delegate gate use the host delegate built from
        # the same sources (the checkout's own is left alone)
        os.environ["EDGECONV_LITERT_DELEGATE"] = str(host_delegate)
        os.environ.pop("EDGECONV_LITERT_SELFTEST", None)

    ok = True
    emu_results = []
    kernel_env = {"EDGECONV_KERNELS_LIB": kern["library"]} if kern else {}
    litert_env = {"EDGECONV_LITERT_DELEGATE": lit["library"]} if lit else {}
    with tempfile.TemporaryDirectory(prefix="edgeconv-emu-") as tmp:
        rundir = Path(tmp)
        fused_models, litert_fused_models = [], []
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
        try:
            if args.fused:
                exported = export_fused_models(rundir / "fused", dtypes, env)
                report["fused_exports"] = exported
                fused_models = [e["path"] for e in exported]
            if export_litert:
                exported = export_fused_models(rundir / "fused", lit_dtypes, env, "tflite")
                report["litert_exports"] = exported
                litert_fused_models = [e["path"] for e in exported]
        except CheckFailed as exc:
            print(f"emulated_check: FAIL: {exc}", file=sys.stderr)
            report["error"] = str(exc)
            return _finish(report, False, args.json)
        kernel_models = given_kernel + fused_models
        litert_models = given_litert + litert_fused_models
        base_models = [m for m in models if m not in given_kernel and m not in given_litert]
        cfgs = reference_run(base_models, rundir)
        kcfgs = reference_run(kernel_models, rundir, FUSED_BATCHES, prefix="k")
        lcfgs = reference_run(litert_models, rundir, LITERT_BATCHES, prefix="l", litert=True)
        for c in lcfgs:
            hd = c.get("host_delegate") or {}
            lit["host_isa"] = hd.get("isa", lit.get("host_isa"))
            c["sample_similarity"] = sample_similarity(c["ref"])
            sim = c["sample_similarity"]
            log(f"{Path(c['path']).name}: host {c['host_execution_path']} (delegate ISA "
                f"{hd.get('isa')}, claimed {hd.get('claimed_nodes')} of {c['composites']} "
                f"composites); largest cosine between two different inputs' outputs "
                f"{sim if sim is None else f'{sim:.6f}'}")
            msg = None
            if c["host_execution_path"] != "kernel" or not c["composites"] \
                    or hd.get("claimed_nodes") != c["composites"]:
                msg = (f"{Path(c['path']).name}: the host reference did not run on the host "
                       f"delegate {lit['host_library']} (execution path "
                       f"{c['host_execution_path']!r}, claimed {hd.get('claimed_nodes')} of "
                       f"{c['composites']} composites)")
            elif c["path"] in litert_fused_models and (sim is None
                                                       or sim >= args.fused_min_cosine):
                msg = (f"{Path(c['path']).name}: the outputs of different inputs agree to "
                       f"cosine {sim}: the parity check would not see a wrong kernel")
            if msg:
                print(f"emulated_check: FAIL: {msg}", file=sys.stderr)
                report["error"] = msg
                return _finish(report, False, args.json)
        if kcfgs:
            from edgeconv import kernels as K

            kern["host_isa"] = K.info()["isa"]
            for c in kcfgs:
                c["sample_similarity"] = sample_similarity(c["ref"])
                sim = c["sample_similarity"]
                log(f"{Path(c['path']).name}: largest cosine between two different inputs' "
                    f"outputs {sim if sim is None else f'{sim:.6f}'}")
                if c["path"] in fused_models and (sim is None or sim >= args.fused_min_cosine):
                    msg = (f"{Path(c['path']).name}: the outputs of different inputs agree to "
                           f"cosine {sim}: the parity check would not see a wrong kernel")
                    print(f"emulated_check: FAIL: {msg}", file=sys.stderr)
                    report["error"] = msg
                    return _finish(report, False, args.json)
        if cfgs:
            log(f"running {len(cfgs)} model(s) under qemu-aarch64 -cpu cortex-a72 "
                f"(cpuinfo via {method})")
            try:
                emu = run_emulated(qemu, sysroot, method, cpuinfo, site, cfgs, rundir)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                print(f"emulated_check: {exc}", file=sys.stderr)
                return 1
            emu_results.append(emu)
            report["runs"] += compare(cfgs, emu, args.rtol, args.atol, "base wheels")

        for tag, isa in (("neon", None), ("scalar", "scalar")):
            if not kcfgs:
                break
            run_cfgs = [dict(c, out=c["out"].replace(".npz", f"_{tag}.npz")) for c in kcfgs]
            env = dict(kernel_env, **({"EDGECONV_KERNEL_ISA": isa} if isa else {}))
            log(f"running {len(run_cfgs)} kernel model(s) under qemu-aarch64 -cpu cortex-a72, "
                f"EDGECONV_KERNEL_ISA={isa or '(unset)'}, batches {list(FUSED_BATCHES)}")
            try:
                emu = run_emulated(qemu, sysroot, method, cpuinfo, site, run_cfgs, rundir,
                                   extra_env=env, kernels=True)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                report["runs"].append({"run": f"kernels {tag}", "ok": False, "error": str(exc)})
                continue
            emu_results.append(emu)
            kern.setdefault("emulated", {})[tag] = emu.get("kernels")
            rows = compare(run_cfgs, emu, 0.0, args.fused_atol, f"kernels {tag}",
                           min_cos=args.fused_min_cosine)
            check_kernel_rows(rows, emu, tag, kern["library"])
            for r, c in zip(rows, run_cfgs):
                r["sample_similarity"] = c.get("sample_similarity")
                r["emulated_out"] = c["out"]
            report["runs"] += rows
        for tag, isa in (("neon", None), ("scalar", "scalar")):
            if not lcfgs:
                break
            run_cfgs = [dict(c, out=c["out"].replace(".npz", f"_{tag}.npz")) for c in lcfgs]
            env = dict(litert_env, **({"EDGECONV_KERNEL_ISA": isa} if isa else {}))
            log(f"running {len(run_cfgs)} fused .tflite model(s) under qemu-aarch64 -cpu "
                f"cortex-a72 with the aarch64 LiteRT delegate, EDGECONV_KERNEL_ISA="
                f"{isa or '(unset)'}, batches {list(LITERT_BATCHES)}")
            try:
                emu = run_emulated(qemu, sysroot, method, cpuinfo, site, run_cfgs, rundir,
                                   extra_env=env, litert=True)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                report["runs"].append({"run": f"litert {tag}", "ok": False, "error": str(exc)})
                continue
            emu_results.append(emu)
            lit.setdefault("emulated", {})[tag] = emu.get("litert")
            rows = compare(run_cfgs, emu, 0.0, args.fused_atol, f"litert {tag}",
                           min_cos=args.fused_min_cosine)
            check_litert_rows(rows, run_cfgs, emu, tag, lit["library"])
            for r, c in zip(rows, run_cfgs):
                r["sample_similarity"] = c.get("sample_similarity")
                r["emulated_out"] = c["out"]
            report["runs"] += rows
        for prefix, rec in (("kernels", kern), ("litert", lit)):
            pre_rows = [r for r in report["runs"] if r["run"].startswith(prefix + " ")]
            if pre_rows:
                rec["neon_vs_scalar_max_abs_diff"] = neon_vs_scalar(pre_rows, prefix)
                for r in pre_rows:
                    r.pop("emulated_out", None)  # a file of the temporary run folder

        if emu_results:
            first = emu_results[0]
            report.update(emulated_machine=first["machine"], emulated_python=first["python"],
                          emulated_numpy=first["numpy"],
                          saw_cortex_a72_cpuinfo=all(e["cpuinfo_a72"] for e in emu_results))
        ok = bool(emu_results) and all(e["machine"] == "aarch64" and e["cpuinfo_a72"]
                                       for e in emu_results)
        if kern is not None:
            ok = ok and kern["elf_ok"] is not False
        if lit is not None:
            ok = ok and lit["elf_ok"] is not False

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
            report["bench_smoke"] = bench_smoke(qemu, sysroot, method, cpuinfo, site,
                                                models + fused_models + litert_fused_models,
                                                rundir, extra_env={**kernel_env, **litert_env})
            ok = ok and report["bench_smoke"]["ok"]
    ok = ok and all(r["ok"] for r in report["runs"])
    for r in report["runs"]:
        state = "OK  " if r["ok"] else "FAIL"
        diff, cos = r.get("max_abs_diff"), r.get("min_cosine")
        run = r["run"] + (f", isa {r['isa']}" if r.get("isa") else "") + (
            f", claimed {r['claimed_nodes']}/{r['composites']} composites, "
            f"{r.get('execution_path')}" if "claimed_nodes" in r else "")
        print(f"{state} {Path(r.get('model', '?')).name} [{run}] host "
              f"{r.get('host_runtime')} vs aarch64 {r.get('emulated_runtime')}: batches "
              f"{r.get('batches')}, max |diff| {diff if diff is None else f'{diff:.3g}'}"
              + (f", min cosine {cos:.9f}" if cos is not None else "")
              + (f" ({r['error']})" if r.get("error") else "")
              + (f" (weak check: different inputs give outputs of cosine "
                 f"{r['sample_similarity']:.7f})"
                 if (r.get("sample_similarity") or 0) >= args.fused_min_cosine else ""))
    if kern is not None:
        print_kernels(kern)
    if lit is not None:
        print_kernels(lit, "LiteRT delegate library")
    if "bench_smoke" in report:
        b = report["bench_smoke"]
        print(f"{'OK  ' if b['ok'] else 'FAIL'} edgeconv bench under emulation: "
              f"machine {b.get('machine')}, cpu {b.get('cpu_model')}, "
              f"statuses {b.get('statuses')}" + (f" ({b['error']})" if b.get("error") else ""))
    print(f"emulated aarch64 (python {report.get('emulated_python')}, numpy "
          f"{report.get('emulated_numpy')}, Cortex-A72 cpuinfo seen: "
          f"{report.get('saw_cortex_a72_cpuinfo')}): {'PASS' if ok else 'FAIL'}")
    return _finish(report, ok, args.json)


if __name__ == "__main__":
    sys.exit(main())
