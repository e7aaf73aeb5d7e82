"""edgeconv.profiling.sysinfo: CPU/board parsing, throttle decoding, run warnings."""

from __future__ import annotations

from edgeconv.profiling import sysinfo as S

PI4_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd08
CPU revision\t: 3

Hardware\t: BCM2835
Revision\t: c03114
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""

X86_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model\t\t: 85
model name\t: Intel(R) Xeon(R) Gold 6148
"""


def test_cpu_model_pi4_and_x86():
    pi = S.cpu_model(PI4_CPUINFO)
    assert pi["cpu_model"] == "Cortex-A72"
    assert pi["board"] == "Raspberry Pi 4 Model B Rev 1.4"
    x86 = S.cpu_model(X86_CPUINFO)
    assert x86["cpu_model"] == "Intel(R) Xeon(R) Gold 6148"
    assert x86["board"] != "85"


def test_decode_throttled_bits():
    assert S.decode_throttled(0)["flags"] == []
    d = S.decode_throttled(0x50005)
    assert d["raw"] == "0x50005"
    assert d["flags"] == ["under-voltage detected", "currently throttled",
                          "under-voltage has occurred", "throttling has occurred"]


def _snap(raw=None, count=None, governor="performance", load=(0.1, 0.1, 0.1)):
    return {"throttled": S.decode_throttled(raw) if raw is not None else None,
            "thermal_throttle_count": count, "frequency": {"governor": governor},
            "load_average": list(load)}


def test_run_warnings():
    system = {"cores": {"physical": 4, "logical": 4}}
    assert S.run_warnings(system, [1, 2, 4], _snap(0), _snap(0)) == []
    over = S.run_warnings(system, [1, 8], _snap(0), _snap(0))
    assert len(over) == 1 and "threads 8 exceed the 4 physical cores" in over[0]
    hot = S.run_warnings(system, [4], _snap(0), _snap(0x40000))
    assert len(hot) == 1 and "throttled during the run" in hot[0]
    # "has occurred" bits already set before the run are not blamed on it
    assert S.run_warnings(system, [4], _snap(0x40000), _snap(0x40000)) == []
    now = S.run_warnings(system, [4], _snap(0x40000), _snap(0x40004))
    assert "currently throttled" in now[0]
    x86 = S.run_warnings(system, [4], _snap(count=3), _snap(count=5))
    assert "2 thermal-throttle events" in x86[0]
    gov = S.run_warnings(system, [4], _snap(0), _snap(0, governor="ondemand"))
    assert "governor is 'ondemand'" in gov[0]
    busy = S.run_warnings(system, [4], _snap(0, load=(3.5, 2, 1)), _snap(0))
    assert len(busy) == 1 and "load average 3.50 before the run" in busy[0]


def test_system_info_is_filled_honestly():
    info = S.system_info()
    assert info["cores"]["logical"] >= 1
    libs = info["libraries"]
    assert libs["numpy"] and libs["python"] and libs["platform"]
    assert "tflite-runtime" in libs  # None when not installed, never guessed
    snap = S.thermal_snapshot()
    assert set(snap) >= {"frequency", "temperatures", "throttled", "thermal_throttle_count",
                         "load_average"}
    assert isinstance(snap["temperatures"], list)
