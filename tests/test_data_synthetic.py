"""Procedural face generator: determinism, identities, layout statistic, pairs."""

import pickle

import numpy as np
import pytest

from edgeconv.data.images import normalize
from edgeconv.data.synthetic import (VALIDATION_IDENTITY_OFFSET, SyntheticFaces,
                                     layout_statistics)
from edgeconv.errors import EdgeconvError


def _raw_pixel_accuracy(pairs) -> float:
    """Best single-threshold accuracy of raw-pixel cosine similarity (a weak baseline)."""
    from edgeconv.train.verification import best_threshold, cosine_scores

    left = normalize(pairs.left).reshape(len(pairs), -1)
    right = normalize(pairs.right).reshape(len(pairs), -1)
    return best_threshold(cosine_scores(left, right), pairs.is_same)[1]


def test_same_seed_same_images_and_order_independent():
    a = SyntheticFaces(20, 5, size=48, seed=7)
    b = SyntheticFaces(20, 5, size=48, seed=7, block=3)
    ids, idx = np.array([4, 19, 0, 4, 11]), np.array([2, 0, 4, 1, 3])
    batch = a.render_batch(ids, idx)
    # other batch size, other order, one at a time: identical bytes
    single = np.stack([b.render(i, j) for i, j in zip(ids[::-1], idx[::-1])])[::-1]
    np.testing.assert_array_equal(batch, single)
    # through __getitem__ (cached blocks) in a scrambled access order
    order = [23, 95, 0, 57, 23]
    got = [a[i] for i in order]
    for (img, label), i in zip(got, order):
        assert label == i // 5
        np.testing.assert_array_equal(img, b.render(i // 5, i % 5))
    # materialize agrees with item access
    full = b.materialize()
    np.testing.assert_array_equal(full[57], got[3][0])
    assert full.shape == (100, 48, 48, 3) and full.dtype == np.uint8


def test_different_seed_or_identity_gives_different_images():
    a = SyntheticFaces(10, 4, size=48, seed=0)
    b = SyntheticFaces(10, 4, size=48, seed=1)
    assert np.mean(np.abs(a.render(3, 0).astype(int) - b.render(3, 0))) > 5
    imgs = a.render_batch(np.arange(10), np.zeros(10, int)).astype(int)
    for i in range(10):
        for j in range(i + 1, 10):
            assert np.mean(np.abs(imgs[i] - imgs[j])) > 3, (i, j)
    # nuisance: two images of one identity differ too
    assert np.mean(np.abs(a.render(3, 0).astype(int) - a.render(3, 1))) > 1


def test_same_identity_more_similar_than_different_on_average():
    ds = SyntheticFaces(1, 1, size=32, seed=0)
    pairs = ds.make_pairs(200, seed=5)
    from edgeconv.train.verification import cosine_scores

    s = cosine_scores(normalize(pairs.left).reshape(200, -1), normalize(pairs.right).reshape(200, -1))
    assert s[pairs.is_same].mean() > s[~pairs.is_same].mean() + 0.02


@pytest.mark.parametrize("size", [32, 48, (112, 96), 96])
def test_sizes(size):
    ds = SyntheticFaces(3, 2, size=size, seed=0)
    img, label = ds[5]
    hw = (size, size) if isinstance(size, int) else size
    assert img.shape == (*hw, 3) and img.dtype == np.uint8 and label == 2
    assert img.std() > 10  # not a blank image
    # the face is in the middle: centre differs from the border more than noise would
    c = img[hw[0] // 3: 2 * hw[0] // 3, hw[1] // 3: 2 * hw[1] // 3].astype(float)
    assert c.std() > 5


def test_layout_specific_statistic():
    """Aligned faces: across-image variance per pixel < within-image spatial variance."""
    ds = SyntheticFaces(64, 1, size=48, seed=0)
    imgs = ds.materialize()
    st = layout_statistics(imgs)
    assert st["cross_image_variance"] < st["intra_image_variance"]
    assert st["ratio"] < 0.95
    # control: the same images at random positions (circular shifts) lose the layout
    rng = np.random.default_rng(0)
    shifted = np.stack([np.roll(im, tuple(rng.integers(0, 48, 2)), axis=(0, 1)) for im in imgs])
    assert layout_statistics(shifted)["ratio"] > 1.0
    # ... and the hard setting still keeps it
    hard = SyntheticFaces(64, 1, size=48, seed=0, difficulty=1.0).materialize()
    assert layout_statistics(hard)["ratio"] < 1.0


def test_difficulty_parameter_changes_hardness():
    easy = SyntheticFaces(1, 1, size=32, seed=0, difficulty="easy").make_pairs(160, seed=2)
    hard = SyntheticFaces(1, 1, size=32, seed=0, difficulty=1.0).make_pairs(160, seed=2)
    acc_easy, acc_hard = _raw_pixel_accuracy(easy), _raw_pixel_accuracy(hard)
    assert acc_easy > acc_hard + 0.05
    assert acc_easy < 0.97  # raw pixels never solve it


def test_difficulty_validation():
    assert SyntheticFaces(1, 1, difficulty="hard").difficulty == 0.8
    for bad in (-0.1, 1.5, "impossible", float("nan")):
        with pytest.raises(EdgeconvError):
            SyntheticFaces(1, 1, difficulty=bad)
    with pytest.raises(EdgeconvError):
        SyntheticFaces(0, 1)
    with pytest.raises(EdgeconvError):
        SyntheticFaces(1, 1, size=8)


def test_item_access():
    ds = SyntheticFaces(4, 3, size=32, seed=0, cache=False)
    assert len(ds) == 12 and ds.num_classes == 4
    np.testing.assert_array_equal(ds.labels, [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    img, label = ds[-1]
    assert label == 3
    np.testing.assert_array_equal(img, ds.render(3, 2))
    with pytest.raises(IndexError):
        ds[12]
    cached = SyntheticFaces(4, 3, size=32, seed=0)
    im, _ = cached[4]
    assert not im.flags.writeable  # a view of the cache cannot be corrupted by callers
    np.testing.assert_array_equal(im, ds[4][0])


def test_pickle_roundtrip():
    ds = SyntheticFaces(3, 2, size=32, seed=4)
    ds[0]
    clone = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(clone[5][0], ds[5][0])
    np.testing.assert_array_equal(clone.render(9, 9), ds.render(9, 9))


def test_pairs_disjoint_balanced_and_deterministic():
    ds = SyntheticFaces(50, 4, size=32, seed=0)
    plan = ds.make_pair_plan(40, seed=3)
    train_ids = set(range(50))
    ids = set(plan["left_identity"]) | set(plan["right_identity"])
    assert ids.isdisjoint(train_ids)
    assert min(ids) >= VALIDATION_IDENTITY_OFFSET
    same = plan["is_same"]
    assert same.sum() == 20 and same[0::2].all() and not same[1::2].any()  # alternating
    np.testing.assert_array_equal(plan["left_identity"] == plan["right_identity"], same)
    assert (plan["left_index"][same] != plan["right_index"][same]).all()  # two different photos
    pairs = ds.make_pairs(40, seed=3)
    left, right, is_same = pairs  # unpacks like a tuple
    assert len(pairs) == 40 and left.shape == (40, 32, 32, 3) and is_same.dtype == bool
    np.testing.assert_array_equal(left[7], ds.render(plan["left_identity"][7], plan["left_index"][7]))
    np.testing.assert_array_equal(ds.make_pairs(40, seed=3).right, right)
    assert not np.array_equal(ds.make_pairs(40, seed=4).right, right)
    # an explicit offset must stay clear of the training identities
    ok = ds.make_pair_plan(10, identity_offset=50)
    assert min(ok["left_identity"].min(), ok["right_identity"].min()) >= 50
    with pytest.raises(EdgeconvError):
        ds.make_pair_plan(10, identity_offset=49)


def test_worker_processes_and_partial_materialize(monkeypatch):
    import edgeconv.data.synthetic as S

    monkeypatch.setattr(S, "_CHUNK", 8)  # several chunks for two workers
    ds = SyntheticFaces(6, 5, size=32, seed=2, block=4)
    ids, idx = np.arange(30) // 5, np.arange(30) % 5
    serial = ds.render_many(ids, idx, workers=1)
    np.testing.assert_array_equal(ds.render_many(ids, idx, workers=2), serial)
    first = ds[13][0].copy()  # renders one cached block; materialize fills in the rest
    full = ds.materialize(workers=2)
    np.testing.assert_array_equal(full, serial)
    np.testing.assert_array_equal(full[13], first)
