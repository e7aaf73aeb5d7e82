"""The accuracy envelope: models x ops x widths x seeds, each trained under one budget and recipe,
evaluated, exported, benchmarked, and plotted (the TVConv paper's Figs. 5, 7, 8 and 9).

Layout of the output folder::

    cells/<model>__<op>__s<seed>/   one folder per cell: the training run, eval, export, bench
    cells/<...>/result.json         written last (atomically): the cell is finished; a rerun
                                    keeps it and does not redo the cell (resume)
    envelope.json                   every finished cell + the run's settings
    envelope.md                     the table (mean over seeds, +- std)
    fig5_accuracy_vs_macs_widths.png  accuracy vs MACs over widths: the baseline (depthwise) vs
                                    the exactly foldable op (TVConv) (the paper's Fig. 5)
    fig7_accuracy_vs_macs.png       accuracy vs MACs, one curve per op (Fig. 7)
    fig8_accuracy_vs_fps.png        accuracy vs max FPS (Fig. 8)
    fig9_accuracy_vs_memory.png     accuracy vs net peak memory at batch 8 (Fig. 9)

Cells run in parallel with ``jobs`` > 1 (processes with 1 torch thread each; their benchmark
numbers then share the machine, which the report says). Under ``torchrun`` each rank takes
every world-size-th cell and trains it alone (single process: the torchrun variables are hidden
from the trainer), and rank 0 waits for the others' cells and writes the report.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from edgeconv.errors import EdgeconvError

#: the quickstart recipe (edgeconv quickstart's defaults; docs/quickstart_recipe.md)
RECIPE = dict(input_size=32, identities=1000, images_per_identity=20, difficulty=0.5,
              batch_size=128, lr=0.2, schedule="cosine", warmup_epochs=1.0,
              margin_warmup_epochs=6.0, am_scale=16.0, generator_lr_mult=0.1,
              embedding_dim=512, val_pairs=600, test_pairs=2000, inter_channels=16,
              inter_layers=1)

_TORCHRUN_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                  "MASTER_PORT", "GROUP_RANK", "ROLE_RANK", "ROLE_WORLD_SIZE",
                  "TORCHELASTIC_RUN_ID", "TORCHELASTIC_RESTART_COUNT",
                  "TORCHELASTIC_MAX_RESTARTS", "GROUP_WORLD_SIZE")


@dataclass
class EnvelopeConfig:
    output: str = "runs/envelope"
    models: tuple = ("mbv2",)            # model stems: mbv2, sfv2, mixer (name before _x)
    ops: tuple = ("depthwise", "tvconv")
    widths: tuple = (0.1, 0.5)
    seeds: tuple = (0,)
    epochs: int = 18                     # per cell (the quickstart recipe's)
    cell_minutes: float = 0.0            # > 0: each cell's epochs cut to fit this (measured)
    data: str = "synthetic"              # or an ImageFolder path
    pairs: str = "synthetic"             # or a pair list (with an ImageFolder)
    input_size: int = RECIPE["input_size"]
    identities: int = RECIPE["identities"]
    images_per_identity: int = RECIPE["images_per_identity"]
    difficulty: float = RECIPE["difficulty"]
    embedding_dim: int = RECIPE["embedding_dim"]
    batch_size: int = RECIPE["batch_size"]
    val_pairs: int = RECIPE["val_pairs"]
    test_pairs: int = RECIPE["test_pairs"]
    formats: str = "onnx,tflite"         # "" skips export and bench
    bench_threads: tuple = (1,)
    bench_batches: tuple = (1, 8)
    bench_min_secs: float = 0.5
    memory_batch: int = 8
    jobs: int = 1
    device: str = "auto"
    rebench: bool = False                # export and bench the finished cells again; no training

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def recipe_key(self) -> dict:
        """What makes two cells comparable (everything but the grid, jobs, device): the report
        gathers every finished cell of the output folder with the same key, so runs of
        different ops/widths/seeds into one folder build one envelope."""
        d = self.to_dict()
        return {k: v for k, v in d.items()
                if k not in ("output", "models", "ops", "widths", "seeds", "jobs", "device",
                             "rebench")}


def model_for(stem: str, width: float) -> str | None:
    """The registered face model ``<stem>_x<width>`` (None when that width does not exist)."""
    from edgeconv.models.registry import model_names, model_spec

    for n in model_names():
        if n.rsplit("_x", 1)[0] == stem and model_spec(n).width == float(width):
            return n
    return None


def plan_cells(cfg: EnvelopeConfig) -> list[dict]:
    """Every (model, op, seed) cell; an op-free model (MLP-Mixer) gets one cell per width with
    the baseline op, its curve named after the model family."""
    from edgeconv.models.registry import model_spec
    from edgeconv.ops import baseline_op, check_op

    for op in cfg.ops:
        check_op(op)
    cells, missing = [], []
    for stem in cfg.models:
        for width in cfg.widths:
            name = model_for(stem, width)
            if name is None:
                missing.append(f"{stem}_x{width}")
                continue
            spec = model_spec(name)
            ops = cfg.ops if spec.takes_op else (baseline_op(),)
            for op in ops:
                for seed in cfg.seeds:
                    curve = f"{stem}/{op}" if spec.takes_op else spec.family
                    cells.append({"id": f"{name}__{op}__s{seed}", "model": name, "stem": stem,
                                  "family": spec.family, "width": float(width), "op": op,
                                  "seed": int(seed), "curve": curve})
    if not cells:
        raise EdgeconvError("no envelope cells: " + (f"no model {', '.join(missing)}" if missing
                                                     else "nothing requested"))
    return cells


def _train_config(cfg: EnvelopeConfig, cell: dict, out: Path, epochs: int):
    from edgeconv.ops import op_spec
    from edgeconv.train.config import TrainConfig

    given = {"inter_channels": RECIPE["inter_channels"], "inter_layers": RECIPE["inter_layers"]}
    op_kwargs = {k: given[k] for k in op_spec(cell["op"]).quickstart_kwargs if k in given}
    synthetic = cfg.data == "synthetic"
    return TrainConfig(model=cell["model"], op=cell["op"],
                       input_size=[cfg.input_size, cfg.input_size],
                       embedding_dim=cfg.embedding_dim, op_kwargs=op_kwargs, data=cfg.data,
                       identities=cfg.identities, images_per_identity=cfg.images_per_identity,
                       difficulty=cfg.difficulty,
                       val="synthetic" if synthetic else (cfg.pairs if cfg.pairs != "synthetic"
                                                          else "none"),
                       val_pairs=cfg.val_pairs, epochs=epochs, am_scale=RECIPE["am_scale"],
                       batch_size=cfg.batch_size, lr=RECIPE["lr"], schedule=RECIPE["schedule"],
                       warmup_epochs=min(RECIPE["warmup_epochs"], epochs / 4),
                       margin_warmup_epochs=min(RECIPE["margin_warmup_epochs"], epochs / 3),
                       generator_lr_mult=RECIPE["generator_lr_mult"], seed=cell["seed"],
                       output=str(out / "train"), device=cfg.device)


def cell_epochs(cfg: EnvelopeConfig, cell: dict, out: Path) -> tuple[int, dict]:
    """(epochs, how they were chosen): the per-cell epoch count, or what fits ``cell_minutes``
    at this machine's measured training speed (never more than ``epochs``)."""
    if cfg.cell_minutes <= 0:
        return int(cfg.epochs), {"rule": "epochs", "epochs": int(cfg.epochs)}
    from edgeconv.train.budget import EPOCH_OVERHEAD, measure_images_per_s

    tc = _train_config(cfg, cell, out, 1)
    ips = measure_images_per_s(tc, steps=3, warmup=1, max_seconds=20)
    per_epoch = cfg.identities * cfg.images_per_identity / ips * EPOCH_OVERHEAD
    fit = max(1, min(int(cfg.epochs), int(cfg.cell_minutes * 60 * 0.8 / per_epoch)))
    return fit, {"rule": f"{cfg.cell_minutes:g} min per cell", "epochs": fit,
                 "measured_images_per_s": ips, "requested_epochs": int(cfg.epochs)}


class _NoTorchrun:
    """Hide torchrun's variables from the trainer: a cell trains in one process."""

    def __enter__(self):
        self.saved = {k: os.environ.pop(k) for k in _TORCHRUN_VARS if k in os.environ}

    def __exit__(self, *exc):
        os.environ.update(self.saved)
        return False


def _bench_numbers(report: dict) -> dict:
    """max FPS (over files, backends, threads, batches) and net peak memory at the memory batch."""
    fps, mem, where = None, None, None
    for entry in report.get("models", []):
        best = entry.get("best") or {}
        if best.get("fps") and (fps is None or best["fps"] > fps):
            fps = best["fps"]
            where = {"file": Path(entry["path"]).name, **{k: best.get(k) for k in
                                                        ("backend", "threads", "batch")}}
        for r in entry.get("memory") or []:
            if r.get("status") == "ok" and r.get("net_peak_rss_mb") is not None:
                m = r["net_peak_rss_mb"]
                mem = m if mem is None else min(mem, m)
    return {"max_fps": fps, "max_fps_at": where, "net_peak_mb": mem}


def run_cell(cfg: EnvelopeConfig, cell: dict, log=None) -> dict:
    """Train, evaluate, profile, export and bench one cell; writes ``result.json`` last."""
    import torch

    from edgeconv.fileio import atomic_write_json

    log = log or (lambda *_: None)
    out = Path(cfg.output) / "cells" / cell["id"]
    out.mkdir(parents=True, exist_ok=True)
    if cfg.jobs > 1:
        torch.set_num_threads(1)
    t0 = time.perf_counter()
    res = dict(cell, recipe=cfg.recipe_key())
    with _NoTorchrun():
        from edgeconv.train.loop import train

        epochs, budget = cell_epochs(cfg, cell, out)
        res["budget"] = budget
        tc = _train_config(cfg, cell, out, epochs)
        log(f"[{cell['id']}] train {epochs} epochs")
        summary = train(tc, overwrite=True, progress=False, log=lambda *_: None)
    res["train"] = {"epochs": summary.get("epochs_done"), "seconds": time.perf_counter() - t0,
                    "images_per_s": summary.get("images_per_s")}
    ckpt = summary["last"]
    from edgeconv.train.evaluate import evaluate_checkpoint

    ev = evaluate_checkpoint(ckpt, pairs=cfg.pairs, num_pairs=cfg.test_pairs, output_dir=out,
                             name="eval", plot=False, echo=lambda *_: None)
    res["eval"] = {"accuracy": ev.get("accuracy"), "accuracy_std": ev.get("accuracy_std"),
                   "eer": ev.get("eer"), "tar_at_far": ev.get("tar_at_far")}
    from edgeconv.profiling.report import profile_model

    prof = profile_model(cell["model"], cell["op"], (cfg.input_size, cfg.input_size),
                         op_kwargs=tc.op_kwargs or None, embedding_dim=cfg.embedding_dim)
    res["macs"] = prof["macs"]
    res["params"] = prof.get("params_inference", prof.get("params_train"))
    res["export"], res["bench"] = export_and_bench(cfg, cell, ckpt, out, log)
    res["seconds"] = time.perf_counter() - t0
    atomic_write_json(out / "result.json", res)
    log(f"[{cell['id']}] done in {res['seconds']:.0f} s: accuracy "
        f"{res['eval']['accuracy']:.4f}, {res['macs'] / 1e6:.2f} M MACs")
    return res


def export_and_bench(cfg: EnvelopeConfig, cell: dict, ckpt, out: Path, log) -> tuple[dict, dict]:
    """Export the default files (a batch-pinning op/model: at the memory batch) and bench them."""
    if not cfg.formats:
        return {"skipped": "no formats"}, {}
    from edgeconv.export.exporter import export_checkpoint
    from edgeconv.models.registry import model_spec
    from edgeconv.ops import op_spec

    pins = op_spec(cell["op"]).pins_batch or model_spec(cell["model"]).pins_batch
    batch = str(cfg.memory_batch or 8) if pins and "tflite" in cfg.formats else "dynamic"
    exp_dir = out / "export"
    try:
        rep = export_checkpoint(ckpt, formats=cfg.formats, output_dir=exp_dir, batch=batch,
                                echo=lambda *_: None, force=True)
    except EdgeconvError as exc:  # the one-line refusal (an op that cannot export exactly)
        log(f"[{cell['id']}] export refused: {exc}")
        return {"refused": str(exc)}, {}
    files = sorted(str(p) for p in exp_dir.iterdir() if p.suffix in (".onnx", ".tflite"))
    export = {"batch": batch, "files": [Path(f).name for f in files],
              "parity": {k: {"max_abs_diff": v["max_abs_diff"], "min_cosine": v["min_cosine"]}
                         for k, v in rep["parity"].items()}}
    from edgeconv.profiling.bench import BenchSettings, run_bench

    batches = [int(batch)] if batch != "dynamic" else list(cfg.bench_batches)
    settings = BenchSettings(threads=list(cfg.bench_threads), batches=batches,
                             min_secs=cfg.bench_min_secs, warmup_secs=0.2, min_runs=5,
                             memory_batch=cfg.memory_batch, memory_runs=3,
                             measure_spinning=False)
    report = run_bench(files, settings, progress=False, log=lambda *_: None)
    from edgeconv.fileio import atomic_write_json

    atomic_write_json(out / "bench.json", report)
    return export, _bench_numbers(report)


def _world() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _load_result(cfg: EnvelopeConfig, cell: dict) -> dict | None:
    path = Path(cfg.output) / "cells" / cell["id"] / "result.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None


def _worker(cfg_dict: dict, cell: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    cfg = EnvelopeConfig(**cfg_dict)
    return run_cell(cfg, cell, log=lambda m: print(m, flush=True))


def run_envelope(cfg: EnvelopeConfig, echo=print, after_cell=None,
                 wait_s: float = 6 * 3600) -> dict:
    """Run (or resume) the envelope; returns the report dict. ``after_cell(result)`` is called
    in this process after each cell finishes (tests use it to simulate a kill)."""
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.rebench:
        return rebench(cfg, echo)
    cells = plan_cells(cfg)
    rank, world = _world()
    mine = [c for i, c in enumerate(cells) if i % world == rank]
    todo = [c for c in mine if _load_result(cfg, c) is None]
    echo(f"[envelope] {len(cells)} cells, {len(cells) - len([c for c in cells if _load_result(cfg, c) is None])} "
         f"already finished; this process runs {len(todo)}"
         + (f" (rank {rank} of {world})" if world > 1 else "")
         + (f", {cfg.jobs} at a time" if cfg.jobs > 1 else ""))
    if cfg.jobs > 1 and len(todo) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(cfg.jobs, mp_context=mp.get_context("spawn")) as pool:
            futs = [pool.submit(_worker, cfg.to_dict(), c) for c in todo]
            for f in as_completed(futs):
                res = f.result()
                echo(f"[envelope] finished {res['id']}")
                if after_cell:
                    after_cell(res)
    else:
        for c in todo:
            res = run_cell(cfg, c, log=echo)
            if after_cell:
                after_cell(res)
    if rank != 0:
        return {}
    deadline = time.time() + wait_s
    while any(_load_result(cfg, c) is None for c in cells):  # other ranks' cells
        if time.time() > deadline:
            raise EdgeconvError("timed out waiting for the other ranks' envelope cells")
        time.sleep(5)
    results = [_load_result(cfg, c) for c in cells]
    ids = {c["id"] for c in cells}
    results += [res for path, res in finished_cells(cfg)  # earlier runs' cells, same recipe
                if path.parent.name not in ids]
    return write_report(cfg, results, echo)


def finished_cells(cfg: EnvelopeConfig) -> list[tuple[Path, dict]]:
    """(result.json path, result) of every finished cell of the output folder with this
    recipe, in folder order (unreadable results skipped)."""
    found = []
    for path in sorted((Path(cfg.output) / "cells").glob("*/result.json")):
        try:
            res = json.loads(path.read_text())
        except ValueError:
            continue
        if isinstance(res, dict) and res.get("recipe") == cfg.recipe_key():
            found.append((path, res))
    return found


def rebench(cfg: EnvelopeConfig, echo=print) -> dict:
    """Export and bench every finished cell of the output folder that has this recipe again,
    one cell at a time with nothing training beside it, keeping its training and evaluation;
    then write the report. For FPS and memory figures measured under one kernel and exporter
    on a quiet machine: after a kernel change, or when the first benches ran beside training
    (``--jobs`` > 1). Each cell's ``result.json`` is rewritten (atomically) as it finishes, so a
    killed rebench loses at most one cell's bench; ``bench_run`` records when and with which
    kernel library each bench ran."""
    from edgeconv.fileio import atomic_write_json

    out = Path(cfg.output)
    found = finished_cells(cfg)
    if not found:
        raise EdgeconvError(f"nothing to rebench: no finished cell with this recipe in {out}")
    if not cfg.formats:
        raise EdgeconvError("--rebench needs --formats (the files to export and bench)")
    echo(f"[envelope] rebench {len(found)} finished cells, one at a time")
    results = []
    for i, (path, res) in enumerate(found, 1):
        ckpt = path.parent / "train" / "last.ckpt"
        if not ckpt.is_file():
            echo(f"[envelope] {res.get('id')}: no checkpoint ({ckpt}); its bench is kept")
            results.append(res)
            continue
        t0 = time.perf_counter()
        res["export"], res["bench"] = export_and_bench(cfg, res, ckpt, path.parent, echo)
        res["bench_run"] = {"at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                            "kernels": _kernels_version()}
        atomic_write_json(path, res)
        echo(f"[envelope] {i}/{len(found)} {res.get('id')}: max FPS "
             f"{(res['bench'] or {}).get('max_fps') or 0:.0f} "
             f"({time.perf_counter() - t0:.0f} s)")
        results.append(res)
    return write_report(cfg, results, echo)


def _kernels_version() -> str | None:
    from edgeconv import kernels

    try:
        return kernels.lib_version()
    except kernels.KernelsMissing:
        return None


# ----------------------------------------------------------------------------- report
def _agg(values):
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return mean, std


def aggregate(results: list[dict]) -> list[dict]:
    """One row per (curve, width): means and std over seeds."""
    groups: dict = {}
    for r in results:
        groups.setdefault((r["curve"], r["width"]), []).append(r)
    rows = []
    for (curve, width), rs in sorted(groups.items()):
        row = {"curve": curve, "op": rs[0]["op"], "model": rs[0]["model"], "width": width,
               "seeds": len(rs), "epochs": sorted({r["train"]["epochs"] for r in rs}),
               "macs": rs[0]["macs"], "params": rs[0].get("params")}
        for key, get in (("accuracy", lambda r: r["eval"]["accuracy"]),
                         ("eer", lambda r: r["eval"]["eer"]),
                         ("tar_1e-3", lambda r: tar_at(r["eval"].get("tar_at_far"), 1e-3)),
                         ("max_fps", lambda r: (r.get("bench") or {}).get("max_fps")),
                         ("net_peak_mb", lambda r: (r.get("bench") or {}).get("net_peak_mb")),
                         ("train_s", lambda r: r["train"]["seconds"])):
            row[key], row[key + "_std"] = _agg([get(r) for r in rs])
        refused = [r["export"]["refused"] for r in rs if isinstance(r.get("export"), dict)
                   and "refused" in r["export"]]
        if refused:
            row["export_refused"] = refused[0]
        rows.append(row)
    return rows


def tar_at(tars, far: float):
    """TAR at ``far`` from an evaluation's ``tar_at_far`` (a list of {far_target, tar} or a
    {far: tar} dict); None when not measured."""
    if isinstance(tars, dict):
        return next((v for k, v in tars.items() if abs(float(k) - far) < far * 1e-6), None)
    for t in tars or []:
        if abs(float(t.get("far_target", -1)) - far) < far * 1e-6:
            return t.get("tar")
    return None


def _fmt(v, spec, scale=1.0):
    return "-" if v is None else format(v * scale, spec)


def table(rows: list[dict]) -> str:
    lines = ["| curve | width | seeds | epochs | MMACs | accuracy (%) | EER (%) | TAR@FAR1e-3 (%) "
             "| max FPS | net peak MB (b8) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        acc = _fmt(r["accuracy"], ".2f", 100) + (f" ± {r['accuracy_std'] * 100:.2f}"
                                                 if r["seeds"] > 1 else "")
        lines.append(f"| {r['curve']} | {r['width']:g} | {r['seeds']} | "
                     f"{','.join(map(str, r['epochs']))} | {r['macs'] / 1e6:.2f} | {acc} | "
                     f"{_fmt(r['eer'], '.2f', 100)} | {_fmt(r['tar_1e-3'], '.1f', 100)} | "
                     f"{_fmt(r['max_fps'], '.0f')} | {_fmt(r['net_peak_mb'], '.1f')} |")
    return "\n".join(lines)


PLOTS = (("fig5_accuracy_vs_macs_widths.png", "macs", "MMACs", True),
         ("fig7_accuracy_vs_macs.png", "macs", "MMACs", False),
         ("fig8_accuracy_vs_fps.png", "max_fps", "max FPS (this machine)", False),
         ("fig9_accuracy_vs_memory.png", "net_peak_mb", "net peak memory at batch 8 (MB)", False))


def plot(rows: list[dict], out: Path, title: str = "") -> list[Path]:
    """The four figures: accuracy vs MACs (widths; all ops), vs max FPS, vs peak memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict = {}
    for r in rows:
        curves.setdefault(r["curve"], []).append(r)
    from edgeconv.ops import op_spec

    # Fig. 5: the baseline and the exactly-foldable op (TVConv) over widths
    fig5 = [c for c, rs in curves.items() if "/" in c and (op_spec(rs[0]["op"]).baseline
                                                          or op_spec(rs[0]["op"]).foldable)] \
        or list(curves)
    colours = {c: f"C{i % 10}" for i, c in enumerate(sorted(curves))}  # same colour per op in all
    paths = []
    for fname, key, xlabel, widths_only in PLOTS:
        fig, ax = plt.subplots(figsize=(6.4, 4.6))
        for curve, rs in curves.items():
            if widths_only and curve not in fig5:
                continue
            pts = sorted((r[key] / (1e6 if key == "macs" else 1), r["accuracy"] * 100,
                          (r["accuracy_std"] or 0) * 100, r["width"]) for r in rs
                         if r.get(key) is not None and r.get("accuracy") is not None)
            if not pts:
                continue
            xs, ys, es, ws = zip(*pts)
            ax.errorbar(xs, ys, yerr=es if any(es) else None, marker="o", capsize=3,
                        label=curve, color=colours[curve])
            for x, y, w in zip(xs, ys, ws):
                ax.annotate(f"x{w:g}", (x, y), textcoords="offset points", xytext=(4, -10),
                            fontsize=7)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("verification accuracy (%)")
        if key == "macs":
            from matplotlib.ticker import FormatStrFormatter

            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(FormatStrFormatter("%g"))
        ax.grid(alpha=0.3)
        what = {"macs": "MACs", "max_fps": "max FPS", "net_peak_mb": "peak memory"}[key]
        ax.set_title((title + ": " if title else "") + f"accuracy vs {what}"
                     + (" over widths (baseline vs TVConv)" if widths_only else ", one curve per op"),
                     fontsize=9)
        if ax.get_legend_handles_labels()[0]:  # no curve has this figure's measure: no legend
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / fname
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def write_report(cfg: EnvelopeConfig, results: list[dict], echo=print) -> dict:
    from edgeconv.fileio import atomic_write_json

    out = Path(cfg.output)
    rows = aggregate(results)
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    report = {"settings": cfg.to_dict(), "recipe": RECIPE, "rows": rows, "cells": results,
              "load_average": load, "cpu_count": os.cpu_count(),
              "note": ("cells ran in parallel; their bench numbers share the machine"
                       if cfg.jobs > 1 else "")}
    atomic_write_json(out / "envelope.json", report)
    md = ["# Envelope", "", f"Data: {cfg.data} (pairs: {cfg.pairs}), input {cfg.input_size}x"
          f"{cfg.input_size}; per cell: "
          + (f"epochs fitted to {cfg.cell_minutes:g} min (at most {cfg.epochs})"
             if cfg.cell_minutes > 0 else f"{cfg.epochs} epochs")
          + f"; bench: {cfg.formats or 'none'}, threads {list(cfg.bench_threads)}, batches "
          f"{list(cfg.bench_batches)}, memory at batch {cfg.memory_batch}.", "", table(rows), ""]
    refused = [r for r in rows if r.get("export_refused")]
    md += [f"- {r['curve']} x{r['width']:g}: export refused: {r['export_refused']}" for r in refused]
    (out / "envelope.md").write_text("\n".join(md) + "\n")
    try:
        paths = plot(rows, out)
    except ImportError as exc:
        echo(f"edgeconv: note: no plots ({exc})")
        paths = []
    report["plots"] = [str(p) for p in paths]
    echo(table(rows))
    echo(f"[envelope] wrote {out / 'envelope.json'}, {out / 'envelope.md'}"
         + "".join(f", {p.name}" for p in paths))
    return report
