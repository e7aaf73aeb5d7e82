"""A minimal, bounded protobuf wire-format reader (no onnx package needed; torch-free).

Enough to read what edgeconv needs from a serialized ONNX model without building an
inference session: metadata_props, external-data locations, and the attributes and
initialiser shapes of fused nodes. Malformed input raises ValueError.
"""

from __future__ import annotations


def varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("bad varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def fields(buf: bytes):
    """(field number, wire type, value) of one protobuf message (value: int or bytes)."""
    i, n = 0, len(buf)
    while i < n:
        key, i = varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(buf, i)
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        elif wt == 2:
            ln, i = varint(buf, i)
            if i + ln > n:
                raise ValueError("truncated field")
            v, i = buf[i:i + ln], i + ln
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wt}")
        yield num, wt, v


def int64(v: int) -> int:
    """A varint read as a signed int64 (two's complement)."""
    return v - (1 << 64) if v >= 1 << 63 else v


def repeated_ints(num_wanted: int, msg: bytes) -> list[int]:
    """Every value of repeated int field ``num_wanted`` (packed or not)."""
    out = []
    for num, wt, v in fields(msg):
        if num != num_wanted:
            continue
        if wt == 0:
            out.append(int64(v))
        elif wt == 2:
            i = 0
            while i < len(v):
                x, i = varint(v, i)
                out.append(int64(x))
    return out
