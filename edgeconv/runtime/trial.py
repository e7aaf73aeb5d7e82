"""An unlock trial of an exported model (torch-free): enrol, then genuine and impostor attempts.

The quickstart's proof that a model it exported works as a phone-unlock verifier. Everything
goes through the code ``edgeconv enroll`` / ``edgeconv unlock`` run: the :class:`Embedder`
(preprocessing, runtime), the calibrated threshold of the model's metadata, the SQLite
:class:`TemplateStore` (one averaged template per user) and ``decide.attempt`` (the score,
the decision and the lock-out policy's durable record). Only the images come from memory
instead of files, and the policy's clock is simulated (an hour passes between attempts, so no
attempt is refused by a cool-down and every decision is counted).

Attempts:

* genuine 1:1: each enrolled user, their own new images (``genuine_accept`` = accepted share);
* impostor 1:1: images of people never enrolled, each claiming ``claims`` enrolled users
  (``impostor_accept``; its FAR target is the threshold's);
* impostor 1:N: the same images against the whole gallery (identify-style unlock,
  ``impostor_accept_1n``; grows with the gallery, about ``users x FAR``).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from edgeconv.runtime.decide import attempt, average_template


class _SimClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 3600.0
        return self.t


def unlock_trial(model_path, enrol: dict, genuine: dict, impostors: np.ndarray,
                 far=None, threads: int = 1, claims: int = 10, seed: int = 0,
                 db_dir=None) -> dict:
    """Run the trial; returns counts and rates (JSON-ready).

    ``enrol``/``genuine``: ``{user: uint8 (n, H, W, 3)}`` enrolment and attempt images;
    ``impostors``: uint8 (m, H, W, 3) images of people not enrolled.
    """
    from edgeconv.runtime.embedder import Embedder
    from edgeconv.runtime.policy import LockoutPolicy
    from edgeconv.runtime.store import TemplateStore

    users = sorted(enrol)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=db_dir) as tmp, \
            Embedder(model_path, threads=threads) as emb:
        thr, source = emb.threshold(far=far)
        store = TemplateStore(Path(tmp) / "trial.db")
        try:
            for u in users:
                store.enroll(u, average_template(emb.embed_images(enrol[u])), emb.sha256,
                             emb.label, num_images=len(enrol[u]))
            policy = LockoutPolicy(store, clock=_SimClock())
            gen = {"attempts": 0, "accepted": 0, "users_all_rejected": 0}
            scores_g = []
            for u in users:
                e = emb.embed_images(genuine[u])
                got = 0
                for row in e:
                    r = attempt(store, policy, row, u, thr, emb.sha256, emb.label)
                    got += r["accepted"]
                    scores_g.append(r["score"])
                gen["attempts"] += len(e)
                gen["accepted"] += got
                gen["users_all_rejected"] += got == 0
            e_imp = emb.embed_images(impostors)
            imp = {"attempts": 0, "accepted": 0}
            one_n = {"attempts": 0, "accepted": 0}
            k = min(int(claims), len(users))
            for row in e_imp:
                for u in rng.choice(users, size=k, replace=False):
                    r = attempt(store, policy, row, str(u), thr, emb.sha256, emb.label)
                    imp["attempts"] += 1
                    imp["accepted"] += r["accepted"]
                r = attempt(store, policy, row, None, thr, emb.sha256, emb.label)
                one_n["attempts"] += 1
                one_n["accepted"] += r["accepted"]
        finally:
            store.close()
        label = emb.label
    return {"model": str(model_path), "label": label, "threshold": thr,
            "threshold_source": source, "users": len(users),
            "enrol_images_per_user": int(np.median([len(v) for v in enrol.values()])),
            "genuine": gen, "impostor": imp, "impostor_1n": one_n,
            "genuine_accept": gen["accepted"] / max(gen["attempts"], 1),
            "impostor_accept": imp["accepted"] / max(imp["attempts"], 1),
            "impostor_accept_1n": one_n["accepted"] / max(one_n["attempts"], 1),
            "genuine_score_median": float(np.median(scores_g)) if scores_g else None,
            "seconds": time.perf_counter() - t0}
