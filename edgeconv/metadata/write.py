"""The fields every exported file's metadata starts with (torch-free).

The face-model, segmenter, translator and generator exporters each add their kind's fields
(the schema: ``edgeconv.metadata``) after these; the export loop
(``edgeconv.export.pipeline``) adds the format, batch, parity and kernel entries.
"""

from __future__ import annotations

from edgeconv import __version__
from edgeconv.metadata.files import METADATA_FORMAT_VERSION


def header(kind: str | None = None) -> dict:
    """``format_version``, ``edgeconv_version`` and, for every kind but the face model (whose
    files predate the key), ``kind``."""
    meta = {"format_version": METADATA_FORMAT_VERSION, "edgeconv_version": __version__}
    if kind is not None:
        meta["kind"] = kind
    return meta
