#!/usr/bin/env bash
# Raspberry Pi 4B set-up for edgeconv's device side (`edgeconv bench`, the runtime): no torch.
#
# Target: Raspberry Pi OS Bookworm 64-bit (aarch64, glibc 2.36, Python 3.11).
#
#   bash deploy/rpi4_setup.sh                      # venv in ~/edgeconv-venv, base install of this checkout
#   bash deploy/rpi4_setup.sh --source ./edgeconv-0.1.0-py3-none-any.whl
#   bash deploy/rpi4_setup.sh --source /path/to/checkout --plot
#   bash deploy/rpi4_setup.sh --tflite-runtime     # also a numpy<2 venv with tflite-runtime
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

usage() { sed -n '2,20p' "$0"; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --venv) VENV="$2"; shift 2 ;;
    --source) SOURCE="$2"; shift 2 ;;
    --plot) PLOT=1; shift ;;
    --tflite-runtime) TFLITE_RUNTIME=1; shift ;;
    --performance-governor) PERFORMANCE=1; shift ;;
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

make_venv "$VENV"
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
