"""Peak memory of one model configuration, measured in a fresh child process.

Why a child: ``ru_maxrss``/VmHWM are lifetime peaks of a process, so a
measurement taken in the benchmarking process would include every model and
batch measured before it. Each figure here comes from its own short-lived
``python -m edgeconv.profiling.memory`` process that imports numpy and the
runtime library, optionally opens the model, runs warm-up plus ``runs``
inferences at the requested batch, and then reports:

* ``peak_rss_mb``: VmHWM from /proc/self/status, the peak resident set of the
  child over its whole life (imports + model load + allocation + runs); falls
  back to ``ru_maxrss`` where /proc is missing (``peak_source`` says which).
* ``rss_mb``/``uss_mb``/``pss_mb``: resident, unique and proportional set size at
  steady state (after the runs), from psutil ``memory_full_info``. USS counts
  only pages private to the child; PSS shares shared pages out among the
  processes that map them; RSS counts shared library pages in full.

The *baseline* is the same child with the same imports and no model (and no
input tensor); ``net_*`` = model figure - baseline figure: what the model,
its runtime session and the input/output tensors add. MB means MiB (2**20
bytes). Torch-free: the child imports edgeconv, numpy, psutil and the runtime.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
from pathlib import Path

MIB = float(1 << 20)
RESULT_PREFIX = "EDGECONV_MEMORY_RESULT "

DEFINITIONS = {
    "peak_rss_mb": "peak resident set size of a fresh child process that imported the runtime, "
                   "loaded the model, allocated the batch and ran warm-up + timed inferences "
                   "(VmHWM from /proc/self/status; ru_maxrss where /proc is missing); MiB",
    "uss_mb": "unique set size of that child at steady state after the runs (pages no other "
              "process maps), psutil memory_full_info; MiB",
    "pss_mb": "proportional set size at steady state (shared pages divided among sharers); MiB",
    "baseline_*": "the same figures for the same child program with the same imports and no "
                  "model, measured the same way",
    "net_peak_rss_mb / net_uss_mb / net_pss_mb": "model figure minus baseline figure: what the "
                  "model, its session/interpreter and the tensors add",
}


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def snapshot() -> dict:
    """Memory figures of the current process (MiB).

    Steady-state figures are read first and the peak last, so the peak covers
    everything the reading itself allocated (peak >= rss always holds).
    """
    gc.collect()
    out: dict = {}
    try:
        import psutil

        info = psutil.Process().memory_full_info()
        out["rss_mb"] = info.rss / MIB
        out["uss_mb"] = info.uss / MIB if hasattr(info, "uss") else None
        out["pss_mb"] = info.pss / MIB if hasattr(info, "pss") else None
    except Exception as exc:  # psutil missing or smaps unreadable
        out.update(rss_mb=None, uss_mb=None, pss_mb=None, psutil_error=str(exc)[:200])
    hwm = _status_kib("VmHWM")
    if hwm is not None:
        out["peak_rss_mb"], out["peak_source"] = hwm / 1024.0, "VmHWM"
    else:
        import resource

        ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        scale = 1.0 if sys.platform == "darwin" else 1024.0  # bytes on macOS, KiB on Linux
        out["peak_rss_mb"], out["peak_source"] = ru * scale / MIB, "ru_maxrss"
    return out


# --------------------------------------------------------------------------- child side
def child_main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgeconv.profiling.memory",
                                description="measure one configuration's memory (internal)")
    p.add_argument("--backend", required=True)
    p.add_argument("--model", default=None, help="omit for the no-model baseline")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--warmup-runs", type=int, default=2)
    p.add_argument("--spinning", choices=("on", "off"), default="on")
    p.add_argument("--input-size", default=None, help="H,W for symbolic spatial dims")
    p.add_argument("--layout", default=None)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    # The baseline imports exactly what a model run imports.
    import numpy as np
    import psutil  # noqa: F401

    from edgeconv.runtime import backends as B

    B.import_runtime(args.backend)
    result = {"backend": B.normalize_backend(args.backend), "model": args.model,
              "threads": args.threads, "batch": args.batch, "pid": os.getpid()}
    if args.model is not None:
        size = tuple(int(v) for v in args.input_size.split(",")) if args.input_size else None
        m = B.open_model(args.model, backend=args.backend, threads=args.threads,
                         allow_spinning=args.spinning == "on")
        shape = m.set_batch(args.batch, input_size=size, layout=args.layout)
        x = B.random_input(shape, m.input_dtype, seed=args.seed)
        for _ in range(args.warmup_runs + args.runs):
            y = m.run(x)
        result["input_shape"] = list(shape)
        result["output_shape"] = list(np.shape(y))
    result.update(snapshot())
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


# --------------------------------------------------------------------------- parent side
class MemoryMeasurementError(RuntimeError):
    def __init__(self, message: str, kind: str = "error"):
        super().__init__(message)
        self.kind = kind


def _child_env() -> dict:
    """Inherit the environment; make sure this edgeconv is importable in the child."""
    import edgeconv

    env = dict(os.environ)
    root = str(Path(edgeconv.__file__).resolve().parent.parent)
    parts = [root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != root]
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env.setdefault("PYTHONHASHSEED", "0")
    return env


def run_child(backend: str, model: str | os.PathLike | None = None, threads: int = 1,
              batch: int = 8, runs: int = 10, spinning: bool = True, input_size=None,
              layout: str | None = None, timeout: float = 600.0) -> dict:
    """Run one measurement child; returns its figures or raises MemoryMeasurementError."""
    cmd = [sys.executable, "-m", "edgeconv.profiling.memory", "--backend", backend,
           "--threads", str(threads), "--batch", str(batch), "--runs", str(runs),
           "--spinning", "on" if spinning else "off"]
    if model is not None:
        cmd += ["--model", str(model)]
    if input_size is not None:
        cmd += ["--input-size", ",".join(str(int(v)) for v in input_size)]
    if layout:
        cmd += ["--layout", str(layout)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=_child_env(), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise MemoryMeasurementError(f"memory child timed out after {timeout:.0f} s",
                                     "timeout") from None
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    if proc.returncode < 0:
        sig = -proc.returncode
        kind = "out_of_memory" if sig == 9 else "crashed"
        hint = " (SIGKILL: most likely the out-of-memory killer)" if sig == 9 else ""
        raise MemoryMeasurementError(f"memory child killed by signal {sig}{hint}", kind)
    tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    msg = tail[-1][:300] if tail else f"exit status {proc.returncode}"
    kind = "out_of_memory" if _looks_oom(proc.stderr) else "error"
    if "UnsupportedConfig" in proc.stderr or "unsupported" in msg.lower():
        kind = "unsupported_batch" if "batch" in msg.lower() else "unsupported"
    raise MemoryMeasurementError(f"memory child failed: {msg}", kind)


def _looks_oom(text: str) -> bool:
    t = (text or "").lower()
    return any(s in t for s in ("memoryerror", "out of memory", "bad_alloc",
                                "failed to allocate", "cannot allocate memory"))


def measure(model, backend: str, threads: int, batch: int, baseline: dict | None = None,
            **kwargs) -> dict:
    """Model figures, baseline figures and their difference, as one flat dict."""
    if baseline is None:
        baseline = run_child(backend, None, threads=threads, batch=batch)
    fig = run_child(backend, model, threads=threads, batch=batch, **kwargs)
    out = {"peak_rss_mb": fig.get("peak_rss_mb"), "rss_mb": fig.get("rss_mb"),
           "uss_mb": fig.get("uss_mb"), "pss_mb": fig.get("pss_mb"),
           "peak_source": fig.get("peak_source")}
    for key in ("peak_rss_mb", "uss_mb", "pss_mb", "rss_mb"):
        base = baseline.get(key)
        out[f"baseline_{key}"] = base
        out[f"net_{key}"] = (fig[key] - base) if fig.get(key) is not None and base is not None \
            else None
    return out


if __name__ == "__main__":
    try:
        sys.exit(child_main())
    except Exception as exc:  # one line on stderr, the parent turns it into a reason
        sys.stderr.write(f"{type(exc).__name__}: {exc}\n")
        sys.exit(3)
