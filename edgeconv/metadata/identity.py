"""Which metadata a model file is run with, whether to believe it, and the model's identity.

Torch-free. The rules (docs/unlock.md, threat model):

* **The model file's embedded metadata is the authority** (ONNX ``metadata_props``, the
  TFLite ``metadata`` buffer). The sidecar ``<file>.json`` the exporter writes next to it is a
  copy for people and tools; when it disagrees with the embedded metadata (a changed
  threshold, mean/std, colour order, ...), or names another file's SHA-256, the model is
  refused in one line: a side file is not covered by the model hash and cannot be trusted.
* A file without embedded metadata (a TFLite file the exporter could not embed into, a model
  from elsewhere) may run with its sidecar, loudly: the sidecar is then bound into the model's
  identity, so editing it invalidates every template enrolled with it.
* Every value is validated (:func:`edgeconv.metadata.schema.validate_metadata`).
* The identity that templates are bound to (:func:`identity`) is the SHA-256 of the
  model file, extended (when present) with the SHA-256 of every ONNX external-data file and
  of sidecar-only metadata: swapping external weights is a different model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from edgeconv.metadata.files import read_sidecar, sidecar_path
from edgeconv.metadata.schema import SIDECAR_ONLY_KEYS, MetadataError
from edgeconv.protobuf import fields as protobuf_fields


@dataclass
class ResolvedMetadata:
    meta: dict | None
    source: str                      # "embedded", "sidecar only", "given", "none"
    warnings: list = field(default_factory=list)
    bound_bytes: bytes | None = None  # sidecar-only metadata, bound into the identity


def _canonical(d: dict) -> str:
    return json.dumps(d, sort_keys=True, separators=(",", ":"), allow_nan=True)


def resolve_metadata(path, embedded: dict | None, file_sha256: str) -> ResolvedMetadata:
    """Choose the metadata of the model at ``path`` (see the module's rules)."""
    path = Path(path)
    side = read_sidecar(path)
    sname = sidecar_path(path).name
    if side is not None:
        claimed = side.get("sha256")
        if claimed is not None and claimed != file_sha256:
            raise MetadataError(
                f"{sname} describes another file (sha256 {str(claimed)[:12]}, this model is "
                f"{file_sha256[:12]}): a stale or edited side file; delete it or re-export")
        side_meta = {k: v for k, v in side.items() if k not in SIDECAR_ONLY_KEYS}
    if embedded is not None:
        if side is not None and _canonical(side_meta) != _canonical(embedded):
            keys = sorted(k for k in set(side_meta) | set(embedded)
                          if _canonical({"v": side_meta.get(k)}) !=
                          _canonical({"v": embedded.get(k)}))
            raise MetadataError(
                f"{sname} disagrees with the metadata embedded in {path.name} "
                f"({', '.join(keys[:6])}{', ...' if len(keys) > 6 else ''}); the model file is "
                "the authority: delete the side file or re-export")
        return ResolvedMetadata(embedded, "embedded")
    if side is not None:
        return ResolvedMetadata(
            side_meta, "sidecar only",
            [f"the model file carries no metadata: using {sname}, which nothing vouches for; it "
             "is bound into the model identity (editing it invalidates enrolled templates)"],
            _canonical(side_meta).encode())
    return ResolvedMetadata(None, "none")


# ----------------------------------------------------------------------------- identity
# message -> {field: child message kind} (ONNX's onnx.proto3 field numbers)
_CHILDREN = {
    "model": {7: "graph", 25: "function"},
    "function": {7: "node"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse",
                  23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
}


def onnx_external_locations(data: bytes) -> list[str]:
    """``location`` of every external-data tensor in a serialized ONNX model."""
    out: list[str] = []

    def walk(buf: bytes, kind: str, depth: int):
        if depth > 64:
            raise ValueError("nesting too deep")
        if kind == "tensor":
            for num, wt, v in protobuf_fields(buf):
                if num == 13 and wt == 2:              # external_data: StringStringEntryProto
                    entry = {k: bytes(x) for k, w, x in protobuf_fields(v) if w == 2}
                    if entry.get(1) == b"location" and 2 in entry:
                        out.append(entry[2].decode("utf-8", "replace"))
            return
        kids = _CHILDREN[kind]
        for num, wt, v in protobuf_fields(buf):
            if wt == 2 and num in kids:
                walk(v, kids[num], depth + 1)

    walk(data, "model", 0)
    return sorted(set(out))


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def identity(file_hash: str, external=(), bound_bytes: bytes | None = None) -> str:
    """The SHA-256 templates are bound to (see the module's rules): the model file's own
    hash, extended with ``external`` ((location, sha256) of every ONNX external-data file)
    and the hash of sidecar-only metadata (``bound_bytes``). The hashes come from the bytes
    the runtime runs (:class:`edgeconv.runtime.model_file.ModelFile`)."""
    parts = [f"external:{loc}:{sha}" for loc, sha in external]
    if bound_bytes is not None:
        parts.append("sidecar:" + hashlib.sha256(bound_bytes).hexdigest())
    if not parts:
        return file_hash                    # the common case: the file's own SHA-256
    h = hashlib.sha256(b"edgeconv-model-identity-v1\0" + file_hash.encode())
    for p in parts:
        h.update(b"\0" + p.encode())
    return h.hexdigest()
