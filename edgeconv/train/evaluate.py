"""``edgeconv eval``: face verification of a checkpoint (10-fold protocol, TAR@FAR, EER, ROC).

Metrics come from :mod:`edgeconv.train.verification` (contiguous folds, threshold chosen on
9 folds, mean +- std; optional flip test). This module embeds the pair images, writes the JSON
report and ROC plot, and stores a compact summary in the checkpoint's ``metrics["verification"]``
(rewritten atomically) so export and the unlock app can use its thresholds::

    {"accuracy", "accuracy_std", "threshold", "far_thresholds": {"1e-3": t, "1e-4": t},
     "tar_at_far": {"1e-3": tar, ...}, "eer", "eer_threshold", "auc", "flip_test",
     "target_far", "target_threshold", "pairs": {"source", "count", "same"},
     "calibration": {...}, "num_impostors": n, "open_set": {...}}

``far_thresholds`` come from ``calibration`` (:mod:`edgeconv.train.calibration`: counts,
resolvability, a log-FAR ROC for interpolation), ``tar_at_far`` from the evaluation pairs.

Synthetic identities come in disjoint splits that never overlap training: ``val`` (used by
``train`` every epoch to pick ``best.ckpt``), ``test`` (balanced pairs, the 10-fold protocol),
``calibration`` (all pairs of 300 identities x 4 images: the FAR thresholds) and ``open set``
(all pairs of 300 more: TAR at FAR, and what the calibrated thresholds do on new identities).
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


from edgeconv.train.calibration import far_key  # noqa: E402,F401  (re-exported)

#: Calibration and open-set test identities (synthetic), beyond the test ones; the unlock
#: trial of the quickstart uses identities beyond those.
CALIBRATION_IDENTITY_SHIFT = 2 * TEST_IDENTITY_SHIFT
OPEN_SET_IDENTITY_SHIFT = 3 * TEST_IDENTITY_SHIFT
UNLOCK_IDENTITY_SHIFT = 4 * TEST_IDENTITY_SHIFT
CALIBRATION_IDENTITIES, CALIBRATION_IMAGES = 300, 4   # 717,600 impostor pairs: resolves 1e-4


def load_pairs(spec, size=(96, 96), num_pairs: int = 1000, identities: int = 1,
               difficulty=0.5, data_seed: int = 0, split: str = "val",
               max_pairs: int | None = None):
    """``synthetic`` (split ``val`` or ``test``), a pair list or an insightface ``.bin``."""
    if str(spec) == "synthetic":
        from edgeconv.data.synthetic import VALIDATION_IDENTITY_OFFSET, SyntheticFaces

        if split not in ("val", "test"):
            raise EdgeconvError(f"split must be val or test, got {split!r}")
        from edgeconv.data.pairs import check_pair_count

        check_pair_count(int(num_pairs), size, "--num-pairs")
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
    if flip:
        left, right = V.flip_test_embeddings(left, lf), V.flip_test_embeddings(right, rf)
    from edgeconv.train.calibration import calibrate

    # thresholds from the pairs themselves, with their counts: a later calibration split
    # (evaluate_checkpoint, synthetic) replaces this one
    set_calibration(res, calibrate(V.cosine_scores(left, right), pairs.is_same, fars=fars,
                                   source="the evaluation pairs"), target_far)
    return res


def set_calibration(res: dict, cal: dict, target_far: float | None = None) -> None:
    """Make ``cal`` the result's calibration: its thresholds become ``far_thresholds``."""
    res["calibration"] = cal
    res["far_thresholds"] = dict(cal["far_thresholds"])
    if target_far:
        res["target_far"] = float(target_far)
        res["target_threshold"] = cal["far_thresholds"][far_key(target_far)]


def embed_identity_set(model, images, labels, flip: bool = False, batch_size: int = 256,
                       device=None):
    """All-pairs scores (see :func:`edgeconv.train.calibration.all_pairs`) of a model."""
    from edgeconv.train import verification as V
    from edgeconv.train.calibration import all_pairs

    e = embed(model, images, batch_size, device=device)
    if flip:
        e = V.flip_test_embeddings(e, embed(model, images, batch_size, flip=True, device=device))
    return all_pairs(e, labels)


def synthetic_calibration(model, size, tcfg: dict, fars, flip: bool = False,
                          identities: int = CALIBRATION_IDENTITIES,
                          images: int = CALIBRATION_IMAGES, batch_size: int = 256) -> dict:
    """Calibrate on all pairs of unseen synthetic identities (the calibration split)."""
    from edgeconv.data.synthetic import VALIDATION_IDENTITY_OFFSET
    from edgeconv.train.calibration import calibrate, synthetic_identity_images

    imgs, labels = synthetic_identity_images(
        size, identities, images, VALIDATION_IDENTITY_OFFSET + CALIBRATION_IDENTITY_SHIFT,
        difficulty=tcfg.get("difficulty", 0.5), data_seed=int(tcfg.get("data_seed", 0)))
    scores, same = embed_identity_set(model, imgs, labels, flip=flip, batch_size=batch_size)
    return calibrate(scores, same, fars=fars, num_images=len(imgs), num_identities=identities,
                     source=f"synthetic calibration split ({identities} identities x {images} "
                            f"images, all pairs)")


def synthetic_open_set(model, size, tcfg: dict, calibration: dict, flip: bool = False,
                       identities: int = CALIBRATION_IDENTITIES,
                       images: int = CALIBRATION_IMAGES, batch_size: int = 256) -> dict:
    """TAR at FAR on all pairs of other unseen identities, with thresholds chosen on them
    (``tar_at_far``) and with the calibrated ones (``at_calibrated``: the FAR and TAR the
    calibrated thresholds give on identities they were not chosen on)."""
    from edgeconv.data.synthetic import VALIDATION_IDENTITY_OFFSET
    from edgeconv.train import verification as V
    from edgeconv.train.calibration import resolvable, synthetic_identity_images

    imgs, labels = synthetic_identity_images(
        size, identities, images, VALIDATION_IDENTITY_OFFSET + OPEN_SET_IDENTITY_SHIFT,
        difficulty=tcfg.get("difficulty", 0.5), data_seed=int(tcfg.get("data_seed", 0)))
    s, y = embed_identity_set(model, imgs, labels, flip=flip, batch_size=batch_size)
    out = {"source": f"synthetic open-set test split ({identities} identities x {images} "
                     f"images, all pairs)",
           "num_genuine": int(y.sum()), "num_impostors": int((~y).sum()),
           "eer": V.eer(s, y)["eer"],
           "tar_at_far": {}, "resolvable": {}, "at_calibrated": {}}
    for key, thr in calibration["far_thresholds"].items():
        t = V.tar_at_far(s, y, float(key))
        out["tar_at_far"][key] = t["tar"]
        out["resolvable"][key] = resolvable(float(key), out["num_impostors"])
        out["at_calibrated"][key] = {"threshold": float(thr),
                                     "far": float(np.mean(s[~y] > thr)),
                                     "tar": float(np.mean(s[y] > thr))}
    return out


def compact(result: dict, source: str) -> dict:
    """The summary stored in ``checkpoint["metrics"]["verification"]``."""
    out = {k: result[k] for k in ("accuracy", "accuracy_std", "threshold", "eer",
                                  "eer_threshold", "auc", "flip_test") if k in result}
    out["far_thresholds"] = dict(result["far_thresholds"])
    out["tar_at_far"] = {far_key(t["far_target"]): t["tar"] for t in result["tar_at_far"]}
    # one definition of "resolvable" (>= 10 / FAR impostor pairs, runtime.thresholds), about
    # the pairs the stored threshold came from: the calibration split's when there is one
    # (it used to be ">= 1 / FAR" on the test pairs, disagreeing with calibration.resolvable)
    from edgeconv.runtime.thresholds import resolvable

    cal_res = (result.get("calibration") or {}).get("resolvable") or {}
    out["far_resolvable"] = {far_key(t["far_target"]): resolvable(t["far_target"],
                                                                  t["num_negatives"])
                             for t in result["tar_at_far"]}
    out["far_resolvable"].update({k: v for k, v in cal_res.items()})
    if "target_far" in result:
        out["target_far"] = result["target_far"]
        out["target_threshold"] = result["target_threshold"]
    cal = result.get("calibration")
    if cal:
        out["calibration"] = dict(cal)
        out["num_impostors"] = int(cal["num_impostors"])
    if result.get("open_set"):
        out["open_set"] = dict(result["open_set"])
    out["pairs"] = {"source": source, "count": int(result["num_pairs"]),
                    "same": int(result["num_same"])}
    return out


def evaluate_checkpoint(path, pairs: str = "synthetic", flip: bool = False,
                        target_far: float = 1e-3, num_pairs: int | None = None,
                        output_dir=None, batch_size: int = 256, write_back: bool = True,
                        plot: bool = True, echo=None, name: str | None = None,
                        calibrate: bool = True) -> dict:
    """Evaluate checkpoint ``path``: JSON report + ROC PNG, summary into the checkpoint.

    Synthetic pairs: the 10-fold protocol on the balanced test pairs, the FAR thresholds
    calibrated on all pairs of a calibration split of unseen identities (``calibrate``), and
    TAR at FAR on all pairs of an open-set split (identities seen nowhere else). Pair files:
    everything from the pairs, their counts stored with the thresholds."""
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
    if pairs == "synthetic" and calibrate:
        from edgeconv.train.calibration import CALIBRATION_FARS

        fars = tuple(sorted(set(CALIBRATION_FARS) | {float(target_far)}, reverse=True))
        cal = synthetic_calibration(model, size, tcfg, fars, flip=flip, batch_size=batch_size)
        set_calibration(res, cal, target_far)
        res["open_set"] = synthetic_open_set(model, size, tcfg, cal, flip=flip,
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
    cal = res["calibration"]
    unresolved = [k for k, ok in cal["resolvable"].items() if not ok]
    echo(f"calibration: {cal['num_impostors']} impostor / {cal['num_genuine']} genuine pairs "
         f"({cal['source']})" + (f"; NOT resolvable (< 10/FAR impostor pairs): FAR "
                                 f"{', '.join(unresolved)}" if unresolved else ""))
    if res.get("open_set"):
        o = res["open_set"]
        echo("open-set test (" + f"{o['num_impostors']} impostor pairs): " + ", ".join(
            f"TAR@FAR={k} {100 * o['tar_at_far'][k]:.1f}% (calibrated threshold: FAR "
            f"{o['at_calibrated'][k]['far']:.2g}, TAR {100 * o['at_calibrated'][k]['tar']:.1f}%)"
            for k in o["tar_at_far"]))
    echo(f"threshold at FAR {far_key(target_far)}: {res['target_threshold']:.4f}  |  "
         f"report {report}" + (f"  |  ROC {res['roc_plot']}" if plot else ""))
    return res


def main_json(res: dict) -> None:  # pragma: no cover - CLI helper
    json.dump({k: v for k, v in res.items() if k != "roc"}, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
