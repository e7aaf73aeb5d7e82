"""Reading the metadata of a model file, bounded (torch-free): ONNX ``metadata_props``, the
TFLite ``metadata`` buffer and the sidecar ``<file>.json``; sizes and JSON nesting depth are
limited before anything is parsed. The schema is in the package's docstring
(``edgeconv.metadata``), its validation in ``edgeconv.metadata.schema``.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from edgeconv.errors import EdgeconvError

METADATA_FORMAT_VERSION = 1
ONNX_METADATA_KEY = "edgeconv"
TFLITE_METADATA_NAME = "edgeconv"  # name of the metadata buffer inside .tflite files


def sidecar_path(model_path: str | Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json``."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + ".json")


#: largest sidecar read (metadata is a few KB)
MAX_SIDECAR_BYTES = 4 << 20
#: largest metadata JSON parsed (sidecar, ONNX metadata_props, TFLite metadata buffer)
MAX_METADATA_BYTES = MAX_SIDECAR_BYTES
#: deepest nesting of arrays/objects accepted in metadata JSON (the schema needs 4)
MAX_METADATA_DEPTH = 32
#: longest text shown for a value taken from a file (model names, users, ...)
MAX_DISPLAY_CHARS = 120


def _json_depth_exceeds(text: str, limit: int) -> bool:
    """True when ``text`` nests arrays/objects deeper than ``limit`` (strings skipped);
    stops at the first level past the limit, so a hostile nest costs little."""
    import re

    depth = 0
    for m in re.finditer(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', text):
        ch = m.group()
        if ch in "[{":
            depth += 1
            if depth > limit:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def parse_metadata_json(raw, where: str, what: str = "edgeconv metadata",
                        max_bytes: int = MAX_METADATA_BYTES,
                        max_depth: int = MAX_METADATA_DEPTH) -> dict:
    """The one parser of metadata JSON from a file: bytes (strict UTF-8) or text, at most
    ``max_bytes`` and ``max_depth`` levels deep, a JSON object; else one EdgeconvError
    naming ``where`` (no RecursionError / UnicodeDecodeError reaches the user)."""
    if isinstance(raw, (bytes, bytearray, memoryview)):
        raw = bytes(raw)
        if len(raw) > max_bytes:
            raise EdgeconvError(f"{where}: {what} larger than {max_bytes >> 20} MiB")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EdgeconvError(f"{where}: {what} is not UTF-8 text (byte {exc.start})") \
                from None
    else:
        text = str(raw)
        if len(text) > max_bytes:
            raise EdgeconvError(f"{where}: {what} larger than {max_bytes >> 20} MiB")
    if text.startswith("\ufeff"):
        text = text[1:]
    if _json_depth_exceeds(text, max_depth):
        raise EdgeconvError(f"{where}: {what} nested deeper than {max_depth} levels")
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise EdgeconvError(f"{where}: corrupt {what} "
                            f"({escape_text(str(exc).splitlines()[0] if str(exc) else '', 80)})") \
            from None
    if not isinstance(meta, dict):
        raise EdgeconvError(f"{where}: {what} must be a JSON object")
    return meta


def escape_text(value, max_chars: int = MAX_DISPLAY_CHARS) -> str:
    """``value`` made safe to print on one terminal line: control characters (C0, DEL,
    C1: escape sequences, carriage returns, bells, newlines) and bidirectional overrides
    shown as ``\\xNN`` / ``\\uNNNN``; longer than ``max_chars``: cut, with an ellipsis
    and the full length."""
    import unicodedata

    text = str(value)
    total = len(text)
    if total > max_chars:
        text = text[:max_chars]
    out = []
    for ch in text:
        o = ord(ch)
        if o < 0x20 or 0x7F <= o <= 0x9F:
            out.append(f"\\x{o:02x}")
        elif unicodedata.category(ch) in ("Cf", "Cs", "Co", "Zl", "Zp") and o > 0xFF:
            out.append(f"\\u{o:04x}")
        else:
            out.append(ch)
    s = "".join(out)
    return s + f"\u2026 ({total} characters)" if total > max_chars else s


def read_sidecar(model_path: str | Path) -> dict | None:
    """Metadata from the sidecar JSON, or None when there is none."""
    from edgeconv.fileio import is_regular_file, read_regular_file

    path = sidecar_path(model_path)
    if not os.path.lexists(path):
        return None
    if not is_regular_file(path):
        if os.path.isdir(path) or not os.path.exists(path):
            return None
        raise EdgeconvError(f"{path}: not a regular file, not a metadata file")
    raw = read_regular_file(path, "metadata file", MAX_SIDECAR_BYTES)
    return parse_metadata_json(raw, str(path), "metadata")


def onnx_metadata_from_bytes(data: bytes, where: str) -> dict | None:
    """The edgeconv metadata in a serialized ONNX model's ``metadata_props`` (ModelProto
    field 14), read from the bytes: no inference session, no kernel library needed."""
    from edgeconv.protobuf import fields

    raw = None
    try:
        for num, wt, v in fields(data):
            if num == 14 and wt == 2:
                entry = {k: bytes(x) for k, w, x in fields(v) if w == 2}
                if entry.get(1) == ONNX_METADATA_KEY.encode():
                    raw = entry.get(2, b"")
    except ValueError:
        raise EdgeconvError(f"{where}: not a readable ONNX model (malformed protobuf)") from None
    if raw is None:
        return None
    return parse_metadata_json(raw, where, "edgeconv metadata in the ONNX file")


def read_onnx_metadata(model_path: str | Path) -> dict | None:
    """Metadata from an ONNX file's metadata_props (:func:`onnx_metadata_from_bytes`)."""
    from edgeconv.fileio import read_regular_file

    data = read_regular_file(model_path, "model file", 1 << 30)
    return onnx_metadata_from_bytes(data, str(model_path))


def read_tflite_metadata(path: str | os.PathLike, name: str | None = None) -> dict | None:
    """The edgeconv JSON stored in a .tflite file's ``metadata`` (None when absent).

    A minimal FlatBuffers walk of ``Model.metadata`` -> ``Buffer.data`` (no extra
    packages); any structural surprise returns None rather than guessing.
    """
    from edgeconv.fileio import read_regular_file

    try:
        buf = read_regular_file(path, "model file", 1 << 30)
    except (OSError, EdgeconvError):
        return None
    return tflite_metadata_from_bytes(buf, path, name)


def tflite_metadata_from_bytes(buf: bytes, path, name: str | None = None) -> dict | None:
    """:func:`read_tflite_metadata` of a .tflite file's bytes (``path`` names it in errors)."""
    try:
        raw = _tflite_metadata_bytes(buf, name or TFLITE_METADATA_NAME)
    except (struct.error, IndexError, ValueError, UnicodeDecodeError, OverflowError):
        return None
    if raw is None:
        return None
    return parse_metadata_json(raw.rstrip(b"\0"), str(path),
                               "edgeconv metadata in the TFLite file")


def _tflite_metadata_bytes(buf: bytes, name: str) -> bytes | None:
    u32 = lambda o: struct.unpack_from("<I", buf, o)[0]  # noqa: E731
    i32 = lambda o: struct.unpack_from("<i", buf, o)[0]  # noqa: E731

    def field(table: int, index: int) -> int | None:
        vtable = table - i32(table)
        vt_len = struct.unpack_from("<H", buf, vtable)[0]
        if 4 + 2 * index >= vt_len:
            return None
        off = struct.unpack_from("<H", buf, vtable + 4 + 2 * index)[0]
        return table + off if off else None

    def deref(pos: int) -> int:
        return pos + u32(pos)

    def vector(pos: int):
        start = deref(pos)
        return start + 4, u32(start)

    root = u32(0)
    meta_f = field(root, 6)      # Model.metadata: [Metadata]
    bufs_f = field(root, 4)      # Model.buffers: [Buffer]
    if meta_f is None or bufs_f is None:
        return None
    mstart, mlen = vector(meta_f)
    bstart, blen = vector(bufs_f)
    for k in range(mlen):
        md = deref(mstart + 4 * k)
        name_f, buf_f = field(md, 0), field(md, 1)
        if name_f is None or buf_f is None:
            continue
        s, n = vector(name_f)
        if buf[s:s + n].decode("utf-8") != name:
            continue
        index = u32(buf_f)
        if index >= blen:
            return None
        b = deref(bstart + 4 * index)
        data_f = field(b, 0)
        if data_f is not None:
            ds, dn = vector(data_f)
            return bytes(buf[ds:ds + dn])
        off_f, size_f = field(b, 1), field(b, 2)   # large models: data after the flatbuffer
        if off_f is not None and size_f is not None:
            off = struct.unpack_from("<Q", buf, off_f)[0]
            size = struct.unpack_from("<Q", buf, size_f)[0]
            return bytes(buf[off:off + size])
        return None
    return None


def load_metadata(model_path: str | Path) -> dict | None:
    """Sidecar JSON first, then (for ONNX) embedded metadata; None for foreign models."""
    meta = read_sidecar(model_path)
    if meta is None and str(model_path).lower().endswith(".onnx"):
        meta = read_onnx_metadata(model_path)
    return meta

