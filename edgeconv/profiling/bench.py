"""``edgeconv bench``: throughput, latency and peak memory of ONNX / TFLite models.

The sweep, for every model x backend x threads x batch (a backend applies to the
files of its format: .onnx -> onnxruntime, .tflite -> tflite):

1. open a fresh session/interpreter with ``threads`` threads (``init_ms``),
2. set the batch (symbolic ONNX batch: any; TFLite: resize_tensor_input +
   allocate_tensors; a refusal is recorded as ``unsupported_batch``),
3. one first inference, reported apart (``first_inference_ms``: it allocates),
4. warm-up until both ``warmup_runs`` and ``warmup_secs`` are met,
5. timed runs until both ``min_runs`` and ``min_secs`` are met: latency
   mean/std/min/p50/p90/p99 per call, throughput = batch / mean latency.

Peak memory is measured per model x backend x threads at ``memory_batch`` in
fresh child processes (:mod:`edgeconv.profiling.memory`). ONNX Runtime thread
spinning is set explicitly for the sweep and measured both ways once per ONNX
model. One failing configuration never stops the sweep; Ctrl-C returns what
was gathered, flagged ``partial``. Torch-free.
"""

from __future__ import annotations

import datetime as _dt
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgeconv import __version__
from edgeconv.errors import EdgeconvError
from edgeconv.kernels import KernelsMissing
from edgeconv.profiling import memory as mem
from edgeconv.profiling import sysinfo
from edgeconv.runtime import backends as B

SCHEMA = "edgeconv.bench"
SCHEMA_VERSION = 1

DEFINITIONS = {
    "init_ms": "wall time to create the ONNX Runtime session / TFLite interpreter (file read, "
               "graph optimisation, allocate_tensors) for this configuration",
    "first_inference_ms": "wall time of the first run at this batch (allocations, lazy kernel "
                          "set-up); not part of the latency statistics",
    "latency_ms": "wall time of one run() call on a whole batch after warm-up (perf_counter); "
                  "mean, std (sample), min, p50, p90, p99 over the timed runs",
    "fps": "images per second = batch / mean latency",
    "cpu_util": "process CPU time / wall time during the timed runs (1.0 = one core busy; "
                "spinning threads raise it without doing work)",
    "status": "ok, or failed with failure.kind (unsupported_batch, unsupported_input, "
              "out_of_memory, error) and failure.reason",
    "best": "the ok configuration with the highest fps for the model (the paper's protocol: "
            "maximum throughput over batch x threads)",
    **mem.DEFINITIONS,
}


# Memory keys every result carries (null unless its batch is the memory batch).
_MEMORY_KEYS = ("peak_rss_mb", "uss_mb", "pss_mb", "baseline_peak_rss_mb", "baseline_uss_mb",
                "baseline_pss_mb", "net_peak_rss_mb", "net_uss_mb", "net_pss_mb")


@dataclass
class BenchSettings:
    backends: list = field(default_factory=lambda: list(B.BACKENDS))
    threads: list = field(default_factory=lambda: [1, 2, 4])
    batches: list = field(default_factory=lambda: [1, 2, 4, 8, 16])
    warmup_runs: int = 3
    warmup_secs: float = 0.5
    min_runs: int = 20
    min_secs: float = 1.0
    memory_batch: int = 8  # 0 disables the memory measurements
    memory_runs: int = 10
    ort_allow_spinning: bool = True
    measure_spinning: bool = True
    seed: int = 0


# --------------------------------------------------------------------------- timing
def latency_stats(seconds) -> dict:
    a = np.asarray(seconds, dtype=np.float64) * 1000.0
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
            "min": float(a.min()), "max": float(a.max()),
            "p50": float(p50), "p90": float(p90), "p99": float(p99)}


def timed_runs(run, x, min_runs: int, min_secs: float) -> tuple[list, float, float]:
    """Call ``run(x)`` until both ``min_runs`` calls and ``min_secs`` seconds are done.

    Returns (per-call seconds, total wall seconds, process CPU seconds).
    """
    clock = time.perf_counter
    lat: list = []
    append = lat.append
    cpu0 = time.process_time()
    start = clock()
    n = 0
    while True:
        t0 = clock()
        run(x)
        t1 = clock()
        append(t1 - t0)
        n += 1
        if n >= min_runs and t1 - start >= min_secs:
            break
    return lat, clock() - start, time.process_time() - cpu0


def classify_failure(exc: BaseException) -> str:
    if isinstance(exc, (B.UnsupportedConfig, B.RunError)):
        return exc.kind
    if isinstance(exc, MemoryError) or mem._looks_oom(f"{type(exc).__name__} {exc}"):
        return "out_of_memory"
    return "error"


def measure_config(path, backend: str, threads: int, batch: int, settings: BenchSettings,
                   input_size=None, layout=None, allow_spinning: bool | None = None) -> dict:
    """One model x backend x threads x batch measurement (never raises for model errors)."""
    spinning = settings.ort_allow_spinning if allow_spinning is None else allow_spinning
    res = {"backend": backend, "runtime": None, "threads": threads, "batch": batch,
           "status": "ok", "failure": None, "init_ms": None, "first_inference_ms": None,
           "warmup_runs": None, "runs": None, "timed_secs": None,
           "latency_ms": None, "fps": None, "cpu_util": None,
           "ort_allow_spinning": spinning if B.backend_class(backend).has_spinning else None,
           **dict.fromkeys(_MEMORY_KEYS)}
    model = None
    try:
        t0 = time.perf_counter()
        model = B.open_model(path, backend=backend, threads=threads, allow_spinning=spinning)
        shape = model.set_batch(batch, input_size=input_size, layout=layout)
        res["init_ms"] = (time.perf_counter() - t0) * 1000.0
        res["runtime"] = f"{model.runtime} {model.runtime_version or '?'}"
        x = B.random_input(shape, model.input_dtype, seed=settings.seed)
        t0 = time.perf_counter()
        y = model.run(x)
        res["first_inference_ms"] = (time.perf_counter() - t0) * 1000.0
        _check_output_batch(model, y, batch)
        n, t_start = 0, time.perf_counter()
        while n < settings.warmup_runs or time.perf_counter() - t_start < settings.warmup_secs:
            model.run(x)
            n += 1
        res["warmup_runs"] = n
        lat, wall, cpu = timed_runs(model.run, x, settings.min_runs, settings.min_secs)
        stats = latency_stats(lat)
        res.update(runs=len(lat), timed_secs=wall, latency_ms=stats,
                   fps=batch / (stats["mean"] / 1000.0), cpu_util=cpu / wall if wall > 0 else None)
    except (KeyboardInterrupt, SystemExit):
        raise
    except B.ModelFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - one failure must not stop the sweep
        res["status"] = "failed"
        res["failure"] = {"kind": classify_failure(exc), "reason": B._first_line(exc)}
    finally:
        if model is not None:
            model.close()
    return res


def _check_output_batch(model, y, batch: int) -> None:
    """Catch a model that silently ran a different batch (e.g. a reshape baked to batch 1)."""
    out_decl = model.declared_output_shape
    in_decl = model.declared_input_shape
    if np.ndim(y) < 1 or not out_decl:
        return
    batch_like = out_decl[0] is None or (in_decl and out_decl[0] == in_decl[0])
    if batch_like and np.shape(y)[0] != batch:
        raise B.UnsupportedConfig(f"output has leading dimension {np.shape(y)[0]} for batch "
                                  f"{batch}", "unsupported_batch")


def best_result(results: list) -> dict | None:
    ok = [r for r in results if r.get("status") == "ok" and r.get("fps")]
    if not ok:
        return None
    r = max(ok, key=lambda r: r["fps"])
    return {k: r.get(k) for k in ("backend", "threads", "batch", "fps", "latency_ms",
                                  "peak_rss_mb", "uss_mb")}


def execution_path(model) -> str:
    """What runs a file's TVConv layers: "kernel" (edgeconv's, registered in ONNX Runtime or
    the LiteRT delegate), "portable body" (the file's standard-op fallback: an ONNX function
    body or a TFLite composite's decomposition) or "standard ops" (no edgeconv node)."""
    path = getattr(model, "execution_path", None)
    if path:
        return path
    return "kernel" if model.uses_kernels else "standard ops"


# --------------------------------------------------------------------------- models
def _model_summary(meta: dict | None) -> dict | None:
    if not meta:
        return None
    keys = ("model", "op", "width", "folding", "input_size", "layout", "macs", "params_train",
            "params_inference", "embedding_dim", "format", "edgeconv_version")
    out = {k: meta.get(k) for k in keys if k in meta}
    ver = meta.get("verification")
    if isinstance(ver, dict):
        out["verification"] = {k: ver.get(k) for k in ("accuracy", "accuracy_std", "pairs")
                               if k in ver}
    return out


def _load_meta(path) -> tuple[dict | None, str | None]:
    from edgeconv.metadata import load_metadata

    try:
        return load_metadata(path), None
    except EdgeconvError as exc:
        return None, str(exc)


class _Progress:
    """The shared progress display (a bar on a terminal, throttled lines otherwise)."""

    def __init__(self, total: int, enabled: bool):
        from edgeconv.progress import Progress

        self.bar = Progress(total, "bench", unit="cfg", enabled=enabled, leave=True)

    def step(self, label: str | None = None, n: int = 1):
        if label:
            self.bar.set_postfix_str(label, refresh=False)
        self.bar.update(n)

    def shrink(self, n: int):
        self.bar.shrink(n)

    def label(self, text: str):
        self.bar.set_postfix_str(text)

    def write(self, text: str):
        self.bar.write(text)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def check_inputs(models, settings: BenchSettings, outputs: dict) -> None:
    """Everything the sweep needs, checked before anything is printed: the model files exist,
    are readable and are run by a requested backend; report folders exist (none is made)."""
    if not models:
        raise EdgeconvError("give at least one .onnx or .tflite model file")
    for p in models:
        path = B.check_model_file(p)
        kind = B.backend_for_path(path)
        if kind not in settings.backends:
            fmt = B.backend_class(kind).file_format
            raise EdgeconvError(f"{path}: a {fmt} file, and no requested backend runs it "
                                f"(--backend {','.join(settings.backends)})")
    for opt, out in outputs.items():
        if not out:
            continue
        parent = Path(out).expanduser().parent
        if not parent.is_dir():
            raise EdgeconvError(f"{opt} {out}: folder {parent} does not exist (edgeconv does not "
                                "create it)")


def plan_models(paths, settings: BenchSettings) -> list[dict]:
    """Model entries with the backends that apply to each file (no file access yet)."""
    entries = []
    for p in paths:
        entry = {"path": str(p), "name": Path(p).name, "format": None, "size_bytes": None,
                 "status": "pending", "error": None, "metadata": None, "metadata_error": None,
                 "input": None, "backends": [], "results": [], "memory": [], "spinning": None,
                 "best": None}
        suffix = Path(p).suffix.lower()
        fmt = B._SUFFIXES.get(suffix)
        entry["format"] = {"onnxruntime": "onnx", "tflite": "tflite"}.get(fmt)
        entry["backends"] = [b for b in settings.backends if fmt is None or b == fmt]
        entries.append(entry)
    return entries


def _work_units(entry: dict, settings: BenchSettings) -> int:
    n_b = len(entry["backends"])
    units = n_b * len(settings.threads) * len(settings.batches)
    if settings.memory_batch:
        units += n_b * len(settings.threads)
    if settings.measure_spinning and B.ONNXRUNTIME in entry["backends"]:
        units += 2
    return units


# --------------------------------------------------------------------------- the sweep
def run_bench(paths, settings: BenchSettings | None = None, progress: bool = True,
              log=None) -> dict:
    """Run the whole sweep and return the report dict (see :mod:`bench_report`).

    Model-file problems are recorded in the model entry (``status: error``) and
    reported through ``log(message)``; Ctrl-C stops the sweep and returns the
    report gathered so far with ``partial: true``.
    """
    settings = settings or BenchSettings()
    _BASELINES.clear()
    settings.backends = [B.normalize_backend(b) for b in settings.backends]
    system = sysinfo.system_info()
    report = {
        "schema": SCHEMA, "version": SCHEMA_VERSION, "edgeconv_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "partial": False, "interrupted": False, "settings": asdict(settings),
        "runtimes": {b: "%s %s" % B.runtime_version(b) for b in settings.backends},
        "system": system, "thermal": {"before": sysinfo.thermal_snapshot(), "after": None},
        "warnings": [], "definitions": DEFINITIONS, "memory_baselines": {},
        "models": plan_models(paths, settings),
    }
    for entry in report["models"]:
        if not entry["backends"]:
            entry["status"] = "skipped"
            entry["error"] = (f"no requested backend runs {entry['format'] or 'this'} files "
                              f"(requested: {', '.join(settings.backends)})")
    report["warnings"] = sysinfo.run_warnings(system, settings.threads,
                                              report["thermal"]["before"], {})
    bar = _Progress(sum(_work_units(e, settings) for e in report["models"]), progress)
    log = log or bar.write
    for w in report["warnings"]:
        bar.write(f"edgeconv: warning: {w}")
    report["warned"] = list(report["warnings"])
    try:
        for entry in report["models"]:
            if entry["status"] == "skipped":
                bar.write(f"edgeconv: warning: {entry['path']}: {entry['error']}")
                continue
            _bench_model(entry, settings, bar, log)
    except KeyboardInterrupt:
        report["partial"] = report["interrupted"] = True
        for entry in report["models"]:
            if entry["status"] in ("pending", "running"):
                entry["status"] = "interrupted" if entry["status"] == "running" else "not_run"
                entry["best"] = best_result(entry["results"])
    finally:
        bar.close()
    report["memory_baselines"] = {b: dict(v) for b, v in _BASELINES.items()}
    report["thermal"]["after"] = sysinfo.thermal_snapshot()
    report["warnings"] = sysinfo.run_warnings(system, settings.threads,
                                              report["thermal"]["before"],
                                              report["thermal"]["after"])
    return report


def _bench_model(entry: dict, settings: BenchSettings, bar: _Progress, log) -> None:
    path = entry["path"]
    units = _work_units(entry, settings)
    entry["status"] = "running"
    try:
        B.check_model_file(path)
        kind = B.backend_for_path(path)
        entry["format"] = B.backend_class(kind).file_format
        entry["backends"] = [b for b in entry["backends"] if b == kind]
        bar.shrink(units - _work_units(entry, settings))  # format known only now (no suffix)
        units = _work_units(entry, settings)
        entry["size_bytes"] = Path(path).stat().st_size
        with B.open_model(path, threads=1) as probe:  # validates the file, reads the input
            entry["input"] = {k: v for k, v in probe.describe().items()
                              if k.startswith("input") or k.startswith("output")
                              or k == "dynamic_batch"}
            entry["execution"] = execution_path(probe)
            kernel = probe.kernel_entry()  # fused TVConv: which build and SIMD path timed it
            if kernel is not None:
                entry["kernels"] = kernel
            note = probe.kernel_note(kernel)
            if note:
                log(f"edgeconv: {note}")
    except B.ModelFileError as exc:
        entry["status"], entry["error"] = "error", str(exc)
        log(f"edgeconv: error: {exc}")
        bar.step(n=units)
        return
    except B.UnsupportedConfig as exc:
        entry["status"], entry["error"] = "error", str(exc)
        log(f"edgeconv: error: {path}: {exc}")
        bar.step(n=units)
        return
    except KernelsMissing as exc:  # a fused model without the kernel library: once, not per config
        entry["status"], entry["error"] = "error", str(exc)
        log(f"edgeconv: error: {exc}")
        bar.step(n=units)
        return
    meta, meta_err = _load_meta(path)
    entry["metadata"], entry["metadata_error"] = _model_summary(meta), meta_err
    if meta_err:
        log(f"edgeconv: warning: {meta_err} (benchmarking without metadata)")
    input_size = (meta or {}).get("input_size")
    layout = (meta or {}).get("layout")

    for backend in entry["backends"]:
        for threads in settings.threads:
            for batch in settings.batches:
                bar.label(f"{entry['name']} {backend} t{threads} b{batch}")
                res = measure_config(path, backend, threads, batch, settings, input_size, layout)
                entry["results"].append(res)
                bar.step()
        if settings.measure_spinning and B.backend_class(backend).has_spinning:
            entry["spinning"] = _spinning_check(entry, settings, input_size, layout, bar)
        if settings.memory_batch:
            _memory_for_backend(entry, backend, settings, input_size, layout, bar)
    entry["best"] = best_result(entry["results"])
    entry["status"] = "ok" if entry["best"] else "failed"


def _spinning_check(entry, settings, input_size, layout, bar) -> dict:
    """ORT intra-op spinning off vs on, once, at the largest useful thread count."""
    logical = os.cpu_count() or 1
    cands = [t for t in settings.threads if 1 < t <= logical] or sorted(settings.threads)[-1:]
    threads = max(cands)
    ok_batches = [r["batch"] for r in entry["results"]
                  if B.backend_class(r["backend"]).has_spinning and r["threads"] == threads
                  and r["status"] == "ok"]
    batch = min(ok_batches) if ok_batches else min(settings.batches)
    out = {"threads": threads, "batch": batch,
           "sweep_setting": "on" if settings.ort_allow_spinning else "off",
           "note": None if threads > 1 else "one thread has no intra-op pool: spinning has "
                                            "no effect here"}
    for flag in (False, True):
        bar.label(f"{entry['name']} spinning={'on' if flag else 'off'} t{threads} b{batch}")
        r = measure_config(entry["path"], B.ONNXRUNTIME, threads, batch, settings, input_size,
                           layout, allow_spinning=flag)
        out["on" if flag else "off"] = {k: r.get(k) for k in ("status", "failure", "fps",
                                                               "latency_ms", "cpu_util")}
        bar.step()
    return out


def _memory_for_backend(entry, backend, settings, input_size, layout, bar) -> None:
    mb = settings.memory_batch
    for threads in settings.threads:
        bar.label(f"{entry['name']} {backend} t{threads} memory b{mb}")
        row = {"backend": backend, "threads": threads, "batch": mb, "status": "ok",
               "failure": None}
        timing = next((r for r in entry["results"] if r["backend"] == backend
                       and r["threads"] == threads and r["batch"] == mb), None)
        if timing is not None and timing["status"] != "ok" and timing["failure"]["kind"] in (
                "unsupported_batch", "unsupported_input"):
            row.update(status="failed", failure=dict(timing["failure"]))
        else:
            try:
                base = _baseline(backend, threads, mb)
                row.update(mem.measure(entry["path"], backend, threads, mb, baseline=base,
                                       runs=settings.memory_runs,
                                       spinning=settings.ort_allow_spinning,
                                       input_size=input_size, layout=layout))
            except mem.MemoryMeasurementError as exc:
                row.update(status="failed", failure={"kind": exc.kind, "reason": str(exc)})
        entry["memory"].append(row)
        if timing is not None:
            for key in _MEMORY_KEYS:
                timing[key] = row.get(key)
            if row["status"] != "ok":
                timing["memory_failure"] = row["failure"]
        bar.step()


_BASELINES: dict = {}


def _baseline(backend: str, threads: int, batch: int) -> dict:
    """No-model child for this backend (cached per process: it has no model to vary)."""
    if backend not in _BASELINES:
        _BASELINES[backend] = mem.run_child(backend, None, threads=threads, batch=batch)
    return _BASELINES[backend]


# --------------------------------------------------------------------------- CLI glue
def bench_command(models, backends="onnxruntime,tflite", threads=(1, 2, 4),
                  batches=(1, 2, 4, 8, 16), warmup_runs=3, warmup_secs=0.5, min_runs=20,
                  min_secs=1.0, memory_batch=8, spinning="on", json_path=None, csv_path=None,
                  plot_path=None, seed=0, progress=True) -> int:
    """Run ``edgeconv bench`` and write the reports; returns the exit status.

    0: every model measured; 2: at least one model file was missing/corrupt, every
    configuration of a model failed (one line on stderr), or a model needs the
    edgeconv kernel library where it is not built (the others are still measured);
    130: interrupted (partial reports written).
    """
    from edgeconv.profiling import bench_report as R

    names = [b for b in str(backends).split(",") if b.strip()]
    if not names:
        raise EdgeconvError("--backend: give at least one of onnxruntime, tflite")
    settings = BenchSettings(
        backends=list(dict.fromkeys(B.normalize_backend(b) for b in names)),
        threads=list(threads), batches=list(batches), warmup_runs=warmup_runs,
        warmup_secs=warmup_secs, min_runs=min_runs, min_secs=min_secs,
        memory_batch=memory_batch, ort_allow_spinning=(spinning == "on"), seed=seed)
    if plot_path:  # fail before the sweep, not after it
        from edgeconv.errors import require

        require("matplotlib", "plot")
    check_inputs(models, settings, {"--json": json_path, "--csv": csv_path,
                                    "--plot": plot_path})
    if settings.memory_batch and settings.memory_batch not in settings.batches:
        print(f"edgeconv: note: peak memory is measured at batch {settings.memory_batch} "
              f"(--memory-batch), which is not among --batch "
              f"{','.join(map(str, settings.batches))}", file=sys.stderr)
    report = run_bench(models, settings, progress=progress)
    warned = report.pop("warned", [])
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not lose files
    try:
        written = R.write_outputs(report, json_path=json_path, csv_path=csv_path,
                                  plot_path=plot_path)
    finally:
        signal.signal(signal.SIGINT, old)
    print(R.format_report(report, already_printed=warned))
    for p in written:
        print(f"wrote {p}")
    if report["interrupted"]:
        print("edgeconv: interrupted: the reports hold the results gathered so far "
              "(partial: true)", file=sys.stderr)
        return 130
    if any(m["status"] == "error" for m in report["models"]):
        return 2
    failed = [m for m in report["models"] if m["status"] == "failed"]
    if failed:  # nothing was measured for these: not a success
        from edgeconv.metadata import escape_text

        names = ", ".join(escape_text(Path(m["path"]).name, 60) for m in failed[:3])
        print(f"edgeconv: error: every configuration failed for {names}"
              + (f" and {len(failed) - 3} more" if len(failed) > 3 else "")
              + " (reasons in the table)", file=sys.stderr)
        return 2
    return 0
