"""Reports of ``edgeconv bench``: console table, best configuration, JSON, CSV.

JSON schema (``schema: "edgeconv.bench"``, ``version: 1``; keys are only ever
added within a version)::

    {
      "schema": "edgeconv.bench", "version": 1, "edgeconv_version": "...", "created": "...",
      "partial": false, "interrupted": false,          # true after Ctrl-C
      "settings": {"backends", "threads", "batches", "warmup_runs", "warmup_secs",
                   "min_runs", "min_secs", "memory_batch", "ort_allow_spinning", ...},
      "runtimes": {"onnxruntime": "onnxruntime 1.31.1", "tflite": "ai-edge-litert 2.3.0"},
      "system": {"cpu_model", "board", "machine", "cores": {"physical", "logical", "usable"},
                 "kernel", "libraries": {"numpy", "onnxruntime", "ai-edge-litert",
                 "tflite-runtime", "python", "platform", ...}},
      "thermal": {"before": {...}, "after": {...}},   # frequency, temperatures, throttling
      "warnings": ["..."], "definitions": {"fps": "...", ...},
      "memory_baselines": {"onnxruntime": {...no-model child figures...}},
      "models": [{
        "path", "name", "format", "size_bytes", "status", "error", "metadata", "input",
        "results": [{"backend", "runtime", "threads", "batch", "status", "failure",
                     "init_ms", "first_inference_ms", "warmup_runs", "runs", "timed_secs",
                     "latency_ms": {"mean", "std", "min", "max", "p50", "p90", "p99"},
                     "fps", "cpu_util", "ort_allow_spinning",
                     "peak_rss_mb", "uss_mb", "pss_mb", "baseline_*", "net_*"}],
        "memory": [...per backend x threads at memory_batch...],
        "spinning": {"threads", "batch", "sweep_setting", "off": {...}, "on": {...}},
        "best": {"backend", "threads", "batch", "fps", "latency_ms", "peak_rss_mb", "uss_mb"}
      }]
    }

Every result carries the memory keys; they are null unless the result's batch
is the memory batch (the figures come from ``models[].memory[]``).
Torch-free; matplotlib only in :mod:`bench_plot`.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from edgeconv.fileio import REPORT_MODE, atomic_write_json, atomic_write_text

CSV_COLUMNS = [
    "model", "path", "format", "backend", "runtime", "threads", "batch", "status",
    "failure_kind", "failure_reason", "init_ms", "first_inference_ms", "warmup_runs", "runs",
    "latency_mean_ms", "latency_std_ms", "latency_min_ms", "latency_p50_ms", "latency_p90_ms",
    "latency_p99_ms", "fps", "cpu_util", "ort_allow_spinning",
    "peak_rss_mb", "uss_mb", "pss_mb", "baseline_peak_rss_mb", "baseline_uss_mb",
    "net_peak_rss_mb", "net_uss_mb", "best", "partial",
]


def _f(v, nd=2):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


#: widest cell of a console table (an error message is cut, in full in the JSON/CSV)
MAX_CELL = 60


def _cell(value) -> str:
    from edgeconv.metadata import escape_text

    return escape_text(value, MAX_CELL)


def _table(headers, rows) -> str:
    rows = [[_cell(c) for c in r] for r in rows]
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(headers)]
    line = "  ".join(str(h).rjust(w) if i else str(h).ljust(w)
                     for i, (h, w) in enumerate(zip(headers, widths)))
    out = [line, "-" * len(line)]
    for r in rows:
        out.append("  ".join(str(c).rjust(w) if i else str(c).ljust(w)
                             for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(out)


def _load(snap) -> str:
    load = (snap or {}).get("load_average")
    return " ".join(f"{v:.2f}" for v in load) if load else "not exposed"


def format_system(report: dict) -> str:
    s = report.get("system", {})
    cores = s.get("cores", {})
    libs = s.get("libraries", {})
    after = (report.get("thermal") or {}).get("after") or (report.get("thermal") or {}).get(
        "before") or {}
    freq = after.get("frequency") or {}
    temps = ", ".join(f"{t['type'] or t['zone']} {t['celsius']:.1f} C"
                      for t in after.get("temperatures") or []) or "not exposed"
    thr = after.get("throttled")
    lines = [
        f"cpu: {s.get('cpu_model')} ({s.get('machine')})"
        + (f", board: {s['board']}" if s.get("board") else ""),
        f"cores: {cores.get('physical')} physical / {cores.get('logical')} logical"
        f" ({cores.get('usable')} usable)",
        "frequency: governor {}, current {} MHz, max {} MHz".format(
            freq.get("governor") or "not exposed", _f(freq.get("cur_mhz"), 0),
            _f(freq.get("max_mhz"), 0)),
        f"temperature: {temps}; throttling: "
        + (f"{thr['raw']} {', '.join(thr['flags']) or 'none'}" if thr else "not exposed"),
        "load average (1/5/15 min) before: {}, after: {}".format(
            _load((report.get("thermal") or {}).get("before")), _load(after)),
        "libraries: " + ", ".join(f"{k} {v}" for k, v in libs.items()
                                  if v and k not in ("platform", "python_implementation"))
        + f"; {libs.get('platform')}",
    ]
    return "\n".join(lines)


def format_report(report: dict, already_printed=()) -> str:
    """The console report: system, per-configuration table, best per model, warnings (but
    not those ``already_printed`` on stderr when the sweep started)."""
    parts = [format_system(report), ""]
    rows = []
    for m in report["models"]:
        if m["status"] in ("error", "skipped", "not_run") and not m["results"]:
            rows.append([m["name"], "-", "-", "-", m["status"], "-", "-", "-", "-", "-", "-",
                         "-"])
            continue
        for r in m["results"]:
            lat = r.get("latency_ms") or {}
            status = r["status"] if r["status"] == "ok" else (r.get("failure") or {}).get(
                "kind", r["status"])
            rows.append([m["name"], r["backend"], r["threads"], r["batch"], status,
                         _f(r.get("init_ms"), 1), _f(r.get("first_inference_ms"), 2),
                         _f(lat.get("mean"), 3), _f(lat.get("std"), 3), _f(lat.get("p50"), 3),
                         _f(lat.get("p99"), 3), _f(r.get("fps"), 1)])
    parts.append(_table(["model", "backend", "thr", "batch", "status", "init ms", "first ms",
                         "mean ms", "std ms", "p50 ms", "p99 ms", "fps"], rows))
    mem_rows = []
    for m in report["models"]:
        for r in m.get("memory") or []:
            status = r["status"] if r["status"] == "ok" else (r.get("failure") or {}).get(
                "kind", r["status"])
            mem_rows.append([m["name"], r["backend"], r["threads"], r["batch"], status,
                             _f(r.get("peak_rss_mb"), 1), _f(r.get("baseline_peak_rss_mb"), 1),
                             _f(r.get("net_peak_rss_mb"), 1), _f(r.get("uss_mb"), 1),
                             _f(r.get("net_uss_mb"), 1), _f(r.get("pss_mb"), 1)])
    if mem_rows:
        mb = (report.get("settings") or {}).get("memory_batch")
        note = "" if mb in ((report.get("settings") or {}).get("batches") or []) else \
            ", a batch not among --batch"
        parts += ["", f"peak memory at batch {mb}{note} (MiB; each figure from a fresh child "
                  "process):",
                  _table(["model", "backend", "thr", "batch", "status", "peak RSS", "baseline",
                          "net peak", "USS", "net USS", "PSS"], mem_rows),
                  "peak RSS = VmHWM of the child over imports + model load + runs; baseline = "
                  "the same child with the same imports and no model; net = peak - baseline; "
                  "USS/PSS at steady state after the runs."]
    best_rows = []
    for m in report["models"]:
        b = m.get("best")
        if b:
            best_rows.append([m["name"], b["backend"], b["threads"], b["batch"],
                              _f(b["fps"], 1), _f((b.get("latency_ms") or {}).get("mean"), 3)])
        else:
            best_rows.append([m["name"], "-", "-", "-", "-", m.get("error") or m["status"]])
    parts += ["", "best configuration per model (max throughput):",
              _table(["model", "backend", "thr", "batch", "fps", "mean ms"], best_rows)]
    lines = verdicts(report)
    if lines:
        parts += ["", "verdict (max FPS, same backend):"] + [f"  {v}" for v in lines]
    spin = [m for m in report["models"] if m.get("spinning")]
    for m in spin:
        s = m["spinning"]
        on, off = s.get("on") or {}, s.get("off") or {}
        parts.append(
            f"ORT spinning ({m['name']}, {s['threads']} threads, batch {s['batch']}): "
            f"off {_f(off.get('fps'), 1)} fps cpu {_f(off.get('cpu_util'), 2)}, "
            f"on {_f(on.get('fps'), 1)} fps cpu {_f(on.get('cpu_util'), 2)}; "
            f"sweep used {s['sweep_setting']}")
    failures = [(m["name"], r) for m in report["models"] for r in m["results"]
                if r["status"] != "ok"]
    if failures:
        parts += ["", "failed configurations:"]
        parts += [f"  {n} {r['backend']} t{r['threads']} b{r['batch']}: "
                  f"{r['failure']['kind']}: {r['failure']['reason']}" for n, r in failures]
    parts.append("")
    fresh = [w for w in report.get("warnings") or [] if w not in already_printed]
    for w in fresh:  # those printed on stderr at the start are not repeated here
        parts.append(f"warning: {w}")
    if report.get("partial"):
        parts.append("PARTIAL: interrupted before the sweep finished")
    return "\n".join(parts)


def _label(m: dict) -> str:
    meta = m.get("metadata") or {}
    bits = [str(meta.get("model") or m["name"])]
    if meta.get("op"):
        bits.append(str(meta["op"]))
    if m.get("execution") and m["execution"] != "standard ops":
        bits.append(f"[{m['execution']}]")
    return _cell(" ".join(bits)) + f" ({m['name']})"


def verdicts(report: dict) -> list[str]:
    """One line per pair of files of different ops run by the same backend: which is faster
    at its best configuration, and by how much (the files' own max FPS)."""
    out = []
    models = [m for m in report["models"] if m.get("best")]
    for i, a in enumerate(models):
        for b in models[i + 1:]:
            ba, bb = a["best"], b["best"]
            if ba["backend"] != bb["backend"]:
                continue
            oa = (a.get("metadata") or {}).get("op")
            ob = (b.get("metadata") or {}).get("op")
            if oa == ob and oa is not None:
                continue
            fast, slow = (a, b) if ba["fps"] >= bb["fps"] else (b, a)
            ratio = fast["best"]["fps"] / max(slow["best"]["fps"], 1e-9)
            out.append(f"{ba['backend']}: {_label(fast)} is {ratio:.2f}x the max FPS of "
                       f"{_label(slow)} ({fast['best']['fps']:.0f} vs "
                       f"{slow['best']['fps']:.0f})")
    return out


def csv_rows(report: dict) -> list[dict]:
    rows = []
    partial = "true" if report.get("partial") else "false"
    for m in report["models"]:
        best = m.get("best") or {}
        for r in m["results"]:
            lat = r.get("latency_ms") or {}
            fail = r.get("failure") or {}
            is_best = bool(best) and all(best.get(k) == r.get(k)
                                         for k in ("backend", "threads", "batch"))
            row = {
                "model": m["name"], "path": m["path"], "format": m.get("format"),
                "backend": r["backend"], "runtime": r.get("runtime"), "threads": r["threads"],
                "batch": r["batch"], "status": r["status"], "failure_kind": fail.get("kind"),
                "failure_reason": fail.get("reason"), "init_ms": r.get("init_ms"),
                "first_inference_ms": r.get("first_inference_ms"),
                "warmup_runs": r.get("warmup_runs"), "runs": r.get("runs"),
                "latency_mean_ms": lat.get("mean"), "latency_std_ms": lat.get("std"),
                "latency_min_ms": lat.get("min"), "latency_p50_ms": lat.get("p50"),
                "latency_p90_ms": lat.get("p90"), "latency_p99_ms": lat.get("p99"),
                "fps": r.get("fps"), "cpu_util": r.get("cpu_util"),
                "ort_allow_spinning": r.get("ort_allow_spinning"),
                "best": "true" if is_best else "false", "partial": partial,
            }
            for k in ("peak_rss_mb", "uss_mb", "pss_mb", "baseline_peak_rss_mb",
                      "baseline_uss_mb", "net_peak_rss_mb", "net_uss_mb"):
                row[k] = r.get(k)
            rows.append(row)
    return rows


def _csv_value(v):
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return v


def to_csv(report: dict) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for row in csv_rows(report):
        w.writerow({k: _csv_value(v) for k, v in row.items()})
    return buf.getvalue()


def write_outputs(report: dict, json_path=None, csv_path=None, plot_path=None) -> list[Path]:
    """Write the requested files atomically; returns the paths written."""
    written = []
    if json_path:
        written.append(atomic_write_json(json_path, report, REPORT_MODE))
    if csv_path:
        written.append(atomic_write_text(csv_path, to_csv(report), REPORT_MODE))
    if plot_path:
        from edgeconv.profiling.bench_plot import write_plots

        written += write_plots(report, plot_path)
    return [Path(p) for p in written]
