"""The torch-free unlock trial (quickstart step): enrol, genuine and impostor attempts."""

from __future__ import annotations

import numpy as np
import pytest

from tests import _unlock_models as TM

pytest.importorskip("onnx")


def test_trial_counts_and_decisions_match_the_unlock_rule(tmp_path):
    from edgeconv.runtime.embedder import Embedder
    from edgeconv.runtime.trial import average_template, unlock_trial

    model = TM.model_dir() / "face.onnx"
    ids, idx = np.repeat(np.arange(6), 5), np.tile(np.arange(5), 6)
    imgs = TM.render(ids, idx)
    enrol = {f"u{k}": imgs[(ids == k) & (idx < 3)] for k in range(4)}
    genuine = {f"u{k}": imgs[(ids == k) & (idx >= 3)] for k in range(4)}
    impostors = imgs[ids >= 4]                        # people never enrolled
    r = unlock_trial(model, enrol, genuine, impostors, far="1e-2", claims=3, db_dir=tmp_path)
    assert r["users"] == 4 and r["genuine"]["attempts"] == 8
    assert r["impostor"]["attempts"] == 10 * 3 and r["impostor_1n"]["attempts"] == 10
    assert list(tmp_path.iterdir()) == []             # the temporary store is gone
    with Embedder(model) as emb:                      # recompute the genuine decisions by hand
        thr, _ = emb.threshold(far="1e-2")
        assert r["threshold"] == thr and "calibrated at FAR 0.01" in r["threshold_source"]
        accepted = 0
        for u in enrol:
            t = average_template(emb.embed_images(enrol[u]))
            accepted += int(np.sum(emb.embed_images(genuine[u]) @ t > thr))
    assert r["genuine"]["accepted"] == accepted
    assert r["genuine_accept"] == accepted / 8
    # the tiny LDA model separates its identities: all genuine in, no impostor in
    assert r["genuine_accept"] >= 0.75 and r["impostor_accept"] <= 0.1
