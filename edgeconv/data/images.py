"""Image decoding and normalisation (numpy + Pillow, torch-free).

Conventions (same as the published TVConv face models, facts.md section 4):

* images are RGB ``uint8`` arrays of shape ``(H, W, 3)``; sizes are ``(height, width)``;
* a decoded image is resized (bilinear) only when its size differs from the target;
* the network input is ``float32`` CHW (or NCHW for batches) with
  ``(x / 255 - 0.5) / 0.5``, i.e. values in ``[-1, 1]``.

Only the formats a face pipeline needs are decoded: PNG, JPEG, BMP and WebP, recognised by
their content (magic bytes), never by the file name.  Anything else (PostScript/EPS, which
Pillow would hand to Ghostscript, TIFF, GIF, PDF, ...) is refused in one line before any
decoder runs, and Pillow is only ever asked to open the one format the bytes announce.

EXIF orientation is applied (a phone photo stored sideways is turned upright); 16-bit
grayscale images are scaled to 8 bits (not clipped to white); palette and alpha images are
converted to RGB (alpha dropped).

Every decoding failure (missing, unreadable, corrupt or truncated file) raises
:class:`~edgeconv.errors.EdgeconvError` naming the file.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

from edgeconv.errors import EdgeconvError, clean_message

# A truncated file must be an error, never a silently grey-padded image.
ImageFile.LOAD_TRUNCATED_IMAGES = False

#: File extensions treated as images (lower case, with the dot).
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

_BILINEAR = getattr(Image, "Resampling", Image).BILINEAR

#: The decoders edgeconv lets Pillow use (Pillow format names).
ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "BMP", "WEBP")

# content sniffing: (magic at offset 0, Pillow format)
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"BM", "BMP"))
# a few formats worth naming when refused
_KNOWN_OTHERS = ((b"%!PS", "PostScript"), (b"\xc5\xd0\xd3\xc6", "EPS"), (b"%PDF", "PDF"),
                 (b"GIF8", "GIF"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
                 (b"\x00\x00\x00\x0cjP", "JPEG 2000"), (b"\xff\x4f\xff\x51", "JPEG 2000"),
                 (b"8BPS", "Photoshop"), (b"\x00\x00\x01\x00", "ICO"), (b"<", "SVG/XML"),
                 (b"P1", "PBM"), (b"P4", "PBM"), (b"P5", "PGM"), (b"P6", "PPM"))


def sniff_format(data: bytes) -> str | None:
    """The allowed format the bytes announce (``"PNG"``, ``"JPEG"``, ``"BMP"``, ``"WEBP"``)
    or None."""
    head = bytes(data[:16])
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def _refusal(data: bytes, name: str) -> EdgeconvError:
    head = bytes(data[:16])
    what = next((n for magic, n in _KNOWN_OTHERS if head.startswith(magic)), None)
    kind = f"a {what} file" if what else "not a PNG, JPEG, BMP or WebP image"
    return EdgeconvError(f"{name}: {kind}; only PNG, JPEG, BMP and WebP images are decoded "
                         "(recognised by content, whatever the file name)")

#: Normalisation constants: ``(x * SCALE - MEAN) / STD``.
SCALE = 1.0 / 255.0
MEAN = 0.5
STD = 0.5


def is_image_file(path: str | os.PathLike) -> bool:
    """True when ``path`` has one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return os.path.splitext(str(path))[1].lower() in IMAGE_EXTENSIONS


def _as_size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int):
        return (size, size)
    h, w = (int(v) for v in size)
    if h <= 0 or w <= 0:
        raise EdgeconvError(f"image size must be positive, got {size!r}")
    return (h, w)


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB, with 16/32-bit grayscale scaled (Pillow's convert would clip it to white)."""
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I;16") or img.mode == "I":
        a = np.asarray(img).astype(np.float64)
        full = 65535.0 if img.mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        a = np.clip(np.round(a * (255.0 / full)), 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if img.mode == "F":
        a = np.asarray(img, dtype=np.float64)
        a = np.clip(np.round(a * (255.0 if a.max(initial=0) <= 1.0 else 1.0)), 0, 255)
        return Image.fromarray(a.astype(np.uint8), "L").convert("RGB")
    if img.mode in ("P", "PA") or "transparency" in img.info:
        # through RGBA: Pillow warns when a palette's transparency goes straight to RGB
        img = img.convert("RGBA")
    return img.convert("RGB")


def _pil_to_rgb_array(img: Image.Image, size, name: str, exif: bool = False) -> np.ndarray:
    try:
        img.load()  # Pillow decodes lazily: force the decode so errors surface here
        if exif:
            img = ImageOps.exif_transpose(img)
        img = _to_rgb(img)
        target = _as_size(size)
        if target is not None and (img.height, img.width) != target:
            img = img.resize((target[1], target[0]), _BILINEAR)
        arr = np.asarray(img, dtype=np.uint8)
    except EdgeconvError:
        raise
    except Image.DecompressionBombError as exc:
        raise EdgeconvError(f"{name}: image too large to decode safely ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError, TypeError,
            KeyError) as exc:
        raise EdgeconvError(f"{name}: corrupt or truncated image ({clean_message(exc)})") \
            from None
    if arr.ndim != 3 or arr.shape[2] != 3:  # pragma: no cover - _to_rgb guarantees it
        raise EdgeconvError(f"{name}: could not convert to RGB (shape {arr.shape})")
    return np.ascontiguousarray(arr)


def decode_image_bytes(data: bytes, size=None, name: str = "<image bytes>") -> np.ndarray:
    """Decode encoded image bytes (JPEG/PNG/...) to RGB ``uint8`` (H, W, 3).

    ``size`` is ``(height, width)`` (or an int for a square); the image is resized
    bilinearly only when it differs.  ``name`` is used in error messages.
    """
    if isinstance(data, np.ndarray):
        data = data.tobytes()
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise EdgeconvError(f"{name}: expected encoded image bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise EdgeconvError(f"{name}: empty image data")
    fmt = sniff_format(data)
    if fmt is None:
        raise _refusal(data, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(bytes(data)), formats=[fmt])
    except (Image.UnidentifiedImageError, Image.DecompressionBombWarning,
            Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        raise EdgeconvError(f"{name}: not a readable image ({clean_message(exc)})") from None
    with img:
        return _pil_to_rgb_array(img, size, name, exif=True)


def load_image(path: str | os.PathLike, size=None) -> np.ndarray:
    """Read an image file as RGB ``uint8`` (H, W, 3), resized to ``size`` if it differs.

    Raises :class:`EdgeconvError` naming the file when it is missing, unreadable,
    not an image, corrupt or truncated.
    """
    from edgeconv.fileio import MAX_IMAGE_BYTES, read_user_file

    data = read_user_file(path, "image file", MAX_IMAGE_BYTES)
    return decode_image_bytes(data, size=size, name=str(path))


def encode_image(image: np.ndarray, format: str = "PNG", quality: int = 95) -> bytes:
    """Encode an RGB ``uint8`` (H, W, 3) array to PNG (lossless, default) or JPEG bytes."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise EdgeconvError(f"expected an RGB uint8 (H, W, 3) image, got {arr.dtype} {arr.shape}")
    fmt = format.upper().replace("JPG", "JPEG")
    buf = io.BytesIO()
    kwargs = {"quality": int(quality)} if fmt == "JPEG" else {}
    Image.fromarray(arr, "RGB").save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def save_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an RGB ``uint8`` image atomically; the format follows the extension."""
    from edgeconv.fileio import atomic_write_bytes

    path = Path(path)
    ext = path.suffix.lower().lstrip(".") or "png"
    fmt = {"jpg": "JPEG", "jpeg": "JPEG"}.get(ext, ext.upper())
    return atomic_write_bytes(path, encode_image(image, format=fmt))


def normalize(batch: np.ndarray) -> np.ndarray:
    """``uint8`` NHWC batch (or a single HWC image) -> ``float32`` NCHW (CHW) in [-1, 1].

    Computes ``(x / 255 - 0.5) / 0.5`` exactly as the training pipeline does.
    """
    arr = np.asarray(batch)
    if arr.ndim == 3:
        return normalize(arr[None])[0]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise EdgeconvError(f"expected uint8 images of shape (N, H, W, 3), got {arr.shape}")
    if arr.dtype != np.uint8:
        raise EdgeconvError(f"expected uint8 images, got {arr.dtype}")
    out = arr.transpose(0, 3, 1, 2).astype(np.float32)
    out *= np.float32(SCALE / STD)
    out -= np.float32(MEAN / STD)
    return out


def load_normalized(path: str | os.PathLike, size=(96, 96)) -> np.ndarray:
    """:func:`load_image` then :func:`normalize`: ``float32`` (3, H, W) in [-1, 1]."""
    return normalize(load_image(path, size=size))


def denormalize(batch: np.ndarray) -> np.ndarray:
    """Inverse of :func:`normalize` (float NCHW or CHW -> ``uint8`` NHWC or HWC)."""
    arr = np.asarray(batch, dtype=np.float32)
    x = np.clip((arr * STD + MEAN) / SCALE, 0, 255).round().astype(np.uint8)
    return np.moveaxis(x, -3, -1)
