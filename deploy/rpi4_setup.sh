#!/usr/bin/env bash
# Raspberry Pi 4B set-up for edgeconv's device side (`edgeconv bench`, the runtime): no torch.
#
# Target: Raspberry Pi OS Bookworm 64-bit (aarch64, glibc 2.36, Python 3.11).
#
#   bash deploy/rpi4_setup.sh                      # venv in ~/edgeconv-venv, base install of this checkout
#   bash deploy/rpi4_setup.sh --source ./edgeconv-0.1.0-cp311-cp311-linux_aarch64.whl  # built on a Pi
#   bash deploy/rpi4_setup.sh --source /path/to/checkout --plot
#   bash deploy/rpi4_setup.sh --tflite-runtime     # also a numpy<2 venv with tflite-runtime
#   bash deploy/rpi4_setup.sh --no-kernels         # skip the fused-kernel build prerequisites
#
# The fused TVConv kernel (libedgeconv_kernels.so, for models exported with --formulation
# fused) is compiled by `pip install` of a checkout; it needs g++ and the ONNX Runtime C API
# headers, which this script provides first: on Raspberry Pi OS trixie `apt-get install g++
# libonnxruntime-dev`; on Bookworm (no libonnxruntime-dev) g++ from apt and the headers of
# trixie's package fetched by edgeconv/kernels/fetch_ort_headers.py (apt with private state,
# nothing installed). A failed kernel build never fails the install: the rest runs without it.
# The same `pip install` (setup.py) builds the LiteRT delegate too (libedgeconv_litert.so, for
# .tflite files exported with --formulation fused; g++ only, no runtime headers); the last
# check prints whether it was built, the ISA it selects (neon on the Pi) and its self-test.
#
# Runtime wheels that exist for aarch64 + CPython 3.11 (PyPI):
#   onnxruntime     1.31.1  manylinux_2_27/2_28 aarch64            -> base install
#   ai-edge-litert  2.3.0   manylinux aarch64, works with numpy 2  -> base install (TFLite backend)
#   tflite-runtime  2.14.0  manylinux_2_34 aarch64; built against numpy 1.x: it imports under
#                   numpy 2 but crashes, so it needs numpy<2 -> a separate venv (--tflite-runtime);
#                   edgeconv falls back to it only when ai-edge-litert is missing.
# torch is NOT needed (and not installed) on the device.
set -euo pipefail

VENV="${EDGECONV_VENV:-$HOME/edgeconv-venv}"
# edgeconv is not on PyPI: by default install the checkout this script lives in.
SOURCE="$(cd "$(dirname "$0")/.." && pwd)"
PLOT=0
TFLITE_RUNTIME=0
PERFORMANCE=0
KERNELS=1

usage() { sed -n '2,28p' "$0"; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --venv) VENV="$2"; shift 2 ;;
    --source) SOURCE="$2"; shift 2 ;;
    --plot) PLOT=1; shift ;;
    --tflite-runtime) TFLITE_RUNTIME=1; shift ;;
    --performance-governor) PERFORMANCE=1; shift ;;
    --no-kernels) KERNELS=0; shift ;;
    -h|--help) usage 0 ;;
    *) echo "rpi4_setup: unknown option $1" >&2; usage 2 ;;
  esac
done

say() { printf '[rpi4_setup] %s\n' "$*" >&2; }
die() { printf 'rpi4_setup: error: %s\n' "$*" >&2; exit 2; }

arch="$(uname -m)"
[ "$arch" = "aarch64" ] || say "warning: this is $arch, not aarch64 (64-bit Pi OS); wheels may differ"
if [ -r /proc/device-tree/model ]; then say "board: $(tr -d '\0' < /proc/device-tree/model)"; fi

PY="$(command -v python3.11 || command -v python3 || true)"
[ -n "$PY" ] || die "python3 not found (sudo apt-get install python3)"
pyver="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[ "$pyver" = "3.11" ] || say "warning: Python $pyver; the tested device set-up is Python 3.11 (Bookworm)"
"$PY" -c 'import venv, ensurepip' 2>/dev/null || die "python venv support missing: sudo apt-get install python3-venv"

make_venv() {  # $1 = venv folder
  if [ ! -x "$1/bin/python" ]; then
    say "creating venv $1"
    "$PY" -m venv "$1"
  fi
  "$1/bin/python" -m pip install --quiet --upgrade pip
}

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
ORT_HEADER=onnxruntime_c_api.h

have_ort_headers() {
  { [ -n "${ORT_INCLUDE_DIR:-}" ] && [ -f "$ORT_INCLUDE_DIR/$ORT_HEADER" ]; } ||
    [ -f "/usr/include/onnxruntime/$ORT_HEADER" ]
}

prepare_kernel_build() {  # g++ and the ONNX Runtime headers, before `pip install`
  local pkgs=()
  command -v g++ > /dev/null 2>&1 || pkgs+=(g++)
  # Raspberry Pi OS trixie (Debian 13) packages the headers: /usr/include/onnxruntime
  if ! have_ort_headers && apt-cache show libonnxruntime-dev > /dev/null 2>&1; then
    pkgs+=(libonnxruntime-dev)
  fi
  if [ ${#pkgs[@]} -gt 0 ]; then
    say "$SUDO apt-get install -y ${pkgs[*]} (to build the fused kernel)"
    $SUDO apt-get install -y "${pkgs[@]}" ||
      say "warning: apt-get install ${pkgs[*]} failed (sudo apt-get update first?)"
  fi
  if ! have_ort_headers; then  # Bookworm: the headers of trixie's package, nothing installed
    local fetcher="$SOURCE/edgeconv/kernels/fetch_ort_headers.py" inc=""
    if [ -f "$fetcher" ]; then
      say "fetching the ONNX Runtime headers (trixie's libonnxruntime-dev, headers only, into ~/.cache/edgeconv/ort-headers)"
      if inc="$("$PY" "$fetcher" --quiet | tail -n 1)" && [ -f "$inc/$ORT_HEADER" ]; then
        export ORT_INCLUDE_DIR="$inc"
      fi
    fi
    have_ort_headers || say "warning: no ONNX Runtime headers: the fused kernel will not be built"
  fi
  command -v g++ > /dev/null 2>&1 || say "warning: no g++: the fused kernel will not be built"
}

check_kernels() {  # edgeconv.kernels.info(), then the best ISA path vs scalar on random layers
  "$VENV/bin/python" - <<'EOF'
import ctypes, platform, sys
sys.modules["torch"] = None  # the device side must not need it
import numpy as np
import edgeconv.kernels as k
from edgeconv.kernels import pack
try:
    info = k.info()
except k.KernelsMissing as exc:
    print(f"edgeconv kernels: not available: {exc}", file=sys.stderr)
    sys.exit(1)
print(f"edgeconv kernels: {info}")
best = info["available_isas"][-1]
if platform.machine() == "aarch64" and info["isa"] != "neon":
    print(f"edgeconv kernels: warning: selected ISA {info['isa']}, not neon", file=sys.stderr)
lib, rng, i64 = k.load(), np.random.default_rng(0), ctypes.c_int64
ptr = lambda a: None if a is None else a.ctypes.data_as(ctypes.c_void_p)
worst = 0.0
for kk, s, hw, dt in [(3, 1, (20, 19), "float32"), (3, 2, (16, 15), "float16"),
                      (5, 1, (9, 7), "int8"), (5, 2, (20, 20), "float32")]:
    (h, w), c, n = pack.out_hw(hw, kk, s), 6, 5
    x = rng.standard_normal((n, c, *hw)).astype(np.float32)
    wp, sc = pack.pack_weights(rng.standard_normal((c, kk * kk, h, w)), hw, s, dt)
    bias = rng.standard_normal(c).astype(np.float32)
    ys = []
    for isa in ("scalar", best):  # bias per channel (1), relu6 (2)
        y, err = np.zeros((n, c, h, w), np.float32), ctypes.create_string_buffer(256)
        rc = lib.edgeconv_tvconv_run(isa.encode(), ptr(x), ptr(y), ptr(wp),
                                     pack.WEIGHT_DTYPES.index(dt), ptr(sc), ptr(bias), 1, 2,
                                     i64(n), i64(c), i64(hw[0]), i64(hw[1]), kk, s, err, len(err))
        if rc:
            sys.exit(f"edgeconv kernels: {isa} k={kk} s={s} {dt}: {err.value.decode()}")
        ys.append(y)
    worst = max(worst, float(np.abs(ys[0] - ys[1]).max() / max(1.0, np.abs(ys[0]).max())))
print(f"edgeconv kernels: {best} vs scalar on random layers: max relative diff {worst:.2g}")
sys.exit(0 if worst <= 1e-4 else f"edgeconv kernels: {best} differs from scalar")
EOF
}

check_litert_delegate() {  # litert_delegate.info(selftest=True), as in `edgeconv kernels --json`
  "$VENV/bin/python" - <<'EOF'
import platform, sys
sys.modules["torch"] = None
from edgeconv.runtime import litert_delegate as ld
info = ld.info(selftest=True)
if not info["available"]:
    print(f"edgeconv litert delegate: NOT built ({info['library']} missing): fused .tflite "
          "files run their portable body", file=sys.stderr)
    sys.exit(1)
print(f"edgeconv litert delegate: built: {info['library']} (version {info['version']}, "
      f"isa {info['isa']}, self-test {info['selftest']})")
if platform.machine() == "aarch64" and info["isa"] != "neon":
    print(f"edgeconv litert delegate: warning: selected ISA {info['isa']}, not neon",
          file=sys.stderr)
sys.exit(0 if info["selftest"] == "passed" else 1)
EOF
}

make_venv "$VENV"
if [ "$KERNELS" = 1 ]; then prepare_kernel_build; fi
spec="$SOURCE"
[ "$PLOT" = 1 ] && spec="${SOURCE}[plot]"
say "pip install $spec (base install: numpy, onnxruntime, ai-edge-litert, psutil, click, tqdm, pillow)"
"$VENV/bin/python" -m pip install "$spec"

say "checking the base install (torch must not be needed)"
"$VENV/bin/python" - <<'EOF'
import sys
sys.modules["torch"] = None  # any torch import on the device path would fail here
import numpy, onnxruntime
from ai_edge_litert import interpreter
from edgeconv.runtime import backends
print(f"numpy {numpy.__version__}, onnxruntime {onnxruntime.__version__}, "
      f"ai-edge-litert {backends.runtime_version('tflite')[1]}: ok")
EOF
"$VENV/bin/edgeconv" bench --help > /dev/null

if [ "$KERNELS" = 1 ]; then
  say "checking the fused-kernel library (python -c 'import edgeconv.kernels as k; print(k.info())')"
  if ! check_kernels && [ -d "$SOURCE/edgeconv/kernels/src" ]; then
    # pip hides the compiler's messages: build again in the open, into the installed package
    dest="$("$VENV/bin/python" -c 'import edgeconv.kernels as k; print(k.HERE / k.LIB_NAME)')"
    say "building the kernel library into $dest"
    if "$VENV/bin/python" "$SOURCE/edgeconv/kernels/build.py" -o "$dest"; then
      check_kernels || say "warning: the fused kernel does not work here"
    else
      say "warning: the fused kernel is not built: fused models (--formulation fused) will not run; all others do"
    fi
  fi
fi

say "checking the LiteRT delegate library (built by the same pip install: setup.py)"
if ! check_litert_delegate && [ "$KERNELS" = 1 ] && [ -d "$SOURCE/edgeconv/kernels/src" ]; then
  # pip hides the compiler's messages: build again in the open, into the installed package
  dest="$("$VENV/bin/python" -c 'from edgeconv.runtime import litert_delegate as d; print(d.KERNELS_DIR / d.LIB_NAME)')"
  say "building the LiteRT delegate into $dest"
  if "$VENV/bin/python" "$SOURCE/edgeconv/kernels/build.py" --only litert --litert-output "$dest"; then
    check_litert_delegate || say "warning: the LiteRT delegate does not work here"
  else
    say "warning: the LiteRT delegate is not built: fused .tflite files run their portable body (slower)"
  fi
fi

if [ "$TFLITE_RUNTIME" = 1 ]; then
  TVENV="${VENV}-tflite-runtime"
  make_venv "$TVENV"
  say "pip install 'numpy<2' tflite-runtime==2.14.0 + $SOURCE (--no-deps for ai-edge-litert) in $TVENV"
  "$TVENV/bin/python" -m pip install "numpy<2" "tflite-runtime==2.14.0" psutil click tqdm pillow onnxruntime
  "$TVENV/bin/python" -m pip install --no-deps "$SOURCE"
  EDGECONV_TFLITE_RUNTIME=tflite-runtime "$TVENV/bin/python" -c \
    "from edgeconv.runtime.backends import import_runtime; print('tflite backend:', import_runtime('tflite')[1])"
fi

if [ "$PERFORMANCE" = 1 ]; then
  say "setting the cpufreq governor to performance (until reboot)"
  for g in /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor; do
    echo performance | sudo tee "$g" > /dev/null
  done
fi

gov="$(cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor 2>/dev/null || echo unknown)"
throttled="$(vcgencmd get_throttled 2>/dev/null || echo 'vcgencmd not available')"
cat >&2 <<EOF
[rpi4_setup] done.
  activate:  source $VENV/bin/activate
  benchmark: edgeconv bench model.onnx model.tflite --json bench.json --csv bench.csv
  governor:  $gov (use --performance-governor or 'performance' for stable timings)
  throttled: $throttled (0x0 = never throttled/under-volted since boot)
  Use a 5.1 V / 3 A supply and a heatsink or fan: a hot Pi 4 throttles at 80-85 C.
EOF
