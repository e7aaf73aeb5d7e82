"""The unlock trial with impostors drawn from a face generator (torch-free).

``edgeconv unlock-trial FACE.onnx --impostors GEN.onnx --count N``: fresh synthetic identities
are enrolled (``users``, ``enrol_images`` each) and make genuine attempts; then N faces that
the generator file draws from seeded N(0, 1) noise (:class:`FaceGenerator`) each claim EVERY
enrolled user (1:1) and the whole gallery once (1:N). Everything decides through
:func:`edgeconv.runtime.trial.unlock_trial` (the enrol / unlock code path, the calibrated
threshold, the lock-out policy's record). For comparison the same trial runs with N synthetic
impostors (people never enrolled): the figure the quickstart reports today.

Rates come with 95% Clopper-Pearson (exact) and Wilson intervals
(:mod:`edgeconv.runtime.rates`). The 1:1 attempts of one face against several users are not
independent (a face that looks like one user may look like others), so the 1:1 interval is
optimistic; the 1:N rate (one attempt per face: accepted by the gallery's best match) has
independent trials and an honest interval.
"""

from __future__ import annotations

import numpy as np

from edgeconv.data.synthetic import VALIDATION_IDENTITY_OFFSET

#: identities of the trial (far from training / validation / calibration ones)
TRIAL_IDENTITY_BASE = VALIDATION_IDENTITY_OFFSET + (7 << 24)


def trial_people(size, users: int, enrol_images: int, genuine_images: int, impostors: int,
                 difficulty=0.5, seed: int = 0):
    """(enrol, genuine, synthetic impostor images) of fresh synthetic identities."""
    from edgeconv.data.synthetic import SyntheticFaces

    per = enrol_images + genuine_images
    ds = SyntheticFaces(max(2, users), per, size=tuple(size), seed=seed, difficulty=difficulty,
                        cache=False)
    ids = np.repeat(np.arange(users, dtype=np.int64) + TRIAL_IDENTITY_BASE, per)
    imgs = ds.render_batch(ids, np.tile(np.arange(per, dtype=np.int64), users))
    enrol, genuine = {}, {}
    for k in range(users):
        rows = imgs[k * per:(k + 1) * per]
        enrol[f"user{k:03d}"], genuine[f"user{k:03d}"] = rows[:enrol_images], rows[enrol_images:]
    imp_ids = np.arange(impostors, dtype=np.int64) + TRIAL_IDENTITY_BASE + users + 1000
    imp = ds.render_batch(imp_ids, np.zeros(impostors, np.int64)) if impostors else \
        np.zeros((0, *size, 3), np.uint8)
    return enrol, genuine, np.ascontiguousarray(imp)


def _rate(accepted: int, attempts: int) -> dict:
    from edgeconv.runtime.rates import clopper_pearson, wilson

    return {"accepted": int(accepted), "attempts": int(attempts),
            "rate": accepted / attempts if attempts else None,
            "clopper_pearson_95": list(clopper_pearson(accepted, attempts)),
            "wilson_95": list(wilson(accepted, attempts))}


def generator_trial(model_path, generator_path, count: int = 200, users: int = 10,
                    enrol_images: int = 3, genuine_images: int = 3, far=None,
                    difficulty=0.5, seed: int = 0, threads: int = 1,
                    synthetic: bool = True, db_dir=None) -> dict:
    """Run the trial (see the module); returns a JSON-ready report."""
    from edgeconv.runtime.embedder import Embedder
    from edgeconv.runtime.generator import FaceGenerator
    from edgeconv.runtime.trial import unlock_trial

    with Embedder(model_path, threads=threads, warmup=False) as emb:
        size = tuple(emb.input_size)
    enrol, genuine, synth = trial_people(size, users, enrol_images, genuine_images,
                                         count if synthetic else 0, difficulty, seed)
    with FaceGenerator(generator_path, threads=threads) as gen:
        faces = gen.generate(count, seed=seed)
        gen_label, gen_meta = gen.label, gen.meta
    report = {"model": str(model_path), "generator": str(generator_path),
              "generator_label": gen_label, "lis_modules": gen_meta.get("lis_modules"),
              "count": int(count), "users": int(users), "seed": int(seed)}
    runs = {"generated": faces}
    if synthetic:
        runs["synthetic"] = synth
    for name, imgs in runs.items():
        r = unlock_trial(model_path, enrol, genuine, imgs, far=far, threads=threads,
                         claims=users, seed=seed, db_dir=db_dir)
        report.setdefault("threshold", r["threshold"])
        report.setdefault("threshold_source", r["threshold_source"])
        report.setdefault("label", r["label"])
        report["genuine"] = _rate(r["genuine"]["accepted"], r["genuine"]["attempts"])
        report[name] = {"far_1to1": _rate(r["impostor"]["accepted"], r["impostor"]["attempts"]),
                        "far_1toN": _rate(r["impostor_1n"]["accepted"],
                                          r["impostor_1n"]["attempts"])}
    return report


def format_report(r: dict) -> list[str]:
    def fmt(d):
        lo, hi = d["clopper_pearson_95"]
        return (f"{100 * (d['rate'] or 0):.2f}% ({d['accepted']}/{d['attempts']}; 95% CI "
                f"{100 * lo:.2f}-{100 * hi:.2f}%)")

    lines = [f"model {r['label']}, threshold {r['threshold']:.4f} ({r['threshold_source']}), "
             f"{r['users']} enrolled users",
             f"genuine accept {fmt(r['genuine'])}"]
    for name, what in (("generated", f"{r['count']} generated faces ({r['generator_label']})"),
                       ("synthetic", f"{r['count']} synthetic impostors")):
        if name in r:
            lines.append(f"{what}: false accept 1:1 {fmt(r[name]['far_1to1'])}, "
                         f"1:N {fmt(r[name]['far_1toN'])}")
    return lines
