"""Depthwise vs TVConv vs filtergen (per-image dynamic filters) at MobileNetV2 x0.1 and x0.5.

Not a test: a benchmark that writes ``docs/ops_comparison.md`` and ``docs/ops_comparison.png``
(accuracy vs ONNX Runtime max FPS). For every width x op, in one run on one machine:

1. accuracy: train on the built-in synthetic faces with the same data, epochs and batch
   (filtergen adds its autoencoder's reconstruction loss), evaluate ``last.ckpt`` on the
   synthetic test split (identities disjoint from training) with the 10-fold protocol;
2. cost at the deployment size (96x96): MACs and params (fvcore, the paper's convention;
   TVConv folded), exported ONNX size, and max FPS over batch x threads in ONNX Runtime with
   the bench harness (exported exactly as ``edgeconv export`` does, parity-gated).

Training runs at a reduced input size (``--train-size``, default 32) to fit a 2-core budget;
speed and MACs are measured on 96x96 exports of the same architectures (TVConv's per-pixel
maps are size-bound, so the trained 32x32 weights cannot be exported at 96: the 96x96 exports
use fresh weights, which does not change the graph, the MACs or the speed of exact folding).

    python benchmarks/ops_comparison.py            # ~25 min on 2 cores
    python benchmarks/ops_comparison.py --quick    # smoke run, minutes
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

OPS = ("depthwise", "tvconv", "filtergen")
READING = """Reading it: one training seed of 6 short epochs at 32x32, so accuracy gaps within about one
fold-std (~3 points) are noise (the 3-seed TVConv-vs-depthwise study is
docs/train_tvconv_vs_depthwise.md). FPS and train images/s were measured while other jobs
shared the 2 cores: compare within a column of this run only. What does not depend on the noise:
folded TVConv keeps depthwise MACs but ships ~13x (x0.1) / ~11x (x0.5) more constants (the
per-pixel maps) and its exact form runs far slower in ONNX Runtime (docs/export_speed.md
explains why); filtergen adds MACs (the encoder and per-layer reducers) and per-image filter
generation to the graph, and exports with a dynamic batch in ONNX (TFLite: fixed batch)."""
ROOT = Path(__file__).resolve().parent.parent


def op_kwargs(op: str, args) -> dict:
    if op == "tvconv":
        return {"inter_channels": args.tv_inter_channels, "inter_layers": args.tv_inter_layers}
    if op == "filtergen":
        return {"feature_dim": args.fg_feature_dim}
    return {}


def train_and_eval(model: str, op: str, args) -> dict:
    from edgeconv.train.config import TrainConfig
    from edgeconv.train.evaluate import evaluate_checkpoint
    from edgeconv.train.loop import train

    out = Path(args.runs) / f"{model}_{op}"
    cfg = TrainConfig(model=model, op=op, input_size=[args.train_size, args.train_size],
                      op_kwargs=op_kwargs(op, args), identities=args.identities,
                      images_per_identity=args.images_per_identity, epochs=args.epochs,
                      batch_size=args.batch_size, val_pairs=600, seed=args.seed,
                      output=str(out))
    t0 = time.perf_counter()
    summary = train(cfg, overwrite=True, progress=False, log=lambda m: None)
    seconds = time.perf_counter() - t0
    res = evaluate_checkpoint(out / "last.ckpt", pairs="synthetic", num_pairs=args.test_pairs,
                              plot=False, write_back=False, echo=lambda m: None)
    return {"accuracy": res["accuracy"], "accuracy_std": res["accuracy_std"], "eer": res["eer"],
            "train_images_per_s": summary["images_per_s"], "train_seconds": seconds}


def cost_and_speed(model: str, op: str, args, tmp: Path) -> dict:
    import torch

    from edgeconv.export.exporter import export_checkpoint
    from edgeconv.ops.folding import fold_model
    from edgeconv.models import create_model
    from edgeconv.profiling.bench import BenchSettings, run_bench
    from edgeconv.profiling.macs import count_macs, count_params
    from edgeconv.train.checkpoint import save_checkpoint

    kw = op_kwargs(op, args) if op == "filtergen" else {}  # TVConv exports: paper's generator
    torch.manual_seed(args.seed)
    net = create_model(model, op=op, input_size=96, op_kwargs=kw).eval()
    folded = fold_model(net)
    ckpt = tmp / f"{model}_{op}.ckpt"
    save_checkpoint(ckpt, net)
    out_dir = tmp / f"{model}_{op}"
    export_checkpoint(ckpt, formats="onnx", output_dir=out_dir, echo=lambda *a, **k: None)
    onnx_path = next(out_dir.glob("*.onnx"))
    settings = BenchSettings(backends=["onnxruntime"], threads=args.threads,
                             batches=args.batches, min_secs=args.min_secs, memory_batch=0,
                             measure_spinning=False)
    report = run_bench([str(onnx_path)], settings, progress=False, log=lambda m: None)
    best = report["models"][0].get("best") or {}
    return {"macs": count_macs(folded)[0], "params": count_params(net),
            "deployed_values": count_params(folded),
            "onnx_mb": onnx_path.stat().st_size / 1e6, "max_fps": best.get("fps"),
            "best_config": {k: best.get(k) for k in ("threads", "batch")}}


def write_doc(rows: list, args, seconds: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgeconv.fileio import atomic_path, atomic_write_text

    lines = [
        "# Depthwise vs TVConv vs filtergen (per-image dynamic filters)",
        "",
        f"Generated by `python benchmarks/ops_comparison.py{' --quick' if args.quick else ''}` "
        f"on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} ({platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}); {seconds / 60:.1f} min. "
        f"Load average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}.",
        "",
        f"- accuracy: trained at {args.train_size}x{args.train_size} on synthetic faces "
        f"({args.identities} identities x {args.images_per_identity} images, {args.epochs} "
        f"epochs, batch {args.batch_size}, seed {args.seed}), `last.ckpt` on "
        f"{args.test_pairs} synthetic test pairs of unseen identities, 10-fold protocol "
        f"(+- is the std over folds, ONE training seed: differences of a point or two are noise);",
        f"- TVConv trained with a small generator ({args.tv_inter_channels} ch x "
        f"{args.tv_inter_layers} extra layers); filtergen with feature_dim {args.fg_feature_dim}, "
        f"a full 9-filter orthogonal repository and reconstruction weight 1;",
        "- MACs, params, ONNX size, FPS: 96x96 models (params = the training form, TVConv's "
        "generator included; deployed values = weights + cached TVConv maps after folding), "
        "96x96 exports (TVConv exactly folded, the paper's "
        "generator; filtergen computes its filters per image in the graph); max FPS over batch "
        f"{args.batches} x threads {args.threads} in ONNX Runtime (bench harness, "
        f"min {args.min_secs} s per configuration).",
        "",
        "| model | op | accuracy (%) | EER (%) | MACs (M) | params, training form (M) "
        "| deployed values (M) | ONNX (MB) | max FPS (ORT) | best batch x threads "
        "| train images/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        fps = f"{r['max_fps']:.0f}" if r.get("max_fps") else "failed"
        cfg = r.get("best_config") or {}
        lines.append(
            f"| {r['model']} | {r['op']} | {100 * r['accuracy']:.2f} +- {100 * r['accuracy_std']:.2f} "
            f"| {100 * r['eer']:.2f} | {r['macs'] / 1e6:.2f} | {r['params'] / 1e6:.3f} "
            f"| {r['deployed_values'] / 1e6:.3f} | {r['onnx_mb']:.1f} | {fps} | {cfg.get('batch')} x {cfg.get('threads')} "
            f"| {r['train_images_per_s']:.0f} |")
    lines += ["", READING, "", "![accuracy vs FPS](ops_comparison.png)", ""]
    doc = ROOT / "docs" / "ops_comparison.md"
    atomic_write_text(doc, "\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    markers = {"depthwise": "o", "tvconv": "s", "filtergen": "^"}
    for op in OPS:
        pts = [r for r in rows if r["op"] == op and r.get("max_fps")]
        if pts:
            ax.plot([r["max_fps"] for r in pts], [100 * r["accuracy"] for r in pts],
                    marker=markers[op], label=op)
            for r in pts:
                ax.annotate(r["model"].replace("mbv2_", ""), (r["max_fps"], 100 * r["accuracy"]),
                            textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("max FPS, ONNX Runtime, 96x96 (higher is better)")
    ax.set_ylabel("synthetic verification accuracy (%)")
    ax.set_title("Accuracy vs throughput")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(ROOT / "docs" / "ops_comparison.png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    print(f"wrote {doc}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="mbv2_x0_1,mbv2_x0_5")
    p.add_argument("--train-size", type=int, default=32)
    p.add_argument("--identities", type=int, default=40)
    p.add_argument("--images-per-identity", type=int, default=24)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--test-pairs", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tv-inter-channels", type=int, default=16)
    p.add_argument("--tv-inter-layers", type=int, default=1)
    p.add_argument("--fg-feature-dim", type=int, default=32)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--batches", default="1,4,16")
    p.add_argument("--min-secs", type=float, default=0.5)
    p.add_argument("--runs", default="/tmp/edgeconv-ops-comparison")
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke run")
    args = p.parse_args(argv)
    args.threads = [int(v) for v in str(args.threads).split(",")]
    args.batches = [int(v) for v in str(args.batches).split(",")]
    if args.quick:
        args.identities, args.images_per_identity, args.epochs = 10, 8, 1
        args.test_pairs, args.min_secs, args.batches = 200, 0.2, [1, 4]
    import torch

    torch.set_num_threads(2)
    t0 = time.time()
    rows = []
    tmp = Path(args.runs) / "exports"
    tmp.mkdir(parents=True, exist_ok=True)
    for model in args.models.split(","):
        for op in OPS:
            print(f"{model} {op}: training ...", flush=True)
            rec = {"model": model, "op": op, **train_and_eval(model, op, args)}
            print(f"{model} {op}: exporting and benchmarking ...", flush=True)
            rec.update(cost_and_speed(model, op, args, tmp))
            print(f"  accuracy {100 * rec['accuracy']:.2f}%  MACs {rec['macs'] / 1e6:.2f} M  "
                  f"max FPS {rec['max_fps']}", flush=True)
            rows.append(rec)
    (Path(args.runs) / "ops_comparison.json").write_text(json.dumps(rows, indent=2))
    write_doc(rows, args, time.time() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
