"""Which op domains an ONNX file imports, read from its protobuf without the onnx package.

Only the ModelProto's ``opset_import`` entries (field 8) and those of its functions (field 25)
are parsed; the graph is seeked past, so a large file is not read into memory (a memory
measurement sees no second copy of it).
"""

from __future__ import annotations

import io
import os


def imports_domain(model, domain_name: str) -> bool:
    """Whether ``model`` (a path or the serialized bytes) imports op domain ``domain_name``.

    False when the file cannot be read or parsed (the runtime then reports the file itself).
    """
    domain = domain_name.encode()
    try:
        opened = (io.BytesIO(bytes(model)) if isinstance(model, (bytes, bytearray, memoryview))
                  else open(model, "rb"))
        with opened as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(0)
            while fh.tell() < size:
                field, wire = _split_tag(_read_varint(fh))
                if wire != 2:
                    _skip_scalar(fh, wire)
                    continue
                length = _read_varint(fh)
                if field == 8:  # ModelProto.opset_import
                    if _opset_domain(fh.read(length)) == domain:
                        return True
                elif field == 25:  # ModelProto.functions: FunctionProto.opset_import = 9
                    if domain in _opset_domains(fh.read(length), 9):
                        return True
                else:
                    fh.seek(length, os.SEEK_CUR)
    except (OSError, ValueError):
        pass
    return False


def scan(model) -> dict:
    """The ``opset_import`` versions of a model (``{domain: version}``, "" = ONNX) and the
    ``(domain, name, overload)`` of its model-local functions; empty when unreadable."""
    out: dict = {"opsets": {}, "functions": set()}
    try:
        opened = (io.BytesIO(bytes(model)) if isinstance(model, (bytes, bytearray, memoryview))
                  else open(model, "rb"))
        with opened as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(0)
            while fh.tell() < size:
                field, wire = _split_tag(_read_varint(fh))
                if wire != 2:
                    _skip_scalar(fh, wire)
                    continue
                length = _read_varint(fh)
                if field == 8:  # ModelProto.opset_import: domain = 1, version = 2
                    fields = list(_fields(fh.read(length)))
                    dom = next((v for f, w, v in fields if f == 1 and w == 2), b"").decode()
                    out["opsets"][dom] = next((v for f, w, v in fields if f == 2 and w == 0), 0)
                elif field == 25:  # FunctionProto: name = 1, domain = 10, overload = 13
                    fields = list(_fields(fh.read(length)))
                    text = {f: v.decode(errors="replace") for f, w, v in fields
                            if w == 2 and f in (1, 10, 13)}
                    out["functions"].add((text.get(10, ""), text.get(1, ""), text.get(13, "")))
                else:
                    fh.seek(length, os.SEEK_CUR)
    except (OSError, ValueError):
        pass
    return out


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


def _split_tag(tag: int) -> tuple[int, int]:
    return tag >> 3, tag & 7


def _skip_scalar(fh, wire: int) -> None:
    if wire == 0:
        _read_varint(fh)
    elif wire in (1, 5):
        fh.seek(8 if wire == 1 else 4, os.SEEK_CUR)
    else:
        raise ValueError(f"unexpected wire type {wire}")


def _fields(buf: bytes):
    """(field, wire type, value) of one protobuf message in memory (value: bytes or int)."""
    fh = io.BytesIO(buf)
    while fh.tell() < len(buf):
        field, wire = _split_tag(_read_varint(fh))
        if wire == 2:
            length = _read_varint(fh)
            value = fh.read(length)
            if len(value) != length:
                raise ValueError("truncated field")
            yield field, wire, value
        elif wire == 0:
            yield field, wire, _read_varint(fh)
        else:
            _skip_scalar(fh, wire)


def _opset_domain(buf: bytes) -> bytes:
    """OperatorSetIdProto.domain (field 1; empty: the default ONNX domain)."""
    return next((v for f, w, v in _fields(buf) if f == 1 and w == 2), b"")


def _opset_domains(buf: bytes, field_no: int) -> set:
    return {_opset_domain(v) for f, w, v in _fields(buf) if f == field_no and w == 2}
