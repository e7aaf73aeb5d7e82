"""What a person reads: no progress floods when redirected, help that explains itself."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_cli import run_cli  # noqa: E402

TINY = ["--input-size", "32", "--tvconv-inter-channels", "8", "--tvconv-inter-layers", "1",
        "--identities", "8", "--images-per-identity", "4", "--epochs", "3",
        "--batch-size", "16", "--val-pairs", "40", "--threads", "1"]


def test_train_redirected_prints_lines_not_carriage_returns(tmp_path):
    pytest.importorskip("torch")
    # the real console entry point, stderr a pipe (as in a log file or CI), --progress on
    res = run_cli("train", *TINY, "--progress", "-o", tmp_path / "run", subprocess_=True)
    assert res.returncode == 0, res.stderr
    assert "\r" not in res.stderr and "\r" not in res.stdout
    lines = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("epoch ")]
    assert [ln.split()[1] for ln in lines] == ["1/3", "2/3", "3/3"]


def test_progress_lines_are_throttled(capsys, monkeypatch):
    from edgeconv import progress

    monkeypatch.setattr(progress, "stderr_is_terminal", lambda: False)
    clock = iter(range(0, 1000, 7))                     # 7 s per update
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    bar = progress.Progress(20, "work", unit="img", every=30)
    for _ in range(20):
        bar.update(1)
    bar.close()
    err = capsys.readouterr().err
    assert "\r" not in err
    assert 3 <= len(err.splitlines()) <= 5 and err.startswith("work: ")


NOISE = ("[START]", "LiteRT-Torch Convert", "absl", "oneDNN", "torchao", "KernelPreference",
         "Estimated count of arithmetic ops", "XNNPACK delegate")


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("litert_torch")
    from edgeconv.train.checkpoint import init_checkpoint

    return init_checkpoint("mbv2_x0_1", op="tvconv", input_size=[32, 32], embedding_dim=128,
                           seed=0, output=tmp_path_factory.mktemp("q") / "tiny.ckpt")


def test_tflite_export_and_bench_print_only_our_lines(tiny_ckpt, tmp_path):
    res = run_cli("export", tiny_ckpt, "-o", tmp_path, "--format", "tflite", subprocess_=True)
    assert res.returncode == 0, res.stderr
    text = res.stdout + res.stderr
    assert [n for n in NOISE if n in text] == [], text
    assert "parity tflite" in text and f"wrote {tmp_path / 'tiny.tflite'}" in text
    res = run_cli("bench", tmp_path / "tiny.tflite", "--threads", "1", "--batch", "1",
                  subprocess_=True)
    assert res.returncode == 0, res.stderr
    assert [n for n in NOISE if n in res.stdout + res.stderr] == []


@pytest.mark.slow
def test_verbose_shows_the_converter_log(tiny_ckpt, tmp_path):
    res = run_cli("-v", "export", tiny_ckpt, "-o", tmp_path, "--format", "tflite",
                  subprocess_=True)
    assert res.returncode == 0, res.stderr
    assert "LiteRT-Torch Convert" in res.stdout + res.stderr
