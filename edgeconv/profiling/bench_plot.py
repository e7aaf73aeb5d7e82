"""PNG plots of an ``edgeconv bench`` report (matplotlib, imported lazily).

* ``FILE.png``: throughput (images/s) vs batch, one line per thread count, one
  panel per model x backend; failed configurations are left out of the lines.
* ``FILE_accuracy.png`` (only when two or more models carry both
  ``verification.accuracy`` and ``macs`` metadata): accuracy vs best throughput
  and accuracy vs MACs.

Uses matplotlib's object API with the Agg canvas: no pyplot, no global state.
"""

from __future__ import annotations

import math
from pathlib import Path

from edgeconv.errors import require
from edgeconv.fileio import atomic_path


def _figure(width, height):
    require("matplotlib", "plot")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    return path


def throughput_panels(report: dict) -> list[tuple[str, str, dict]]:
    """[(model name, backend, {threads: [(batch, fps), ...]})] of the ok results."""
    panels = []
    for m in report["models"]:
        for backend in dict.fromkeys(r["backend"] for r in m["results"]):
            lines: dict = {}
            for r in m["results"]:
                if r["backend"] == backend and r["status"] == "ok" and r.get("fps"):
                    lines.setdefault(r["threads"], []).append((r["batch"], r["fps"]))
            if lines:
                panels.append((m["name"], backend, {t: sorted(v) for t, v in lines.items()}))
    return panels


def accuracy_points(report: dict) -> list[dict]:
    """Models with accuracy + MACs metadata and a best throughput."""
    pts = []
    for m in report["models"]:
        meta = m.get("metadata") or {}
        acc = (meta.get("verification") or {}).get("accuracy")
        macs = meta.get("macs")
        if acc is None or macs is None:
            continue
        best = m.get("best") or {}
        acc = float(acc)
        pts.append({"name": m["name"], "accuracy": acc if acc <= 1.0 else acc / 100.0,
                    "macs": float(macs),
                    "fps": best.get("fps")})
    return pts


def write_plots(report: dict, path) -> list[Path]:
    path = Path(path)
    written = []
    panels = throughput_panels(report)
    n = max(1, len(panels))
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig = _figure(4.2 * cols, 3.3 * rows)
    title = "edgeconv bench: throughput vs batch"
    if report.get("partial"):
        title += " (PARTIAL: interrupted)"
    sysname = (report.get("system") or {}).get("board") or (report.get("system") or {}).get(
        "cpu_model")
    fig.suptitle(f"{title}\n{sysname or ''}", fontsize=10)
    if not panels:
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no successful configuration", ha="center", va="center")
        ax.set_axis_off()
    for i, (name, backend, lines) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        for threads in sorted(lines):
            xs, ys = zip(*lines[threads])
            ax.plot(xs, ys, marker="o", label=f"{threads} thread{'s' if threads > 1 else ''}")
        ax.set_xscale("log", base=2)
        batches = sorted({b for pts in lines.values() for b, _ in pts})
        ax.set_xticks(batches)
        ax.set_xticklabels([str(b) for b in batches])
        ax.set_title(f"{name} [{backend}]", fontsize=9)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("batch")
        ax.set_ylabel("images / s")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    written.append(_save(fig, path))

    pts = accuracy_points(report)
    if len(pts) >= 2:
        fig = _figure(9.0, 3.6)
        ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
        for p in pts:
            if p["fps"]:
                ax1.scatter(p["fps"], p["accuracy"] * 100)
                ax1.annotate(p["name"], (p["fps"], p["accuracy"] * 100), fontsize=7)
            ax2.scatter(p["macs"] / 1e6, p["accuracy"] * 100)
            ax2.annotate(p["name"], (p["macs"] / 1e6, p["accuracy"] * 100), fontsize=7)
        ax1.set_xlabel("best throughput (images / s)")
        ax2.set_xlabel("MACs (M)")
        for ax in (ax1, ax2):
            ax.set_ylabel("verification accuracy (%)")
            ax.grid(True, alpha=0.3)
        fig.suptitle("accuracy vs throughput and MACs", fontsize=10)
        written.append(_save(fig, path.with_name(f"{path.stem}_accuracy{path.suffix or '.png'}")))
    return written
