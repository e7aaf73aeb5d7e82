"""Hostile inputs, class 3: hangs. A FIFO as an image, a model, --db or inside a training
folder; a training folder whose symbolic links point back at it; endless bench durations.
Each is refused in one line, in a child process with a time bound (a hang fails the test)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _unlock_models as TM  # noqa: E402
from _hostile import cli, refused  # noqa: E402

from edgeconv.data.images import save_image  # noqa: E402
from edgeconv.errors import EdgeconvError  # noqa: E402

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")


@pytest.fixture(scope="module")
def face(tmp_path_factory):
    return save_image(tmp_path_factory.mktemp("f") / "a.png", TM.render([0], [0])[0])


def _fifo(path):
    os.mkfifo(path)
    return path


def test_fifo_as_image(tmp_path):
    pytest.importorskip("onnxruntime")
    img = _fifo(tmp_path / "face.png")
    refused(cli("enroll", TM.model_dir() / "face.onnx", img, "--user", "zed",
                "--db", tmp_path / "t.db"), "not a regular file")
    assert not (tmp_path / "t.db").exists()


@pytest.mark.parametrize("cmd", ["verify", "enroll", "bench"])
def test_fifo_as_model(tmp_path, face, cmd):
    model = _fifo(tmp_path / "m.onnx")
    args = {"verify": ["verify", model, face, "--user", "zed", "--db", tmp_path / "t.db"],
            "enroll": ["enroll", model, face, "--user", "zed", "--db", tmp_path / "t.db"],
            "bench": ["bench", model, "--no-progress", "--memory-batch", "0"]}[cmd]
    refused(cli(*args), "not a regular file")


@pytest.mark.parametrize("cmd", ["enroll", "verify", "users"])
def test_fifo_as_db(tmp_path, face, cmd):
    pytest.importorskip("onnxruntime")
    db = _fifo(tmp_path / "t.db")
    model = TM.model_dir() / "face.onnx"
    args = {"enroll": ["enroll", model, face, "--user", "zed", "--db", db],
            "verify": ["verify", model, face, "--user", "zed", "--db", db],
            "users": ["users", "list", "--db", db]}[cmd]
    refused(cli(*args), "not a regular file")


def test_fifo_in_training_folder(tmp_path):
    from edgeconv.data.imagefolder import ImageFolder

    for ident in ("a", "b"):
        save_image(tmp_path / ident / "1.png", np.zeros((16, 16, 3), np.uint8))
    _fifo(tmp_path / "b" / "2.png")
    with pytest.raises(EdgeconvError, match="not a regular file"):
        ImageFolder(tmp_path, size=16)


def test_fifo_in_training_folder_cli(tmp_path):
    pytest.importorskip("torch")
    data = tmp_path / "data"
    for ident in ("a", "b"):
        save_image(data / ident / "1.png", np.zeros((32, 32, 3), np.uint8))
    _fifo(data / "b" / "2.png")
    refused(cli("train", "--data", data, "--input-size", "32", "--epochs", "1", "--val", "none",
                "-o", tmp_path / "run", "--no-progress"), "not a regular file")


def test_self_referencing_links_end_the_walk(tmp_path):
    from edgeconv.data.imagefolder import ImageFolder

    for ident in ("a", "b"):
        save_image(tmp_path / ident / "1.png", np.zeros((16, 16, 3), np.uint8))
    os.symlink(".", tmp_path / "a" / "self1")       # two links back at their own folder:
    os.symlink(".", tmp_path / "a" / "self2")       # os.walk(followlinks) never ended
    os.symlink("..", tmp_path / "b" / "up")
    ds = ImageFolder(tmp_path, size=16)
    assert ds.num_classes == 2
    assert len(ds) <= 4  # each real folder is visited once


def test_self_referencing_links_cli(tmp_path):
    """In a child process with a timeout: the scan ends."""
    for ident in ("a", "b"):
        save_image(tmp_path / ident / "1.png", np.zeros((16, 16, 3), np.uint8))
    os.symlink(".", tmp_path / "a" / "l1")
    os.symlink(".", tmp_path / "a" / "l2")
    code = ("import sys\nfrom edgeconv.data.imagefolder import ImageFolder\n"
            f"print(len(ImageFolder({str(tmp_path)!r}, size=16)))\n")
    import subprocess

    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert int(res.stdout) == 2


@pytest.mark.parametrize("opt,value", [("--min-secs", "nan"), ("--min-secs", "inf"),
                                       ("--warmup-secs", "inf"), ("--warmup-secs", "-1"),
                                       ("--min-secs", "1e12")])
def test_bench_durations_finite(tmp_path, opt, value):
    pytest.importorskip("onnxruntime")
    res = cli("bench", TM.model_dir() / "face.onnx", opt, value, "--no-progress")
    refused(res, opt)
