"""Honest context for a benchmark report: CPU, cores, frequency, thermals, libraries.

Everything is read from /proc, /sys, ``vcgencmd`` (Raspberry Pi) and package
metadata; nothing here imports a runtime library, and anything the machine does
not expose is reported as ``None`` rather than guessed. Torch-free.
"""

from __future__ import annotations

import glob
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

# Arm "CPU part" ids seen on boards edgeconv targets (/proc/cpuinfo on aarch64 has no model name).
_ARM_PARTS = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55",
              "0xd07": "Cortex-A57", "0xd08": "Cortex-A72", "0xd09": "Cortex-A73",
              "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76", "0xd0d": "Cortex-A77",
              "0xd41": "Cortex-A78", "0xd4b": "Cortex-A78C"}

# `vcgencmd get_throttled` bits (Raspberry Pi firmware documentation).
THROTTLE_BITS = {
    0: "under-voltage detected", 1: "arm frequency capped", 2: "currently throttled",
    3: "soft temperature limit active", 16: "under-voltage has occurred",
    17: "arm frequency capping has occurred", 18: "throttling has occurred",
    19: "soft temperature limit has occurred",
}
LOAD_WARNING = 0.5  # 1-minute load average (before the run) that earns a warning
_PACKAGES = ("numpy", "onnxruntime", "ai-edge-litert", "tflite-runtime", "psutil", "edgeconv")


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _int(text) -> int | None:
    try:
        return int(str(text).strip())
    except (TypeError, ValueError):
        return None


def cpu_model(cpuinfo: str | None = None) -> dict:
    """CPU model name and board (Pi: the ``Model`` line / device-tree model)."""
    text = _read("/proc/cpuinfo") if cpuinfo is None else cpuinfo
    fields: dict[str, str] = {}
    raw: dict[str, str] = {}
    for line in (text or "").splitlines():
        if ":" in line:
            key, _, val = line.partition(":")
            fields.setdefault(key.strip().lower(), val.strip())
            raw.setdefault(key.strip(), val.strip())
    name = fields.get("model name") or fields.get("cpu model") or fields.get("processor")
    part = fields.get("cpu part")
    if part and (name is None or name.isdigit()):
        name = _ARM_PARTS.get(part.lower(), f"Arm CPU part {part}")
    board = raw.get("Model")  # Pi: "Raspberry Pi 4 Model B Rev 1.4"; x86 "model" is a number
    if board is None:
        dt = _read("/proc/device-tree/model")
        board = dt.rstrip("\x00") if dt else None
    return {"cpu_model": name or platform.processor() or None, "board": board,
            "machine": platform.machine()}


def core_counts() -> dict:
    import psutil

    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    return {"physical": psutil.cpu_count(logical=False), "logical": psutil.cpu_count(logical=True),
            "usable": usable}


def frequency() -> dict:
    """Governor and current/max frequency (MHz) of cpu0; ``None`` where not exposed."""
    base = Path("/sys/devices/system/cpu/cpu0/cpufreq")
    out = {"governor": _read(base / "scaling_governor"), "cur_mhz": None, "max_mhz": None,
           "source": None}
    cur = _int(_read(base / "scaling_cur_freq"))
    mx = _int(_read(base / "cpuinfo_max_freq")) or _int(_read(base / "scaling_max_freq"))
    if cur or mx:
        out.update(cur_mhz=cur / 1000 if cur else None, max_mhz=mx / 1000 if mx else None,
                   source="sysfs cpufreq")
    else:
        try:
            import psutil

            f = psutil.cpu_freq()
        except Exception:  # not exposed on every platform
            f = None
        if f is not None and (f.current or f.max):
            out.update(cur_mhz=f.current or None, max_mhz=f.max or None, source="psutil")
    return out


def temperatures() -> list[dict]:
    """Thermal zones as [{zone, type, celsius}] (empty when /sys/class/thermal has none)."""
    zones = []
    for zone in sorted(glob.glob("/sys/class/thermal/thermal_zone*")):
        milli = _int(_read(Path(zone) / "temp"))
        if milli is None:
            continue
        zones.append({"zone": Path(zone).name, "type": _read(Path(zone) / "type"),
                      "celsius": round(milli / 1000.0, 1)})
    return zones


def vcgencmd_throttled() -> dict | None:
    """Decoded ``vcgencmd get_throttled`` (Raspberry Pi), or None when not available."""
    exe = shutil.which("vcgencmd")
    if exe is None:
        return None
    try:
        text = subprocess.run([exe, "get_throttled"], capture_output=True, text=True,
                              timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"throttled=(0x[0-9a-fA-F]+)", text)
    if not m:
        return None
    return decode_throttled(int(m.group(1), 16))


def decode_throttled(value: int) -> dict:
    return {"raw": hex(value),
            "flags": [msg for bit, msg in sorted(THROTTLE_BITS.items()) if value >> bit & 1]}


def thermal_throttle_counts() -> int | None:
    """Sum of Linux core/package thermal-throttle event counters (x86), None if absent."""
    total, seen = 0, False
    for f in glob.glob("/sys/devices/system/cpu/cpu*/thermal_throttle/*_throttle_count"):
        v = _int(_read(f))
        if v is not None:
            total, seen = total + v, True
    return total if seen else None


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def thermal_snapshot() -> dict:
    """What may change during a run: frequency, temperatures, throttling state, load."""
    return {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "frequency": frequency(),
            "temperatures": temperatures(), "throttled": vcgencmd_throttled(),
            "thermal_throttle_count": thermal_throttle_counts(), "load_average": load_average()}


def library_versions() -> dict:
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    out["python"] = platform.python_version()
    out["python_implementation"] = platform.python_implementation()
    out["platform"] = platform.platform()
    libc = platform.libc_ver()
    out["libc"] = " ".join(v for v in libc if v) or None
    return out


def system_info() -> dict:
    """The static part of the report's ``system`` section."""
    info = cpu_model()
    info["cores"] = core_counts()
    info["kernel"] = platform.release()
    info["libraries"] = library_versions()
    info["executable"] = sys.executable
    return info


def run_warnings(system: dict, threads: list[int], before: dict, after: dict) -> list[str]:
    """Warnings a reader must see: oversubscribed threads, throttling during the run."""
    warnings = []
    cores = system.get("cores", {})
    physical = cores.get("physical") or cores.get("logical")
    if physical:
        over = sorted(t for t in set(threads) if t > physical)
        if over:
            warnings.append(f"threads {','.join(map(str, over))} exceed the {physical} physical "
                            "cores: those configurations are oversubscribed (usually slower, "
                            "noisier)")
    thr_after = (after or {}).get("throttled")
    thr_before = (before or {}).get("throttled")
    if thr_after:
        flags_now = set(thr_after["flags"])
        flags_then = set(thr_before["flags"]) if thr_before else set()
        during = [f for f in ("currently throttled", "arm frequency capped",
                              "soft temperature limit active", "under-voltage detected")
                  if f in flags_now]
        new = sorted(f for f in flags_now - flags_then if "occurred" in f)
        if during or new:
            warnings.append("the device throttled during the run (vcgencmd get_throttled="
                            f"{thr_after['raw']}: {', '.join(during + new)}): figures are "
                            "pessimistic; cool the board / fix the power supply and rerun")
    c0 = (before or {}).get("thermal_throttle_count")
    c1 = (after or {}).get("thermal_throttle_count")
    if c0 is not None and c1 is not None and c1 > c0:
        warnings.append(f"the CPU recorded {c1 - c0} thermal-throttle events during the run")
    load = (before or {}).get("load_average")
    if load and load[0] >= LOAD_WARNING:
        warnings.append(f"load average {load[0]:.2f} before the run: other processes compete "
                        "for the CPU, so the figures are pessimistic and noisy")
    gov = ((after or {}).get("frequency") or {}).get("governor")
    if gov and gov not in ("performance",):
        warnings.append(f"cpufreq governor is '{gov}': the clock scales with load, so short "
                        "runs can be measured below the maximum frequency")
    return warnings
