"""insightface ``.bin`` verification files: round trip, Python 2 files, malicious pickles."""

import os
import pickle
import struct

import numpy as np
import pytest

from edgeconv.data import open_pairs
from edgeconv.data.images import encode_image
from edgeconv.data.insightface_bin import load_bin, read_bin, restricted_loads, write_bin
from edgeconv.data.pairs import PairSet
from edgeconv.errors import EdgeconvError


def _pairs(n=3, size=12):
    rng = np.random.default_rng(1)
    left = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    right = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    return PairSet(left, right, np.array([True, False, True][:n] + [False] * max(0, n - 3)))


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_roundtrip_with_writer(tmp_path, protocol):
    pairs = _pairs()
    path = write_bin(tmp_path / f"p{protocol}.bin", pairs, protocol=protocol)
    bins, same = read_bin(path)
    assert len(bins) == 6 and all(isinstance(b, bytes) for b in bins)
    np.testing.assert_array_equal(same, pairs.is_same)
    back = load_bin(path, size=(12, 12))
    np.testing.assert_array_equal(back.left, pairs.left)  # PNG: lossless
    np.testing.assert_array_equal(back.right, pairs.right)
    np.testing.assert_array_equal(back.is_same, pairs.is_same)
    resized = load_bin(path, size=(24, 20), max_pairs=2)
    assert resized.left.shape == (2, 24, 20, 3) and len(resized) == 2
    assert len(open_pairs(path, size=(12, 12))) == 3


def _py2_pickle(images, flags) -> bytes:
    """What Python 2's ``pickle.dump((bins, issame), f, 2)`` writes: str -> BINSTRING."""
    out = [b"\x80\x02", b"]", b"("]
    for data in images:
        out.append(b"T" + struct.pack("<i", len(data)) + data)
    out += [b"e", b"]", b"("]
    out += [b"\x88" if f else b"\x89" for f in flags]
    out += [b"e", b"\x86", b"."]
    return b"".join(out)


def test_python2_file(tmp_path):
    pairs = _pairs(2)
    imgs = [encode_image(a) for p in zip(pairs.left, pairs.right) for a in p]
    path = tmp_path / "py2.bin"
    path.write_bytes(_py2_pickle(imgs, [True, False]))
    back = load_bin(path, size=(12, 12))
    np.testing.assert_array_equal(back.right, pairs.right)
    np.testing.assert_array_equal(back.is_same, [True, False])


def test_numpy_flags_and_image_arrays_are_accepted(tmp_path):
    pairs = _pairs(2)
    imgs = [np.frombuffer(encode_image(a), np.uint8) for p in zip(pairs.left, pairs.right) for a in p]
    for flags in ([np.bool_(True), np.bool_(False)], np.array([True, False])):
        path = tmp_path / "np.bin"
        path.write_bytes(pickle.dumps((imgs, flags), protocol=4))
        back = load_bin(path, size=(12, 12))
        np.testing.assert_array_equal(back.left, pairs.left)
        np.testing.assert_array_equal(back.is_same, [True, False])


class _Touch:
    """Unpickling this with plain pickle would create ``self.path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


class _Eval:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (eval, (f"open({self.path!r}, 'w').close()",))


@pytest.mark.parametrize("payload", [_Touch, _Eval])
@pytest.mark.parametrize("where", ["images", "flags", "top"])
def test_malicious_pickle_refused_and_nothing_runs(tmp_path, payload, where):
    marker = tmp_path / "pwned"
    evil = payload(marker)
    obj = {"images": ([b"x", evil], [True]), "flags": ([b"x", b"y"], [evil]), "top": evil}[where]
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(obj, protocol=2))
    with pytest.raises(EdgeconvError, match="refusing") as info:
        load_bin(path)
    assert "evil.bin" in str(info.value)
    assert not marker.exists()
    # sanity: the payload is real - plain pickle would have run it
    pickle.loads(path.read_bytes())
    assert marker.exists()


@pytest.mark.parametrize("obj", [
    np.array([None, 1], dtype=object),              # object arrays
    ([b"a", b"b"], [{1, 2}]),                        # sets need builtins.set
    ([b"a", b"b"], [complex(1, 2)]),                 # complex needs builtins.complex
])
def test_other_globals_refused(obj):
    with pytest.raises(EdgeconvError):
        restricted_loads(pickle.dumps(obj, protocol=2))


def test_truncated_and_malformed_files(tmp_path):
    good = pickle.dumps(([encode_image(np.zeros((4, 4, 3), np.uint8))] * 2, [True]), protocol=4)
    cases = {
        "trunc.bin": (good[: len(good) // 2], "truncated"),
        "empty.bin": (b"", "empty"),
        "odd.bin": (pickle.dumps(([b"a", b"b", b"c"], [True, False])), "2 images per pair"),
        "notpair.bin": (pickle.dumps([b"a", b"b", b"c"]), "pair"),
        "flags.bin": (pickle.dumps(([b"a", b"b"], ["yes"])), "boolean"),
        "imgtype.bin": (pickle.dumps(([b"a", 5], [True])), "image 1"),
        "junk.bin": (b"\x00\x01garbage", "not a valid"),
    }
    for name, (data, msg) in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(EdgeconvError, match=msg) as info:
            read_bin(p)
        assert name in str(info.value)
    with pytest.raises(EdgeconvError, match="not found"):
        read_bin(tmp_path / "absent.bin")


def test_undecodable_image_named(tmp_path):
    p = tmp_path / "badimg.bin"
    p.write_bytes(pickle.dumps(([encode_image(np.zeros((4, 4, 3), np.uint8)), b"junk"], [True])))
    with pytest.raises(EdgeconvError, match=r"badimg.bin \[image 1\]"):
        load_bin(p, size=(4, 4))


def test_writer_validates(tmp_path):
    with pytest.raises(EdgeconvError):
        write_bin(tmp_path / "x.bin", ([b"a"], [True]))
    with pytest.raises(EdgeconvError):
        write_bin(tmp_path / "x.bin", _pairs(), protocol=1)
    assert not (tmp_path / "x.bin").exists()
    # already-encoded images pass through unchanged
    imgs = [encode_image(np.full((4, 4, 3), v, np.uint8)) for v in (1, 2)]
    write_bin(tmp_path / "y.bin", (imgs, [False]))
    assert read_bin(tmp_path / "y.bin")[0] == imgs
