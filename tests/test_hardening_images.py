"""Image inputs: only PNG/JPEG/BMP/WebP are decoded (by content), 16-bit gray, EXIF, modes."""

from __future__ import annotations

import io
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeconv.data.images import ALLOWED_FORMATS, decode_image_bytes, load_image, sniff_format
from edgeconv.data.insightface_bin import load_bin
from edgeconv.errors import EdgeconvError

sys.path.insert(0, str(Path(__file__).resolve().parent))

EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n"
       b"(/etc/passwd) (r) file pop\nshowpage\n%%EOF\n")


def _encoded(fmt, arr=None, **kw):
    arr = np.full((8, 8, 3), 100, np.uint8) if arr is None else arr
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture
def no_ghostscript(monkeypatch):
    """Fail the test if Pillow's EPS plugin (the Ghostscript hand-off) is ever entered."""
    from PIL import EpsImagePlugin

    def boom(*a, **k):
        raise AssertionError("the EPS decoder ran")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", boom)
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", boom)
    monkeypatch.setattr(EpsImagePlugin, "_accept", boom)


@pytest.mark.parametrize("fmt", ALLOWED_FORMATS)
def test_allowed_formats_decode(fmt, tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    data = _encoded(fmt, arr, **({"lossless": True} if fmt == "WEBP" else {}))
    assert sniff_format(data) == fmt
    p = tmp_path / "x.bin"                                   # the name does not matter
    p.write_bytes(data)
    out = load_image(p)
    assert out.shape == (8, 8, 3)
    if fmt != "JPEG":
        np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("data,what", [(EPS, "PostScript"),
                                        (b"\xc5\xd0\xd3\xc6" + b"\0" * 40, "EPS"),
                                        (b"%PDF-1.4\n", "PDF")])
def test_postscript_behind_a_png_name_never_reaches_a_decoder(tmp_path, no_ghostscript, data,
                                                              what):
    p = tmp_path / "face.png"
    p.write_bytes(data)
    with pytest.raises(EdgeconvError, match=f"face.png: a {what} file; only PNG, JPEG"):
        load_image(p)


@pytest.mark.parametrize("fmt,what", [("GIF", "GIF"), ("TIFF", "TIFF"), ("PPM", "PPM"),
                                       ("ICO", "ICO")])
def test_other_pillow_formats_refused(fmt, what, no_ghostscript):
    with pytest.raises(EdgeconvError, match=f"a {what} file"):
        decode_image_bytes(_encoded(fmt), name="img")


def test_unknown_bytes_refused():
    with pytest.raises(EdgeconvError, match="not a PNG, JPEG, BMP or WebP image"):
        decode_image_bytes(b"\x00\x01garbage" * 4, name="img")


def test_a_png_header_on_eps_content_is_a_png_error_not_ghostscript(no_ghostscript):
    data = b"\x89PNG\r\n\x1a\n" + EPS
    with pytest.raises(EdgeconvError, match="not a readable image|corrupt"):
        decode_image_bytes(data, name="img")


def test_insightface_bin_with_eps_refused(tmp_path, no_ghostscript):
    p = tmp_path / "evil.bin"
    png = _encoded("PNG")
    p.write_bytes(pickle.dumps(([png, EPS], [True])))
    with pytest.raises(EdgeconvError, match=r"evil.bin \[image 1\]: a PostScript file"):
        load_bin(p, size=(8, 8))


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 8).reshape(8, 64)
    im = Image.fromarray(ramp.astype(np.uint16))
    assert im.mode == "I;16"
    p = tmp_path / "g16.png"
    im.save(p)
    out = load_image(p)
    assert out.shape == (8, 64, 3) and (out[..., 0] == out[..., 2]).all()
    np.testing.assert_allclose(out[..., 0].astype(float), ramp / 257.0, atol=1.0)
    assert out.min() == 0 and out.max() == 255 and 120 < out[4, 0, 0] < 136


def test_32_bit_integer_gray_from_a_16_bit_source_is_scaled():
    from edgeconv.data.images import _to_rgb     # older Pillows open 16-bit PNGs as mode "I"

    ramp = np.linspace(0, 65535, 64).reshape(1, 64).astype(np.int32)
    out = np.asarray(_to_rgb(Image.fromarray(ramp, "I")))
    np.testing.assert_allclose(out[..., 1].astype(float), ramp / 257.0, atol=1.0)


def test_exif_orientation_applied(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :10] = 255                                        # a white band on the left
    im = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6                                         # "rotate 90 CW to display"
    p = tmp_path / "rot.jpg"
    im.save(p, exif=exif.tobytes(), quality=95)
    out = load_image(p)
    assert out.shape == (40, 20, 3)                          # turned upright
    assert out[:10].mean() > 200 and out[-10:].mean() < 50   # the band is now on top


@pytest.mark.parametrize("mode", ["P", "RGBA", "LA"])
def test_palette_and_alpha_images_work(mode, tmp_path):
    arr = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    im = Image.fromarray(arr)
    im = im.convert(mode)
    p = tmp_path / "m.png"
    im.save(p)
    out = load_image(p)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8 and out.std() > 0
