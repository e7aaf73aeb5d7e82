"""A model file read ONCE (torch-free): the bytes that are hashed are the bytes that run.

Opening a model used to take two reads of the same path: the runtime opened the file by
name, and the identity templates are bound to was hashed from a second read. A local user
who can rename files could swap in another model between the two (a time-of-check to
time-of-use race) and have a stranger's face scored by a model that prints the victim's
embedding. Here the model file, and every ONNX external-data file it names, is read once
into memory through one file descriptor each; the runtime session is built from those bytes
(ONNX Runtime: the model bytes plus its external initialisers from memory; LiteRT:
``model_content``), the embedded metadata is parsed from them and the identity is hashed
from them.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from edgeconv.errors import EdgeconvError

#: largest model file read (the face models are a few MB; the cap only bounds memory)
MAX_MODEL_BYTES = 1 << 30
#: largest total of a model's external-data files
MAX_EXTERNAL_BYTES = 2 << 30


class ModelFileError(EdgeconvError):
    """The model file is missing, empty, of an unknown kind, corrupt or truncated."""


@dataclass(frozen=True)
class ModelFile:
    """A model's bytes, read once, with their hashes."""

    path: Path
    data: bytes
    sha256: str
    kind: str                                             # "onnx" or "tflite"
    external: dict = field(default_factory=dict)          # location -> bytes
    external_sha256: dict = field(default_factory=dict)   # location -> sha256

    def identity(self, bound_bytes: bytes | None = None) -> str:
        """The SHA-256 templates are bound to (:func:`edgeconv.metadata.identity.identity`)."""
        from edgeconv.metadata import identity

        return identity(self.sha256, sorted(self.external_sha256.items()), bound_bytes)


def file_kind(path: Path, head: bytes) -> str:
    """"onnx" / "tflite" by suffix, else by the TFLite file identifier."""
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix in (".tflite", ".lite") or head[4:8] == b"TFL3":
        return "tflite"
    raise ModelFileError(f"{path}: unknown model type (expected a .onnx or .tflite file)")


def read_model_file(path: str | os.PathLike) -> ModelFile:
    """Read ``path`` (and, for ONNX, its external data) once; one-line errors."""
    from edgeconv.fileio import read_regular_file

    path = Path(path)
    try:
        data = read_regular_file(path, "model file", MAX_MODEL_BYTES)
    except EdgeconvError as exc:
        raise ModelFileError(str(exc)) from None
    kind = file_kind(path, data[:8])
    external, hashes = {}, {}
    if kind == "onnx":
        from edgeconv.metadata import MetadataError, onnx_external_locations

        try:
            locations = onnx_external_locations(data)
        except (ValueError, UnicodeDecodeError):
            raise ModelFileError(f"{path}: not a readable ONNX model (malformed protobuf)") \
                from None
        total = 0
        for loc in locations:
            ext = _external_path(path, loc)
            try:
                blob = read_regular_file(ext, "external data file", MAX_EXTERNAL_BYTES - total)
            except EdgeconvError as exc:
                raise MetadataError(f"{path.name}: external data {loc!r}: {exc}") from None
            total += len(blob)
            external[loc] = blob
            hashes[loc] = hashlib.sha256(blob).hexdigest()
    return ModelFile(path, data, hashlib.sha256(data).hexdigest(), kind, external, hashes)


def _external_path(model: Path, loc: str) -> Path:
    from edgeconv.metadata import MetadataError

    if "\0" in loc or not loc or os.path.isabs(loc):
        raise MetadataError(f"{model.name}: external data {loc!r} lies outside the model's "
                            "folder")
    root = model.resolve().parent
    ext = (root / loc).resolve()
    if root not in ext.parents:
        raise MetadataError(f"{model.name}: external data {loc!r} lies outside the model's "
                            "folder")
    return ext
