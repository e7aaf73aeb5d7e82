"""The unlock decision, in one place (torch-free, click-free, prints nothing).

Scores are cosine similarities of L2-normalised embeddings; a probe is accepted when
``score > threshold`` (the rule the thresholds were calibrated with,
:mod:`edgeconv.train.verification`). ``edgeconv enroll / verify / identify / unlock``
(:mod:`edgeconv.runtime.unlock`, which presents) and the quickstart's unlock trial
(:mod:`edgeconv.runtime.trial`, which simulates) both decide through here.
"""

from __future__ import annotations

import numpy as np

from edgeconv.errors import EdgeconvError


def average_template(embeddings: np.ndarray) -> np.ndarray:
    """One unit-norm template from a user's enrolment embeddings (what ``enroll`` stores)."""
    t = np.asarray(embeddings, dtype=np.float64).mean(axis=0)
    return (t / np.linalg.norm(t)).astype(np.float32)


def accepts(score: float, threshold: float) -> bool:
    """The decision rule: strictly above the threshold."""
    return float(score) > float(threshold)


def best_match(e: np.ndarray, templates) -> list[tuple[str, float]]:
    """(user, score) of every template, best first."""
    mat = np.stack([t.embedding for t in templates])
    scores = mat @ e
    order = np.argsort(-scores, kind="stable")
    return [(templates[i].user, float(scores[i])) for i in order]


def model_templates(store, model_hash: str, model_label: str):
    """Templates made by this model; a clear error when there are none."""
    from edgeconv.runtime.store import ModelMismatch

    ts = store.templates(model_hash=model_hash)
    if not ts:
        others = store.users()
        if others:
            names = sorted({u["model_name"] for u in others})
            raise ModelMismatch(
                f"no user is enrolled with this model ({model_label}, sha256 "
                f"{model_hash[:12]}); the {len(others)} enrolled user(s) were enrolled with "
                f"model(s) {', '.join(names)} and cannot be compared with it")
        raise EdgeconvError(f"no users are enrolled in {store.path}")
    return ts


def attempt(store, policy, e: np.ndarray, user: str | None, thr: float, model_hash: str,
            model_label: str) -> dict:
    """Score ``e`` (user given: 1:1, else 1:N) and record the attempt durably in the lock-out
    ``policy``; returns the attempt's record.

    Identify mode: a match to a locked-out user is refused (``refused_locked_user``) and
    counted against identify mode (:meth:`LockoutPolicy.record_identify`).
    """
    refused = False
    if user:
        t = store.get_for_model(user, model_hash, model_label)
        who, score = user, float(e @ t.embedding)
        accepted = accepts(score, thr)
        st = policy.record(user, accepted)                  # durable before any output
    else:
        who, score = best_match(e, model_templates(store, model_hash, model_label))[0]
        st, accepted = policy.record_identify(who, accepts(score, thr))
        refused = accepts(score, thr) and not accepted
    return {"user": who if (accepted or user) else None, "best_user": who, "score": score,
            "accepted": accepted, "refused_locked_user": refused, "failures": st.failures,
            "lockouts": st.lockouts, "locked_for": st.remaining(policy.clock())}
