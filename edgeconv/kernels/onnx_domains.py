"""Which op domains an ONNX file imports, read from its protobuf without the onnx package.

Only the ModelProto's ``opset_import`` entries (field 8) and its functions (field 25) are
read; the graph is seeked past, so a large file is not read into memory (a memory
measurement sees no second copy of it). Each small message read is parsed with the one
protobuf reader, :func:`edgeconv.protobuf.fields`.
"""

from __future__ import annotations

import io
import os

from edgeconv.protobuf import fields as _fields

_OPSET_IMPORT, _FUNCTIONS = 8, 25          # ModelProto fields
_FUNCTION_OPSET_IMPORT = 9                 # FunctionProto.opset_import


def imports_domain(model, domain_name: str) -> bool:
    """Whether ``model`` (a path or the serialized bytes) imports op domain ``domain_name``
    (in the model's opset_import or a function's).

    False when the file cannot be read or parsed (the runtime then reports the file itself).
    """
    domain = domain_name.encode()
    try:
        for field, payload in _top_messages(model):
            if field == _OPSET_IMPORT and _opset_domain(payload) == domain:
                return True
            if field == _FUNCTIONS and domain in {
                    _opset_domain(v) for f, w, v in _fields(payload)
                    if f == _FUNCTION_OPSET_IMPORT and w == 2}:
                return True
    except (OSError, ValueError):
        pass
    return False


def scan(model) -> dict:
    """The ``opset_import`` versions of a model (``{domain: version}``, "" = ONNX) and the
    ``(domain, name, overload)`` of its model-local functions; empty when unreadable."""
    out: dict = {"opsets": {}, "functions": set()}
    try:
        for field, payload in _top_messages(model):
            fields = list(_fields(payload))
            if field == _OPSET_IMPORT:  # OperatorSetIdProto: domain = 1, version = 2
                dom = next((v for f, w, v in fields if f == 1 and w == 2), b"").decode()
                out["opsets"][dom] = next((v for f, w, v in fields if f == 2 and w == 0), 0)
            else:  # FunctionProto: name = 1, domain = 10, overload = 13
                text = {f: v.decode(errors="replace") for f, w, v in fields
                        if w == 2 and f in (1, 10, 13)}
                out["functions"].add((text.get(10, ""), text.get(1, ""), text.get(13, "")))
    except (OSError, ValueError):
        pass
    return out


def _top_messages(model):
    """(field, payload bytes) of the ModelProto's opset_import and function entries, read from
    a path or bytes; every other field is seeked past."""
    opened = (io.BytesIO(bytes(model)) if isinstance(model, (bytes, bytearray, memoryview))
              else open(model, "rb"))
    with opened as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(0)
        while fh.tell() < size:
            tag = _read_varint(fh)
            field, wire = tag >> 3, tag & 7
            if wire == 0:
                _read_varint(fh)
            elif wire in (1, 5):
                fh.seek(8 if wire == 1 else 4, os.SEEK_CUR)
            elif wire == 2:
                length = _read_varint(fh)
                if field in (_OPSET_IMPORT, _FUNCTIONS):
                    payload = fh.read(length)
                    if len(payload) != length:
                        raise ValueError("truncated field")
                    yield field, payload
                else:
                    fh.seek(length, os.SEEK_CUR)
            else:
                raise ValueError(f"unexpected wire type {wire}")


def _read_varint(fh) -> int:
    result = shift = 0
    while True:
        b = fh.read(1)
        if not b:
            raise ValueError("truncated varint")
        result |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise ValueError("bad varint")


def _opset_domain(buf: bytes) -> bytes:
    """OperatorSetIdProto.domain (field 1; empty: the default ONNX domain)."""
    return next((v for f, w, v in _fields(buf) if f == 1 and w == 2), b"")
