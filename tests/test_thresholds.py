"""Threshold selection from metadata (torch-free): counts, resolvability, interpolation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgeconv.errors import EdgeconvError
from edgeconv.runtime.thresholds import (ThresholdError, calibration_size, check_roc,
                                         select_threshold, select_threshold_checked)


def _meta_from_scores(n_ids=120, per_id=4, seed=0):
    """A real calibration record from synthetic scores (the function export stores)."""
    from edgeconv.train.calibration import all_pairs, calibrate

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids, 16))
    labels = np.repeat(np.arange(n_ids), per_id)
    emb = centres[labels] + 0.6 * rng.normal(size=(len(labels), 16))
    scores, same = all_pairs(emb, labels)
    cal = calibrate(scores, same, source="test", num_images=len(labels), num_identities=n_ids)
    return {"verification": {"far_thresholds": dict(cal["far_thresholds"]),
                             "calibration": cal}}, scores, same


def test_calibration_record_counts_and_resolvability():
    meta, scores, same = _meta_from_scores()
    cal = meta["verification"]["calibration"]
    n_imp = int((~same).sum())
    assert cal["num_impostors"] == n_imp == 480 * 479 // 2 - 120 * 6
    assert cal["num_genuine"] == 120 * 6
    # 114,240 impostor pairs: resolves 1e-2 .. 1e-4 (>= 10/FAR)
    assert cal["resolvable"] == {"1e-2": True, "1e-3": True, "1e-4": True}
    for key, thr in cal["far_thresholds"].items():   # each threshold really gives <= its FAR
        assert np.mean(scores[~same] > thr) <= float(key)
    fars = [p[0] for p in cal["roc"]]
    assert fars == sorted(fars) and min(fars) * n_imp >= 1
    check_roc(cal["roc"])


def test_small_calibration_is_flagged():
    meta, _, _ = _meta_from_scores(n_ids=20, per_id=3)   # 1,770 - 60 = 1,710 impostor pairs
    cal = meta["verification"]["calibration"]
    assert cal["resolvable"] == {"1e-2": True, "1e-3": False, "1e-4": False}
    thr, src, warning = select_threshold_checked(meta, far="1e-3")
    assert "NOT resolvable" in src and "NOT resolved" in warning and "1710" in warning
    assert select_threshold_checked(meta, far="1e-2")[2] is None


@pytest.mark.parametrize("ver, n", [
    ({"calibration": {"num_impostors": 5000}}, 5000),
    ({"num_impostors": 7}, 7),
    ({"num_different": 3000}, 3000),
    ({"tar_at_far": [{"num_negatives": 900}]}, 900),
    ({"tar_at_far": {"1e-3": {"num_negatives": 800}}}, 800),   # the dict form of compact()
    ({"tar_at_far": {"1e-3": 0.93}}, None),
    ({"calibration": {"num_impostors": "many"}, "num_impostors": True}, None),
    ({"calibration": {"num_impostors": float("nan")}}, None),
])
def test_calibration_size_forms(ver, n):
    assert calibration_size(ver) == n


def test_exported_style_metadata_warns_when_unresolvable():
    """The form compact() writes (tar_at_far a dict of floats) still yields its count."""
    ver = {"far_thresholds": {"1e-3": 0.5, "1e-4": 0.6}, "tar_at_far": {"1e-3": 0.9},
           "calibration": {"num_impostors": 1000, "resolvable": {"1e-3": False}}}
    thr, src, warning = select_threshold_checked({"verification": ver}, far="1e-3")
    assert thr == 0.5 and warning and "1000 impostor pairs" in warning
    ver.pop("calibration")
    assert "no record" in select_threshold_checked({"verification": ver})[2]


def test_interpolation_on_the_stored_roc():
    meta, scores, same = _meta_from_scores()
    cal = meta["verification"]["calibration"]
    thr, src = select_threshold(meta, far="3e-4")
    assert "interpolated at FAR 0.0003 on the stored ROC" in src
    assert "calibrated FARs 0.0001 and 0.001" in src
    t3, t4 = cal["far_thresholds"]["1e-3"], cal["far_thresholds"]["1e-4"]
    assert t3 <= thr <= t4
    # the interpolated threshold's measured FAR is near the request (within the ROC's step)
    far = float(np.mean(scores[~same] > thr))
    assert 1e-4 <= far <= 1e-3
    assert abs(math.log10(max(far, 1e-9)) - math.log10(3e-4)) < 0.3
    with pytest.raises(ThresholdError, match=r"calibrated: 0\.0001, 0\.001, 0\.01"):
        select_threshold(meta, far="0.05")
    with pytest.raises(ThresholdError, match="calibrated"):
        select_threshold(meta, far="1e-5")


@pytest.mark.parametrize("roc", [None, [[1e-3, 0.5]], [[1e-3, 0.5], [1e-4, 0.6]],
                                 [[1e-4, 0.5], [1e-3, 0.6]], [[1e-4, "x"], [1e-3, 0.5]],
                                 [[1e-4, 2.0], [1e-3, 0.5]], [[0.0, 0.7], [1e-3, 0.5]], "roc"])
def test_bad_stored_roc_falls_back_to_calibrated_points(roc):
    ver = {"far_thresholds": {"1e-2": 0.4, "1e-3": 0.5, "1e-4": 0.6},
           "calibration": {"num_impostors": 10 ** 6, "roc": roc}}
    with pytest.raises(EdgeconvError):
        check_roc(roc)
    thr, src = select_threshold({"verification": ver}, far="3e-3")
    assert "between the calibrated thresholds" in src and 0.4 < thr < 0.5


def test_non_monotone_calibration_is_refused():
    ver = {"far_thresholds": {"1e-2": 0.7, "1e-3": 0.5}}
    with pytest.raises(ThresholdError, match="not monotone"):
        select_threshold({"verification": ver}, far="3e-3")
