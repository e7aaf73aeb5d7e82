"""The native fused TVConv kernel: finding, describing and loading the library (torch-free).

``libedgeconv_kernels.so`` (built from ``src/`` at install, see ``build.py``) holds the ONNX
Runtime custom op ``edgeconv.TVConv`` (layout versions 1-2) and a small C ABI for build
information and direct tests. TVConv models exported to ONNX (by default) hold ``edgeconv.TVConv`` nodes that
run this kernel where the library is registered and their model-local standard-op function body
(``edgeconv.export.onnx_function``) elsewhere; fused files from before the bodies need it.
From your own ONNX Runtime code::

    so = onnxruntime.SessionOptions()
    so.register_custom_ops_library(edgeconv.kernels.library_path())   # or `edgeconv kernels --path`
    sess = onnxruntime.InferenceSession(path, so, **edgeconv.kernels.session_kwargs())
"""

from __future__ import annotations

import ctypes
import math
import os
from functools import lru_cache
from pathlib import Path

from edgeconv.errors import EdgeconvError

DOMAIN = "edgeconv"
OP_TYPE = "TVConv"
#: the ``edgeconv`` opset version = packed-layout version this exporter writes: 2 (each node's
#: ``layout`` attribute names its layout, ``edgeconv.kernels.pack``: flat at stride 1); 1 = the
#: rows layout everywhere (files from before edgeconv kernels 1.1, still read)
OP_VERSION = 2
LIB_NAME = "libedgeconv_kernels.so"
HERE = Path(__file__).resolve().parent
BUILD_HINT = ("build them with `python -m edgeconv.kernels.build` (needs g++ and ONNX Runtime "
              "headers: ORT_INCLUDE_DIR, /usr/include/onnxruntime from libonnxruntime-dev, or "
              "fetched from Debian trixie by that command) or reinstall with `pip install -e .`")


#: ONNX Runtime optimizers a session for a fused model leaves out where the model gains
#: nothing from them. ORT's NCHWc transformer (x86) runs convolutions in a channel-blocked
#: layout and wraps every node it cannot block (our custom op) in two layout reorders. Whether
#: that pays depends on the model: the exporter records the convolution MACs per float the
#: reorders would copy (``kernels.conv_macs_per_reordered_float``, edgeconv.export.ort_layout,
#: which has the measurements) and the transformer stays on from
#: :data:`NCHWC_MIN_CONV_MACS_PER_FLOAT` up (ShuffleNetV2 x1.0: 106, DeepLabV3+ ASPP: 1164,
#: both faster with it); below, and for files without the figure, it is off (MobileNetV2
#: x0.1-x1.0: 10-44, as fast or faster without it). ``EDGECONV_ORT_NCHWC=1`` / ``=0`` forces it
#: on / off.
ORT_DISABLED_OPTIMIZERS = ("NchwcTransformer",)
NCHWC_MIN_CONV_MACS_PER_FLOAT = 64.0


def nchwc_wanted(conv_macs_per_float=None) -> bool:
    """Whether a fused model's ONNX Runtime session keeps the NCHWc transformer, from the
    figure its metadata records (None: not recorded) and ``EDGECONV_ORT_NCHWC``."""
    env = os.environ.get("EDGECONV_ORT_NCHWC")
    if env in ("0", "1"):
        return env == "1"
    r = conv_macs_per_float
    ok = isinstance(r, (int, float)) and not isinstance(r, bool) and math.isfinite(r)
    return ok and r >= NCHWC_MIN_CONV_MACS_PER_FLOAT


def session_kwargs(conv_macs_per_float=None) -> dict:
    """Extra ``onnxruntime.InferenceSession`` keyword arguments for a fused model whose
    metadata records ``conv_macs_per_float`` (:func:`nchwc_wanted`)."""
    if nchwc_wanted(conv_macs_per_float):
        return {}
    return {"disabled_optimizers": list(ORT_DISABLED_OPTIMIZERS)}


class KernelsMissing(EdgeconvError):
    """The kernel library is not built, or cannot be loaded here."""


def library_path(required: bool = True) -> Path | None:
    """Path of the built library (``EDGECONV_KERNELS_LIB`` overrides); None if not built."""
    env = os.environ.get("EDGECONV_KERNELS_LIB")
    candidates = [Path(env)] if env else [HERE / LIB_NAME]
    for path in candidates:
        if path.is_file():
            return path
    if required:
        where = env if env else str(HERE / LIB_NAME)
        raise KernelsMissing(f"the edgeconv kernels are not built ({where} missing): {BUILD_HINT}")
    return None


@lru_cache(maxsize=4)
def _cdll(path: str) -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(path)
    except OSError as exc:
        raise KernelsMissing(f"the edgeconv kernels at {path} cannot be loaded ({exc}); "
                             f"{BUILD_HINT}") from None
    try:
        for name in ("edgeconv_kernels_version", "edgeconv_kernels_layout",
                     "edgeconv_kernels_available_isas", "edgeconv_kernels_selected_isa"):
            getattr(lib, name).restype = ctypes.c_char_p
    except AttributeError as exc:
        raise KernelsMissing(f"{path} is not an edgeconv kernel library ({exc}); "
                             f"{BUILD_HINT}") from None
    if hasattr(lib, "edgeconv_kernels_layouts"):  # 1.1 on; 1.0 reads the rows layout only
        lib.edgeconv_kernels_layouts.restype = ctypes.c_char_p
    lib.edgeconv_kernels_ort_api_version.restype = ctypes.c_int
    lib.edgeconv_tvconv_run.restype = ctypes.c_int
    return lib


def load() -> ctypes.CDLL:
    """The library as a ctypes handle (raises KernelsMissing in one line)."""
    return _cdll(str(library_path()))


def available() -> bool:
    try:
        load()
        return True
    except KernelsMissing:
        return False


def info() -> dict:
    """Build information: library path and version, weight layouts, SIMD paths, ORT headers."""
    lib = load()
    lo, hi = op_versions()
    return {
        "library": str(library_path()),
        "version": lib.edgeconv_kernels_version().decode(),
        "layout": lib.edgeconv_kernels_layout().decode(),  # the rows layout (library 1.0's key)
        "layouts": (lib.edgeconv_kernels_layouts().decode().split(",")
                    if hasattr(lib, "edgeconv_kernels_layouts")
                    else [lib.edgeconv_kernels_layout().decode()]),
        "op_versions": [lo, hi],
        "domain": DOMAIN, "op": OP_TYPE, "op_version": OP_VERSION,
        "isa": lib.edgeconv_kernels_selected_isa().decode(),
        "available_isas": lib.edgeconv_kernels_available_isas().decode().split(","),
        "ort_api_version": int(lib.edgeconv_kernels_ort_api_version()),
    }


def register(session_options) -> Path:
    """Register the custom op library on an ``onnxruntime.SessionOptions``; returns its path."""
    path = library_path()
    load()  # a broken file fails here with one line, not inside ORT
    session_options.register_custom_ops_library(str(path))
    return path


def model_uses_kernels(model) -> bool:
    """Whether an ONNX model (path or bytes) imports the ``edgeconv`` op domain.

    Reads only the ModelProto's ``opset_import`` entries (edgeconv.kernels.onnx_domains), so
    the ``edgeconv`` metadata key every exported model carries is no false positive.
    """
    from edgeconv.kernels.onnx_domains import imports_domain

    return imports_domain(model, DOMAIN)


def op_versions() -> tuple[int, int]:
    """The ``edgeconv`` opset versions (= packed-layout versions) the built library reads."""
    lib = load()
    try:
        lo, hi = lib.edgeconv_kernels_op_version_min, lib.edgeconv_kernels_op_version_max
    except AttributeError:  # a library built before the range was exported: version 1 only
        return OP_VERSION, OP_VERSION
    lo.restype = hi.restype = ctypes.c_int
    return int(lo()), int(hi())


_BODY_NOTES: set = set()


def register_for_model(session_options, model, model_name: str | None = None,
                       quiet: bool = False) -> bool:
    """Register the library on ``session_options`` if ``model`` (path or bytes) has
    ``edgeconv.TVConv`` nodes and the library can run them; returns whether it registered.

    The ``edgeconv`` opset version in the file's ``opset_import`` is its weight-layout version;
    the library reads the versions in :func:`op_versions` (ONNX Runtime itself matches custom
    kernels by name, whatever the version, so the check is made here). A file whose nodes carry
    model-local function bodies (``edgeconv.export.onnx_function``) then runs them where the
    library is missing, cannot be loaded or reads another layout version, and this says so once
    on stderr (unless ``quiet``); a file without bodies raises :class:`KernelsMissing` (one line).
    """
    from edgeconv.kernels.onnx_domains import scan

    info = scan(model)
    version = info["opsets"].get(DOMAIN)
    if version is None:
        return False
    name = model_name or (str(model) if isinstance(model, (str, os.PathLike)) else "the model")
    bodies = any(d == DOMAIN and n == OP_TYPE for d, n, _ in info["functions"])
    try:
        load()
        lo, hi = op_versions()
        if not lo <= int(version) <= hi:
            raise KernelsMissing(
                f"{name} has edgeconv layout version {version}, the edgeconv kernels "
                f"{lib_version()} read {lo if lo == hi else f'{lo}..{hi}'}: the kernel refuses it")
        register(session_options)
        return True
    except KernelsMissing as exc:
        if not bodies:
            if "layout version" in str(exc):
                raise KernelsMissing(f"{exc}; re-export the model with this edgeconv") from None
            raise KernelsMissing(missing_message(name)) from None
        why = str(exc) if "layout version" in str(exc) else \
            f"{name}: the edgeconv kernels are not available here"
        note = (f"edgeconv: {why}; its TVConv layers run their portable standard-op body "
                f"(slower; {BUILD_HINT})" if "layout version" not in why else
                f"edgeconv: {why}; its TVConv layers run their portable standard-op body")
        if not quiet and note not in _BODY_NOTES:
            import sys

            _BODY_NOTES.add(note)
            print(note, file=sys.stderr)
        return False


def lib_version() -> str:
    return load().edgeconv_kernels_version().decode()


def missing_message(model_name: str) -> str:
    return (f"{model_name} uses the fused edgeconv.TVConv kernel and carries no portable "
            f"function body, but the edgeconv kernels are not available here: {BUILD_HINT}; or "
            f"re-export the model with this edgeconv (its TVConv nodes then carry standard-op "
            f"bodies)")
