"""Build the fused-kernel library (``libedgeconv_kernels.so``) from ``src/``: stdlib only.

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


def build(out: Path, include: Path | None = None, cxx: str | None = None,
          extra_flags: list[str] | None = None, quiet: bool = True) -> Path:
    """Compile every ``src/*.cpp`` into the shared library ``out`` (atomically replaced)."""
    include = Path(include) if include else find_ort_include()
    cxx = cxx or os.environ.get("CXX") or "g++"
    if shutil.which(cxx) is None:
        raise BuildError(f"no C++ compiler '{cxx}' on PATH (install g++ or set CXX)")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sources = sorted(str(p) for p in SRC.glob("*.cpp"))
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".build-") as tmp:
        target = Path(tmp) / LIB_NAME
        cmd = [cxx, *CXXFLAGS, *(extra_flags or []), f"-I{include}", f"-I{SRC}", *sources,
               "-o", str(target), "-lpthread"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            raise BuildError("the C++ build timed out") from None
        if proc.returncode != 0:
            first = next((ln for ln in proc.stderr.splitlines() if "error" in ln),
                         proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "")
            raise BuildError(f"{cxx} failed: {first.strip()[:300]}")
        if not quiet and proc.stderr.strip():
            print(proc.stderr, file=sys.stderr)
        os.replace(target, out)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", type=Path, default=HERE / LIB_NAME)
    ap.add_argument("--cxx", default=None, help="C++ compiler (default: $CXX or g++)")
    ap.add_argument("--include", type=Path, default=None, help="ONNX Runtime include dir")
    ap.add_argument("--no-fetch", action="store_true", help="never fetch headers")
    args = ap.parse_args(argv)
    try:
        inc = args.include or find_ort_include(fetch=not args.no_fetch)
        path = build(args.output, inc, args.cxx, quiet=False)
    except BuildError as exc:
        print(f"edgeconv kernels: not built: {exc}", file=sys.stderr)
        return 1
    print(f"built {path} (ONNX Runtime headers {inc}, ORT_API_VERSION {ort_api_version(inc)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
