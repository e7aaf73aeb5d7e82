"""The per-image dynamic operator (filtergen): exactness, per-sample property, training path."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch.nn import functional as F  # noqa: E402

from edgeconv.models import create_model, list_models  # noqa: E402
from edgeconv.ops.filtergen import FilterGenAutoencoder, FilterGenConv  # noqa: E402

SMALL_TV = dict(inter_channels=8, inter_layers=1)


def _layers(model):
    return [m for m in model.modules() if isinstance(m, FilterGenConv)]


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("k", [3, 5])
def test_matches_per_sample_conv_reference(stride, k):
    ae = FilterGenAutoencoder((4, 8, 8))
    op = FilterGenConv(6, stride=stride, in_hw=(16, 16), kernel_size=k, autoencoder=ae,
                       input_hw=(32, 32))
    images = torch.randn(3, 3, 32, 32)
    x = torch.randn(3, 6, 16, 16)
    ae.encode(images)
    out = op(x)
    filters = op.filters(ae.context.get(op.level))
    assert filters.shape == (3, 6, k, k)
    ref = torch.cat([F.conv2d(x[n:n + 1], filters[n].unsqueeze(1), stride=stride, padding=k // 2,
                              groups=6) for n in range(3)])
    assert out.shape == ref.shape == (3, 6, *op.out_hw)
    assert (out - ref).abs().max().item() < 1e-5


def test_repository_is_orthogonal_at_init():
    ae = FilterGenAutoencoder()
    op = FilterGenConv(8, in_hw=(48, 48), autoencoder=ae, input_hw=(96, 96))
    base = op.repository.view(op.repository_size, -1)
    assert torch.allclose(base @ base.T, torch.eye(op.repository_size), atol=1e-5)


def test_filters_depend_on_the_image_tvconv_does_not_depend_on_the_batch():
    torch.manual_seed(0)
    fg = create_model("mbv2_x0_1", op="filtergen", input_size=32).eval()
    a, b = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        for layer in _layers(fg):  # a trained-like dynamic part, not the near-static init
            layer.mapping.weight.normal_(0, 1.0)
        out_a = fg(a)
        layer = _layers(fg)[3]
        feats_b = [f.clone() for f in fg.autoencoder.encode(b)]
        feats_a = [f.clone() for f in fg.autoencoder.encode(a)]
        assert not torch.allclose(layer.filters(feats_a[layer.level]),
                                  layer.filters(feats_b[layer.level]))
        x = torch.randn(1, layer.channels, *layer.in_hw)
        own = layer.apply_filters(x, layer.filters(feats_a[layer.level]))
        other = layer.apply_filters(x, layer.filters(feats_b[layer.level]))
        assert (own - other).abs().max().item() > 1e-2 * own.abs().max().item()
        # image A through the backbone with the filters generated from image B
        fg.autoencoder.context.features = feats_b
        swapped = fg.head(fg.features(a))
        scale = out_a.abs().max().item()
        changed = (swapped - out_a).abs().max().item()
        fg.autoencoder.context.features = feats_a
        restored = (fg.head(fg.features(a)) - out_a).abs().max().item()
        assert changed > 1e-4 * scale  # the embedding of A moved with B's filters ...
        assert restored < 1e-7 * scale  # ... and A's own filters reproduce it exactly

    tv = create_model("mbv2_x0_1", op="tvconv", input_size=32, op_kwargs=SMALL_TV).eval()
    with torch.no_grad():
        alone = tv(a)
        with_b = tv(torch.cat([a, b]))[:1]
    assert (alone - with_b).abs().max().item() < 1e-5


@pytest.mark.parametrize("name", list_models(takes_op=True))
def test_forward_backward_with_reconstruction_loss(name):
    model = create_model(name, op="filtergen", input_size=32, embedding_dim=32,
                         op_kwargs=dict(feature_dim=8, repository_size=4))
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    out = model(x)
    assert out.shape == (4, 32)
    recon = model.reconstruction_loss(x)
    assert recon.item() > 0
    (out.square().mean() + recon).backward()
    assert all(p.grad is not None for p in model.parameters())
    assert model.autoencoder.decoder[-1].weight.grad.abs().sum() > 0


def test_models_without_autoencoder_have_no_reconstruction_loss():
    model = create_model("mbv2_x0_1", input_size=32)
    assert model.reconstruction_loss(torch.zeros(1, 3, 32, 32)) is None


def test_filtergen_config_rebuilds_and_loads():
    model = create_model("sfv2_x0_5", op="filtergen", input_size=48,
                         op_kwargs=dict(feature_dim=16, encoder_channels=[8, 16, 16]))
    cfg = dict(model.config)
    twin = create_model(cfg.pop("name"), **cfg)
    twin.load_state_dict(model.state_dict())
    assert twin.autoencoder.channels == (8, 16, 16)


def test_training_adds_the_reconstruction_loss():
    from edgeconv.train.losses import AMSoftmax, TrainModule

    model = create_model("mbv2_x0_1", op="filtergen", input_size=32, embedding_dim=16)
    head = AMSoftmax(16, 4)
    x, y = torch.rand(4, 3, 32, 32) * 2 - 1, torch.tensor([0, 1, 2, 3])
    torch.manual_seed(5)
    with_recon, _ = TrainModule(model, head, recon_weight=2.0)(x, y)
    torch.manual_seed(5)
    plain, _ = TrainModule(model, head, recon_weight=0.0)(x, y)
    recon = model.reconstruction_loss(x)
    assert with_recon.item() == pytest.approx(plain.item() + 2.0 * recon.item(), rel=1e-5)


def test_train_cli_filtergen_tiny(tmp_path):
    from tests.test_cli import run_cli

    res = run_cli("train", "--model", "mbv2_x0_1", "--op", "filtergen", "--input-size", "32",
                  "--filtergen-feature-dim", "8", "--identities", "4", "--images-per-identity",
                  "4", "--epochs", "1", "--batch-size", "8", "--val-pairs", "20",
                  "--no-progress", "--threads", "1", "-o", tmp_path / "run")
    assert res.returncode == 0, res.stderr
    ckpt = torch.load(tmp_path / "run" / "last.ckpt", weights_only=True)
    assert ckpt["model_config"]["op"] == "filtergen"
    assert ckpt["model_config"]["op_kwargs"] == {"feature_dim": 8}
    assert any(k.startswith("autoencoder.decoder") for k in ckpt["state_dict"])
    bad = run_cli("train", "--op", "tvconv", "--filtergen-feature-dim", "8", "-o", tmp_path / "x")
    assert bad.returncode == 2 and "need --op filtergen" in bad.stderr
