"""Hostile inputs, class 2: unbounded reads and allocations. /dev/zero, /dev/urandom (or a link
to them) as an image, in a training folder or a pair list; counts whose memory is absurd
(--num-pairs, --batch, a .bin holding millions of references to one image). Only regular
files are read, sizes are capped before decoding, size-like options are bounded by the memory
they imply; one line naming the limit."""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _unlock_models as TM  # noqa: E402
from _hostile import cli, refused  # noqa: E402

from edgeconv.data.images import encode_image, load_image, save_image  # noqa: E402
from edgeconv.errors import EdgeconvError  # noqa: E402

DEVICES = [d for d in ("/dev/zero", "/dev/urandom") if os.path.exists(d)]


def _link(tmp_path, target, name="face.png"):
    p = tmp_path / name
    os.symlink(target, p)
    return p


@pytest.fixture(scope="module")
def face(tmp_path_factory):
    return save_image(tmp_path_factory.mktemp("f") / "a.png", TM.render([0], [0])[0])


@pytest.mark.parametrize("dev", DEVICES)
def test_device_as_image_is_refused(tmp_path, dev):
    for p in (Path(dev), _link(tmp_path, dev)):
        with pytest.raises(EdgeconvError, match="not a regular file"):
            load_image(p)


@pytest.mark.parametrize("dev", DEVICES)
@pytest.mark.parametrize("cmd", ["enroll", "verify", "identify"])
def test_device_as_image_cli(tmp_path, dev, cmd):
    pytest.importorskip("onnxruntime")
    model = TM.model_dir() / "face.onnx"
    img = _link(tmp_path, dev)
    args = {"enroll": ["enroll", model, img, "--user", "zed"],
            "verify": ["verify", model, img, "--user", "zed"],
            "identify": ["identify", model, img]}[cmd]
    res = cli(*args, "--db", tmp_path / "t.db")
    if cmd == "enroll":
        refused(res, "not a regular file")
    else:  # no database yet, or the image: either way one line
        refused(res)


def test_oversized_image_refused_before_decoding(tmp_path, monkeypatch):
    from edgeconv import fileio

    p = tmp_path / "big.png"
    p.write_bytes(encode_image(np.zeros((8, 8, 3), np.uint8)) + b"\0" * 4096)
    monkeypatch.setattr(fileio, "MAX_IMAGE_BYTES", 1024)
    with pytest.raises(EdgeconvError, match="MiB limit for a image file|limit for a image"):
        load_image(p)


@pytest.mark.parametrize("dev", DEVICES)
def test_device_in_training_folder(tmp_path, dev):
    from edgeconv.data.imagefolder import ImageFolder

    for ident in ("a", "b"):
        save_image(tmp_path / ident / "1.png", np.zeros((8, 8, 3), np.uint8))
    _link(tmp_path / "b", dev, "2.png")
    with pytest.raises(EdgeconvError, match="not a regular file"):
        ImageFolder(tmp_path, size=16)


@pytest.mark.parametrize("dev", DEVICES)
def test_device_in_pair_list(tmp_path, dev):
    from edgeconv.data.pairs import load_pair_list

    save_image(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    _link(tmp_path, dev, "z.png")
    (tmp_path / "pairs.txt").write_text("a.png z.png 1\na.png a.png 1\n")
    with pytest.raises(EdgeconvError, match="not a regular file"):
        load_pair_list(tmp_path / "pairs.txt", size=8)


def test_synthetic_pair_count_bounded_by_memory():
    from edgeconv.train.evaluate import load_pairs

    with pytest.raises(EdgeconvError, match=r"--num-pairs 10000000: would need .* GiB"):
        load_pairs("synthetic", size=(96, 96), num_pairs=10_000_000)


def test_bin_with_millions_of_references_to_one_image(tmp_path):
    from edgeconv.data.insightface_bin import load_bin

    img = encode_image(np.zeros((96, 96, 3), np.uint8))
    n = 1_000_000                                     # 2M references to one small image
    p = tmp_path / "evil.bin"
    p.write_bytes(pickle.dumps(([img] * (2 * n), [True] * n), protocol=4))
    assert p.stat().st_size < 64 << 20
    with pytest.raises(EdgeconvError, match=r"pairs 1000000: would need .* GiB of decoded"):
        load_bin(p, size=(96, 96))


def test_export_batch_bounded_before_torch(tmp_path):
    res = cli("export", tmp_path / "none.ckpt", "--batch", "100000", "-o", tmp_path / "out")
    refused(res, "--batch 100000: would need")
    assert not (tmp_path / "out").exists()


def test_eval_num_pairs_bounded(tmp_path):
    pytest.importorskip("torch")
    ck = tmp_path / "m.ckpt"
    assert cli("init", "mbv2_x0_1", "--op", "depthwise", "--input-size", "32",
               "--embedding-dim", "8", "-o", ck).returncode == 0
    res = cli("eval", ck, "--num-pairs", "10000000", "--no-plot", "--no-write",
              "-o", tmp_path / "out")
    refused(res, "--num-pairs 10000000: would need")
