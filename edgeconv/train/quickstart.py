"""``edgeconv quickstart``: train TVConv and its depthwise twin on the built-in data, evaluate,
export (ONNX + TFLite, TVConv folded) and benchmark both, and compare.

A few minutes on 2 CPU cores (default: MobileNetV2 x0.1 at 32x32, 50 synthetic identities x
24 images, 10 epochs each). The work is a list of steps run in order over one
:class:`QuickstartContext`; later steps (export, benchmark) are appended to :data:`STEPS` or
passed to :func:`run_quickstart`::

    def step_export(ctx): ...                 # reads ctx.runs[op]["checkpoint"], adds results
    run_quickstart(opts, steps=STEPS + [("export", step_export)])

Run folder (``-o``, default ``runs/quickstart``)::

    tvconv/ depthwise/     training runs (config.json, history.json, last.ckpt, best.ckpt)
    eval_*.json            verification reports (synthetic test split)
    export/<op>/           ONNX + TFLite files with metadata (threshold included)
    bench.json             the throughput sweep of the exported files
    roc.png                both ROC curves
    summary.md / .json     the side-by-side table
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

OPS = ("tvconv", "depthwise")


@dataclass
class QuickstartOptions:
    output: str = "runs/quickstart"
    model: str = "mbv2_x0_1"
    input_size: int = 32
    identities: int = 50
    images_per_identity: int = 24
    difficulty: float = 0.5
    epochs: int = 10
    batch_size: int = 64
    val_pairs: int = 400
    test_pairs: int = 2000
    inter_channels: int = 16
    inter_layers: int = 1
    seed: int = 0
    progress: bool = True
    flip_test: bool = False
    export_formats: str = "onnx,tflite"          # "" skips export and benchmark
    bench_threads: tuple = (1, 2)
    bench_batches: tuple = (1, 8)
    bench_min_secs: float = 0.5


@dataclass
class QuickstartContext:
    opts: QuickstartOptions
    echo: object
    out: Path = None
    runs: dict = field(default_factory=dict)     # op -> {"checkpoint", "summary", ...}
    evals: dict = field(default_factory=dict)    # op -> verification result
    profile: dict = field(default_factory=dict)  # op -> {"macs", "params"}
    timings: dict = field(default_factory=dict)  # step -> seconds
    extra: dict = field(default_factory=dict)    # for later steps (export, bench)


def train_config(opts: QuickstartOptions, op: str, out: Path):
    from edgeconv.train.config import TrainConfig

    return TrainConfig(model=opts.model, op=op, input_size=[opts.input_size, opts.input_size],
                       op_kwargs=({"inter_channels": opts.inter_channels,
                                   "inter_layers": opts.inter_layers} if op == "tvconv" else {}),
                       identities=opts.identities, images_per_identity=opts.images_per_identity,
                       difficulty=opts.difficulty, val_pairs=opts.val_pairs, epochs=opts.epochs,
                       batch_size=opts.batch_size, seed=opts.seed, output=str(out / op))


def step_train(ctx: QuickstartContext) -> None:
    from edgeconv.train.loop import train

    for op in OPS:
        ctx.echo(f"[train] {ctx.opts.model} with {op}")
        summary = train(train_config(ctx.opts, op, ctx.out), overwrite=True,
                        progress=ctx.opts.progress, log=ctx.echo)
        ctx.runs[op] = {"checkpoint": summary["last"], "summary": summary}


def step_evaluate(ctx: QuickstartContext) -> None:
    from edgeconv.train.evaluate import evaluate_checkpoint

    for op in OPS:
        ctx.evals[op] = evaluate_checkpoint(
            ctx.runs[op]["checkpoint"], pairs="synthetic", num_pairs=ctx.opts.test_pairs,
            flip=ctx.opts.flip_test, output_dir=ctx.out, name=f"eval_{op}", plot=False,
            echo=ctx.echo)
    from edgeconv.train.verification import roc_plot

    roc_plot(ctx.out / "roc.png", {op: ctx.evals[op] for op in OPS},
             title=f"{ctx.opts.model}, synthetic test pairs")


def step_profile(ctx: QuickstartContext) -> None:
    from edgeconv.profiling.report import profile_model

    for op in OPS:
        rec = profile_model(ctx.opts.model, op, (ctx.opts.input_size, ctx.opts.input_size))
        ctx.profile[op] = {"macs": rec["macs"], "params": rec["params"],
                           "params_inference": rec.get("params_inference", rec["params"])}


def step_export(ctx: QuickstartContext) -> None:
    """Fold and export both trained checkpoints (parity-gated; threshold in the metadata)."""
    if not ctx.opts.export_formats:
        return
    from edgeconv.export.exporter import export_checkpoint

    ctx.extra["exports"] = {}
    for op in OPS:
        ctx.echo(f"[export] {op} -> {ctx.opts.export_formats}")
        out_dir = ctx.out / "export" / op
        export_checkpoint(ctx.runs[op]["checkpoint"], formats=ctx.opts.export_formats,
                          output_dir=out_dir, echo=ctx.echo)
        ctx.extra["exports"][op] = sorted(str(p) for p in out_dir.iterdir()
                                          if p.suffix in (".onnx", ".tflite"))


def step_bench(ctx: QuickstartContext) -> None:
    """A short batch x threads sweep of the exported files (the device-side harness)."""
    exports = ctx.extra.get("exports")
    if not exports:
        return
    from edgeconv.fileio import atomic_write_json
    from edgeconv.profiling.bench import BenchSettings, run_bench

    files = [f for op in OPS for f in exports[op]]
    settings = BenchSettings(threads=list(ctx.opts.bench_threads),
                             batches=list(ctx.opts.bench_batches),
                             min_secs=ctx.opts.bench_min_secs, warmup_secs=0.2, memory_batch=0,
                             measure_spinning=False)
    ctx.echo(f"[bench] {len(files)} files, threads {settings.threads} x batch {settings.batches}")
    report = run_bench(files, settings, progress=ctx.opts.progress, log=ctx.echo)
    atomic_write_json(ctx.out / "bench.json", report)
    fps = {}
    for entry in report["models"]:
        best = entry.get("best") or {}
        op = next(o for o in OPS if entry["path"] in exports[o])
        fps.setdefault(op, {})[Path(entry["path"]).suffix.lstrip(".")] = best.get("fps")
    ctx.extra["fps"] = fps


def table(ctx: QuickstartContext) -> str:
    rows = ["| op | accuracy (%) | TAR@FAR=1e-3 (%) | TAR@FAR=1e-4 (%) | EER (%) | "
            "train images/s | MACs (M) | params (M) | max FPS ONNX | max FPS TFLite |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    fps = ctx.extra.get("fps", {})

    def fmt_fps(op, fmt):
        v = fps.get(op, {}).get(fmt)
        return "-" if v is None else f"{v:.0f}"

    for op in OPS:
        e = ctx.evals[op]
        tars = {t["far_target"]: t for t in e["tar_at_far"]}

        def tar(f):
            t = tars.get(f)
            return "-" if t is None else f"{100 * t['tar']:.1f}" + ("" if t["resolvable"] else "*")

        ips = ctx.runs[op]["summary"]["images_per_s"]
        p = ctx.profile.get(op, {})
        rows.append(f"| {op} | {100 * e['accuracy']:.2f} +- {100 * e['accuracy_std']:.2f} | "
                    f"{tar(1e-3)} | {tar(1e-4)} | {100 * e['eer']:.2f} | {ips:.0f} | "
                    f"{p.get('macs', float('nan')) / 1e6:.2f} | "
                    f"{p.get('params_inference', float('nan')) / 1e6:.3f} | "
                    f"{fmt_fps(op, 'onnx')} | {fmt_fps(op, 'tflite')} |")
    return "\n".join(rows)


def step_report(ctx: QuickstartContext) -> None:
    import json

    from edgeconv.fileio import atomic_write_json, atomic_write_text

    o = ctx.opts
    any_unresolved = any(not t["resolvable"] for e in ctx.evals.values() for t in e["tar_at_far"])
    text = [f"# edgeconv quickstart: {o.model}, TVConv vs depthwise",
            "",
            f"Synthetic faces {o.identities} identities x {o.images_per_identity} images at "
            f"{o.input_size}x{o.input_size}, difficulty {o.difficulty}; {o.epochs} epochs, batch "
            f"{o.batch_size}; evaluated on {o.test_pairs} synthetic test pairs (unseen identities), "
            f"10-fold protocol (accuracy mean +- std over folds). MACs and params: inference form "
            f"(TVConv folded: params include its cached per-pixel maps). Max FPS: the exported "
            f"files in ONNX Runtime / LiteRT, best of threads {list(o.bench_threads)} x batch "
            f"{list(o.bench_batches)} on this machine (bench.json has the sweep).",
            "", table(ctx), ""]
    if any_unresolved:
        text.append("`*` FAR below 1/(impostor pairs): TAR reported at FAR 0 (pessimistic).")
    text.append("")
    atomic_write_text(ctx.out / "summary.md", "\n".join(text))
    summary = {"options": asdict(o), "timings_s": ctx.timings,
               "results": {op: {"accuracy": ctx.evals[op]["accuracy"],
                                "accuracy_std": ctx.evals[op]["accuracy_std"],
                                "eer": ctx.evals[op]["eer"],
                                "far_thresholds": ctx.evals[op]["far_thresholds"],
                                "tar_at_far": {str(t["far_target"]): t["tar"]
                                               for t in ctx.evals[op]["tar_at_far"]},
                                "train_images_per_s": ctx.runs[op]["summary"]["images_per_s"],
                                "checkpoint": ctx.runs[op]["checkpoint"],
                                **ctx.profile.get(op, {})} for op in OPS}}
    json.dumps(summary)  # fail here, not half-way through the write, if not serialisable
    atomic_write_json(ctx.out / "summary.json", summary)
    ctx.echo("")
    ctx.echo(table(ctx))
    if any_unresolved:
        ctx.echo("* FAR below 1/(impostor pairs): TAR at FAR 0 (pessimistic)")


STEPS = [("train", step_train), ("evaluate", step_evaluate), ("profile", step_profile),
         ("export", step_export), ("bench", step_bench), ("report", step_report)]


def run_quickstart(opts: QuickstartOptions | None = None, steps=None, echo=None) -> QuickstartContext:
    opts = opts or QuickstartOptions()
    echo = echo or (lambda msg: print(msg, flush=True))
    ctx = QuickstartContext(opts=opts, echo=echo, out=Path(opts.output))
    ctx.out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    for name, fn in (steps or STEPS):
        t0 = time.perf_counter()
        fn(ctx)
        ctx.timings[name] = round(time.perf_counter() - t0, 2)
    ctx.timings["total"] = round(time.perf_counter() - t_all, 2)
    # the summary JSON was written inside `report`; refresh it with the final timings
    summary_path = ctx.out / "summary.json"
    if summary_path.exists():
        import json

        from edgeconv.fileio import atomic_write_json

        data = json.loads(summary_path.read_text())
        data["timings_s"] = ctx.timings
        atomic_write_json(summary_path, data)
    echo(f"\nquickstart done in {ctx.timings['total'] / 60:.1f} min -> {ctx.out}/summary.md")
    return ctx
