"""TVConv and depthwise operators: exactness against an unfold reference, folding, sizes."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from edgeconv.errors import EdgeconvError  # noqa: E402
from edgeconv.models.randomise import randomise  # noqa: E402,F401 (tests import it from here)
from edgeconv.ops import build_op, list_ops  # noqa: E402
from edgeconv.ops.tvconv import FoldedTVConv, InputSizeError, TVConv  # noqa: E402


def unfold_reference(x, weight, bias, k, stride):
    """Direct reference: F.unfold the zero-padded input, multiply per pixel, sum over k*k."""
    n, c, _, _ = x.shape
    h, w = weight.shape[-2:]
    cols = F.unfold(x, k, padding=k // 2, stride=stride)  # (N, C*k*k, h*w)
    cols = cols.view(n, c, k * k, h, w)
    out = (cols * weight).sum(2)
    return out + bias if bias is not None else out


def test_op_names():
    assert list_ops()[:2] == ["depthwise", "tvconv"]
    with pytest.raises(EdgeconvError, match="unknown op 'nope'"):
        build_op("nope", 8)


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("in_hw", [(12, 12), (13, 10), (7, 9)])
@pytest.mark.parametrize("bias", [False, True])
def test_tvconv_matches_unfold_reference(k, stride, in_hw, bias):
    op = randomise(TVConv(6, stride=stride, in_hw=in_hw, kernel_size=k, inter_channels=8,
                          inter_layers=1, bias=bias))
    x = torch.randn(3, 6, *in_hw)
    weight, b = op.generate()
    assert weight.shape == (1, 6, k * k, *op.out_hw)
    assert op.out_hw == tuple((s + 2 * (k // 2) - k) // stride + 1 for s in in_hw)
    ref = unfold_reference(x, weight, b, k, stride)
    out = op(x)
    assert out.shape == (3, 6, *op.out_hw)
    assert (out - ref).abs().max().item() < 1e-5
    # per-pixel weights really vary across positions once the affinity maps are random
    assert weight.std(dim=(-2, -1)).mean() > 1e-3


@pytest.mark.parametrize("stride", [1, 2])
def test_tvconv_output_shape_matches_depthwise(stride):
    dw = build_op("depthwise", 8, stride=stride, in_hw=(11, 11))
    tv = build_op("tvconv", 8, stride=stride, in_hw=(11, 11), inter_channels=8, inter_layers=0)
    x = torch.randn(2, 8, 11, 11)
    assert dw(x).shape == tv(x).shape
    assert tv.out_hw == dw.out_hw


def test_constant_affinity_is_a_plain_depthwise_conv_in_the_interior():
    """Paper: with constant affinity maps, TVConv is a depthwise conv (up to the padding border)."""
    op = TVConv(4, in_hw=(9, 9), inter_channels=8, inter_layers=1).eval()
    w, _ = op.folded_weights()
    interior = w[..., 3:-3, 3:-3]  # three 3x3 convs: border effects reach 3 pixels in
    assert (interior - interior[..., :1, :1]).abs().max() < 1e-5
    assert (w[..., 0, 0] - w[..., 4, 4]).abs().max() > 1e-6  # zero padding breaks symmetry


def test_generator_runs_once_per_forward_not_per_image():
    op = TVConv(4, in_hw=(8, 8), inter_channels=8, inter_layers=1)
    calls = []
    op.weight_gen.register_forward_hook(lambda *a: calls.append(1))
    op(torch.randn(16, 4, 8, 8))
    assert len(calls) == 1


def test_wrong_input_size_names_expected_size():
    op = TVConv(4, stride=2, in_hw=(96, 96), inter_channels=8, inter_layers=0)
    with pytest.raises(InputSizeError, match="expects a 96x96 input, got 112x112"):
        op(torch.randn(1, 4, 112, 112))


def test_fold_refused_in_training_mode():
    op = TVConv(4, in_hw=(8, 8), inter_channels=8, inter_layers=0)
    with pytest.raises(RuntimeError, match="eval mode"):
        op.fold()


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("bias", [False, True])
def test_folded_matches_training_form_and_is_idempotent(stride, bias):
    op = randomise(TVConv(5, stride=stride, in_hw=(10, 10), inter_channels=8, inter_layers=2,
                          bias=bias)).eval()
    folded = op.fold()
    assert isinstance(folded, FoldedTVConv)
    assert folded.fold() is folded
    x = torch.randn(4, 5, 10, 10)
    with torch.no_grad():
        assert (folded(x) - op(x)).abs().max().item() < 1e-5
    # the generator is gone from the folded module
    assert not any(isinstance(m, (nn.Conv2d, nn.LayerNorm)) for m in folded.modules())
    assert folded.map_bytes == 4 * 5 * 9 * op.out_hw[0] * op.out_hw[1] * (1 + bias / 9)


def test_folded_fuses_following_batchnorm():
    op = randomise(TVConv(5, stride=2, in_hw=(10, 10), inter_channels=8, inter_layers=1,
                          bias=True)).eval()
    bn = randomise(nn.BatchNorm2d(5), seed=3).eval()
    x = torch.randn(2, 5, 10, 10)
    with torch.no_grad():
        fused = op.fold().fuse_bn(bn)
        assert (fused(x) - bn(op(x))).abs().max().item() < 1e-5


def test_tvconv_trains():
    op = TVConv(4, in_hw=(8, 8), inter_channels=8, inter_layers=1)
    x = torch.randn(2, 4, 8, 8)
    op(x).square().mean().backward()
    assert op.affinity.grad is not None and op.affinity.grad.abs().sum() > 0
    assert all(p.grad is not None for p in op.parameters())
