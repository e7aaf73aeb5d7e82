"""Open an ONNX or TFLite model file behind one small interface (torch-free).

    with open_model("face.onnx", threads=4) as m:      # backend chosen by file type
        m.set_batch(8)                                  # -> (8, 3, 96, 96)
        emb = m.run(np.zeros(m.input_shape, m.input_dtype))

Used by ``edgeconv bench`` and the on-device runtime. Only numpy is imported at
module level; onnxruntime and the TFLite interpreter (ai-edge-litert, falling
back to tflite-runtime) are imported when a model of that kind is opened.

Problems with the file itself (missing, empty, not a model, truncated) raise
:class:`ModelFileError`; a configuration the model cannot run (a batch size a
fixed-batch model refuses, an input shape that cannot be inferred) raises
:class:`UnsupportedConfig`. Both are :class:`~edgeconv.errors.EdgeconvError`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgeconv.errors import EdgeconvError
from edgeconv.runtime.closing import Closing
from edgeconv.runtime.runtimes import (BACKENDS, ONNXRUNTIME, TFLITE,  # noqa: F401
                                       TFLITE_RUNTIME_ENV, TFLITE_RUNTIMES, _ALIASES,
                                       _SUFFIXES, _first_line, import_runtime,
                                       normalize_backend, runtime_version)

_ORT_DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(int16)": np.int16,
    "tensor(int32)": np.int32, "tensor(int64)": np.int64, "tensor(bool)": np.bool_,
}


from edgeconv.runtime.model_file import ModelFile, ModelFileError, read_model_file  # noqa: E402


class UnsupportedConfig(EdgeconvError):
    """The model cannot run this configuration (``kind`` says which part)."""

    def __init__(self, message: str, kind: str = "unsupported"):
        super().__init__(message)
        self.kind = kind


def backend_for_path(path: str | os.PathLike) -> str:
    """The backend that runs this file: by suffix, else by the TFLite file identifier."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    head = _read_head(path)
    if head[4:8] == b"TFL3":
        return TFLITE
    raise ModelFileError(f"{path}: unknown model type (expected a .onnx or .tflite file)")


def check_model_file(path: str | os.PathLike) -> Path:
    """Cheap checks before a runtime sees the file (a clear message beats a crash):
    :func:`edgeconv.fileio.check_input_file`, as a :class:`ModelFileError`."""
    from edgeconv.fileio import check_input_file

    try:
        return check_input_file(path, "model file")
    except EdgeconvError as exc:
        raise ModelFileError(str(exc)) from None


def _read_head(path: Path, n: int = 8) -> bytes:
    check_model_file(path)
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError as exc:
        raise ModelFileError(f"{path}: unreadable ({exc.strerror or exc})") from None


def register_kernels_if_used(session_options, path: str | os.PathLike, data: bytes | None = None
                             ) -> bool:
    """Register the edgeconv kernel library on ``session_options`` if the model needs it.

    Returns whether it was registered (the backend's ``uses_kernels``: the kernel runs the
    ``edgeconv.TVConv`` nodes). Where the library is not built, cannot be loaded or reads
    another layout version, a model whose nodes carry standard-op function bodies (the default
    export) runs those, said once on stderr, and this returns False; a model without bodies
    raises :class:`~edgeconv.kernels.KernelsMissing` with one line naming the model. Models
    that do not use the ``edgeconv`` domain never load the library
    (:func:`edgeconv.kernels.register_for_model`).
    """
    from edgeconv import kernels

    if data is not None and kernels.model_uses_kernels(data):
        from edgeconv.kernels.node_check import FusedNodeError, check_fused_nodes

        try:  # attributes that disagree with the tensors: refused at open, one line
            check_fused_nodes(data, Path(path).name)
        except FusedNodeError as exc:
            raise ModelFileError(str(exc)) from None
    return kernels.register_for_model(session_options, path if data is None else data,
                                      Path(path).name)


class RunError(EdgeconvError):
    """The runtime raised while running the model on an input (one line, colour codes
    stripped); ``kind`` is ``out_of_memory`` or ``error``."""

    def __init__(self, message: str, kind: str = "error"):
        super().__init__(message)
        self.kind = kind


def _run_error(path: Path, exc: BaseException) -> RunError:
    first = _first_line(exc)
    oom = isinstance(exc, MemoryError) or any(
        s in first.lower() for s in ("out of memory", "bad_alloc", "failed to allocate"))
    return RunError(f"{path.name}: the runtime failed running the model "
                    f"({type(exc).__name__}: {first})", "out_of_memory" if oom else "error")


class ModelBackend(Closing):
    """One opened model. Subclasses fill the ``input_*``/``output_*`` attributes."""

    backend: str = ""
    #: the export format of the files this backend runs (edgeconv.export.formats)
    file_format: str = ""
    #: the runtime resizes the batch of a file at run time (TFLite: a file exported with a
    #: dynamic batch declares batch 1); a file exported for a fixed batch says so in its
    #: metadata ("batch": N)
    resizes_batch: bool = False
    #: the runtime has a spin-wait setting for its threads (ONNX Runtime's allow_spinning)
    has_spinning: bool = False
    runtime: str = ""
    runtime_version: str | None = None
    uses_kernels: bool = False  # the edgeconv kernel library was registered for this model
    #: TFLite files with edgeconv.tvconv composites: "kernel" (the LiteRT delegate runs them)
    #: or "portable body" (their standard-op decomposition); None for other files
    execution_path: str | None = None

    def __init__(self, path: str | os.PathLike, threads: int = 1,
                 model_file: ModelFile | None = None):
        from edgeconv.options import check_threads

        self.path = Path(path)
        self.threads = check_threads(threads, "threads")  # bounded before a runtime sees it
        # the bytes this backend runs, read once (edgeconv.runtime.model_file)
        self.model_file: ModelFile = model_file or read_model_file(self.path)
        self.input_name: str = ""
        self.input_dtype = np.dtype(np.float32)
        # declared shape: ints for fixed dims, None for symbolic/dynamic ones
        self.declared_input_shape: tuple = ()
        self.output_name: str = ""
        self.declared_output_shape: tuple = ()
        self.input_shape: tuple[int, ...] | None = None  # current concrete shape (after set_batch)

    # -- shape handling ----------------------------------------------------
    @property
    def dynamic_batch(self) -> bool:
        """True when the declared batch dimension is symbolic (any batch accepted)."""
        return bool(self.declared_input_shape) and self.declared_input_shape[0] is None

    def concrete_input_shape(self, batch: int, input_size=None, layout: str | None = None):
        """Declared input shape with the batch set and symbolic dims filled.

        ``input_size`` (height, width) fills symbolic spatial dims of a 4-D input
        (``layout`` NCHW, the default, or NHWC); any other symbolic dim raises
        :class:`UnsupportedConfig`.
        """
        dims = list(self.declared_input_shape)
        if not dims:
            raise UnsupportedConfig(f"{self.path.name}: scalar input has no batch dimension",
                                    "unsupported_input")
        dims[0] = int(batch)
        if any(d is None for d in dims[1:]):
            if input_size is not None and len(dims) == 4:
                h, w = (int(v) for v in input_size)
                hw = (1, 2) if str(layout or "NCHW").upper() == "NHWC" else (2, 3)
                for axis, val in zip(hw, (h, w)):
                    if dims[axis] is None:
                        dims[axis] = val
            if any(d is None for d in dims[1:]):
                raise UnsupportedConfig(
                    f"{self.path.name}: input {self.input_name!r} has symbolic non-batch dims "
                    f"{self.declared_input_shape}; give the model metadata an input_size",
                    "unsupported_input")
        return tuple(dims)

    def set_batch(self, batch: int, input_size=None, layout: str | None = None):
        """Prepare the model for ``batch`` images; returns the concrete input shape."""
        shape = self.concrete_input_shape(batch, input_size, layout)
        self._apply_shape(shape)
        self.input_shape = shape
        return shape

    def _apply_shape(self, shape):  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """Run one inference on ``x`` and return the first output."""
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict:
        return {
            "backend": self.backend, "runtime": self.runtime,
            "runtime_version": self.runtime_version, "threads": self.threads,
            "input_name": self.input_name, "input_dtype": str(self.input_dtype),
            "input_shape": list(self.declared_input_shape), "dynamic_batch": self.dynamic_batch,
            "output_name": self.output_name, "output_shape": list(self.declared_output_shape),
            **({"ort_disabled_optimizers": self.disabled_optimizers}
               if getattr(self, "disabled_optimizers", None) else {}),
        }


    def __repr__(self):
        return f"<{type(self).__name__} {self.path.name} threads={self.threads}>"


class OnnxRuntimeBackend(ModelBackend):
    """ONNX Runtime CPU session with explicit threading and spinning settings."""

    backend = ONNXRUNTIME
    file_format = "onnx"
    has_spinning = True

    def kernel_entry(self) -> dict | None:
        """What ``edgeconv bench`` records of the kernel build that ran the TVConv nodes."""
        if not self.uses_kernels:
            return None
        from edgeconv import kernels

        built = kernels.info()
        return {k: built[k] for k in ("version", "isa", "layout")}

    def kernel_note(self, entry: dict | None) -> str | None:
        return None

    def embedded_metadata(self) -> dict | None:
        """The edgeconv metadata embedded in the bytes this session runs."""
        from edgeconv.metadata import onnx_metadata_from_bytes

        return onnx_metadata_from_bytes(self.model_file.data, str(self.path))

    def __init__(self, path, threads: int = 1, allow_spinning: bool = True,
                 optimization: str = "all", model_file: ModelFile | None = None):
        super().__init__(path, threads, model_file)
        ort, self.runtime = import_runtime(ONNXRUNTIME)
        self.runtime_version = getattr(ort, "__version__", None)
        self.allow_spinning = bool(allow_spinning)
        if optimization not in ORT_OPTIMIZATION_LEVELS:  # a caller's mistake, not the file's
            raise ValueError(f"optimization must be one of {tuple(ORT_OPTIMIZATION_LEVELS)}")
        mf = self.model_file
        info: dict = {}
        try:  # external initialisers from the bytes that were hashed
            self._sess = ort_session(mf.data, self.threads, optimization=optimization,
                                     spinning=self.allow_spinning, external=mf.external,
                                     model_name=self.path.name, info=info)
        except EdgeconvError:  # KernelsMissing, a refused fused node: already one line
            raise
        except Exception as exc:  # onnxruntime's own exception types
            first = _first_line(exc)
            if "edgeconv.TVConv:" in first:  # the kernel refused a node or a setting
                raise ModelFileError(f"{self.path}: {first[first.index('edgeconv.TVConv:'):]}") \
                    from None
            raise ModelFileError(f"{self.path}: not a readable ONNX model ({first})") from None
        self.uses_kernels = info["uses_kernels"]
        self.disabled_optimizers = info["disabled_optimizers"]
        if self.uses_kernels:
            self.execution_path = "kernel"
        else:
            from edgeconv.kernels import model_uses_kernels

            # edgeconv.TVConv nodes without the library: their function bodies run
            self.execution_path = "portable body" if model_uses_kernels(mf.data) else None
        inputs = self._sess.get_inputs()
        if len(inputs) != 1:
            self.close()
            raise UnsupportedConfig(f"{self.path.name}: {len(inputs)} inputs; only single-input "
                                    "models are supported", "unsupported_input")
        outputs = self._sess.get_outputs()
        if not outputs:
            self.close()
            raise UnsupportedConfig(f"{self.path.name}: the model has no outputs",
                                    "unsupported_output")
        inp, out = inputs[0], outputs[0]
        self.input_name, self.output_name = inp.name, out.name
        if inp.type not in _ORT_DTYPES:
            self.close()
            raise UnsupportedConfig(f"{self.path.name}: input type {inp.type} not supported",
                                    "unsupported_input")
        self.input_dtype = np.dtype(_ORT_DTYPES[inp.type])
        self.declared_input_shape = tuple(_ort_dim(d) for d in inp.shape)
        self.declared_output_shape = tuple(_ort_dim(d) for d in out.shape)
        self._run = self._sess.run

    @property
    def session(self):
        return self._sess

    def _apply_shape(self, shape):
        declared = self.declared_input_shape
        if len(shape) != len(declared):
            raise UnsupportedConfig(f"{self.path.name}: rank mismatch", "unsupported_input")
        for axis, (want, have) in enumerate(zip(shape, declared)):
            if have is not None and have != want:
                kind = "unsupported_batch" if axis == 0 else "unsupported_input"
                what = "fixed batch" if axis == 0 else f"fixed dim {axis}"
                raise UnsupportedConfig(
                    f"{self.path.name}: {what} {have} in input {self.input_name!r}; "
                    f"cannot run {want}", kind)

    def run(self, x):
        try:
            return self._run(None, {self.input_name: x})[0]
        except (KeyboardInterrupt, SystemExit, EdgeconvError):
            raise
        except Exception as exc:  # onnxruntime's own types: one line, never a traceback
            raise _run_error(self.path, exc) from None

    def close(self):
        self._sess = None
        self._run = None


def _ort_dim(d):
    return d if isinstance(d, int) and d >= 0 else None


#: ``optimization`` names of :func:`ort_session` -> ``onnxruntime.GraphOptimizationLevel``
ORT_OPTIMIZATION_LEVELS = {"all": "ORT_ENABLE_ALL", "extended": "ORT_ENABLE_EXTENDED",
                           "basic": "ORT_ENABLE_BASIC", "none": "ORT_DISABLE_ALL"}
_KERNEL_POLICIES = ("auto", "never", "require")


def ort_session_options(data, threads: int = 1, kernels: str = "auto",
                        optimization: str = "all", spinning: bool = True,
                        external: dict | None = None, model_name: str | None = None):
    """The ``(SessionOptions, InferenceSession kwargs, uses_kernels)`` :func:`ort_session`
    opens ``data`` with; for a caller (a benchmark) that changes one option on top of them."""
    if kernels not in _KERNEL_POLICIES:
        raise ValueError(f"kernels must be one of {_KERNEL_POLICIES}, not {kernels!r}")
    if optimization not in ORT_OPTIMIZATION_LEVELS:
        raise ValueError(f"optimization must be one of {tuple(ORT_OPTIMIZATION_LEVELS)}, "
                         f"not {optimization!r}")
    ort, _ = import_runtime(ONNXRUNTIME)
    from edgeconv.quiet import verbose

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)  # 0: ONNX Runtime's default (one per core)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                          ORT_OPTIMIZATION_LEVELS[optimization])
    # errors come back as exceptions (one line, RunError); ORT's own coloured log line
    # of the same error on stderr only with --verbose
    so.log_severity_level = 3 if verbose() else 4
    flag = "1" if spinning else "0"
    so.add_session_config_entry("session.intra_op.allow_spinning", flag)
    so.add_session_config_entry("session.inter_op.allow_spinning", flag)
    name = model_name or (Path(data).name if isinstance(data, (str, os.PathLike)) else "model")
    if kernels == "auto" and isinstance(data, bytes):
        uses = register_kernels_if_used(so, name, data)
    elif kernels == "auto":
        uses = register_kernels_if_used(so, data)
    elif kernels == "require":
        from edgeconv import kernels as lib

        lib.register(so)  # KernelsMissing (one line) where the library is not usable
        uses = True
    else:
        uses = False
    if external:  # external initialisers held in memory (name -> bytes)
        names = list(external)
        so.add_external_initializers_from_files_in_memory(
            names, [external[n] for n in names], [len(external[n]) for n in names])
    kwargs = {}
    if uses:
        from edgeconv.kernels import session_kwargs

        kwargs = session_kwargs(_conv_macs_per_reordered_float(data, name))
    return so, kwargs, uses


def _conv_macs_per_reordered_float(data, name: str):
    """The figure a fused ONNX file's metadata records for the NCHWc choice
    (edgeconv.export.ort_layout); None where absent or unreadable (the file's other checks
    report a malformed file)."""
    from edgeconv.metadata import onnx_metadata_from_bytes, read_onnx_metadata

    try:
        meta = (onnx_metadata_from_bytes(data, name) if isinstance(data, bytes)
                else read_onnx_metadata(data))
    except EdgeconvError:
        return None
    entry = meta.get("kernels") if isinstance(meta, dict) else None
    return entry.get("conv_macs_per_reordered_float") if isinstance(entry, dict) else None


def ort_session(data, threads: int = 1, kernels: str = "auto", optimization: str = "all",
                spinning: bool = True, external: dict | None = None,
                model_name: str | None = None, info: dict | None = None):
    """An ``onnxruntime.InferenceSession`` (CPU) of ``data`` (model bytes, or a path), opened
    the one way edgeconv opens ONNX models (the backend, the exporter's parity gate, bench).

    ``threads`` intra-op threads (0: ONNX Runtime's default), one inter-op thread, sequential
    execution; ``optimization`` "all", "extended", "basic" or "none"; ``spinning``: ORT's
    allow_spinning (intra and inter op); ``external``: name -> bytes of external initialisers
    held in memory. ``kernels``: "auto" registers the edgeconv kernel library where the model
    uses the ``edgeconv`` domain and the library can run it (else its function bodies run,
    said once on stderr; a model without bodies raises KernelsMissing), "never" never
    registers it (the standard-op function bodies run), "require" always registers it
    (KernelsMissing where it cannot). With the library registered the session takes
    :func:`edgeconv.kernels.session_kwargs` (NCHWc transformer off unless the file's metadata
    says the model gains from it). ``info``, when given, is
    filled with {"uses_kernels": bool, "disabled_optimizers": [...]}. ONNX Runtime's own
    exceptions pass through.
    """
    so, kwargs, uses = ort_session_options(data, threads, kernels, optimization, spinning,
                                           external, model_name)
    ort, _ = import_runtime(ONNXRUNTIME)
    src = data if isinstance(data, bytes) else str(data)
    sess = ort.InferenceSession(src, sess_options=so, providers=["CPUExecutionProvider"],
                                **kwargs)
    if info is not None:
        info.update(uses_kernels=uses,
                    disabled_optimizers=list(kwargs.get("disabled_optimizers", [])))
    return sess


class TFLiteBackend(ModelBackend):
    """TFLite interpreter (ai-edge-litert, else tflite-runtime) with ``threads`` threads."""

    backend = TFLITE
    file_format = "tflite"
    resizes_batch = True

    def kernel_entry(self) -> dict | None:
        """What ``edgeconv bench`` records of a file with edgeconv.tvconv composites."""
        if not self.execution_path:
            return None
        from edgeconv.runtime import litert_delegate as ld

        return ld.bench_entry(self.execution_path)

    def kernel_note(self, entry: dict | None) -> str | None:
        """One line on what ran a file's composites, from its :meth:`kernel_entry` (None: the
        file has none)."""
        if entry is None:
            return None
        return (f"{self.path.name}: edgeconv.tvconv layers run on the {self.execution_path}"
                + (f" (LiteRT delegate {entry['version']}, {entry['isa']})"
                   if self.uses_kernels else ""))

    def embedded_metadata(self) -> dict | None:
        """The edgeconv metadata embedded in the bytes this interpreter runs."""
        from edgeconv.metadata import tflite_metadata_from_bytes

        return tflite_metadata_from_bytes(self.model_file.data, self.path)

    def __init__(self, path, threads: int = 1, model_file: ModelFile | None = None,
                 allow_spinning: bool = True):
        super().__init__(path, threads, model_file)
        if self.model_file.data[4:8] != b"TFL3":
            raise ModelFileError(f"{self.path}: not a TFLite model (no TFL3 file identifier)")
        mod, self.runtime = import_runtime(TFLITE)
        self.runtime_version = _dist_version(self.runtime)
        from edgeconv.quiet import third_party_output
        from edgeconv.runtime.litert_delegate import delegates_for

        # edgeconv.tvconv composites: the LiteRT delegate ("kernel") or their "portable body"
        delegates, self.execution_path = delegates_for(self.model_file.data, self.threads, mod)
        self.uses_kernels = bool(delegates)
        try:
            with third_party_output():  # "INFO: Created TensorFlow Lite XNNPACK delegate ..."
                self._it = mod.Interpreter(model_content=self.model_file.data,
                                           num_threads=self.threads,
                                           experimental_delegates=delegates or None)
                self._it.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelFileError(f"{self.path}: not a readable TFLite model ({_first_line(exc)})") \
                from None
        ins, outs = self._it.get_input_details(), self._it.get_output_details()
        if not outs:
            self.close()
            raise UnsupportedConfig(f"{self.path.name}: the model has no outputs",
                                    "unsupported_output")
        if len(ins) != 1:
            self.close()
            raise UnsupportedConfig(f"{self.path.name}: {len(ins)} inputs; only single-input "
                                    "models are supported", "unsupported_input")
        self._in, self._out = ins[0], outs[0]
        self.input_name, self.output_name = self._in["name"], self._out["name"]
        self.input_dtype = np.dtype(self._in["dtype"])
        self.declared_input_shape = _tfl_shape(self._in)
        self.declared_output_shape = _tfl_shape(self._out)
        self._in_index, self._out_index = self._in["index"], self._out["index"]
        self._current = tuple(int(v) for v in self._in["shape"])

    @property
    def input_quantization(self):
        """(scale, zero_point) of a quantised input, (0.0, 0) for float inputs."""
        return tuple(self._in.get("quantization", (0.0, 0)))

    def concrete_input_shape(self, batch, input_size=None, layout=None):
        # A TFLite model stores concrete shapes; only the batch is resized here.
        dims = list(self._in["shape"])
        if not dims:
            raise UnsupportedConfig(f"{self.path.name}: scalar input has no batch dimension",
                                    "unsupported_input")
        dims[0] = int(batch)
        return tuple(int(v) for v in dims)

    def _apply_shape(self, shape):
        if tuple(shape) == self._current:
            return
        try:
            self._it.resize_tensor_input(self._in_index, list(shape), strict=False)
            self._it.allocate_tensors()
        except Exception as exc:  # the interpreter raises ValueError/RuntimeError
            raise UnsupportedConfig(f"{self.path.name}: resize to {list(shape)} failed "
                                    f"({_first_line(exc)})", "unsupported_batch") from None
        self._current = tuple(shape)

    def run(self, x):
        try:
            self._it.set_tensor(self._in_index, x)
            self._it.invoke()
            return self._it.get_tensor(self._out_index)
        except (KeyboardInterrupt, SystemExit, EdgeconvError):
            raise
        except Exception as exc:  # LiteRT's RuntimeError/ValueError: one line
            raise _run_error(self.path, exc) from None

    def close(self):
        self._it = None


def _tfl_shape(detail) -> tuple:
    sig = detail.get("shape_signature")
    shape = detail["shape"]
    if sig is None or len(sig) != len(shape):
        sig = shape
    return tuple(None if int(s) < 0 else int(v) for s, v in zip(sig, shape))


def _dist_version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def open_model(path: str | os.PathLike, backend: str | None = None, threads: int = 1,
               allow_spinning: bool = True) -> ModelBackend:
    """Open ``path`` with ``backend`` (default: by file type) and ``threads`` threads.

    The file (and its external data) is read once; the runtime runs those bytes and
    ``model.model_file`` keeps them for hashing and metadata. ``allow_spinning`` sets ONNX
    Runtime's ``session.intra_op.allow_spinning`` (ignored by TFLite).
    """
    mf = read_model_file(path)
    cls = next(c for c in BACKEND_CLASSES if c.file_format == mf.kind)
    backend = normalize_backend(backend) if backend else cls.backend
    if backend != cls.backend:
        raise EdgeconvError(f"{mf.path}: backend {backend} cannot run a {cls.backend} model file")
    return cls(mf.path, threads=threads, allow_spinning=allow_spinning, model_file=mf)


#: every backend class; a model file's kind (edgeconv.runtime.model_file) picks one
BACKEND_CLASSES = (OnnxRuntimeBackend, TFLiteBackend)


def backend_class(name: str) -> type[ModelBackend]:
    """The class of backend ``name`` (aliases accepted)."""
    name = normalize_backend(name)
    return next(c for c in BACKEND_CLASSES if c.backend == name)


def random_input(shape, dtype, seed: int = 0) -> np.ndarray:
    """Deterministic input: N(0,1) for floats, the full range for integer types."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return rng.standard_normal(shape, dtype=np.float32).astype(dtype, copy=False)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    info = np.iinfo(dtype)
    lo, hi = max(info.min, -128), min(info.max, 255)
    return rng.integers(lo, hi, size=shape, endpoint=True).astype(dtype)
