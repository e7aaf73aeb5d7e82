"""PNG plots of an ``edgeconv bench`` report (matplotlib, imported lazily).

* ``FILE.png``: throughput (images/s) vs batch, one line per thread count, one
  panel per model x backend; failed configurations are left out of the lines.
* ``FILE_accuracy.png`` (only when two or more models carry both
  ``verification.accuracy`` and ``macs`` metadata): accuracy vs best throughput
  and accuracy vs MACs.

Uses matplotlib's object API with the Agg canvas: no pyplot, no global state.
"""

from __future__ import annotations

from pathlib import Path

from edgeconv.errors import require
from edgeconv.fileio import REPORT_MODE, atomic_path


def _figure(width, height):
    require("matplotlib", "plot")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    with atomic_path(path, REPORT_MODE) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    return path


def model_labels(report: dict) -> list[str]:
    """One distinct label per model entry: the file name, or with as many parent folders as
    it takes when names repeat (``tvconv/last.onnx`` vs ``depthwise/last.onnx``)."""
    paths = [Path(m.get("path") or m["name"]) for m in report["models"]]
    for depth in range(1, 6):
        labels = ["/".join(p.parts[-depth:]) for p in paths]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{lb} #{i + 1}" for i, lb in enumerate(labels)]


def throughput_panels(report: dict) -> list[tuple[str, dict]]:
    """[(backend, {(model label, threads): [(batch, fps), ...]})] of the ok results: one panel
    per backend, every model overlaid on one y scale."""
    by_backend: dict = {}
    for m, label in zip(report["models"], model_labels(report)):
        for r in m["results"]:
            if r["status"] == "ok" and r.get("fps"):
                lines = by_backend.setdefault(r["backend"], {})
                lines.setdefault((label, r["threads"]), []).append((r["batch"], r["fps"]))
    return [(b, {k: sorted(v) for k, v in lines.items()}) for b, lines in by_backend.items()]


def memory_bars(report: dict) -> tuple[int | None, list[tuple[str, float]]]:
    """(memory batch, [("model [backend, Nt]", peak RSS MiB)]) of the ok memory results."""
    bars = []
    for m, label in zip(report["models"], model_labels(report)):
        for r in m.get("memory") or []:
            if r.get("status") == "ok" and r.get("peak_rss_mb"):
                bars.append((f"{label} [{r['backend']}, {r['threads']}t]",
                             float(r["peak_rss_mb"])))
    return (report.get("settings") or {}).get("memory_batch"), bars


def accuracy_points(report: dict) -> list[dict]:
    """Models with accuracy + MACs metadata and a best throughput."""
    pts = []
    for m, label in zip(report["models"], model_labels(report)):
        meta = m.get("metadata") or {}
        acc = (meta.get("verification") or {}).get("accuracy")
        macs = meta.get("macs")
        if acc is None or macs is None:
            continue
        best = m.get("best") or {}
        acc = float(acc)
        pts.append({"name": label, "accuracy": acc if acc <= 1.0 else acc / 100.0,
                    "macs": float(macs),
                    "fps": best.get("fps")})
    return pts


_MARKERS = "osD^vP*Xh<>"


def write_plots(report: dict, path) -> list[Path]:
    path = Path(path)
    written = []
    panels = throughput_panels(report)
    mem_batch, bars = memory_bars(report)
    n = max(1, len(panels)) + (1 if bars else 0)
    fig = _figure(5.0 * n, 4.0)
    title = "edgeconv bench: throughput vs batch"
    if report.get("partial"):
        title += " (PARTIAL: interrupted)"
    sysname = (report.get("system") or {}).get("board") or (report.get("system") or {}).get(
        "cpu_model")
    fig.suptitle(f"{title}\n{sysname or ''}", fontsize=10)
    if not panels:
        ax = fig.add_subplot(1, n, 1)
        ax.text(0.5, 0.5, "no successful configuration", ha="center", va="center")
        ax.set_axis_off()
    models = model_labels(report)
    colours = {name: f"C{i % 10}" for i, name in enumerate(models)}
    threads_all = sorted({t for _, lines in panels for _, t in lines})
    styles = {t: ls for t, ls in zip(threads_all, ["-", "--", ":", "-."] * 4)}
    for i, (backend, lines) in enumerate(panels):
        ax = fig.add_subplot(1, n, i + 1)
        for (name, threads), pts in sorted(lines.items(), key=lambda kv: (models.index(
                kv[0][0]), kv[0][1])):
            xs, ys = zip(*pts)
            ax.plot(xs, ys, color=colours[name], ls=styles[threads],
                    marker=_MARKERS[models.index(name) % len(_MARKERS)], ms=4,
                    label=f"{name}, {threads} thread{'s' if threads > 1 else ''}")
        ax.set_xscale("log", base=2)
        batches = sorted({b for pts in lines.values() for b, _ in pts})
        ax.set_xticks(batches)
        ax.set_xticklabels([str(b) for b in batches])
        ax.set_title(f"{backend}: max FPS vs batch (one line per model x threads)", fontsize=9)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("batch")
        ax.set_ylabel("images / s")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    if bars:
        ax = fig.add_subplot(1, n, n)
        labels, values = zip(*bars)
        ys = range(len(bars))
        ax.barh(list(ys), values, color=[colours.get(lb.split(" [")[0], "C0") for lb in labels])
        ax.set_yticks(list(ys))
        ax.set_yticklabels(labels, fontsize=7)
        ax.invert_yaxis()
        for y, v in zip(ys, values):
            ax.text(v, y, f" {v:.0f}", va="center", fontsize=7)
        ax.set_xlabel("peak RSS (MiB)")
        ax.set_title(f"peak memory at batch {mem_batch}", fontsize=9)
        ax.grid(True, axis="x", alpha=0.3)
    written.append(_save(fig, path))

    pts = accuracy_points(report)
    if len(pts) >= 2:
        macs = {round(p["macs"]) for p in pts}
        two = len(macs) > 1
        fig = _figure(10.0 if two else 6.0, 4.0)
        axes = [fig.add_subplot(1, 2 if two else 1, k + 1) for k in range(2 if two else 1)]
        for k, p in enumerate(pts):
            style = dict(color=colours.get(p["name"], f"C{k % 10}"),
                         marker=_MARKERS[k % len(_MARKERS)], s=40, label=p["name"])
            if p["fps"]:
                axes[0].scatter(p["fps"], p["accuracy"] * 100, **style)
            if two:
                axes[1].scatter(p["macs"] / 1e6, p["accuracy"] * 100, **style)
        axes[0].set_xlabel("best throughput (images / s)")
        if two:
            axes[1].set_xlabel("MACs (M)")
        for ax in axes:
            ax.set_ylabel("verification accuracy (%)")
            ax.grid(True, alpha=0.3)
        axes[0].legend(fontsize=7, loc="best")   # a legend, not labels that overprint
        what = "accuracy vs throughput and MACs" if two else (
            f"accuracy vs throughput (every model: {next(iter(macs)) / 1e6:.2f} M MACs)")
        fig.suptitle(what, fontsize=10)
        written.append(_save(fig, path.with_name(f"{path.stem}_accuracy{path.suffix or '.png'}")))
    return written
