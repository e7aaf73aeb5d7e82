"""The NIR sensor model of the synthetic faces: one channel, paired with RGB, its own responses."""

import numpy as np
import pytest

from edgeconv.data.nir import nir_tables
from edgeconv.data.synthetic import SyntheticFaces
from edgeconv.errors import EdgeconvError


@pytest.fixture(scope="module")
def domains():
    kw = dict(num_identities=40, images_per_identity=3, size=(48, 48), seed=3)
    return SyntheticFaces(**kw), SyntheticFaces(**kw, sensor="nir")


def test_nir_is_one_channel_deterministic_and_batch_independent(domains):
    _, nir = domains
    ids, idx = np.arange(8), np.arange(8) % 3
    batch = nir.render_batch(ids, idx)
    assert batch.shape == (8, 48, 48, 3) and batch.dtype == np.uint8
    assert (batch[..., 0] == batch[..., 1]).all() and (batch[..., 1] == batch[..., 2]).all()
    singles = np.stack([nir.render(int(i), int(j)) for i, j in zip(ids, idx)])
    np.testing.assert_array_equal(batch, singles)
    np.testing.assert_array_equal(batch, nir.render_batch(ids, idx))
    assert "sensor='nir'" in repr(nir)


def _grad(img):
    g = img[..., 0].astype(np.float64)
    m = np.hypot(np.diff(g, axis=0)[:, :-1], np.diff(g, axis=1)[:-1])
    return (m - m.mean()) / (m.std() + 1e-9)


def test_nir_image_is_the_pair_of_its_rgb_image(domains):
    rgb, nir = domains
    ids, idx = np.arange(20), np.zeros(20, int)
    a = rgb.render_batch(ids, idx).mean(-1, keepdims=True)
    b = nir.render_batch(ids, idx)
    corr = np.array([[float((_grad(a[i]) * _grad(b[j])).mean()) for j in range(20)]
                     for i in range(20)])
    same, other = np.diag(corr).mean(), corr[~np.eye(20, dtype=bool)].mean()
    assert same > other + 0.2, (same, other)        # same person, same pose: same geometry
    assert (corr.argmax(1) == np.arange(20)).mean() >= 0.9


def test_nir_responses_differ_from_rgb(domains):
    rgb, nir = domains
    ids = np.arange(40)
    a = rgb.render_batch(ids, np.zeros(40, int)).astype(np.float64)
    b = nir.render_batch(ids, np.zeros(40, int)).astype(np.float64)
    cheek = (slice(26, 30), slice(14, 18))           # skin below the eye, left of the nose
    skin_rgb, skin_nir = a[:, cheek[0], cheek[1]].mean((1, 2, 3)), b[:, cheek[0], cheek[1], 0]
    skin_nir = skin_nir.mean((1, 2))
    assert skin_nir.mean() > skin_rgb.mean()         # skin is bright in NIR
    # ... and skin tone nearly disappears (the materials; pixels add lighting and pose)
    from edgeconv.data.synthetic import _identity_traits, _image_nuisance

    t = _identity_traits(3, ids, 0.5)
    t2, _ = nir_tables(t, _image_nuisance(3, ids, np.zeros(40, int), 0.5, t))
    lum = np.array([0.299, 0.587, 0.114])
    assert (t2["skin"] @ lum).std() < 0.3 * (t["skin"] @ lum).std()
    corner = (slice(0, 4), slice(0, 4))
    assert b[:, corner[0], corner[1]].mean() < a[:, corner[0], corner[1]].mean()  # dark bg


def test_nir_tables_make_sunglass_lenses_transparent():
    t = {"skin": np.full((2, 3), 120.0), "hair": np.full((2, 3), 20.0),
         "iris": np.full((2, 3), 40.0), "brow_dark": np.ones(2), "lip_red": np.ones(2)}
    p = {"bg": np.full((2, 3), 100.0), "glasses_c": np.full((2, 3), 50.0),
         "cap_c": np.full((2, 3), 200.0), "sunglasses": np.ones(2)}
    t2, p2 = nir_tables(t, p)
    assert (p2["sunglasses"] == 0).all() and (p["sunglasses"] == 1).all()   # inputs untouched
    assert (t2["hair"] > t["hair"]).all() and (t2["iris"] > t["iris"]).all()
    assert (t2["lip_red"] < t["lip_red"]).all()


def test_unknown_sensor_refused():
    with pytest.raises(EdgeconvError, match="sensor must be one of rgb, nir"):
        SyntheticFaces(2, 1, size=16, sensor="thermal")
