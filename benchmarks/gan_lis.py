"""LIS face GAN (issue #27): 0, 1 and 3 LIS modules and R-separate, compared at a CPU-sized
setting, with improved precision/recall and FID in two feature spaces, an artifact rate, the
measured device cost of the modules, and the generator-impostor unlock trial.

    python benchmarks/gan_lis.py --face runs/gan_lis/face_export/face.onnx [--seeds 0]

Writes docs/gan_lis.md, docs/gan_lis.json and docs/gan_lis_<config>.png (8x8 grids, the same
z for every config). Runs in runs/gan_lis/. Everything after training is torch-free except
the MAC counts (fvcore) and the in-memory full-width ONNX files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIGS = {"lis0": 0, "lis1": 1, "lis3": 3}     # R-separate = lis0's G with a reverser


def _run_config(args, seed, name, k):
    from edgeconv.gan.train import GanTrainConfig

    run = Path(args.runs) / f"{name}_s{seed}"
    return run, GanTrainConfig(gan={"size": args.size, "lis_modules": k, "width": args.width},
                               identities=args.identities,
                               images_per_identity=args.per_identity, epochs=args.epochs,
                               reverser_epochs=args.reverser_epochs if k == 0 else 0,
                               batch_size=32, lr=args.lr, seed=seed, output=str(run))


def finished(run: Path, cfg) -> bool:
    """True when ``run`` holds a finished training with exactly this configuration (a run
    trained with other settings is never silently reused: it is trained again)."""
    from dataclasses import asdict

    from edgeconv.gan.train import load_gan_checkpoint

    if not (run / "last.ckpt").exists() or not (run / "config.json").exists():
        return False
    have = json.loads((run / "config.json").read_text())
    want = json.loads(json.dumps(asdict(cfg)))
    want["gan"] = {**have.get("gan", {}), **want["gan"]}    # defaults (lam) as written
    want.pop("output")                                       # the folder may have moved
    if {k: have.get(k) for k in want} != want:
        return False
    ck = load_gan_checkpoint(run / "last.ckpt")
    return int(ck["epoch"]) == cfg.epochs + cfg.reverser_epochs


def _train_one(cfg, threads):
    """One configuration in a worker process (``--jobs`` > 1): its own torch threads."""
    import torch

    from edgeconv.gan.train import gan_train

    torch.set_num_threads(threads)
    name = Path(cfg.output).name
    t0 = time.perf_counter()
    s = gan_train(cfg, log=lambda *a: print(f"[{name}]", *a, flush=True), overwrite=True)
    return s["last"], time.perf_counter() - t0


def train_runs(args, seed, log):
    out, todo = {}, {}
    for name, k in CONFIGS.items():
        run, cfg = _run_config(args, seed, name, k)
        if finished(run, cfg):
            log(f"{run}: done already (same configuration)")
            out[name] = run / "last.ckpt"
        else:
            todo[name] = cfg
    for name, (last, secs) in _train_all(todo, args.jobs, args.threads).items():
        log(f"{name} seed {seed}: {secs:.0f} s")
        out[name] = Path(last)
    return {name: out[name] for name in CONFIGS}


def _train_all(todo: dict, jobs: int, threads: int) -> dict:
    """{name: (last.ckpt, seconds)} of every configuration in ``todo``; ``jobs`` > 1 trains
    them in that many spawned processes at once."""
    if jobs > 1 and len(todo) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
            futs = {name: pool.submit(_train_one, cfg, threads) for name, cfg in todo.items()}
            return {name: f.result() for name, f in futs.items()}
    return {name: _train_one(cfg, threads) for name, cfg in todo.items()}


def export_all(ckpts, seed, args, log):
    from edgeconv.export.generator import export_generator

    files = {}
    d = Path(args.runs) / f"export_s{seed}"
    fresh = lambda p, ck: p.exists() and p.stat().st_mtime > ck.stat().st_mtime  # noqa: E731
    for name, ck in ckpts.items():
        fm = "onnx,tflite" if seed == args.seeds[0] else "onnx"
        if not all(fresh(d / f"{name}.{f}", ck) for f in fm.split(",")):
            export_generator(ck, formats=fm, output_dir=d, name=name, echo=log, force=True)
        files[name] = d / f"{name}.onnx"
        if name == "lis0" and args.reverser_epochs:
            if not fresh(d / "rsep.onnx", ck):
                export_generator(ck, formats="onnx", output_dir=d, name="rsep", reverse=True,
                                 echo=log, force=True)
            files["rsep"] = d / "rsep.onnx"
    return files


def real_sets(args):
    """Held-out real faces (identities never trained on): reference, cut and control sets."""
    from edgeconv.data.synthetic import SyntheticFaces

    n = args.samples
    ds = SyntheticFaces(4 * n, 1, size=(args.size, args.size), seed=0,
                        difficulty=args.difficulty, cache=False)
    base = 1_000_000
    ids = np.arange(n + n // 2 + n // 2) + base
    imgs = ds.render_batch(ids, np.zeros(len(ids), np.int64))
    return imgs[:n], imgs[n:n + n // 2], imgs[n + n // 2:]


def damaged(images, seed=0):
    """Real faces broken on purpose, to check that the artifact rule sees broken faces (its
    positive control): ``shuffled`` = the 16 quarter-side tiles of each face in a random order
    (every part present, the geometry broken), ``half masked`` = the lower half painted in the
    image's mean colour (no mouth or chin), ``noise`` = Gaussian pixel noise, sigma 48."""
    rng = np.random.default_rng([seed, 0xDA])
    x = np.asarray(images)
    n, h, w, _ = x.shape
    t = h // 4
    tiles = x[:, :4 * t, :4 * t].reshape(n, 4, t, 4, t, 3).transpose(0, 1, 3, 2, 4, 5)
    tiles = tiles.reshape(n, 16, t, t, 3)
    order = np.stack([rng.permutation(16) for _ in range(n)])
    tiles = np.take_along_axis(tiles, order[:, :, None, None, None], 1)
    shuffled = x.copy()
    shuffled[:, :4 * t, :4 * t] = tiles.reshape(n, 4, 4, t, t, 3).transpose(
        0, 1, 3, 2, 4, 5).reshape(n, 4 * t, 4 * t, 3)
    masked = x.copy()
    masked[:, h // 2:] = x.reshape(n, -1, 3).mean(1).astype(np.uint8)[:, None, None]
    noisy = np.clip(x + rng.normal(0, 48, x.shape), 0, 255).astype(np.uint8)
    return {"shuffled": shuffled, "half masked": masked, "noise": noisy}


def evaluate(files, reals, broken, face, args, log):
    from edgeconv.gan.metrics import (EmbeddingFeatures, PixelFeatures, artifact_cut,
                                      artifact_rate, fid, nearest_cosine, outlier_cut,
                                      outlier_rate, precision_recall)
    from edgeconv.runtime.generator import FaceGenerator

    ref, cut_set, control = reals
    pix = PixelFeatures()
    emb = EmbeddingFeatures(face)
    f_ref = {"pixel": pix(ref), "embedding": emb(ref)}
    e_cut, e_ctl = emb(cut_set), emb(control)
    cut = artifact_cut(e_cut, f_ref["embedding"], q=0.01)
    pcut = outlier_cut(pix(cut_set), f_ref["pixel"], q=0.99)
    rows, worst = {}, {}
    samples = {"real (held-out)": control}
    positive = {}
    for kind, imgs in broken.items():
        positive[kind] = {"artifact_rate": artifact_rate(emb(imgs), f_ref["embedding"], cut),
                          "pixel_outlier_rate": outlier_rate(pix(imgs), f_ref["pixel"], pcut)}
        log(f"  damaged real ({kind}): artifacts {100 * positive[kind]['artifact_rate']:.1f}% "
            f"| pixel outliers {100 * positive[kind]['pixel_outlier_rate']:.1f}%")
    for name, path in files.items():
        with FaceGenerator(path) as g:
            samples[name] = g.generate(args.samples, seed=12345)
    for name, imgs in samples.items():
        row = {}
        for space, fn in (("pixel", pix), ("embedding", emb)):
            f = fn(imgs)
            p, r = precision_recall(f_ref[space], f, k=3)
            row[space] = {"precision": p, "recall": r, "fid": fid(f_ref[space], f)}
        e = emb(imgs) if name != "real (held-out)" else e_ctl
        row["artifact_rate"] = artifact_rate(e, f_ref["embedding"], cut)
        near = nearest_cosine(e, f_ref["embedding"])
        worst[name] = imgs[np.argsort(near, kind="stable")[:16]]   # least face-like first
        row["pixel_outlier_rate"] = outlier_rate(pix(imgs), f_ref["pixel"], pcut)
        row["n"] = len(imgs)
        rows[name] = row
        log(f"  {name:<16} pixel P {row['pixel']['precision']:.3f} R "
            f"{row['pixel']['recall']:.3f} FID {row['pixel']['fid']:.3f} | emb P "
            f"{row['embedding']['precision']:.3f} R {row['embedding']['recall']:.3f} FID "
            f"{row['embedding']['fid']:.4f} | artifacts {100 * row['artifact_rate']:.1f}% | "
            f"pixel outliers {100 * row['pixel_outlier_rate']:.1f}%")
    emb.close()
    return rows, cut, samples, worst, positive


def z_movement(ckpts, n=2000):
    """What the LIS modules do to z (the paper looks at t-SNE plots of z before and after):
    per module, the mean norm ratio |z_i| / |z|, the mean cosine(z_i, z), the similarity
    constraint's MSE(z_i, z), the share of that change that is one constant offset, and the
    share of z's total variance left after the module (trace of the covariance of z_i over
    that of z: < 1 means the module pulls inputs together, a truncation-like loss of
    diversity)."""
    import torch

    from edgeconv.gan.train import gan_from_checkpoint, load_gan_checkpoint

    out = {}
    z = torch.randn(n, 256, generator=torch.Generator().manual_seed(777))
    for name, ck in ckpts.items():
        g = gan_from_checkpoint(load_gan_checkpoint(ck), ck).G.eval()
        if not len(g.lis):
            continue
        with torch.no_grad():
            _, zs = g.manipulate(z)
        rows = []
        for zi in zs:
            rows.append({
                "norm_ratio": float((zi.norm(dim=1) / z.norm(dim=1)).mean()),
                "cosine": float(torch.nn.functional.cosine_similarity(zi, z, dim=1).mean()),
                "mse": float(((zi - z) ** 2).mean()),
                # share of the change that is one constant offset (the same for every z)
                "offset_share": float(((zi - z).mean(0) ** 2).sum()
                                      / ((zi - z) ** 2).mean(0).sum()),
                "variance_kept": float(zi.var(0).sum() / z.var(0).sum())})
        out[name] = rows
    return out


def save_grids(samples, worst, broken, args):
    """8x8 grids of the first 64 samples (the same z for every generator) and 4x4 grids of
    the 16 least face-like samples to the face model (lowest nearest-real cosine: what the
    artifact rate counts first)."""
    from edgeconv.data.images import save_image
    from edgeconv.gan.train import grid_image

    out = {}
    save_image(ROOT / "docs" / "gan_lis_damaged.png",   # four of the measured damaged faces
               grid_image(np.concatenate([samples["real (held-out)"][:4],
                                          *(v[:4] for v in broken.values())]), cols=4))
    out["damaged"] = "gan_lis_damaged.png"
    for name, imgs in samples.items():
        short = "real" if name.startswith("real") else name
        p = ROOT / "docs" / f"gan_lis_{short}.png"
        save_image(p, grid_image(imgs[:64]))
        out[short] = p.name
        if name in worst:
            q = ROOT / "docs" / f"gan_lis_{short}_worst.png"
            save_image(q, grid_image(worst[name], cols=4))
            out[f"{short}_worst"] = q.name
    return out


def _LISOnly(g):
    import torch

    class LISOnly(torch.nn.Module):
        def __init__(self, lis):
            super().__init__()
            self.lis = lis

        def forward(self, z):
            for m in self.lis:
                z = m(z)
            return z

    return LISOnly(g.lis).eval()


def device_cost(files, args, log):
    """MACs, params, file bytes and latency (ONNX Runtime and LiteRT, batch 1, 1 thread) of G
    with 0 / 1 / 3 LIS modules: the trained CPU-sized files, and the paper's full-width 80x80
    G (untrained, in-memory ONNX) for MACs and ONNX latency."""
    import onnxruntime as ort
    import torch

    from edgeconv.export.generator import count_generator_macs, deployable
    from edgeconv.gan.models import GANConfig, Generator
    from edgeconv.profiling.counts import values_of
    from edgeconv.profiling.timing import measure_round_robin
    from edgeconv.runtime.backends import open_model

    res = {"trained": {}, "full_80": {}}
    runners = {}
    z = np.random.default_rng(0).standard_normal((1, 256)).astype(np.float32)
    opened = []
    for name in CONFIGS:
        for suffix in (".onnx", ".tflite"):
            p = files[name].with_suffix(suffix)
            if not p.exists():
                continue
            meta = json.loads(p.with_name(p.name + ".json").read_text())
            res["trained"].setdefault(name, {"macs": meta["macs"],
                                            "params": meta["params_inference"]})
            res["trained"][name][f"bytes{suffix}"] = p.stat().st_size
            m = open_model(p, threads=1)
            m.set_batch(1)
            opened.append(m)
            runners[f"{name}{suffix}"] = (lambda m=m: m.run(z))
    torch.set_num_threads(1)
    from edgeconv.export.onnx_export import export_onnx

    for k in CONFIGS.values():
        torch.manual_seed(0)
        g = Generator(GANConfig(size=80, lis_modules=k, width=1.0)).eval()
        dep = deployable(g)
        proto, _ = export_onnx(dep, (), 1, 18, "none", channels=256, output_name="image")
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(proto.SerializeToString(), so,
                                    providers=["CPUExecutionProvider"])
        res["full_80"][f"lis{k}"] = {"macs": count_generator_macs(g, 256),
                                    "params": int(values_of(dep)),
                                    "bytes.onnx": len(proto.SerializeToString())}
        runners[f"full80_lis{k}.onnx"] = (lambda s=sess: s.run(None, {"input": z}))
        if k:  # the LIS stack alone (what the modules add, without G's noise around it)
            stack = _LISOnly(dep)
            proto, _ = export_onnx(stack, (), 1, 18, "none", channels=256, output_name="z")
            s2 = ort.InferenceSession(proto.SerializeToString(), so,
                                      providers=["CPUExecutionProvider"])
            res.setdefault("lis_only", {})[f"lis{k}"] = {
                "macs": 2 * k * (256 * 256 + 256),  # two FCs of 256 x 256 + bias each
                "params": int(values_of(stack)), "bytes.onnx": len(proto.SerializeToString())}
            runners[f"lisonly_lis{k}.onnx"] = (lambda s=s2: s.run(None, {"input": z}))
    sec = measure_round_robin(runners, min_time=args.time_per_config, rounds=5)
    for key, s in sec.items():
        name, suffix = key.rsplit(".", 1)
        where = (res["full_80"] if name.startswith("full80_") else res["lis_only"]
                 if name.startswith("lisonly_") else res["trained"])
        where[name.replace("full80_", "").replace("lisonly_", "")][f"ms_{suffix}"] = s * 1000
    for m in opened:
        m.close()
    log(json.dumps(res, indent=1))
    return res


def impostor_trials(files, face, args, log):
    from edgeconv.runtime.gen_trial import generator_trial

    out = {}
    for name in ("lis0", "lis1", "lis3", "rsep"):
        if name not in files:
            continue
        # the quickstart trial's shape: 5 enrolment images and 5 genuine attempts per user
        r = generator_trial(face, files[name], count=args.trial_count, users=args.trial_users,
                            enrol_images=5, genuine_images=5,
                            far=args.far, difficulty=args.difficulty, seed=0,
                            synthetic=name == "lis0")
        out[name] = r
        log(f"  trial {name}: generated 1:1 {r['generated']['far_1to1']}, 1:N "
            f"{r['generated']['far_1toN']['rate']}")
    return out


def tables(result) -> str:
    """Markdown tables of a result JSON (the numbers docs/gan_lis.md quotes)."""
    names = {"real (held-out)": "real faces (held-out identities)", "lis0": "0 LIS modules",
             "lis1": "1 LIS module", "lis3": "3 LIS modules",
             "rsep": "R-separate (0 modules + R)"}
    out = []
    for seed, r in result["seeds"].items():
        out += [f"seed {seed} (artifact cut: nearest-real cosine {r['artifact_cut']:.4f})", "",
                "| samples | pixel precision | pixel recall | pixel FID | embedding precision | "
                "embedding recall | embedding FID | artifact rate (embedding) | pixel outliers |",
                "|---|---|---|---|---|---|---|---|---|"]
        for k, m in r["metrics"].items():
            px, em = m["pixel"], m["embedding"]
            out.append(f"| {names.get(k, k)} | {px['precision']:.3f} | {px['recall']:.3f} | "
                       f"{px['fid']:.3f} | {em['precision']:.3f} | {em['recall']:.3f} | "
                       f"{em['fid']:.4f} | {100 * m['artifact_rate']:.1f}% | "
                       f"{100 * m.get('pixel_outlier_rate', float('nan')):.1f}% |")
        for kind, d in (r.get("damaged_real") or {}).items():
            out.append(f"| real faces, damaged: {kind} (positive control) | | | | | | | "
                       f"{100 * d['artifact_rate']:.1f}% | {100 * d['pixel_outlier_rate']:.1f}% |")
        out.append("")
    dev = result.get("device") or {}
    for where, title in (("trained", "trained CPU-sized G"), ("full_80", "paper-size G, 80x80"),
                         ("lis_only", "the LIS modules alone (z -> z)")):
        rows = dev.get(where) or {}
        if not rows:
            continue
        out += [f"{title}:", "", "| G | MACs | params | ONNX bytes | TFLite bytes | "
                "ONNX Runtime ms | LiteRT ms |", "|---|---|---|---|---|---|---|"]
        for k, v in rows.items():
            f = lambda key, fmt: (fmt.format(v[key]) if v.get(key) is not None else "-")  # noqa
            out.append(f"| {k} | {f('macs', '{:,}')} | {f('params', '{:,}')} | "
                       f"{f('bytes.onnx', '{:,}')} | {f('bytes.tflite', '{:,}')} | "
                       f"{f('ms_onnx', '{:.3f}')} | {f('ms_tflite', '{:.3f}')} |")
        out.append("")
    trials = result.get("trials") or {}
    if trials:
        def cell(d):
            lo, hi = d["clopper_pearson_95"]
            return (f"{100 * d['rate']:.2f}% ({d['accepted']}/{d['attempts']}; "
                    f"{100 * lo:.2f}-{100 * hi:.2f})")
        out += ["| impostors | FAR 1:1 (95% CP) | FAR 1:N (95% CP) |", "|---|---|---|"]
        for k, r in trials.items():
            out.append(f"| generated, {names.get(k, k)} | {cell(r['generated']['far_1to1'])} | "
                       f"{cell(r['generated']['far_1toN'])} |")
            if "synthetic" in r:
                out.append(f"| synthetic people (never enrolled) | "
                           f"{cell(r['synthetic']['far_1to1'])} | "
                           f"{cell(r['synthetic']['far_1toN'])} |")
        first = next(iter(trials.values()))
        out += ["", f"genuine accept: {cell(first['genuine'])}; threshold {first['threshold']:.4f} "
                f"({first['threshold_source']})"]
    return "\n".join(out)


LABELS = {"lis0": "0 modules", "lis1": "1 module", "lis3": "3 modules", "rsep": "R-separate",
          "real (held-out)": "real (held-out)"}
COLOURS = {"lis0": "tab:blue", "lis1": "tab:orange", "lis3": "tab:green", "rsep": "tab:purple",
           "real (held-out)": "black"}


def plot(result, path):
    """docs/gan_lis_plot.png: embedding-space precision vs recall and the artifact rate per
    generator and seed (real control in black), and D's loss and the similarity MSE per
    epoch of training (every seed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 8), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots(2, 2)
    seeds = list(result["seeds"])
    markers = "os^D"
    for j, seed in enumerate(seeds):
        m = result["seeds"][seed]["metrics"]
        for i, (name, row) in enumerate(m.items()):
            e = row["embedding"]
            ax[0, 0].scatter(e["recall"], e["precision"], color=COLOURS.get(name, "grey"),
                             marker=markers[j % 4], label=f"{LABELS.get(name, name)}"
                             if j == 0 else None)
            ax[0, 1].bar(i + 0.8 * j / len(seeds), 100 * row["artifact_rate"],
                         width=0.8 / len(seeds), color=COLOURS.get(name, "grey"),
                         alpha=1.0 - 0.35 * j)
        for name, hist in result["seeds"][seed]["history"].items():
            gan = [h for h in hist if h.get("phase", "gan") == "gan"]
            ep = [h["epoch"] for h in gan]
            ax[1, 0].plot(ep, [h["dis"] for h in gan], color=COLOURS[name], marker=".",
                          ls="-" if j == 0 else "--",
                          label=f"{LABELS[name]}, seed {seed}")
            if any(h["sim"] for h in gan):
                ax[1, 1].plot(ep, [h["sim"] for h in gan], color=COLOURS[name], marker=".",
                              ls="-" if j == 0 else "--", label=f"{LABELS[name]}, seed {seed}")
    names = list(result["seeds"][seeds[0]]["metrics"])
    ax[0, 1].set_xticks([i + 0.4 - 0.4 / len(seeds) for i in range(len(names))],
                        [LABELS.get(n, n) for n in names], rotation=20)
    ax[0, 0].set(xlabel="recall (diversity)", ylabel="precision (fidelity)",
                 title="embedding space (quickstart verifier), one marker per seed")
    ax[0, 0].legend(fontsize=8)
    ax[0, 1].set(ylabel="artifact rate (%)", title="artifact rate (one bar per seed)")
    ax[1, 0].set(xlabel="epoch (125 batches)", ylabel="D loss (BCE, real + fake)",
                 title="discriminator loss during training")
    ax[1, 0].legend(fontsize=7, ncol=2)
    ax[1, 1].set(xlabel="epoch (125 batches)", ylabel="similarity MSE (lambda-weighted sum)",
                 title="how far the LIS modules move z")
    ax[1, 1].legend(fontsize=7)
    fig.savefig(path)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--face", help="exported face model (ONNX); required unless --tables")
    ap.add_argument("--seeds", type=lambda s: [int(v) for v in s.split(",")], default=[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--identities", type=int, default=1000)
    ap.add_argument("--per-identity", type=int, default=4)
    ap.add_argument("--difficulty", type=float, default=0.5)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--reverser-epochs", type=int, default=4)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--trial-count", type=int, default=1000)
    ap.add_argument("--trial-users", type=int, default=40)
    ap.add_argument("--far", default="1e-3", help="unlock threshold (the quickstart trial's: 1e-3)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per training")
    ap.add_argument("--jobs", type=int, default=1,
                    help="configurations trained at once (processes; 2 on a 2-core machine)")
    ap.add_argument("--time-per-config", type=float, default=0.5)
    ap.add_argument("--runs", default=str(ROOT / "runs" / "gan_lis"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "gan_lis.json"))
    ap.add_argument("--tables", default=None, help="print the tables of this result JSON")
    ap.add_argument("--plot", default=None, help="with --tables: draw its plot to this PNG")
    args = ap.parse_args(argv)
    if args.plot and not args.tables:
        ap.error("--plot goes with --tables (a full run draws docs/gan_lis_plot.png itself)")
    if args.tables:
        try:
            result = json.loads(Path(args.tables).read_text())
            if not isinstance(result, dict) or not isinstance(result.get("seeds"), dict):
                raise ValueError("not a gan_lis result (no 'seeds')")
        except (OSError, ValueError) as e:
            ap.error(f"--tables {args.tables}: {e}")
        print(tables(result))
        if args.plot:
            plot(result, args.plot)
        return
    if not args.face:
        ap.error("--face is required (an exported face model, e.g. the quickstart's ONNX file)")
    import torch

    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    load = {"start": os.getloadavg()}
    log = lambda *a: print(*a, flush=True)  # noqa: E731
    reals = real_sets(args)
    broken = damaged(reals[2])              # the positive control, from the control faces
    result = {"settings": {k: v for k, v in vars(args).items()}, "seeds": {}}
    for seed in args.seeds:
        ckpts = train_runs(args, seed, log)
        files = export_all(ckpts, seed, args, log)
        rows, cut, samples, worst, positive = evaluate(files, reals, broken, args.face, args,
                                                       log)
        hist = {n: json.loads((ck.parent / "history.json").read_text())
                for n, ck in ckpts.items()}
        result["seeds"][seed] = {"metrics": rows, "artifact_cut": cut, "history": hist,
                                 "damaged_real": positive,
                                 "z_movement": z_movement(ckpts)}
        log(f"  z movement: {json.dumps(result['seeds'][seed]['z_movement'])}")
        if seed == args.seeds[0]:
            result["grids"] = save_grids(samples, worst, broken, args)
            result["device"] = device_cost(files, args, log)
            result["trials"] = impostor_trials(files, args.face, args, log)
    plot(result, ROOT / "docs" / "gan_lis_plot.png")
    load["end"] = os.getloadavg()
    result["loadavg"] = load
    result["seconds"] = time.perf_counter() - t_start
    Path(args.out).write_text(json.dumps(result, indent=1, default=str) + "\n")
    log(f"done in {result['seconds']:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
