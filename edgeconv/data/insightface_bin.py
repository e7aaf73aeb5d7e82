"""insightface ``.bin`` verification sets (lfw.bin, cfp_ff.bin, agedb_30.bin, calfw.bin).

A ``.bin`` file is a *pickle* of ``(bins, issame_list)``: ``bins`` a list of encoded
images (JPEG/PNG bytes; ``2 * N`` of them, pair ``k`` is ``bins[2k], bins[2k+1]``) and
``issame_list`` a list of ``N`` booleans.  The public files were written by Python 2
(images are ``str``, read back as ``bytes`` with ``encoding='bytes'``); re-exports from
Python 3 use protocol 2..5.

Security: unpickling can run arbitrary code, so these files are NEVER loaded with
:func:`pickle.load`.  :class:`RestrictedUnpickler` refuses every global that is not on
an explicit allow-list, and the allowed ones are replaced by small validating
functions rather than the real callables:

* ``_codecs.encode(str, 'latin1')`` - how Python 3 pickles ``bytes`` at protocol 2;
* ``builtins.bytes`` / ``builtins.bytearray`` (also ``__builtin__``) with a bytes or
  ``(str, 'latin-1')`` argument;
* numpy, because some re-exported files hold ``numpy.bool_`` flags or the images as
  ``numpy.uint8`` arrays: ``numpy.dtype`` for plain bool/int/uint/float dtypes only
  (never ``object``), ``numpy(._)core.multiarray.scalar`` / ``_reconstruct`` and
  ``numpy(._)core.numeric._frombuffer`` building arrays of those dtypes.  Nothing
  from numpy that can run code or create object arrays is reachable.

Everything else (``os.system``, ``builtins.eval``, ``subprocess.Popen``, ...) raises
:class:`~edgeconv.errors.EdgeconvError` before anything is called; persistent ids and
extension codes are refused too.  The loaded object must then have the expected
structure (two sequences, ``len(bins) == 2 * len(issame)``, byte strings, booleans).
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np

from edgeconv.data.pairs import PairSet
from edgeconv.errors import EdgeconvError

_ALLOWED_DTYPES = {"b1", "?", "bool",
                   "u1", "u2", "u4", "u8", "uint8", "uint16", "uint32", "uint64", "B", "H", "I", "L", "Q",
                   "i1", "i2", "i4", "i8", "int8", "int16", "int32", "int64", "b", "h", "i", "l", "q",
                   "f2", "f4", "f8", "float16", "float32", "float64", "e", "f", "d"}


class _RefusedGlobal(pickle.UnpicklingError):
    def __init__(self, module: str, name: str):
        super().__init__(f"{module}.{name}")
        self.module, self.name = module, name


def _text(x) -> str:
    if isinstance(x, (bytes, bytearray)):
        return bytes(x).decode("latin-1")
    if isinstance(x, str):
        return x
    raise pickle.UnpicklingError(f"expected a string, got {type(x).__name__}")


def _safe_codecs_encode(obj, encoding="utf-8", errors="strict"):
    if not isinstance(obj, str) or _text(encoding).lower().replace("-", "").replace("_", "") not in (
            "latin1", "iso88591", "l1"):
        raise pickle.UnpicklingError("_codecs.encode is only allowed as (str, 'latin1')")
    return obj.encode("latin-1")


def _safe_bytes(*args):
    if not args:
        return b""
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
        return bytes(args[0])
    if len(args) == 2 and isinstance(args[0], str):
        return _safe_codecs_encode(args[0], args[1])
    raise pickle.UnpicklingError("bytes() only with bytes or (str, 'latin1') arguments")


def _safe_bytearray(*args):
    return bytearray(_safe_bytes(*args))


def _check_dtype(dt) -> np.dtype:
    if not isinstance(dt, np.dtype) or dt.hasobject or dt.fields is not None \
            or dt.subdtype is not None or dt.kind not in "biuf":
        raise pickle.UnpicklingError(f"numpy dtype {dt!r} is not allowed")
    return dt


def _safe_dtype(spec, align=False, copy=False):
    name = _text(spec)
    if name.lstrip("<>|=") not in _ALLOWED_DTYPES:
        raise pickle.UnpicklingError(f"numpy dtype {name!r} is not allowed")
    # always a fresh dtype object (copy=True): the BUILD that follows calls
    # __setstate__ on it, which must never touch numpy's shared builtin dtypes
    return _check_dtype(np.dtype(name, bool(align), True))


class _NDArrayMarker:
    """Stands in for ``numpy.ndarray`` in a pickle; only ``_reconstruct`` accepts it."""

    def __init__(self, *a, **k):
        raise pickle.UnpicklingError("numpy.ndarray(...) calls are not allowed")


def _safe_reconstruct(cls, shape, dtype_code):
    if cls is not _NDArrayMarker:
        raise pickle.UnpicklingError("numpy _reconstruct only for plain ndarrays")
    arr = np.ndarray.__new__(np.ndarray, (0,), np.uint8)
    return _GuardedArray(arr)


class _GuardedArray:
    """Receives ``ndarray.__setstate__`` from BUILD, validating the dtype first."""

    def __init__(self, arr):
        self.arr = arr

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("malformed numpy array state")
        dt = state[-3]
        _check_dtype(dt)
        if not isinstance(state[-1], (bytes, bytearray)):
            raise pickle.UnpicklingError("numpy array data must be raw bytes")
        self.arr.__setstate__(state)


def _safe_scalar(dt, data=None):
    _check_dtype(dt)
    if data is None:
        return dt.type(0)
    raw = data.encode("latin-1") if isinstance(data, str) else bytes(data)
    return np.frombuffer(raw, dtype=dt, count=1)[0]


def _safe_frombuffer(buf, dt, shape, order):
    _check_dtype(dt)
    data = buf.raw() if isinstance(buf, pickle.PickleBuffer) else buf
    arr = np.frombuffer(bytes(data), dtype=dt)
    return arr.reshape(tuple(int(s) for s in shape), order=_text(order)).copy()


_ALLOWED = {
    ("_codecs", "encode"): _safe_codecs_encode,
    ("builtins", "bytes"): _safe_bytes,
    ("__builtin__", "bytes"): _safe_bytes,
    ("builtins", "bytearray"): _safe_bytearray,
    ("__builtin__", "bytearray"): _safe_bytearray,
    ("numpy", "dtype"): _safe_dtype,
    ("numpy", "ndarray"): _NDArrayMarker,
}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_mod, "scalar")] = _safe_scalar
    _ALLOWED[(_mod, "_reconstruct")] = _safe_reconstruct
for _mod in ("numpy.core.numeric", "numpy._core.numeric"):
    _ALLOWED[(_mod, "_frombuffer")] = _safe_frombuffer


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the allow-listed globals (see module docstring)."""

    def find_class(self, module, name):
        fn = _ALLOWED.get((str(module), str(name)))
        if fn is None:
            raise _RefusedGlobal(str(module), str(name))
        return fn

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not allowed")


def _unguard(obj):
    return obj.arr if isinstance(obj, _GuardedArray) else obj


def restricted_loads(data: bytes, name: str = "<data>"):
    """Unpickle ``data`` with :class:`RestrictedUnpickler`; errors become EdgeconvError."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except _RefusedGlobal as exc:
        raise EdgeconvError(
            f"{name}: refusing to load: the pickle needs '{exc.module}.{exc.name}', which is "
            f"not allowed in a verification .bin (only image bytes and booleans are); "
            f"the file may be malicious") from None
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, IndexError, KeyError,
            AttributeError, MemoryError, OverflowError, UnicodeDecodeError) as exc:
        msg = str(exc) or type(exc).__name__
        if isinstance(exc, EOFError) or "truncated" in msg:
            raise EdgeconvError(f"{name}: truncated or corrupt .bin file ({msg})") from None
        raise EdgeconvError(f"{name}: not a valid insightface .bin file ({msg})") from None


def _as_bytes(x, k: int, name: str) -> bytes:
    x = _unguard(x)
    if isinstance(x, (bytes, bytearray)):
        return bytes(x)
    if isinstance(x, np.ndarray) and x.dtype in (np.uint8, np.int8) and x.ndim == 1:
        return x.tobytes()
    raise EdgeconvError(f"{name}: image {k} is {type(x).__name__}, expected encoded image bytes")


def _as_bools(seq, name: str) -> np.ndarray:
    seq = _unguard(seq)
    if isinstance(seq, np.ndarray):
        if seq.ndim != 1 or seq.dtype.kind not in "bui":
            raise EdgeconvError(f"{name}: is-same flags must be a 1-D bool array, got {seq.dtype} {seq.shape}")
        vals = seq
    elif isinstance(seq, (list, tuple)):
        vals = [_unguard(v) for v in seq]
        for k, v in enumerate(vals):
            if not isinstance(v, (bool, np.bool_, int, np.integer)) or int(v) not in (0, 1):
                raise EdgeconvError(f"{name}: is-same flag {k} is {v!r}, expected a boolean")
    else:
        raise EdgeconvError(f"{name}: is-same flags must be a list, got {type(seq).__name__}")
    arr = np.asarray(vals).astype(np.int64)
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise EdgeconvError(f"{name}: is-same flags must be booleans")
    return arr.astype(bool)


def read_bin(path: str | os.PathLike) -> tuple[list[bytes], np.ndarray]:
    """Safely read a ``.bin`` file: ``(encoded images, is_same bool array)``; no decoding."""
    from edgeconv.fileio import read_user_file

    path = Path(path)
    data = read_user_file(path, ".bin file")
    if not data:
        raise EdgeconvError(f"{path}: empty file")
    obj = restricted_loads(data, name=str(path))
    name = str(path)
    obj = _unguard(obj)
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise EdgeconvError(f"{name}: expected a pickled (images, is_same) pair, "
                            f"got {type(obj).__name__}")
    bins, issame = _unguard(obj[0]), obj[1]
    if not isinstance(bins, (list, tuple)):
        raise EdgeconvError(f"{name}: images must be a list, got {type(bins).__name__}")
    same = _as_bools(issame, name)
    if len(bins) != 2 * len(same):
        raise EdgeconvError(f"{name}: {len(bins)} images for {len(same)} pairs "
                            f"(expected 2 images per pair: {2 * len(same)})")
    if len(same) == 0:
        raise EdgeconvError(f"{name}: no pairs")
    return [_as_bytes(b, k, name) for k, b in enumerate(bins)], same


def load_bin(path: str | os.PathLike, size=(96, 96), max_pairs: int | None = None) -> PairSet:
    """Read and decode a ``.bin`` verification set into a :class:`PairSet`.

    Images are decoded to RGB and resized (bilinear) to ``size`` when they differ
    (the public files hold 112x112 JPEGs).  Decoding errors name the file and image.
    """
    from edgeconv.data.images import decode_image_bytes

    from edgeconv.data.pairs import check_pair_count

    bins, same = read_bin(path)
    if max_pairs is not None:
        n = max(1, int(max_pairs))
        bins, same = bins[: 2 * n], same[:n]
    # a small pickle can hold millions of references to one image: bound what decoding it
    # would allocate before anything is decoded
    check_pair_count(len(same), size if size is not None else _first_size(bins[0]),
                     "pairs", str(path))
    first = decode_image_bytes(bins[0], size=size, name=f"{path} [image 0]")
    n = len(same)
    left = np.empty((n, *first.shape), dtype=np.uint8)
    right = np.empty_like(left)
    for k, data in enumerate(bins):
        img = first if k == 0 else decode_image_bytes(data, size=size, name=f"{path} [image {k}]")
        if img.shape != first.shape:
            raise EdgeconvError(f"{path} [image {k}]: size {img.shape[:2]} differs from image 0 "
                                f"{first.shape[:2]}; pass a size to resize")
        (left if k % 2 == 0 else right)[k // 2] = img
    return PairSet(left, right, same)


def _first_size(data: bytes) -> tuple[int, int]:
    """(height, width) the first image declares (header only, nothing decoded)."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(bytes(data))) as img:
            return img.height, img.width
    except Exception:
        return (112, 112)


def write_bin(path: str | os.PathLike, pairs, image_format: str = "PNG", quality: int = 95,
              protocol: int = 4) -> Path:
    """Write pairs as an insightface-compatible ``.bin`` (atomically).

    ``pairs`` is a :class:`PairSet` / ``(left, right, is_same)`` of uint8 (N, H, W, 3)
    arrays, or ``(encoded_images, is_same)`` with ``2 * N`` already-encoded images.
    Images are encoded as PNG (lossless, default) or JPEG; ``protocol`` >= 2.
    """
    from edgeconv.data.images import encode_image
    from edgeconv.fileio import atomic_write_bytes

    items = tuple(pairs)
    if len(items) == 3:
        left, right, same = items
        left, right = np.asarray(left), np.asarray(right)
        if left.shape != right.shape or left.ndim != 4:
            raise EdgeconvError(f"left/right must both be (N, H, W, 3), got {left.shape}, {right.shape}")
        bins = []
        for a, b in zip(left, right):
            bins.append(encode_image(a, image_format, quality))
            bins.append(encode_image(b, image_format, quality))
    elif len(items) == 2:
        bins, same = [bytes(b) for b in items[0]], items[1]
    else:
        raise EdgeconvError("write_bin expects (left, right, is_same) or (images, is_same)")
    same = [bool(v) for v in np.asarray(same).reshape(-1)]
    if len(bins) != 2 * len(same):
        raise EdgeconvError(f"{len(bins)} images for {len(same)} pairs (need 2 per pair)")
    if int(protocol) < 2:
        raise EdgeconvError("pickle protocol must be >= 2")
    return atomic_write_bytes(path, pickle.dumps((bins, same), protocol=int(protocol)))
