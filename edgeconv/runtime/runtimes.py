"""Which runtimes exist and how each is imported (torch-free, imports nothing heavy).

The bottom of the runtime layer: the backend names and their aliases, and the one import of
ONNX Runtime / the TFLite interpreter (ai-edge-litert, else tflite-runtime). Both
:mod:`edgeconv.runtime.backends` and :mod:`edgeconv.runtime.litert_delegate` build on it.
"""

from __future__ import annotations

import os

from edgeconv.errors import EdgeconvError

ONNXRUNTIME = "onnxruntime"
TFLITE = "tflite"
BACKENDS = (ONNXRUNTIME, TFLITE)
_ALIASES = {"onnxruntime": ONNXRUNTIME, "ort": ONNXRUNTIME, "onnx": ONNXRUNTIME,
            "tflite": TFLITE, "litert": TFLITE, "tfl": TFLITE}
_SUFFIXES = {".onnx": ONNXRUNTIME, ".tflite": TFLITE, ".lite": TFLITE}
TFLITE_RUNTIMES = ("ai-edge-litert", "tflite-runtime")
# Set to "tflite-runtime" to force the legacy interpreter (e.g. to test the fallback).
TFLITE_RUNTIME_ENV = "EDGECONV_TFLITE_RUNTIME"
_ANSI = None  # compiled on first use


def normalize_backend(name: str) -> str:
    """'ort' -> 'onnxruntime', 'litert' -> 'tflite'; EdgeconvError for unknown names."""
    key = str(name).strip().lower()
    if key not in _ALIASES:
        raise EdgeconvError(f"unknown backend {name!r} (choose from {', '.join(BACKENDS)})")
    return _ALIASES[key]


def _first_line(exc: BaseException) -> str:
    """The first line of a runtime's message, without terminal colour codes."""
    global _ANSI
    if _ANSI is None:
        import re

        _ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]")
    text = _ANSI.sub("", str(exc))
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[0][:240] if lines else type(exc).__name__


def runtime_version(backend: str) -> tuple[str, str | None]:
    """(distribution name, version) of the runtime a backend would use, without importing it."""
    from importlib import metadata

    backend = normalize_backend(backend)
    names = ("onnxruntime",) if backend == ONNXRUNTIME else _tflite_order()
    for dist in names:
        try:
            return dist, metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return names[0], None


def _tflite_order() -> tuple[str, ...]:
    forced = os.environ.get(TFLITE_RUNTIME_ENV, "").strip().lower()
    if forced in TFLITE_RUNTIMES:
        return (forced,) + tuple(r for r in TFLITE_RUNTIMES if r != forced)
    return TFLITE_RUNTIMES


def import_runtime(backend: str):
    """Import the runtime module of ``backend``; returns (module, runtime name)."""
    backend = normalize_backend(backend)
    if backend == ONNXRUNTIME:
        try:
            import onnxruntime
        except ImportError:
            raise EdgeconvError("onnxruntime is not installed: pip install onnxruntime") from None
        return onnxruntime, "onnxruntime"
    errors = []
    for name in _tflite_order():
        try:
            if name == "ai-edge-litert":
                from ai_edge_litert import interpreter as mod
            else:
                from tflite_runtime import interpreter as mod
            return mod, name
        except Exception as exc:  # ImportError, or tflite-runtime failing under numpy 2
            errors.append(f"{name}: {_first_line(exc)}")
    raise EdgeconvError("no TFLite interpreter could be imported (" + "; ".join(errors)
                        + "): pip install ai-edge-litert (or tflite-runtime with numpy<2)")
