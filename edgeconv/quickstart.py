"""``edgeconv quickstart``: train TVConv and its depthwise twin on the built-in data, evaluate,
calibrate, export (ONNX + TFLite, TVConv folded), benchmark and try the files as unlock
verifiers, and compare.

About 14.5 minutes on 2 CPU cores with the defaults (the quickstart recipe: MobileNetV2 x0.1
at 32x32, 1000 synthetic identities x 20 images, cosine lr with warm-ups, AM-Softmax scale 16,
18 epochs depthwise and 24 TVConv; the runs behind it are in docs/quickstart_recipe.md). The work is a list of steps run in order over one
:class:`QuickstartContext`; later steps are appended to :data:`STEPS` or passed to
:func:`run_quickstart`::

    def step_extra(ctx): ...                  # reads ctx.runs[op]["checkpoint"], adds results
    run_quickstart(opts, steps=STEPS + [("extra", step_extra)])

Run folder (``-o``, default ``runs/quickstart``)::

    tvconv/ depthwise/     training runs (config.json, history.json, last.ckpt, best.ckpt)
    eval_*.json            verification reports: test pairs, calibration split, open-set split
    export/<op>/           ONNX + TFLite files with metadata (calibrated thresholds included)
    bench.json             the throughput and memory sweep of the exported files
    bench.png              max FPS vs batch per backend (both models overlaid) + peak memory
    bench_accuracy.png     accuracy vs best throughput of each exported file
    roc.png                both ROC curves (test pairs)
    summary.md / .json     the side-by-side tables, unlock trial included
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgeconv.errors import EdgeconvError

#: the op under study (gets its own epoch budget, --tvconv-epochs) and its baseline
OPS = ("tvconv", "depthwise")
SUBJECT_OP, BASELINE_OP = OPS


@dataclass
class QuickstartOptions:
    """The quickstart recipe (docs/quickstart_recipe.md has the runs that led to it)."""
    output: str = "runs/quickstart"
    model: str = "mbv2_x0_1"
    input_size: int = 32
    identities: int = 1000
    images_per_identity: int = 20
    difficulty: float = 0.5
    epochs: int = 18
    tvconv_epochs: int | None = None             # None: epochs + TVCONV_EXTRA_EPOCHS
    batch_size: int = 128
    lr: float = 0.2
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    margin_warmup_epochs: float = 6.0
    am_scale: float = 16.0                       # AM-Softmax scale s (paper recipe: 32)
    generator_lr_mult: float = 0.1               # TVConv's affinity maps + generators: lr x 0.1
    embedding_dim: int = 512
    val_pairs: int = 600
    test_pairs: int = 2000
    inter_channels: int = 16
    inter_layers: int = 1
    seed: int = 0
    budget_min: float = 15.0                     # wall-clock budget of the whole run (0: none)
    progress: bool = True
    flip_test: bool = False
    export_formats: str = "onnx,tflite"          # "" skips export, benchmark and unlock trial
    bench_threads: tuple = (1, 2)
    bench_batches: tuple = (1, 8)
    bench_min_secs: float = 0.5
    bench_memory_batch: int = 1                  # peak memory of each file at this batch (0: off)
    trial_users: int = 40                        # unlock trial: enrolled users ...
    trial_enrol_images: int = 5                  # ... with this many enrolment images
    trial_attempts: int = 5                      # ... and this many genuine attempts each
    trial_impostors: int = 200                   # images of never-enrolled people ...
    trial_claims: int = 10                       # ... each claiming this many users (1:1)


@dataclass
class QuickstartContext:
    opts: QuickstartOptions
    echo: object
    out: Path = None
    runs: dict = field(default_factory=dict)     # op -> {"checkpoint", "summary", ...}
    evals: dict = field(default_factory=dict)    # op -> verification result
    profile: dict = field(default_factory=dict)  # op -> {"macs", "params_train", ...}
    timings: dict = field(default_factory=dict)  # step -> seconds
    extra: dict = field(default_factory=dict)    # for later steps (export, bench)
    t0: float = field(default_factory=time.perf_counter)  # when the run started (budget)


#: TVConv fits more slowly than depthwise at this budget (docs/quickstart_recipe.md: its final
#: train accuracy and TAR@1e-3 keep rising over 18 -> 24 epochs); it gets this many more.
TVCONV_EXTRA_EPOCHS = 6


def op_epochs(opts: QuickstartOptions, op: str) -> int:
    """Training epochs of ``op``: TVConv's own budget, by default ``epochs + 6``."""
    if op != SUBJECT_OP:
        return int(opts.epochs)
    return int(opts.tvconv_epochs) if opts.tvconv_epochs else int(opts.epochs) + \
        TVCONV_EXTRA_EPOCHS


def generator_kwargs(opts: QuickstartOptions, op: str) -> dict:
    """The quickstart's weight-generator settings, for an op that has those kwargs."""
    from edgeconv.ops import op_spec

    given = {"inter_channels": opts.inter_channels, "inter_layers": opts.inter_layers}
    return {k: given[k] for k in op_spec(op).quickstart_kwargs if k in given}


def train_config(opts: QuickstartOptions, op: str, out: Path, epochs: int | None = None,
                 images_per_identity: int | None = None):
    from edgeconv.train.config import TrainConfig

    return TrainConfig(model=opts.model, op=op, input_size=[opts.input_size, opts.input_size],
                       embedding_dim=opts.embedding_dim,
                       op_kwargs=generator_kwargs(opts, op),
                       identities=opts.identities,
                       images_per_identity=images_per_identity or opts.images_per_identity,
                       difficulty=opts.difficulty, val_pairs=opts.val_pairs,
                       epochs=epochs or op_epochs(opts, op), am_scale=opts.am_scale,
                       batch_size=opts.batch_size, lr=opts.lr, schedule=opts.schedule,
                       warmup_epochs=opts.warmup_epochs,
                       margin_warmup_epochs=opts.margin_warmup_epochs,
                       generator_lr_mult=opts.generator_lr_mult, seed=opts.seed,
                       output=str(out / op))


def _plan(ctx: QuickstartContext, ops, speeds: dict):
    """The epochs of ``ops`` that fit what is left of the budget at ``speeds``."""
    from edgeconv.train import budget as B

    o = ctx.opts
    left = o.budget_min * 60.0 - (time.perf_counter() - ctx.t0)
    overhead = B.overhead_estimate(ctx.extra["machine_images_per_s"])
    return B.plan_epochs({op: op_epochs(o, op) for op in ops},
                         o.identities * o.images_per_identity, {op: speeds[op] for op in ops},
                         left, overhead, identities=o.identities,
                         images_per_identity=o.images_per_identity)


def step_plan(ctx: QuickstartContext) -> None:
    """Measure the training speed of each op here and size the epochs to the budget."""
    o = ctx.opts
    if not o.budget_min:
        return
    from edgeconv.train.budget import measure_images_per_s

    speeds = {op: measure_images_per_s(train_config(o, op, ctx.out)) for op in OPS}
    # how fast this machine is: the baseline at the recipe's own settings (the reference the
    # non-training steps' time is scaled by), whatever the options of this run
    ref = QuickstartOptions()
    if (o.model, o.input_size, o.batch_size) == (ref.model, ref.input_size, ref.batch_size):
        ctx.extra["machine_images_per_s"] = speeds[BASELINE_OP]
    else:
        ctx.extra["machine_images_per_s"] = measure_images_per_s(
            train_config(ref, BASELINE_OP, ctx.out))
    plan = _plan(ctx, OPS, speeds)
    ctx.extra["budget"] = {"budget_min": o.budget_min, "first_plan": plan.to_dict(),
                           "speeds_probe": speeds,
                           "machine_images_per_s": ctx.extra["machine_images_per_s"]}
    ctx.extra["plan"] = plan
    verb = "cut to fit" if plan.cut else "fit"
    ctx.echo(f"[plan] {o.budget_min:g}-minute budget: {plan.describe()}: the full recipe "
             f"{verb}" + "".join(f"\nedgeconv: note: {n}" for n in plan.notes))


def step_train(ctx: QuickstartContext) -> None:
    from edgeconv.train.loop import train

    for k, op in enumerate(OPS):
        plan = ctx.extra.get("plan")
        epochs = ipi = None
        if plan is not None:
            if k:  # re-plan the rest with the speed the finished runs really had
                speeds = dict(plan.images_per_s)
                speeds.update({o: ctx.runs[o]["summary"]["images_per_s"] for o in ctx.runs})
                plan = _plan(ctx, OPS[k:], speeds)
                plan.images_per_identity = ctx.extra["plan"].images_per_identity
                ctx.extra["plan"].epochs.update(plan.epochs)
            epochs = plan.epochs[op]
            ipi = ctx.extra["plan"].images_per_identity
        ctx.echo(f"[train] {ctx.opts.model} with {op}"
                 + (f", {epochs} epochs" if epochs else ""))
        summary = train(train_config(ctx.opts, op, ctx.out, epochs, ipi), overwrite=True,
                        progress=ctx.opts.progress, log=ctx.echo)
        ctx.runs[op] = {"checkpoint": summary["last"], "summary": summary,
                        "epochs": summary.get("epochs_done")}


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
        cfg = train_config(ctx.opts, op, ctx.out)  # the run's own generator settings
        rec = profile_model(ctx.opts.model, op, (ctx.opts.input_size, ctx.opts.input_size),
                            op_kwargs=cfg.op_kwargs, embedding_dim=cfg.embedding_dim)
        ctx.profile[op] = {k: rec[k] for k in ("macs", "params_train", "params_inference")}


def export_plan(op: str, formats: str) -> list[tuple[list[str], str | None]]:
    """[(formats, formulation)] of one op's export: each format in its fast form where
    edgeconv runs it here. A format whose default is not the fused form (TFLite: a stock
    LiteRT runs composite bodies slowly) is exported fused where its kernel (the LiteRT
    delegate) is built; the bench then also times that file's portable body, as a stock
    runtime runs it."""
    from edgeconv.export.formats import EXPORT_FORMATS, parse_formats
    from edgeconv.export.formulations import FUSED
    from edgeconv.export.pipeline import fused_module
    from edgeconv.ops import op_spec

    names = parse_formats(formats)
    fused = [f for f in names if FUSED in op_spec(op).export_forms
             and EXPORT_FORMATS[f].fused_module
             and EXPORT_FORMATS[f].default_formulation != FUSED
             and fused_module(f).kernel_available()]
    plain = [f for f in names if f not in fused]
    return [(g, form) for g, form in ((plain, None), (fused, FUSED)) if g]


def step_export(ctx: QuickstartContext) -> None:
    """Fold and export both trained checkpoints (parity-gated; threshold in the metadata)."""
    if not ctx.opts.export_formats:
        return
    from edgeconv.export.exporter import export_checkpoint

    ctx.extra["exports"] = {}
    for op in OPS:
        out_dir = ctx.out / "export" / op
        for group, form in export_plan(op, ctx.opts.export_formats):
            ctx.echo(f"[export] {op} -> {','.join(group)}"
                     + (f" (--formulation {form}: edgeconv's kernel is built here)"
                        if form else ""))
            export_checkpoint(ctx.runs[op]["checkpoint"], formats=",".join(group),
                              output_dir=out_dir, formulation=form, echo=ctx.echo)
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
                             min_secs=ctx.opts.bench_min_secs, warmup_secs=0.2,
                             memory_batch=ctx.opts.bench_memory_batch, memory_runs=3,
                             measure_spinning=False)
    ctx.echo(f"[bench] {len(files)} files, threads {settings.threads} x batch {settings.batches}")
    report = run_bench(files, settings, progress=ctx.opts.progress, log=ctx.echo)
    atomic_write_json(ctx.out / "bench.json", report)
    try:  # bench.png (max FPS vs batch per backend, both models overlaid; peak memory) and
        from edgeconv.profiling.bench_plot import write_plots  # bench_accuracy.png

        for p in write_plots(report, ctx.out / "bench.png"):
            ctx.echo(f"wrote {p}")
    except EdgeconvError as exc:   # matplotlib missing: the tables still say it all
        ctx.echo(f"edgeconv: note: no bench plot ({exc})")
    fps, files_info = {}, {}
    for entry in report["models"]:
        best = entry.get("best") or {}
        op = next(o for o in OPS if entry["path"] in exports[o])
        fps.setdefault(op, {})[Path(entry["path"]).suffix.lstrip(".")] = best.get("fps")
        mem = next((r for r in sorted(entry.get("memory") or [], key=lambda r: r["threads"])
                    if r.get("status") == "ok"), {})
        files_info[entry["path"]] = {"fps": best.get("fps"),
                                     "execution": entry.get("execution"),
                                     "best": {k: best.get(k) for k in ("backend", "threads",
                                                                       "batch")},
                                     "peak_rss_mb": mem.get("peak_rss_mb"),
                                     "net_peak_rss_mb": mem.get("net_peak_rss_mb"),
                                     "memory_threads": mem.get("threads")}
    ctx.extra["fps"] = fps
    ctx.extra["files"] = files_info
    kernel_files = [p for p, f in files_info.items() if f.get("execution") == "kernel"]
    if kernel_files:
        _bench_portable(ctx, kernel_files, settings)


#: what turns edgeconv's kernels off for a run: the portable body of the same file runs
PORTABLE_ENV = {"EDGECONV_KERNELS_LIB": "/nonexistent/edgeconv-kernels-off",
                "EDGECONV_LITERT_SELFTEST": "0"}


def _bench_portable(ctx: QuickstartContext, paths, settings) -> None:
    """The files edgeconv's kernel ran, once more without it (their standard-op body, what a
    stock runtime runs): for reference next to the fast path."""
    import dataclasses
    import os

    from edgeconv.fileio import atomic_write_json
    from edgeconv.profiling.bench import run_bench

    s = dataclasses.replace(settings, memory_batch=0)
    ctx.echo(f"[bench] {len(paths)} file(s) again without the edgeconv kernel (portable body)")
    saved = {k: os.environ.get(k) for k in PORTABLE_ENV}
    os.environ.update(PORTABLE_ENV)
    try:
        report = run_bench(list(paths), s, progress=ctx.opts.progress, log=lambda *_: None)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    atomic_write_json(ctx.out / "bench_portable.json", report)
    for entry in report["models"]:
        best = entry.get("best") or {}
        f = ctx.extra["files"].get(entry["path"])
        if f is not None:
            f["portable_fps"] = best.get("fps")
            f["portable_execution"] = entry.get("execution")


def trial_images(opts: QuickstartOptions, seed_offset: int = 0):
    """Enrolment, genuine and impostor images of fresh synthetic identities (never used in
    training, validation, test, calibration or the open-set split)."""
    import numpy as np

    from edgeconv.data.synthetic import VALIDATION_IDENTITY_OFFSET
    from edgeconv.train.calibration import synthetic_identity_images
    from edgeconv.train.evaluate import UNLOCK_IDENTITY_SHIFT

    base = VALIDATION_IDENTITY_OFFSET + UNLOCK_IDENTITY_SHIFT + seed_offset
    size = (opts.input_size, opts.input_size)
    per = opts.trial_enrol_images + opts.trial_attempts
    imgs, ids = synthetic_identity_images(size, opts.trial_users, per, base,
                                          difficulty=opts.difficulty, data_seed=0)
    enrol, genuine = {}, {}
    for k in range(opts.trial_users):
        rows = imgs[ids == base + k]
        enrol[f"user{k:03d}"] = rows[:opts.trial_enrol_images]
        genuine[f"user{k:03d}"] = rows[opts.trial_enrol_images:]
    n_imp_ids = max(2, opts.trial_impostors // 2)
    imp, _ = synthetic_identity_images(size, n_imp_ids, 2, base + opts.trial_users + 1000,
                                       difficulty=opts.difficulty, data_seed=0)
    return enrol, genuine, np.ascontiguousarray(imp[:opts.trial_impostors])


def step_unlock(ctx: QuickstartContext) -> None:
    """The unlock path, torch-free: enrol fresh identities with each exported file into a
    temporary store and run genuine and impostor attempts at the calibrated FAR-1e-3 threshold
    (:mod:`edgeconv.runtime.trial`: the code ``edgeconv enroll`` / ``unlock`` run)."""
    exports = ctx.extra.get("exports")
    if not exports or not ctx.opts.trial_users:
        return
    from edgeconv.runtime.trial import unlock_trial

    enrol, genuine, impostors = trial_images(ctx.opts)
    ctx.extra["unlock"] = {}
    for op in OPS:
        for path in exports[op]:
            r = unlock_trial(path, enrol, genuine, impostors, far="1e-3",
                             claims=ctx.opts.trial_claims, seed=ctx.opts.seed)
            ctx.extra["unlock"][path] = r
            ctx.echo(f"[unlock] {Path(path).name}: genuine accept {100 * r['genuine_accept']:.1f}%"
                     f" ({r['genuine']['accepted']}/{r['genuine']['attempts']}), impostor accept "
                     f"{100 * r['impostor_accept']:.2f}% ({r['impostor']['accepted']}/"
                     f"{r['impostor']['attempts']} 1:1), 1:N {100 * r['impostor_accept_1n']:.1f}%"
                     f" of {r['impostor_1n']['attempts']} against {r['users']} users, threshold "
                     f"{r['threshold']:.4f}")


def _open_set(e: dict, key: str = "1e-3"):
    o = e.get("open_set") or {}
    return (o.get("tar_at_far") or {}).get(key), (o.get("resolvable") or {}).get(key)


def _fmt(v, spec: str, scale: float = 1.0) -> str:
    return "-" if v is None else format(v * scale, spec)


def op_table(ctx: QuickstartContext) -> str:
    rows = ["| op | accuracy (%) | EER (%) | TAR@FAR=1e-3 (%) | TAR@FAR=1e-4 (%) | "
            "train images/s | MACs (M) | params train (M) | params inference (M) |",
            "|---|---|---|---|---|---|---|---|---|"]
    for op in OPS:
        e = ctx.evals[op]
        p = ctx.profile.get(op, {})
        cells = []
        for key in ("1e-3", "1e-4"):
            tar, ok = _open_set(e, key)
            cells.append(_fmt(tar, ".1f", 100) + ("" if ok or tar is None else "*"))
        rows.append(f"| {op} | {100 * e['accuracy']:.2f} +- {100 * e['accuracy_std']:.2f} | "
                    f"{100 * e['eer']:.2f} | {cells[0]} | {cells[1]} | "
                    f"{ctx.runs[op]['summary']['images_per_s']:.0f} | "
                    f"{p.get('macs', float('nan')) / 1e6:.2f} | "
                    f"{p.get('params_train', float('nan')) / 1e6:.3f} | "
                    f"{p.get('params_inference', float('nan')) / 1e6:.3f} |")
    return "\n".join(rows)


def file_table(ctx: QuickstartContext) -> str:
    exports = ctx.extra.get("exports") or {}
    if not exports:
        return ""
    files, trial = ctx.extra.get("files", {}), ctx.extra.get("unlock", {})
    rows = ["| op | file | TVConv layers run by | size (KB) | max FPS | portable body max FPS "
            "| peak memory (MB) | unlock threshold | genuine accept (%) | "
            "impostor accept 1:1 (%) | impostor accept 1:N (%) |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for op in OPS:
        for path in exports[op]:
            f, t = files.get(path, {}), trial.get(path, {})
            best = f.get("best") or {}
            where = (f" ({best['backend']}, {best['threads']}t, b{best['batch']})"
                     if best.get("backend") else "")
            g = t.get("genuine") or {}
            i = t.get("impostor") or {}
            n = t.get("impostor_1n") or {}
            rows.append(
                f"| {op} | {Path(path).name} | {f.get('execution') or '-'} | "
                f"{Path(path).stat().st_size / 1024:.0f} | "
                f"{_fmt(f.get('fps'), '.0f')}{where} | {_fmt(f.get('portable_fps'), '.0f')} | "
                f"{_fmt(f.get('peak_rss_mb'), '.0f')} | "
                f"{_fmt(t.get('threshold'), '.4f')} | "
                + (f"{100 * t['genuine_accept']:.1f} ({g['accepted']}/{g['attempts']}) | "
                   f"{100 * t['impostor_accept']:.2f} ({i['accepted']}/{i['attempts']}) | "
                   f"{100 * t['impostor_accept_1n']:.1f} ({n['accepted']}/{n['attempts']}) |"
                   if t else "- | - | - |"))
    return "\n".join(rows)


def table(ctx: QuickstartContext) -> str:
    return op_table(ctx) + ("\n\n" + file_table(ctx) if ctx.extra.get("exports") else "")


def trained_epochs(ctx: QuickstartContext, op: str) -> int:
    return int(ctx.runs.get(op, {}).get("epochs") or op_epochs(ctx.opts, op))


def budget_lines(ctx: QuickstartContext) -> list[str]:
    """The budget paragraph of summary.md: what was cut to fit, and what it cost."""
    plan = ctx.extra.get("plan")
    if plan is None:
        return []
    from edgeconv.train.budget import cost_lines

    head = (f"Budget {ctx.opts.budget_min:g} minutes: {plan.describe()}. ")
    if not plan.cut:
        return [head + "Nothing was cut.", ""]
    results = {}
    for op in OPS:
        e = ctx.evals.get(op) or {}
        tar, _ = _open_set(e, "1e-3") if e else (None, None)
        results[op] = {"accuracy": e.get("accuracy"), "tar_1e-3": tar}
    lines = [head + "The full recipe did not fit on this machine, so epochs were cut; against "
             "the full recipe's documented run (docs/quickstart_recipe.md, same seed, on the "
             "machine it was tuned on) that cost:", ""]
    lines += [f"- {line}" for line in cost_lines(plan, results)] + [""]
    return lines


def step_report(ctx: QuickstartContext) -> None:
    import json

    from edgeconv.fileio import atomic_write_json, atomic_write_text

    o = ctx.opts
    cal = {op: ctx.evals[op].get("calibration") or {} for op in OPS}
    opn = {op: ctx.evals[op].get("open_set") or {} for op in OPS}
    n_cal = min((c.get("num_impostors") or 0) for c in cal.values())
    n_open = min((v.get("num_impostors") or 0) for v in opn.values()) if all(opn.values()) else 0
    any_unresolved = any(not ok for v in opn.values() for ok in (v.get("resolvable") or {}).values())
    text = [f"# edgeconv quickstart: {o.model}, TVConv vs depthwise",
            "",
            f"Synthetic faces {o.identities} identities x {o.images_per_identity} images at "
            f"{o.input_size}x{o.input_size}, difficulty {o.difficulty}; "
            + (f"{trained_epochs(ctx, 'tvconv')} epochs TVConv, "
               f"{trained_epochs(ctx, 'depthwise')} depthwise")
            + f", batch "
            f"{o.batch_size}, lr {o.lr} ({o.schedule}, {o.warmup_epochs:g} warm-up epoch(s)), "
            f"AM-Softmax scale {o.am_scale:g}, margin warm-up {o.margin_warmup_epochs:g} epochs, "
            f"TVConv generators "
            f"{o.inter_channels} channels wide, {1 + o.inter_layers} conv-LN-ReLU layer(s) + the "
            f"output conv, at {o.generator_lr_mult:g}x the lr. Accuracy and EER: "
            f"{o.test_pairs} balanced test pairs of unseen identities, 10-fold protocol (mean "
            f"+- std over folds). TAR@FAR: all pairs of another {n_open}-impostor-pair open-set "
            f"split. Thresholds: calibrated on all pairs of a third split ({n_cal} impostor "
            f"pairs) and stored in the exported files. MACs: inference form (TVConv folded). "
            f"Params: training form (generators included) and inference form (the exported "
            f"graph's constants, TVConv's cached per-pixel maps included).",
            "", op_table(ctx), ""]
    text += budget_lines(ctx)
    if any_unresolved:
        text.append("`*` fewer than 10/FAR impostor pairs: the FAR is not resolved.")
    if ctx.extra.get("exports"):
        text += ["Exported files, benchmarked and tried here (torch-free): max FPS is the best "
                 f"of threads {list(o.bench_threads)} x batch {list(o.bench_batches)} "
                 "(bench.json has the sweep); 'TVConv layers run by' says whether edgeconv's fused "
                 "kernel ran them (default export: the ONNX Runtime custom op, the LiteRT "
                 "delegate) and 'portable body' is the same file's max FPS without it (its "
                 "standard-op form, what a stock runtime runs; bench_portable.json); "
                 "peak memory is the benchmark process's peak RSS "
                 f"at batch {o.bench_memory_batch}, 1 thread. Unlock trial: {o.trial_users} "
                 f"fresh identities enrolled ({o.trial_enrol_images} images averaged into one "
                 f"template each) in a temporary SQLite store, {o.trial_attempts} genuine "
                 f"attempts each; {o.trial_impostors} images of never-enrolled people each "
                 f"claiming {o.trial_claims} users (1:1) and matched against the whole gallery "
                 "(1:N), all at the file's calibrated FAR-1e-3 threshold through the code "
                 "`edgeconv unlock` runs.", "", file_table(ctx), ""]
    text.append("")
    atomic_write_text(ctx.out / "summary.md", "\n".join(text))

    def result(op):
        e = ctx.evals[op]
        return {"accuracy": e["accuracy"], "accuracy_std": e["accuracy_std"], "eer": e["eer"],
                "far_thresholds": e["far_thresholds"], "calibration": cal[op],
                "open_set": opn[op],
                "tar_at_far": {k: v for k, v in (opn[op].get("tar_at_far") or {}).items()},
                "train_images_per_s": ctx.runs[op]["summary"]["images_per_s"],
                "checkpoint": ctx.runs[op]["checkpoint"], **ctx.profile.get(op, {})}

    plan = ctx.extra.get("plan")
    summary = {"options": asdict(o), "timings_s": ctx.timings,
               "budget": (dict(ctx.extra.get("budget", {}), plan=plan.to_dict(),
                               epochs={op: trained_epochs(ctx, op) for op in OPS})
                          if plan is not None else None),
               "results": {op: result(op) for op in OPS},
               "files": {p: dict(ctx.extra.get("files", {}).get(p, {}),
                                 size_bytes=Path(p).stat().st_size,
                                 unlock=ctx.extra.get("unlock", {}).get(p))
                         for op in OPS for p in (ctx.extra.get("exports") or {}).get(op, [])}}
    json.dumps(summary)  # fail here, not half-way through the write, if not serialisable
    atomic_write_json(ctx.out / "summary.json", summary)
    ctx.echo("")
    ctx.echo(table(ctx))
    for line in budget_lines(ctx):
        if line:
            ctx.echo(line)
    if any_unresolved:
        ctx.echo("* fewer than 10/FAR impostor pairs: FAR not resolved")


STEPS = [("plan", step_plan), ("train", step_train), ("evaluate", step_evaluate), ("profile", step_profile),
         ("export", step_export), ("bench", step_bench), ("unlock", step_unlock),
         ("report", step_report)]


def run_quickstart(opts: QuickstartOptions | None = None, steps=None, echo=None) -> QuickstartContext:
    opts = opts or QuickstartOptions()
    echo = echo or (lambda msg: print(msg, flush=True))
    ctx = QuickstartContext(opts=opts, echo=echo, out=Path(opts.output))
    ctx.out.mkdir(parents=True, exist_ok=True)
    t_all = ctx.t0
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
