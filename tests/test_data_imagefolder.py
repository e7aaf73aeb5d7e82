"""ImageFolder training sets: ordering, labels, errors."""

import numpy as np
import pytest
from PIL import Image

from edgeconv.data.imagefolder import ImageFolder
from edgeconv.errors import EdgeconvError


def _img(path, value, size=(40, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((*size, 3), value, dtype=np.uint8)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower(), None)
    Image.fromarray(arr).save(path, format=fmt)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "faces"
    _img(root / "bob" / "2.png", 20)
    _img(root / "bob" / "1.PNG", 10)
    _img(root / "alice" / "x.jpg", 30)
    _img(root / "alice" / "sub" / "y.bmp", 40)
    _img(root / "carol" / "z.webp", 50)
    (root / "carol" / "notes.txt").write_text("not an image")
    _img(root / "carol" / ".hidden.png", 60)
    _img(root / ".cache" / "q.png", 70)
    return root


def test_sorted_classes_and_samples(tree):
    ds = ImageFolder(tree, size=(32, 32))
    assert ds.classes == ["alice", "bob", "carol"]
    assert ds.num_classes == 3 and len(ds) == 5
    names = [(p.relative_to(tree).as_posix(), lb) for p, lb in ds.samples]
    assert names == [("alice/x.jpg", 0), ("alice/sub/y.bmp", 0), ("bob/1.PNG", 1),
                     ("bob/2.png", 1), ("carol/z.webp", 2)]
    np.testing.assert_array_equal(ds.labels, [0, 0, 1, 1, 2])
    img, label = ds[2]
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8 and label == 1
    assert int(img.mean()) == 10
    assert ds.check() == 5
    # deterministic: a second scan gives the same order
    assert ImageFolder(tree).samples == ImageFolder(tree).samples


def test_keeps_native_size_with_none(tree):
    img, _ = ImageFolder(tree, size=None)[0]
    assert img.shape == (40, 30, 3)


def test_empty_identity_folder(tree):
    (tree / "dave").mkdir()
    with pytest.raises(EdgeconvError, match="dave"):
        ImageFolder(tree)
    ds = ImageFolder(tree, allow_empty=True)
    assert ds.classes == ["alice", "bob", "carol"] and ds.skipped_empty == ["dave"]


def test_missing_and_flat_folders(tmp_path):
    with pytest.raises(EdgeconvError, match="not found"):
        ImageFolder(tmp_path / "missing")
    f = tmp_path / "file.png"
    _img(f, 1)
    with pytest.raises(EdgeconvError, match="not a folder"):
        ImageFolder(f)
    flat = tmp_path / "flat"
    _img(flat / "a.png", 1)
    with pytest.raises(EdgeconvError, match="sub-folder"):
        ImageFolder(flat)
    (tmp_path / "blank").mkdir()
    with pytest.raises(EdgeconvError, match="no identity sub-folders"):
        ImageFolder(tmp_path / "blank")


def test_corrupt_image_reported_on_access(tree):
    (tree / "bob" / "3.png").write_bytes(b"broken")
    ds = ImageFolder(tree)
    bad = [i for i, (p, _) in enumerate(ds.samples) if p.name == "3.png"][0]
    with pytest.raises(EdgeconvError, match="3.png"):
        ds[bad]
