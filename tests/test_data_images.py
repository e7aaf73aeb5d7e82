"""Image decoding, resizing, normalisation and error reporting."""

import io

import numpy as np
import pytest
from PIL import Image

from edgeconv.data.images import (decode_image_bytes, denormalize, encode_image, load_image,
                                  load_normalized, normalize, save_image)
from edgeconv.errors import EdgeconvError


def _gradient(h=96, w=96):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 256],
                    -1).astype(np.uint8)


def test_png_roundtrip_exact_and_no_resize_when_same_size(tmp_path):
    img = _gradient()
    p = tmp_path / "a.png"
    save_image(p, img)
    np.testing.assert_array_equal(load_image(p), img)
    np.testing.assert_array_equal(load_image(p, size=(96, 96)), img)  # untouched
    np.testing.assert_array_equal(load_image(p, size=96), img)


def test_resize_bilinear_when_size_differs(tmp_path):
    img = _gradient(120, 100)
    p = tmp_path / "b.png"
    Image.fromarray(img).save(p)
    out = load_image(p, size=(112, 96))
    assert out.shape == (112, 96, 3) and out.dtype == np.uint8
    ref = np.asarray(Image.fromarray(img).resize((96, 112), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK"])
def test_other_modes_become_rgb(tmp_path, mode):
    im = Image.fromarray(_gradient(40, 30)).convert(mode)
    p = tmp_path / ("c.jpg" if mode == "CMYK" else "c.png")
    im.save(p)
    out = load_image(p)
    assert out.shape == (40, 30, 3) and out.dtype == np.uint8
    if mode == "L":
        assert (out[..., 0] == out[..., 1]).all()


def test_normalize_values():
    batch = np.array([0, 127, 128, 255], dtype=np.uint8).reshape(1, 2, 2, 1).repeat(3, -1)
    x = normalize(batch)
    assert x.shape == (1, 3, 2, 2) and x.dtype == np.float32
    expect = (np.array([0, 127, 128, 255]) / 255.0 - 0.5) / 0.5
    np.testing.assert_allclose(x[0, 1].ravel(), expect, atol=1e-6)
    assert x.min() == -1.0 and x.max() == 1.0
    single = normalize(batch[0])
    assert single.shape == (3, 2, 2)
    np.testing.assert_array_equal(denormalize(x), batch)
    with pytest.raises(EdgeconvError):
        normalize(batch.astype(np.float32))
    with pytest.raises(EdgeconvError):
        normalize(np.zeros((2, 4, 4, 4), np.uint8))


def test_load_normalized(tmp_path):
    img = _gradient(50, 60)
    save_image(tmp_path / "d.png", img)
    x = load_normalized(tmp_path / "d.png", size=(96, 96))
    assert x.shape == (3, 96, 96) and x.dtype == np.float32
    assert -1.0 <= x.min() and x.max() <= 1.0


def test_corrupt_file_names_the_file(tmp_path):
    p = tmp_path / "garbage.jpg"
    p.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" + bytes(range(256)))
    with pytest.raises(EdgeconvError, match="garbage.jpg"):
        load_image(p)
    q = tmp_path / "text.png"
    q.write_text("hello")
    with pytest.raises(EdgeconvError, match="text.png"):
        load_image(q)


@pytest.mark.parametrize("fmt,ext", [("JPEG", "jpg"), ("PNG", "png")])
def test_truncated_file_names_the_file(tmp_path, fmt, ext):
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(buf, format=fmt)
    data = buf.getvalue()
    p = tmp_path / f"cut.{ext}"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(EdgeconvError, match=f"cut.{ext}") as info:
        load_image(p)
    assert "truncated" in str(info.value) or "corrupt" in str(info.value)


def test_missing_empty_and_directory(tmp_path):
    with pytest.raises(EdgeconvError, match="nope.png"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(EdgeconvError, match="empty.png"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(EdgeconvError, match="directory"):
        load_image(tmp_path)


def test_decode_bytes_and_encode():
    img = _gradient(20, 24)
    np.testing.assert_array_equal(decode_image_bytes(encode_image(img)), img)
    jpg = decode_image_bytes(encode_image(img, "JPEG", quality=95))
    assert jpg.shape == img.shape and np.abs(jpg.astype(int) - img).mean() < 6
    with pytest.raises(EdgeconvError, match="my-image"):
        decode_image_bytes(b"not an image", name="my-image")
