"""Pair-list validation sets (``left right flag``)."""

import numpy as np
import pytest
from PIL import Image

from edgeconv.data import open_pairs
from edgeconv.data.pairs import PairSet, load_pair_list, read_pair_list, write_pair_list
from edgeconv.errors import EdgeconvError


@pytest.fixture
def images(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    for i in range(4):
        (root / f"p{i}").mkdir()
        Image.fromarray(np.full((96, 96, 3), 40 * i + 5, np.uint8)).save(root / f"p{i}" / "0.png")
    return root


def _write(path, text):
    path.write_text(text)
    return path


def test_parse_relative_to_list_folder(images):
    lst = _write(images / "pairs.txt",
                 "# comment\n\np0/0.png p0/0.png 1\np1/0.png  p2/0.png\t-1\np3/0.png p1/0.png 0\n")
    rows = read_pair_list(lst)
    assert [(r.left.name, r.right.parent.name, r.is_same, r.line) for r in rows] == [
        ("0.png", "p0", True, 3), ("0.png", "p2", False, 4), ("0.png", "p1", False, 5)]
    assert rows[1].left == images / "p1" / "0.png"
    pairs = load_pair_list(lst, size=(96, 96))
    assert isinstance(pairs, PairSet) and len(pairs) == 3
    np.testing.assert_array_equal(pairs.is_same, [True, False, False])
    assert pairs.left[1].mean() == 45 and pairs.right[1].mean() == 85
    small = load_pair_list(lst, size=(48, 48), max_pairs=2)
    assert small.left.shape == (2, 48, 48, 3)


def test_root_override(images, tmp_path):
    lst = _write(tmp_path / "elsewhere.txt", "p0/0.png p1/0.png -1\n")
    with pytest.raises(EdgeconvError, match="elsewhere.txt:1"):
        read_pair_list(lst)  # relative to the list's folder: missing
    rows = read_pair_list(lst, root=images)
    assert rows[0].right == images / "p1" / "0.png"
    with pytest.raises(EdgeconvError, match="root"):
        read_pair_list(lst, root=tmp_path / "nope")


@pytest.mark.parametrize("line,msg", [
    ("p0/0.png p1/0.png", "3 fields"),
    ("p0/0.png p1/0.png 1 extra", "3 fields"),
    ("p0/0.png p1/0.png yes", "flag"),
    ("p0/0.png p1/0.png 2", "flag"),
])
def test_malformed_lines_name_file_and_line(images, line, msg):
    lst = _write(images / "bad.txt", f"p0/0.png p0/0.png 1\n{line}\n")
    with pytest.raises(EdgeconvError, match=msg) as info:
        read_pair_list(lst)
    assert "bad.txt:2" in str(info.value)


def test_missing_image_and_empty_list(images):
    lst = _write(images / "m.txt", "p0/0.png p9/0.png 1\n")
    with pytest.raises(EdgeconvError, match=r"m.txt:1.*p9"):
        read_pair_list(lst)
    with pytest.raises(EdgeconvError, match="no pairs"):
        read_pair_list(_write(images / "e.txt", "# nothing\n"))
    with pytest.raises(EdgeconvError, match="not found"):
        read_pair_list(images / "absent.txt")


def test_write_roundtrip(images):
    rows = [(images / "p0/0.png", images / "p1/0.png", False), (images / "p2/0.png", images / "p2/0.png", True)]
    lst = write_pair_list(images / "out.txt", rows)
    assert lst.read_text().splitlines() == ["p0/0.png p1/0.png -1", "p2/0.png p2/0.png 1"]
    back = read_pair_list(lst)
    assert [(r.left, r.right, r.is_same) for r in back] == rows


def test_open_pairs_dispatch(images):
    lst = _write(images / "pairs.txt", "p0/0.png p1/0.png -1\np1/0.png p1/0.png 1\n")
    assert len(open_pairs(lst)) == 2
    syn = open_pairs("synthetic", size=(32, 32), num_pairs=6, train_identities=10)
    assert syn.left.shape == (6, 32, 32, 3) and syn.is_same.sum() == 3
    with pytest.raises(EdgeconvError, match="not found"):
        open_pairs(images / "missing.bin")
