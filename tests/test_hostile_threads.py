"""Hostile inputs, class 1: thread counts. ``--threads 100000`` segfaulted inside ONNX Runtime;
every --threads is bounded by the machine (4 x cores) before a runtime sees it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _hostile import cli, refused  # noqa: E402

from edgeconv.errors import EdgeconvError  # noqa: E402
from edgeconv.options import check_threads, max_threads, parse_threads_list  # noqa: E402


def test_limit_is_the_machines():
    import os

    assert max_threads() >= 4 * 1
    assert max_threads() <= 4 * (os.cpu_count() or 1)
    assert check_threads(max_threads()) == max_threads()
    for bad in (0, -1, max_threads() + 1, 100000):
        with pytest.raises(EdgeconvError, match="--threads"):
            check_threads(bad)
    assert parse_threads_list("1,2") == [1, 2]
    with pytest.raises(EdgeconvError, match=f"the {max_threads()} threads this machine"):
        parse_threads_list("1,100000")


@pytest.mark.parametrize("value", ["100000", "3000", "0", "-2"])
@pytest.mark.parametrize("cmd", [
    ["verify", "m.onnx", "x.png", "--user", "a"],
    ["enroll", "m.onnx", "x.png", "--user", "a"],
    ["identify", "m.onnx", "x.png"],
    ["unlock", "m.onnx", "x.png"],
    ["eval", "x.ckpt"],
    ["train"],
    ["quickstart"],
])
def test_every_threads_option_is_bounded(tmp_path, cmd, value):
    res = cli(*cmd, "--threads", value, cwd=tmp_path)
    err = refused(res, "--threads")
    if int(value) > 0:
        assert f"the {max_threads()} threads this machine allows" in err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("value", ["1,100000", "2,0", "1,x"])
def test_bench_thread_list_is_bounded(tmp_path, value):
    refused(cli("bench", "m.onnx", "--threads", value, "--no-progress", cwd=tmp_path),
            "--threads")


def test_api_refuses_before_the_runtime():
    pytest.importorskip("onnxruntime")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _unlock_models as TM

    from edgeconv.runtime.backends import open_model

    with pytest.raises(EdgeconvError, match="threads this machine allows"):
        open_model(TM.model_dir() / "face.onnx", threads=100000)
