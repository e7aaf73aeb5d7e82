"""``edgeconv eval``: face verification of a checkpoint (10-fold protocol, TAR@FAR, EER, ROC).

Metrics come from :mod:`edgeconv.train.verification` (contiguous folds, threshold chosen on
9 folds, mean +- std; optional flip test). This module embeds the pair images, writes the JSON
report and ROC plot, and stores a compact summary in the checkpoint's ``metrics["verification"]``
(rewritten atomically) so export and the unlock app can use its thresholds::

    {"accuracy", "accuracy_std", "threshold", "far_thresholds": {"1e-3": t, "1e-4": t},
     "tar_at_far": {"1e-3": tar, ...}, "eer", "eer_threshold", "auc", "flip_test",
     "target_far", "target_threshold", "pairs": {"source", "count", "same"}}

Synthetic pairs come in two disjoint splits of identities that never overlap training:
``val`` (used by ``train`` every epoch to pick ``best.ckpt``) and ``test`` (the default for
``eval``), so the reported accuracy is not the one the best epoch was selected on.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from edgeconv.errors import EdgeconvError

#: Synthetic test pairs use identities this far beyond the validation ones.
TEST_IDENTITY_SHIFT = 1 << 28
DEFAULT_FARS = (1e-3, 1e-4)


def far_key(far: float) -> str:
    """1e-3 -> "1e-3", 5e-4 -> "5e-4" (JSON keys for far_thresholds)."""
    mant, exp = f"{float(far):e}".split("e")
    mant = mant.rstrip("0").rstrip(".")
    return f"{mant}e{int(exp)}"


def load_pairs(spec, size=(96, 96), num_pairs: int = 1000, identities: int = 1,
               difficulty=0.5, data_seed: int = 0, split: str = "val",
               max_pairs: int | None = None):
    """``synthetic`` (split ``val`` or ``test``), a pair list or an insightface ``.bin``."""
    if str(spec) == "synthetic":
        from edgeconv.data.synthetic import VALIDATION_IDENTITY_OFFSET, SyntheticFaces

        if split not in ("val", "test"):
            raise EdgeconvError(f"split must be val or test, got {split!r}")
        ds = SyntheticFaces(max(1, int(identities)), 1, size=tuple(size), seed=data_seed,
                            difficulty=difficulty, cache=False)
        shift = TEST_IDENTITY_SHIFT if split == "test" else 0
        return ds.make_pairs(int(num_pairs), seed=1 if split == "val" else 2,
                             identity_offset=VALIDATION_IDENTITY_OFFSET + shift)
    from edgeconv.data import open_pairs

    pairs = open_pairs(str(spec), size=tuple(size), max_pairs=max_pairs)
    if pairs.left.shape[1:3] != tuple(size):
        raise EdgeconvError(f"{spec}: images are {pairs.left.shape[1]}x{pairs.left.shape[2]}, "
                            f"the model needs {size[0]}x{size[1]}")
    return pairs


def embed(model, images: np.ndarray, batch_size: int = 256, flip: bool = False,
          device=None) -> np.ndarray:
    """Raw (unnormalised) embeddings of uint8 (N, H, W, 3) images, float64 (N, D)."""
    import torch

    from edgeconv.data.torch_datasets import iter_batches

    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.inference_mode():
            for x in iter_batches(images, batch_size=batch_size, flip=flip):
                if device is not None:
                    x = x.to(device)
                out.append(model(x).double().cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, 0))


def evaluate_pairs(model, pairs, flip: bool = False, device=None, fars=DEFAULT_FARS,
                   batch_size: int = 256, target_far: float | None = None) -> dict:
    """The full verification result (see :func:`verification.evaluate_embeddings`) plus
    ``pairs`` (count), ``far_thresholds`` and, when asked, ``target_far``/``target_threshold``."""
    from edgeconv.train import verification as V

    pairs.check("pairs")
    if len(pairs) < 20:
        raise EdgeconvError(f"need at least 20 pairs for the 10-fold protocol, got {len(pairs)}")
    fars = tuple(sorted(set(fars) | ({target_far} if target_far else set()), reverse=True))
    left = embed(model, pairs.left, batch_size, device=device)
    right = embed(model, pairs.right, batch_size, device=device)
    lf = rf = None
    if flip:
        lf = embed(model, pairs.left, batch_size, flip=True, device=device)
        rf = embed(model, pairs.right, batch_size, flip=True, device=device)
    res = V.evaluate_embeddings(left, right, pairs.is_same, lf, rf, fars=fars)
    res["pairs"] = int(len(pairs))
    res["far_thresholds"] = {far_key(t["far_target"]): t["threshold"] for t in res["tar_at_far"]}
    if target_far:
        t = next(t for t in res["tar_at_far"] if t["far_target"] == float(target_far))
        res["target_far"] = float(target_far)
        res["target_threshold"] = t["threshold"]
    return res


def compact(result: dict, source: str) -> dict:
    """The summary stored in ``checkpoint["metrics"]["verification"]``."""
    out = {k: result[k] for k in ("accuracy", "accuracy_std", "threshold", "eer",
                                  "eer_threshold", "auc", "flip_test") if k in result}
    out["far_thresholds"] = dict(result["far_thresholds"])
    out["tar_at_far"] = {far_key(t["far_target"]): t["tar"] for t in result["tar_at_far"]}
    out["far_resolvable"] = {far_key(t["far_target"]): t["resolvable"]
                             for t in result["tar_at_far"]}
    if "target_far" in result:
        out["target_far"] = result["target_far"]
        out["target_threshold"] = result["target_threshold"]
    out["pairs"] = {"source": source, "count": int(result["num_pairs"]),
                    "same": int(result["num_same"])}
    return out


def evaluate_checkpoint(path, pairs: str = "synthetic", flip: bool = False,
                        target_far: float = 1e-3, num_pairs: int | None = None,
                        output_dir=None, batch_size: int = 256, write_back: bool = True,
                        plot: bool = True, echo=None, name: str | None = None) -> dict:
    """Evaluate checkpoint ``path``: JSON report + ROC PNG, summary into the checkpoint."""
    from edgeconv.fileio import atomic_write_json
    from edgeconv.train import verification as V
    from edgeconv.train.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint

    echo = echo or (lambda msg: print(msg, flush=True))
    path = Path(path)
    ckpt = load_checkpoint(path)  # refuses pickles that would run code
    model = model_from_checkpoint(ckpt, path).eval()
    size = tuple(ckpt["model_config"].get("input_size") or (96, 96))
    tcfg = ((ckpt.get("training") or {}).get("config") or {}) if isinstance(ckpt.get("training"), dict) else {}
    if not 0.0 < float(target_far) < 1.0:
        raise EdgeconvError(f"--target-far must be in (0, 1), got {target_far}")
    if pairs == "synthetic":
        num = int(num_pairs or 2000)
        pair_set = load_pairs("synthetic", size=size, num_pairs=num,
                              identities=int(tcfg.get("identities", 1)),
                              difficulty=tcfg.get("difficulty", 0.5),
                              data_seed=int(tcfg.get("data_seed", 0)), split="test")
        source = (f"synthetic test split ({num} pairs, difficulty {tcfg.get('difficulty', 0.5)}, "
                  f"seed {tcfg.get('data_seed', 0)})")
    else:
        pair_set = load_pairs(pairs, size=size, max_pairs=num_pairs)
        source = str(pairs)
    res = evaluate_pairs(model, pair_set, flip=flip, target_far=target_far,
                         batch_size=batch_size)
    res["checkpoint"] = str(path)
    res["source"] = source
    res["model_config"] = ckpt["model_config"]
    out_dir = Path(output_dir) if output_dir else path.parent
    stem = name or f"eval_{path.stem}"
    report = out_dir / f"{stem}.json"
    atomic_write_json(report, res)
    res["report"] = str(report)
    if plot:
        cfg = ckpt["model_config"]
        res["roc_plot"] = str(V.roc_plot(out_dir / f"{stem}_roc.png",
                                         {f"{cfg['name']} {cfg['op']}": res},
                                         title=f"ROC: {source}"[:80]))
    if write_back:
        metrics = dict(ckpt.get("metrics") or {})
        metrics["verification"] = compact(res, source)
        ckpt["metrics"] = metrics
        save_checkpoint(path, ckpt)
    echo(V.summary_line(res, f"{path.name} ({source})"))
    echo(f"threshold at FAR {far_key(target_far)}: {res['target_threshold']:.4f}  |  "
         f"report {report}" + (f"  |  ROC {res['roc_plot']}" if plot else ""))
    return res


def main_json(res: dict) -> None:  # pragma: no cover - CLI helper
    json.dump({k: v for k, v in res.items() if k != "roc"}, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
