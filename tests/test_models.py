"""Every registered model x op: build, forward, backward, fold; architecture facts; registry."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from edgeconv.errors import EdgeconvError  # noqa: E402
from edgeconv.ops.folding import fold_model, is_folded  # noqa: E402
from edgeconv.models import create_model, list_models, register_model  # noqa: E402
from edgeconv.models.common import make_divisible  # noqa: E402
from edgeconv.ops.tvconv import FoldedTVConv, InputSizeError, TVConv  # noqa: E402
from edgeconv.profiling.report import PAPER_TABLE  # noqa: E402
from tests.test_ops import randomise  # noqa: E402

MODELS = ["mbv2_x0_1", "mbv2_x0_2", "mbv2_x0_3", "mbv2_x0_5", "mbv2_x1_0",
          "sfv2_x0_5", "sfv2_x1_0", "sfv2_x1_5"]
OPS = ["depthwise", "tvconv"]
SMALL = dict(inter_channels=8, inter_layers=1)  # small generator keeps the matrix fast


def test_registry_names():
    assert list_models() == MODELS + ["mixer_x0_1", "mixer_x0_5"]  # MLP-Mixer: no op


def test_static_names_match_the_registry():
    """`edgeconv models` and the CLI's name checks use the torch-free specs; every spec
    has a builder and every builder a spec."""
    from edgeconv.models.registry import model_names

    assert model_names() == list_models()


def test_duplicate_registration_fails():
    def mbv2_x0_1(**kw):  # same name as a registered model
        return None
    with pytest.raises(ValueError, match="already registered"):
        register_model(mbv2_x0_1)


def test_unknown_model_and_op():
    with pytest.raises(EdgeconvError, match="unknown model 'resnet50'"):
        create_model("resnet50")
    with pytest.raises(EdgeconvError, match="unknown op"):
        create_model("mbv2_x0_1", op="conv5x5")


def test_make_divisible():
    assert make_divisible(3.2) == 8
    assert make_divisible(9.6) == 16  # 8 would be more than 10% below
    assert make_divisible(32 * 0.5) == 16
    assert make_divisible(24 * 0.3) == 8


@pytest.mark.parametrize("name", MODELS)
def test_params_match_paper(name):
    model = create_model(name)
    params = sum(p.numel() for p in model.parameters())
    assert abs(params / 1e6 - PAPER_TABLE[name][1]) < 0.001


@pytest.mark.parametrize("name", MODELS)
def test_architecture_facts(name):
    model = create_model(name, op="tvconv", op_kwargs=SMALL)
    tv = [m for m in model.modules() if isinstance(m, TVConv)]
    dw = [m for m in create_model(name).modules()
          if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(tv) == len(dw) > 0  # every depthwise conv became a TVConv
    if name.startswith("mbv2"):
        assert len(tv) == 17
        assert model.features[0].stride == (1, 1)  # stride-1 stem
    else:
        assert len(tv) == 3 * 2 + 13  # stride-2 blocks have two depthwise convs
    assert [m.out_hw for m in tv][-1] == (6, 6)
    head = list(model.head)
    assert [type(m) for m in head] == [nn.BatchNorm2d, nn.AdaptiveAvgPool2d, nn.Flatten,
                                       nn.Linear, nn.BatchNorm1d]
    assert head[3].out_features == 512 and head[3].bias is not None


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("name", MODELS)
def test_forward_backward_fold(name, op):
    """The whole registered matrix, on small 32x32 inputs."""
    model = create_model(name, op=op, input_size=32, embedding_dim=64,
                         op_kwargs=SMALL if op == "tvconv" else None)
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 64)
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads)
    model.eval()
    with torch.no_grad():
        ref = model(x)
        folded = fold_model(model)
        assert is_folded(folded)
        assert is_folded(model) == (op == "depthwise")
        assert (folded(x) - ref).abs().max().item() < 1e-5
        fused = fold_model(model, fuse_bn=True)
        assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fused.modules())
        assert torch.allclose(fused(x), ref, atol=1e-4, rtol=1e-4)


def test_fold_refused_in_training_mode():
    model = create_model("mbv2_x0_1", op="tvconv", input_size=32, op_kwargs=SMALL)
    with pytest.raises(RuntimeError, match="eval mode"):
        fold_model(model)


@pytest.mark.parametrize("size", [96, 112])
@pytest.mark.parametrize("name", MODELS)
def test_folded_matches_training_form_randomised(name, size):
    """Published generator size, randomised affinity maps and BN stats, 96 and 112 inputs."""
    torch.manual_seed(1)
    model = randomise(create_model(name, op="tvconv", input_size=size)).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        ref = model(x)
        folded = fold_model(model)
        assert sum(isinstance(m, FoldedTVConv) for m in folded.modules()) > 0
        assert (folded(x) - ref).abs().max().item() < 1e-5
        again = fold_model(folded)  # idempotent
        assert (again(x) - ref).abs().max().item() < 1e-5
        fused = fold_model(model, fuse_bn=True)
        scale = ref.abs().max().item()
        assert (fused(x) - ref).abs().max().item() < 1e-5 * max(1.0, scale)


@pytest.mark.parametrize("name", ["mbv2_x0_1", "sfv2_x0_5"])
def test_rectangular_input(name):
    model = create_model(name, op="tvconv", input_size="112x96", op_kwargs=SMALL).eval()
    assert model(torch.randn(1, 3, 112, 96)).shape == (1, 512)
    with pytest.raises(InputSizeError, match="built for 112x96 inputs, got 96x96"):
        model(torch.randn(1, 3, 96, 96))


def test_kernel_size_5_model():
    model = create_model("mbv2_x0_1", op="tvconv", input_size=32,
                         op_kwargs=dict(SMALL, kernel_size=5)).eval()
    tv = [m for m in model.modules() if isinstance(m, TVConv)]
    assert {m.kernel_size for m in tv} == {5}
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert (fold_model(model)(x) - model(x)).abs().max() < 1e-5


def test_config_rebuilds_same_model():
    model = create_model("sfv2_x0_5", op="tvconv", input_size="112x96", embedding_dim=128,
                         op_kwargs=SMALL)
    cfg = dict(model.config)
    twin = create_model(cfg.pop("name"), **cfg)
    assert twin.config == model.config
    twin.load_state_dict(model.state_dict())  # strict: same architecture

