"""``edgeconv seg-train`` / ``seg-eval``: leave-one-domain-out disc / cup segmentation (torch).

Protocol (TVConv paper 4.2 / DoFE, without the public release's defects):

* four domains (the synthetic centres, or ``--data DIR`` folders); ``--test-domain N`` is held
  out entirely; the model trains on the other three;
* checkpoint selection on a held-out part (``holdout``, default 15 %) of the SOURCE domains
  only: mean DSC of cup and disc after post-processing; the test domain is only ever used by
  the final evaluation;
* every batch draws equally from the three source domains (``batch_size // 3`` each);
* BCE (with logits) on the two channels [cup, disc]; Adam, lr 1e-3, x0.2 after 75 % of the
  epochs (paper: 40 epochs, after epoch 30); no augmentation (as in the paper);
* run folder: ``last.ckpt`` (written atomically every epoch, with the optimizer state),
  ``best.ckpt`` (the source-validation best), ``log.jsonl`` (a line per epoch, also printed),
  ``eval.json`` + ``overlays/`` from the final evaluation on the held-out domain.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from edgeconv.errors import EdgeconvError


@dataclass
class SegTrainConfig:
    data: str = "synthetic"          # "synthetic" or a folder of domain folders
    n_per_domain: int = 60           # synthetic images per centre
    data_seed: int = 0
    size: int = 128                  # square input side (divisible by 16)
    test_domain: int = 0
    aspp: str = "plain"              # plain | ir_depthwise | ir_tvconv | ir_<op>
    width: float = 1.0
    op_kwargs: dict = field(default_factory=dict)
    epochs: int = 40
    batch_size: int = 12             # drawn equally from the three source domains
    lr: float = 1e-3
    lr_drop_at: float = 0.75         # lr x0.2 after this fraction of the epochs
    holdout: float = 0.15
    seed: int = 0
    output: str = "runs/seg"
    overlays: int = 6                # overlay PNGs written by the final evaluation


def load_domains(cfg: SegTrainConfig) -> list:
    from edgeconv.segmentation.data import folder_domains, synthetic_domains

    if cfg.data == "synthetic":
        return synthetic_domains(cfg.n_per_domain, cfg.size, cfg.data_seed)
    return folder_domains(cfg.data, (cfg.size, cfg.size))


def to_tensor(images: np.ndarray) -> torch.Tensor:
    from edgeconv.data.images import normalize

    return torch.from_numpy(np.ascontiguousarray(normalize(images)))


@torch.no_grad()
def predict(model, images: np.ndarray, batch: int = 16) -> np.ndarray:
    """uint8 (N, H, W, 3) -> float32 (N, 2, H, W) probabilities."""
    model.eval()
    out = [torch.sigmoid(model(to_tensor(images[i:i + batch]))).numpy()
           for i in range(0, len(images), batch)]
    return np.concatenate(out)


def evaluate_domains(model, domains: list) -> tuple[dict, dict]:
    """({domain name: summary}, {domain name: (probabilities, post-processed masks)})."""
    from edgeconv.segmentation.metrics import postprocess, score, summarise

    res, preds = {}, {}
    for d in domains:
        probs = predict(model, d.images)
        masks = np.stack([postprocess(p) for p in probs])
        res[d.name] = summarise([score(m, g) for m, g in zip(masks, d.masks)])
        preds[d.name] = masks
    return res, preds


def mean_dsc(summary: dict) -> float:
    vals = [s[c]["dsc"] for s in summary.values() for c in ("cup", "disc")]
    return float(np.mean(vals))


def _pooled(summaries: dict) -> dict:
    """Image-weighted mean over domains of each structure's metrics."""
    n = sum(s["n"] for s in summaries.values())
    out = {"n": n}
    for c in ("cup", "disc"):
        out[c] = {k: float(sum(s[c][k] * s["n"] for s in summaries.values()) / max(n, 1))
                  for k in ("dsc", "hd95", "asd")}
    return out


def seg_train(cfg: SegTrainConfig, log=print, overwrite: bool = False) -> dict:
    from edgeconv.segmentation.data import balanced_batches, lodo_split
    from edgeconv.segmentation.models import create_segmenter
    from edgeconv.train.checkpoint import make_checkpoint, save_checkpoint

    out = Path(cfg.output)
    if (out / "last.ckpt").exists() and not overwrite:
        raise EdgeconvError(f"{out}: holds a run already (last.ckpt); choose another -o or "
                            "pass --overwrite")
    if cfg.size % 16:
        raise EdgeconvError(f"--size must be divisible by 16, got {cfg.size}")
    domains = load_domains(cfg)
    train, val, test = lodo_split(domains, cfg.test_domain, cfg.holdout, cfg.seed)
    torch.manual_seed(cfg.seed)
    model = create_segmenter(cfg.aspp, cfg.width, cfg.size, cfg.op_kwargs or None)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    drop = max(1, int(round(cfg.lr_drop_at * cfg.epochs)))
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[drop], gamma=0.2)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    out.mkdir(parents=True, exist_ok=True)
    logf = out / "log.jsonl"
    logf.write_text("")
    info = {"config": asdict(cfg), "domains": [d.name for d in domains],
            "test_domain": test.name, "train_sizes": [len(d) for d in train],
            "val_sizes": [len(d) for d in val]}
    log(f"seg-train {cfg.aspp} x{cfg.width:g} at {cfg.size}: train on "
        f"{', '.join(f'{d.name} ({len(d)})' for d in train)}; select on their held-out "
        f"{sum(len(d) for d in val)}; test domain {test.name} ({len(test)}) unseen")
    best, best_epoch = -1.0, -1
    t_start = time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        t0 = time.perf_counter()
        losses = []
        for batch in balanced_batches([len(d) for d in train], cfg.batch_size, epoch, cfg.seed):
            imgs = np.stack([train[d].images[i] for d, i in batch])
            masks = np.stack([train[d].masks[i] for d, i in batch]).astype(np.float32)
            logits = model(to_tensor(imgs))
            loss = loss_fn(logits, torch.from_numpy(masks))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        sched.step()
        val_res, _ = evaluate_domains(model, val)
        pooled = _pooled(val_res)
        score_ = mean_dsc({"pooled": pooled})
        improved = score_ > best
        if improved:
            best, best_epoch = score_, epoch + 1
            save_checkpoint(out / "best.ckpt", make_checkpoint(model, None, {
                "trained": True, "segmentation": {"selection": "source held-out mean DSC",
                                                  "val_mean_dsc": best, "epoch": best_epoch},
                "lodo": info}))
        row = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "lr": opt.param_groups[0]["lr"],
               "val_cup_dsc": pooled["cup"]["dsc"], "val_disc_dsc": pooled["disc"]["dsc"],
               "val_mean_dsc": score_, "best": improved,
               "seconds": round(time.perf_counter() - t0, 1)}
        with open(logf, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        save_checkpoint(out / "last.ckpt", make_checkpoint(model, {
            "epoch": epoch + 1, "optimizer": opt.state_dict(), "scheduler": sched.state_dict()},
            {"trained": True, "lodo": info}))
        log(f"epoch {epoch + 1:>3}/{cfg.epochs} loss {row['loss']:.4f} lr {row['lr']:.2g} "
            f"source-val DSC cup {row['val_cup_dsc']:.1f} disc {row['val_disc_dsc']:.1f}"
            f"{' *' if improved else ''} ({row['seconds']:.0f}s)")
    summary = seg_eval(out / "best.ckpt", domains=domains, log=log, output_dir=out,
                       overlays=cfg.overlays)
    summary.update(best_epoch=best_epoch, val_mean_dsc=best,
                   train_seconds=round(time.perf_counter() - t_start, 1))
    return summary


def seg_eval(checkpoint, domains: list | None = None, test_domain: int | None = None,
             output_dir=None, overlays: int = 6, log=print) -> dict:
    """Evaluate a seg-train checkpoint on its held-out domain (or ``test_domain``): DSC /
    HD95 / ASD per structure, ``eval.json`` and overlay PNGs in ``output_dir``."""
    from edgeconv.data.images import save_image
    from edgeconv.segmentation.overlay import overlay
    from edgeconv.train.checkpoint import load_model

    model, ckpt = load_model(checkpoint)
    if getattr(model, "task", None) != "segmentation":
        raise EdgeconvError(f"{checkpoint}: not a segmentation checkpoint "
                            f"({ckpt['model_config'].get('name')})")
    lodo = (ckpt.get("metrics") or {}).get("lodo") or {}
    c = dict(lodo.get("config") or {})
    if domains is None:
        cfg = SegTrainConfig(**{k: v for k, v in c.items()
                                if k in SegTrainConfig.__dataclass_fields__})
        cfg.size = int(model.input_size[0])
        domains = load_domains(cfg)
    if test_domain is None:
        test_domain = int(c.get("test_domain", 0))
    if not 0 <= test_domain < len(domains):
        raise EdgeconvError(f"--test-domain must be 0..{len(domains) - 1}, got {test_domain}")
    test = domains[test_domain]
    if tuple(test.images.shape[1:3]) != tuple(model.input_size):
        raise EdgeconvError(f"{checkpoint}: built for {model.input_size[0]}x"
                            f"{model.input_size[1]}, the data is {test.images.shape[1]}x"
                            f"{test.images.shape[2]}")
    res, preds = evaluate_domains(model, [test])
    s = res[test.name]
    summary = {"checkpoint": str(checkpoint), "test_domain": test.name,
               "aspp": ckpt["model_config"].get("aspp"), "n": s["n"],
               "cup": s["cup"], "disc": s["disc"],
               "mean_dsc": (s["cup"]["dsc"] + s["disc"]["dsc"]) / 2,
               "mean_hd95": (s["cup"]["hd95"] + s["disc"]["hd95"]) / 2,
               "units": "DSC %, HD95 / ASD pixels at the model's input size"}
    log(f"{test.name}: DSC cup {s['cup']['dsc']:.2f} disc {s['disc']['dsc']:.2f} | HD95 cup "
        f"{s['cup']['hd95']:.2f} disc {s['disc']['hd95']:.2f} | ASD cup {s['cup']['asd']:.2f} "
        f"disc {s['disc']['asd']:.2f} px ({s['n']} images)")
    if output_dir is not None:
        out = Path(output_dir)
        from edgeconv.fileio import atomic_write_text

        paths = []
        for i in range(min(overlays, len(test))):
            p = out / "overlays" / f"{test.name.split()[0]}_{test.names[i]}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            save_image(p, overlay(test.images[i], pred=preds[test.name][i], gt=test.masks[i]))
            paths.append(str(p))
        summary["overlays"] = paths
        atomic_write_text(out / "eval.json", json.dumps(summary, indent=2) + "\n")
    return summary
