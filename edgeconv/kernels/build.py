"""Build the fused-kernel libraries (``libedgeconv_kernels.so``, ``libedgeconv_litert.so``) from ``src/``: stdlib only.

Two libraries: ``libedgeconv_kernels.so`` (the ONNX Runtime custom op, needs ORT headers) and
``libedgeconv_litert.so`` (the LiteRT/TFLite external delegate, ``build_litert``: the math TUs,
the delegate and the NHWC C entry; no runtime headers at all, its TFLite declarations are our
own ``src/tflite_c.h``).

Used by ``setup.py`` at install (a failed build never fails the install: edgeconv then runs
without the kernels and says so), by ``python -m edgeconv.kernels.build`` to rebuild in place,
and by ``deploy/emulated_check.py`` to cross-compile for aarch64 (``--cxx aarch64-linux-gnu-g++``).

ONNX Runtime C/C++ API headers, first found wins:
``ORT_INCLUDE_DIR``; ``/usr/include/onnxruntime`` (Debian 13 / Raspberry Pi OS trixie:
``apt install libonnxruntime-dev``); a copy cached by ``fetch_ort_headers.py`` under
``~/.cache/edgeconv/ort-headers/``; else (Debian 12 and other apt systems) that script fetches
Debian trixie's ``libonnxruntime-dev`` and unpacks only its headers (nothing is installed;
``EDGECONV_FETCH_ORT_HEADERS=0`` turns this off). The headers are a build dependency only: the
library does not link ONNX Runtime, it receives the API from the runtime that loads it, and the
C API is ABI-stable upward (built against 1.21, it loads in newer releases).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
LIB_NAME = "libedgeconv_kernels.so"
LITERT_LIB_NAME = "libedgeconv_litert.so"
# sources only the LiteRT delegate library compiles (never the ORT one) ...
LITERT_ONLY = ("litert_delegate.cpp",)
# ... and the sources of the delegate library: math TUs, dispatch, NHWC C entry, delegate
LITERT_SOURCES = ("tvconv_scalar.cpp", "tvconv_avx2.cpp", "tvconv_avx512.cpp", "tvconv_neon.cpp",
                  "tvconv_dispatch.cpp", "capi_nhwc.cpp", "litert_delegate.cpp")
HEADER = "onnxruntime_c_api.h"
SYSTEM_INCLUDE = Path("/usr/include/onnxruntime")
CXXFLAGS = ["-O3", "-std=c++17", "-fPIC", "-shared", "-fvisibility=hidden",
            "-fno-math-errno", "-Wall", "-Wno-maybe-uninitialized"]


class BuildError(RuntimeError):
    """The library could not be built; str(exc) is one line saying why."""


def _fetcher():
    spec = importlib.util.spec_from_file_location("_edgeconv_fetch_ort_headers",
                                                  HERE / "fetch_ort_headers.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def find_ort_include(fetch: bool | None = None) -> Path:
    """The directory holding ``onnxruntime_c_api.h``; raises BuildError when there is none."""
    env = os.environ.get("ORT_INCLUDE_DIR")
    if env:
        if (Path(env) / HEADER).is_file():
            return Path(env)
        raise BuildError(f"ORT_INCLUDE_DIR={env} has no {HEADER}")
    if (SYSTEM_INCLUDE / HEADER).is_file():
        return SYSTEM_INCLUDE
    fetcher = _fetcher()
    cached = sorted(fetcher.CACHE_ROOT.glob(f"*/{HEADER}"), key=lambda p: p.stat().st_mtime)
    if cached:
        return cached[-1].parent
    if fetch is None:
        fetch = os.environ.get("EDGECONV_FETCH_ORT_HEADERS", "1") != "0"
    if not fetch:
        raise BuildError("no ONNX Runtime headers (set ORT_INCLUDE_DIR, install "
                         "libonnxruntime-dev, or run edgeconv/kernels/fetch_ort_headers.py)")
    try:
        return Path(fetcher.fetch(quiet=True))
    except fetcher.FetchError as exc:
        raise BuildError(f"no ONNX Runtime headers: {exc}") from None


def ort_api_version(include: Path) -> int | None:
    for line in (Path(include) / HEADER).read_text(errors="replace").splitlines():
        if line.startswith("#define ORT_API_VERSION"):
            return int(line.split()[2])
    return None


def _compile(out: Path, lib_name: str, sources: list[str], includes: list[Path], cxx: str | None,
             extra_flags: list[str] | None, quiet: bool) -> Path:
    """Compile ``sources`` (each in its own compiler process, in parallel) and link ``out``
    (atomically replaced)."""
    cxx = cxx or os.environ.get("CXX") or "g++"
    if shutil.which(cxx) is None:
        raise BuildError(f"no C++ compiler '{cxx}' on PATH (install g++ or set CXX)")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    flags = [*CXXFLAGS, *(extra_flags or []), *(f"-I{i}" for i in includes), f"-I{SRC}"]
    compile_flags = [f for f in flags if f != "-shared"]
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".build-") as tmp:
        target = Path(tmp) / lib_name
        jobs = max(1, min(len(sources), os.cpu_count() or 1))
        objs = [str(Path(tmp) / (Path(src).stem + ".o")) for src in sources]
        cmds = [[cxx, *compile_flags, "-c", src, "-o", obj] for src, obj in zip(sources, objs)]
        cmds_link = [cxx, *flags, *objs, "-o", str(target), "-lpthread"]
        stderr = []
        try:
            pending = list(cmds)
            running = []
            while pending or running:
                while pending and len(running) < jobs:
                    cmd = pending.pop(0)
                    running.append(subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                                    stderr=subprocess.PIPE, text=True))
                proc = running.pop(0)
                _, err = proc.communicate(timeout=900)
                stderr.append(err)
                if proc.returncode != 0:
                    for other in running:
                        other.kill()
                        other.wait()
                    _raise_compile_error(cxx, err)
            proc = subprocess.run(cmds_link, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            raise BuildError("the C++ build timed out") from None
        if proc.returncode != 0:
            _raise_compile_error(cxx, proc.stderr)
        stderr.append(proc.stderr)
        text = "".join(stderr).strip()
        if not quiet and text:
            print(text, file=sys.stderr)
        os.replace(target, out)
    return out


def _raise_compile_error(cxx: str, stderr: str):
    first = next((ln for ln in stderr.splitlines() if "error" in ln),
                 stderr.strip().splitlines()[-1] if stderr.strip() else "")
    raise BuildError(f"{cxx} failed: {first.strip()[:300]}")


def build(out: Path, include: Path | None = None, cxx: str | None = None,
          extra_flags: list[str] | None = None, quiet: bool = True) -> Path:
    """Compile the ONNX Runtime library (every ``src/*.cpp`` but the delegate's) into ``out``."""
    include = Path(include) if include else find_ort_include()
    cxx = cxx or os.environ.get("CXX") or "g++"
    if shutil.which(cxx) is None:
        raise BuildError(f"no C++ compiler '{cxx}' on PATH (install g++ or set CXX)")
    sources = sorted(str(p) for p in SRC.glob("*.cpp") if p.name not in LITERT_ONLY)
    return _compile(out, LIB_NAME, sources, [include], cxx, extra_flags, quiet)


def build_litert(out: Path, cxx: str | None = None, extra_flags: list[str] | None = None,
                 quiet: bool = True) -> Path:
    """Compile the LiteRT delegate library (no runtime headers needed) into ``out``."""
    sources = [str(SRC / name) for name in LITERT_SOURCES]
    return _compile(out, LITERT_LIB_NAME, sources, [], cxx, extra_flags, quiet)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", type=Path, default=HERE / LIB_NAME)
    ap.add_argument("--litert-output", type=Path, default=None,
                    help=f"delegate library (default: {LITERT_LIB_NAME} next to --output)")
    ap.add_argument("--cxx", default=None, help="C++ compiler (default: $CXX or g++)")
    ap.add_argument("--include", type=Path, default=None, help="ONNX Runtime include dir")
    ap.add_argument("--no-fetch", action="store_true", help="never fetch headers")
    ap.add_argument("--only", choices=("ort", "litert"), default=None,
                    help="build only one of the two libraries")
    args = ap.parse_args(argv)
    rc = 0
    if args.only != "litert":
        try:
            inc = args.include or find_ort_include(fetch=not args.no_fetch)
            path = build(args.output, inc, args.cxx, quiet=False)
            print(f"built {path} (ONNX Runtime headers {inc}, ORT_API_VERSION {ort_api_version(inc)})")
        except BuildError as exc:
            print(f"edgeconv kernels: not built: {exc}", file=sys.stderr)
            rc = 1
    if args.only != "ort":
        out = args.litert_output or Path(args.output).with_name(LITERT_LIB_NAME)
        try:
            path = build_litert(out, args.cxx, quiet=False)
            print(f"built {path} (LiteRT delegate)")
        except BuildError as exc:
            print(f"edgeconv litert delegate: not built: {exc}", file=sys.stderr)
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
