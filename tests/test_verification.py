"""Verification metrics: 10-fold protocol, TAR@FAR, EER, ROC, plots."""

import json
from statistics import NormalDist

import numpy as np
import pytest

from edgeconv.errors import EdgeconvError
from edgeconv.train.verification import (accuracy_at, best_threshold, contiguous_folds,
                                         cosine_scores, eer, evaluate_embeddings,
                                         evaluate_scores, flip_test_embeddings,
                                         kfold_accuracy, l2_normalize, roc_auc, roc_curve,
                                         roc_plot, summary_line, tar_at_far, threshold_at_far)


def _quantiles(n, mean=0.0):
    """n deterministic 'samples' of N(mean, 1): the (i + 0.5) / n quantiles."""
    nd = NormalDist(mean, 1.0)
    return np.array([nd.inv_cdf((i + 0.5) / n) for i in range(n)])


def _brute_kfold(scores, labels, n_folds=10):
    """Independent loop implementation with the documented rules."""
    n = len(scores)
    sizes = [n // n_folds + (1 if k < n % n_folds else 0) for k in range(n_folds)]
    starts = np.cumsum([0] + sizes)
    accs, thrs = [], []
    for k in range(n_folds):
        test = np.zeros(n, bool)
        test[starts[k]:starts[k + 1]] = True
        s, y = scores[~test], labels[~test]
        u = sorted(set(s.tolist()))
        cands = [np.nextafter(u[0], -np.inf)] + [(a + b) / 2 for a, b in zip(u, u[1:])] + [u[-1]]
        accs_train = [np.mean((s > t) == y) for t in cands]
        best = [t for t, a in zip(cands, accs_train) if a == max(accs_train)]
        t = best[len(best) // 2]
        thrs.append(t)
        accs.append(np.mean((scores[test] > t) == labels[test]))
    return np.mean(accs), np.std(accs), np.mean(thrs), accs


def test_perfectly_separable():
    rng = np.random.default_rng(0)
    labels = np.tile([True, False], 300)
    scores = np.where(labels, rng.uniform(0.5, 1.0, 600), rng.uniform(-1.0, 0.4, 600))
    r = evaluate_scores(scores, labels)
    assert r["accuracy"] == 1.0 and r["accuracy_std"] == 0.0
    assert 0.4 < r["threshold"] < 0.5
    assert r["eer"] == 0.0 and r["auc"] == 1.0
    assert all(t["tar"] == 1.0 for t in r["tar_at_far"])


def test_kfold_matches_brute_force_with_ties():
    rng = np.random.default_rng(3)
    labels = rng.random(237) < 0.5
    scores = np.round(rng.normal(labels * 1.0, 1.0), 1)  # many ties
    r = kfold_accuracy(scores, labels)
    mean, std, thr, accs = _brute_kfold(scores, labels)
    assert r["accuracy"] == pytest.approx(mean, abs=1e-12)
    assert r["accuracy_std"] == pytest.approx(std, abs=1e-12)
    assert r["threshold"] == pytest.approx(thr, abs=1e-12)
    np.testing.assert_allclose(r["fold_accuracies"], accs)
    assert 0.55 < r["accuracy"] < 0.8  # overlapping classes: far from perfect


def test_best_threshold_is_optimal():
    rng = np.random.default_rng(1)
    labels = rng.random(300) < 0.4
    scores = rng.normal(labels * 0.8, 1.0)
    thr, acc = best_threshold(scores, labels)
    assert acc == pytest.approx(accuracy_at(scores, labels, thr))
    grid = np.linspace(scores.min() - 1, scores.max() + 1, 20001)
    assert acc >= max(np.mean((scores > t) == labels) for t in grid) - 1e-12


def test_contiguous_folds():
    folds = contiguous_folds(25, 10)
    assert [len(f) for f in folds] == [3] * 5 + [2] * 5
    np.testing.assert_array_equal(np.concatenate(folds), np.arange(25))
    assert all((np.diff(f) == 1).all() for f in folds)
    # contiguity matters: a fold that holds only one class is scored on its own
    labels = np.array([True] * 50 + [False] * 50)
    scores = np.where(labels, 1.0, 0.0)
    assert kfold_accuracy(scores, labels)["accuracy"] == 1.0
    with pytest.raises(EdgeconvError):
        contiguous_folds(5, 10)


def test_eer_on_gaussians():
    pos, neg = _quantiles(4000, 1.0), _quantiles(4000, -1.0)
    scores = np.r_[pos, neg]
    labels = np.r_[np.ones(4000, bool), np.zeros(4000, bool)]
    e = eer(scores, labels)
    assert e["eer"] == pytest.approx(NormalDist().cdf(-1.0), abs=2e-3)  # 0.1587
    assert abs(e["threshold"]) < 0.01  # symmetric
    assert roc_auc(scores, labels) == pytest.approx(NormalDist().cdf(2 / np.sqrt(2)), abs=2e-3)


def test_tar_at_far_on_gaussians():
    pos, neg = _quantiles(5000, 2.0), _quantiles(20000, 0.0)
    scores = np.r_[pos, neg]
    labels = np.r_[np.ones(5000, bool), np.zeros(20000, bool)]
    t = tar_at_far(scores, labels, 1e-3)
    z = NormalDist().inv_cdf(1 - 1e-3)
    assert t["resolvable"] and t["false_accepts_allowed"] == 20
    assert t["far_achieved"] <= 1e-3
    assert t["threshold"] == pytest.approx(z, abs=0.02)
    assert t["tar"] == pytest.approx(NormalDist().cdf(2.0 - z), abs=0.01)  # ~0.138
    # the threshold is the smallest one that keeps FAR <= target
    neg_sorted = np.sort(neg)[::-1]
    lower = neg_sorted[neg_sorted < t["threshold"]][0]
    assert np.mean(neg > np.nextafter(lower, -np.inf)) > 1e-3
    assert threshold_at_far(scores, labels, 1e-3) == t["threshold"]
    t4 = tar_at_far(scores, labels, 1e-4)
    assert t4["resolvable"] and t4["false_accepts_allowed"] == 2 and "noisy" in t4["note"]


def test_unresolvable_far_is_flagged():
    rng = np.random.default_rng(0)
    labels = np.tile([True, False], 300)
    scores = rng.normal(labels * 2.0, 1.0)
    t = tar_at_far(scores, labels, 1e-4)
    assert not t["resolvable"]
    assert t["min_far"] == pytest.approx(1 / 300)
    assert t["far_achieved"] == 0.0
    assert t["threshold"] == scores[~labels].max()
    assert "300" in t["note"]
    assert "unresolved" in summary_line(evaluate_scores(scores, labels))


def test_roc_curve_shape():
    rng = np.random.default_rng(2)
    labels = rng.random(500) < 0.5
    scores = np.round(rng.normal(labels * 1.0, 1.0), 2)
    far, tar, thr = roc_curve(scores, labels)
    assert far[0] == 0 and tar[0] == 0 and far[-1] == 1 and tar[-1] == 1
    assert (np.diff(far) >= 0).all() and (np.diff(tar) >= 0).all() and (np.diff(thr) < 0).all()
    for j in (0, len(thr) // 3, len(thr) - 1):  # each point is the rule score > thr
        assert tar[j] == np.mean(scores[labels] > thr[j])
        assert far[j] == np.mean(scores[~labels] > thr[j])
    same = np.zeros(400)  # uninformative scores
    assert roc_auc(same, np.tile([True, False], 200)) == 0.5


def test_embeddings_flip_and_json(tmp_path):
    rng = np.random.default_rng(4)
    ids = rng.normal(size=(50, 16))
    a, b = rng.integers(0, 50, 400), rng.integers(0, 50, 400)
    b[::2] = a[::2]
    left = ids[a] + 0.3 * rng.normal(size=(400, 16))
    right = ids[b] + 0.3 * rng.normal(size=(400, 16))
    lf = ids[a] + 0.3 * rng.normal(size=(400, 16))
    rf = ids[b] + 0.3 * rng.normal(size=(400, 16))
    same = a == b
    plain = evaluate_embeddings(left, right, same)
    flip = evaluate_embeddings(left, right, same, lf, rf)
    assert flip["flip_test"] and not plain["flip_test"]
    assert plain["accuracy"] > 0.9
    assert flip["eer"] <= plain["eer"]  # averaging two views reduces noise
    np.testing.assert_allclose(flip_test_embeddings(left, lf), l2_normalize(left + lf))
    np.testing.assert_allclose(cosine_scores(left, left), 1.0)
    text = json.dumps(flip, allow_nan=False)  # plain floats, no numpy types
    back = json.loads(text)
    assert back["accuracy"] == flip["accuracy"] and isinstance(back["roc"]["far"], list)
    assert type(flip["accuracy"]) is float and type(flip["num_pairs"]) is int


def test_input_errors():
    with pytest.raises(EdgeconvError, match="NaN"):
        evaluate_scores([0.1, np.nan] * 10, [True, False] * 10)
    with pytest.raises(EdgeconvError):
        evaluate_scores([0.1, 0.2], [True])
    with pytest.raises(EdgeconvError, match="both"):
        evaluate_scores(np.arange(20.0), np.ones(20, bool))
    with pytest.raises(EdgeconvError):
        evaluate_embeddings(np.ones((4, 3)), np.ones((4, 2)), [True, False] * 2)
    with pytest.raises(EdgeconvError):
        tar_at_far([0.1, 0.2], [True, False], 2.0)


def test_roc_plot_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(5)
    labels = np.tile([True, False], 200)
    r1 = evaluate_scores(rng.normal(labels * 2.0, 1.0), labels)
    r2 = evaluate_scores(rng.normal(labels * 1.0, 1.0), labels)
    out = roc_plot(tmp_path / "plots" / "roc.png", {"strong": r1, "weak": r2}, title="test")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert [p.name for p in (tmp_path / "plots").iterdir()] == ["roc.png"]  # no temp files left
    single = roc_plot(tmp_path / "one.png", r1)
    assert single.stat().st_size > 5000
    with pytest.raises(EdgeconvError):
        roc_plot(tmp_path / "none.png", {})
