"""The torch adapter, and the torch-free import rule for edgeconv.data / train.verification."""

import subprocess
import sys

import numpy as np
import pytest

from edgeconv.data.synthetic import SyntheticFaces


def test_data_and_verification_do_not_import_torch():
    code = ("import sys, edgeconv.data, edgeconv.data.synthetic, edgeconv.data.insightface_bin, "
            "edgeconv.train, edgeconv.train.verification; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_face_dataset_tensors_and_flip():
    torch = pytest.importorskip("torch")
    from edgeconv.data.torch_datasets import FaceDataset, iter_batches, to_tensor

    src = SyntheticFaces(3, 2, size=32, seed=0)
    ds = FaceDataset(src)
    assert len(ds) == 6 and ds.num_classes == 3
    x, label = ds[3]
    assert x.dtype == torch.float32 and tuple(x.shape) == (3, 32, 32) and label == 1
    img = src[3][0].astype(np.float32)
    np.testing.assert_allclose(x.numpy(), (img.transpose(2, 0, 1) / 255 - 0.5) / 0.5, atol=1e-6)
    always = FaceDataset(src, train=True, flip_prob=1.0)
    np.testing.assert_array_equal(always[3][0].numpy(), x.numpy()[..., ::-1])
    never = FaceDataset(src, train=True, flip_prob=0.0)
    np.testing.assert_array_equal(never[3][0].numpy(), x.numpy())
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = [FaceDataset(src, train=True, generator=g1)[i][0] for i in range(6)]
    b = [FaceDataset(src, train=True, generator=g2)[i][0] for i in range(6)]
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    batches = list(iter_batches(src.materialize(), batch_size=4, flip=True))
    assert [tuple(t.shape) for t in batches] == [(4, 3, 32, 32), (2, 3, 32, 32)]
    torch.testing.assert_close(batches[0][0], to_tensor(src[0][0]).flip(-1))
