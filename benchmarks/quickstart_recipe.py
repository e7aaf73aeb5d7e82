"""The runs behind the quickstart recipe: one training configuration per call, one JSON line each.

Not a test. Each call trains one op with one recipe on the built-in synthetic faces (difficulty
0.5, as the quickstart), evaluates ``last.ckpt`` with the quickstart's protocol (10-fold
accuracy and EER on 2000 balanced test pairs; TAR@FAR on all pairs of the open-set split:
300 unseen identities x 4 images, 717,600 impostor pairs) and appends one line to
``--results``; ``--render`` writes the table of every line into ``docs/quickstart_recipe.md``
between its ``<!-- runs:begin/end -->`` markers::

    python benchmarks/quickstart_recipe.py --tag dw_b --op depthwise --epochs 14   # ~6 min
    python benchmarks/quickstart_recipe.py --render

Runs use one torch thread each (two can run side by side on the 2-core build machine; the
images/s column is then that of a shared machine).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

DEFAULT_RESULTS = "docs/quickstart_recipe.jsonl"
DEFAULT_DOC = "docs/quickstart_recipe.md"
BEGIN, END = "<!-- runs:begin -->", "<!-- runs:end -->"


def run(a) -> dict:
    import torch

    torch.set_num_threads(a.threads)
    from edgeconv.train.checkpoint import load_checkpoint, model_from_checkpoint
    from edgeconv.train.config import TrainConfig
    from edgeconv.train.evaluate import (evaluate_pairs, load_pairs, synthetic_calibration,
                                         synthetic_open_set)
    from edgeconv.train.loop import train

    cfg = TrainConfig(model=a.model, op=a.op, input_size=[a.size, a.size], embedding_dim=a.emb,
                      op_kwargs={"inter_channels": 16, "inter_layers": 1} if a.op == "tvconv"
                      else {},
                      identities=a.ids, images_per_identity=a.ipi, epochs=a.epochs,
                      batch_size=a.bs, lr=a.lr, schedule=a.sched, warmup_epochs=a.warm,
                      margin_warmup_epochs=a.mwarm, am_margin=a.margin, am_scale=a.scale,
                      weight_decay=a.wd, generator_lr_mult=a.gen_lr,
                      generator_weight_decay=a.gen_wd, seed=a.seed, val="none",
                      output=str(Path(a.output) / a.tag))
    t0 = time.time()
    s = train(cfg, overwrite=True, progress=False, log=lambda m: print(m, flush=True))
    train_s = time.time() - t0
    ck = load_checkpoint(s["last"])
    m = model_from_checkpoint(ck, s["last"]).eval()
    size = (a.size, a.size)
    tcfg = ck["training"]["config"]
    r = evaluate_pairs(m, load_pairs("synthetic", size=size, num_pairs=2000, identities=a.ids,
                                     split="test"))
    cal = synthetic_calibration(m, size, tcfg, (1e-2, 1e-3, 1e-4))
    o = synthetic_open_set(m, size, tcfg, cal)
    return {"tag": a.tag, "args": {k: v for k, v in vars(a).items()
                                   if k not in ("render", "results", "doc", "output")},
            "train_s": round(train_s), "acc": r["accuracy"], "eer": r["eer"],
            "tar3": o["tar_at_far"]["1e-3"], "tar4": o["tar_at_far"]["1e-4"],
            "n_imp": o["num_impostors"], "train_acc": s["history"][-1]["train_accuracy"],
            "ips": s["images_per_s"]}


def _gen(a: dict) -> str:
    if a["op"] != "tvconv":
        return "-"
    parts = [f"lr x {a.get('gen_lr', 1.0):g}"]
    if a.get("gen_wd") is not None:
        parts.append(f"wd {a['gen_wd']:g}")
    return ", ".join(parts)


def render(results: Path, doc: Path) -> None:
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    table = ["| run | op | identities x images | epochs | embedding | schedule | train s | "
             "TVConv generators | images/s | final train acc (%) | test acc (%) | EER (%) | "
             "TAR@1e-3 (%) | TAR@1e-4 (%) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        a = r["args"]
        table.append(f"| {r['tag']} (seed {a.get('seed', 0)}) | {a['op']} | {a['ids']} x {a['ipi']} | {a['epochs']} | "
                     f"{a['emb']} | {a['sched']}, lr {a['lr']}, warm-up {a['warm']:g}, margin "
                     f"warm-up {a['mwarm']:g} | {r['train_s']} | {_gen(a)} | {r['ips']:.0f} | "
                     f"{100 * r['train_acc']:.1f} | {100 * r['acc']:.2f} | {100 * r['eer']:.2f} | "
                     f"{100 * r['tar3']:.1f} | {100 * r['tar4']:.1f} |")
    text = doc.read_text() if doc.exists() else f"{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{doc}: missing {BEGIN} / {END} markers")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(head + BEGIN + "\n" + "\n".join(table) + "\n" + END + tail)
    print(f"wrote {len(rows)} runs into {doc}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tag", default="run")
    p.add_argument("--op", default="depthwise", choices=["depthwise", "tvconv"])
    p.add_argument("--model", default="mbv2_x0_1")
    p.add_argument("--ids", type=int, default=1000)
    p.add_argument("--ipi", type=int, default=20)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=18)
    p.add_argument("--bs", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.2)
    p.add_argument("--sched", default="cosine")
    p.add_argument("--warm", type=float, default=1.0)
    p.add_argument("--mwarm", type=float, default=3.0)
    p.add_argument("--margin", type=float, default=0.35)
    p.add_argument("--scale", type=float, default=32.0)
    p.add_argument("--wd", type=float, default=5e-4)
    p.add_argument("--emb", type=int, default=512)
    p.add_argument("--gen-lr", type=float, default=1.0, help="TVConv generator lr multiplier")
    p.add_argument("--gen-wd", type=float, default=None, help="TVConv generator weight decay")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="initialisation and data order")
    p.add_argument("--output", default="runs/quickstart_recipe")
    p.add_argument("--results", default=DEFAULT_RESULTS)
    p.add_argument("--doc", default=DEFAULT_DOC)
    p.add_argument("--render", action="store_true", help="only write the table into --doc")
    a = p.parse_args(argv)
    if a.render:
        render(Path(a.results), Path(a.doc))
        return 0
    rec = run(a)
    print(json.dumps(rec))
    with open(a.results, "a") as fh:
        fh.write(json.dumps(rec) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    sys.exit(main())
