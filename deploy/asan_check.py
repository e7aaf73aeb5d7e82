#!/usr/bin/env python3
"""Run the native kernels' tests under AddressSanitizer (and UBSan).

    python deploy/asan_check.py                  # build both libraries with ASan, run the tests
    python deploy/asan_check.py -k nhwc -x       # extra arguments go to pytest

What it does (x86_64 or aarch64 host with g++; a few minutes on 2 cores):

1. builds ``libedgeconv_kernels.so`` (ONNX Runtime custom op) and ``libedgeconv_litert.so``
   (LiteRT delegate) from ``edgeconv/kernels/src`` with the project's own build
   (``edgeconv.kernels.build``) and ``-fsanitize=address,undefined -fno-omit-frame-pointer
   -g -O1`` into a temporary folder; the installed libraries are left alone;
2. runs the tests that drive the native code through its public runtimes (ONNX Runtime,
   LiteRT and the ctypes entry points): every ISA this CPU has against the float64 reference,
   hostile attributes and shapes, threads, the delegate's parity and refusal paths, with
   ``EDGECONV_KERNELS_LIB`` / ``EDGECONV_LITERT_DELEGATE`` pointing at the sanitized builds
   and the ASan runtime preloaded into the Python process (leak checks off: the interpreter
   itself never frees everything);
3. prints the tests' summary and exits non-zero on any failure or sanitizer report.

Imports nothing from tests/.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: the test files that run the native code (through ORT, LiteRT and ctypes)
TESTS = ("tests/test_kernels.py", "tests/test_kernels_nhwc.py", "tests/test_kernels_runtime.py",
         "tests/test_litert_fused.py", "tests/test_per_pixel_train.py")
FLAGS = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g", "-O1",
         "-fno-sanitize-recover=undefined"]


def runtime_library(cxx: str, name: str) -> str:
    out = subprocess.run([cxx, f"-print-file-name={name}"], capture_output=True, text=True,
                         check=True).stdout.strip()
    if not os.path.isabs(out) or not os.path.isfile(out):
        raise SystemExit(f"asan_check: {cxx} has no {name} (install the compiler's sanitizer "
                         "runtime, e.g. Debian's libasan8)")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cxx", default=os.environ.get("CXX") or "g++")
    ap.add_argument("--keep", type=Path, default=None, help="build here instead of a temp dir")
    args, pytest_args = ap.parse_known_args(argv)

    from edgeconv.kernels import build as kb

    asan = runtime_library(args.cxx, "libasan.so")
    ubsan = runtime_library(args.cxx, "libubsan.so")
    with tempfile.TemporaryDirectory(prefix="edgeconv_asan_") as tmp:
        out = args.keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        ort_lib = out / kb.LIB_NAME
        lrt_lib = out / kb.LITERT_LIB_NAME
        print(f"building {ort_lib.name} and {lrt_lib.name} with {' '.join(FLAGS)} ...",
              flush=True)
        kb.build(ort_lib, kb.find_ort_include(), args.cxx, extra_flags=FLAGS)
        kb.build_litert(lrt_lib, args.cxx, extra_flags=FLAGS)
        env = dict(os.environ,
                   LD_PRELOAD=f"{asan}:{ubsan}",
                   ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1",
                   UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1",
                   EDGECONV_KERNELS_LIB=str(ort_lib),
                   EDGECONV_LITERT_DELEGATE=str(lrt_lib))
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               *[t for t in TESTS if (REPO / t).is_file()], *pytest_args]
        print("running: " + " ".join(cmd[1:]), flush=True)
        rc = subprocess.run(cmd, cwd=REPO, env=env).returncode
    print("asan_check: " + ("clean (no sanitizer report, tests passed)" if rc == 0 else
                            f"FAILED (pytest exit {rc}; a sanitizer report aborts the run "
                            "and is printed above)"))
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
