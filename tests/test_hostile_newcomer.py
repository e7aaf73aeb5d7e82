"""Class 8: newcomer friction. Fast `edgeconv models` and unknown-model errors (no torch),
help that agrees with the check, messages that name real options and variables, exit codes
that mean something, metadata that agrees with itself."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _hostile import cli, refused  # noqa: E402
from test_cli import run_cli  # noqa: E402


def test_models_without_torch():
    res = run_cli("models", block_torch=True)
    assert res.returncode == 0, res.stderr
    assert "mbv2_x0_1" in res.stdout and "sfv2_x1_5" in res.stdout


def test_unknown_model_before_torch():
    res = run_cli("train", "--model", "resnet50", block_torch=True)
    assert res.returncode == 2 and "unknown model 'resnet50'" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("size", ["8", "10", "18", "1024"])
def test_translate_train_size_help_and_check_agree(tmp_path, size):
    help_text = cli("translate-train", "--help").stdout
    assert "16..512 and a multiple of" in " ".join(help_text.split())
    refused(cli("translate-train", "--size", size, "-o", tmp_path / "t"),
            f"--size {size}: must be 16..512 and a multiple of 4")


def test_unlock_cooldown_message_names_real_options():
    err = refused(cli("unlock", "m.onnx", "x.png", "--cooldown", "7200"), "--cooldown 7200")
    assert "growth" not in err and "max" not in err.replace("3600", "")


def test_kernels_forced_isa_unavailable():
    from edgeconv import kernels as K

    try:
        avail = K.info()["available_isas"]
    except Exception:
        pytest.skip("kernel library not built")
    isa = next(i for i in ("neon", "avx512", "sve") if i not in avail)
    refused(cli("kernels", env={"EDGECONV_KERNEL_ISA": isa}), f"EDGECONV_KERNEL_ISA={isa}")


def test_kernels_lib_env_points_at_missing_file(tmp_path):
    refused(cli("kernels", env={"EDGECONV_KERNELS_LIB": str(tmp_path / "nope.so")}),
            "EDGECONV_KERNELS_LIB=")


def test_bench_reports_are_0644(tmp_path):
    from edgeconv.fileio import REPORT_MODE, atomic_write_json

    old = os.umask(0o022)
    try:
        p = atomic_write_json(tmp_path / "r.json", {"a": 1}, REPORT_MODE)
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o644


def test_bench_plot_help_does_not_promise_a_second_png():
    text = " ".join(cli("bench", "--help").stdout.split())
    assert "FILE_accuracy.png when two or more models" in text


def test_far_resolvable_agrees_with_calibration():
    pytest.importorskip("torch")
    from edgeconv.train.evaluate import compact

    result = {"accuracy": 0.9, "far_thresholds": {"1e-4": 0.5, "1e-3": 0.4},
              "tar_at_far": [{"far_target": 1e-4, "tar": 0.5, "resolvable": False,
                              "num_negatives": 20000},
                             {"far_target": 1e-3, "tar": 0.6, "resolvable": True,
                              "num_negatives": 20000}],
              "calibration": {"resolvable": {"1e-4": True, "1e-3": True},
                              "num_impostors": 717600},
              "num_pairs": 2000, "num_same": 1000}
    out = compact(result, "synthetic")
    assert out["far_resolvable"] == out["calibration"]["resolvable"]
    del result["calibration"]
    # without a calibration: the same definition (>= 10 / FAR impostors) on the test pairs
    assert compact(result, "x")["far_resolvable"] == {"1e-4": False, "1e-3": True}
