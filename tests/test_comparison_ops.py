"""The paper's comparison operators (CondConv, WeightNet, DYConv, Involution, DDF, SASA, Axial)
and every other registered op, parametrised from the registry: forward, backward, per-image
independence, MACs against a hand count for one layer, and export (ONNX and TFLite parity or
the one-line refusal). Per-op quirks live in ONE dict, :data:`QUIRKS`."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.nn import functional as F  # noqa: E402

from edgeconv.ops import build_op, list_ops, op_spec  # noqa: E402

KK = 9


def _hid(c):
    return max(c // 4, 4)


def _condconv(c, h, w, p, s):
    return c * h * w + 4 * c + 4 + 4 * c * KK + KK * c * p


def _weightnet(c, h, w, p, s):
    g = math.gcd(2, c)
    return c * h * w + 2 * c * c // g + 2 * c + c * KK * 2 + KK * c * p


def _dyconv(c, h, w, p, s):
    r = _hid(c)
    return c * h * w + r * c + r + 4 * r + 4 + 4 + 4 * c * KK + KK * c * p


def _involution(c, h, w, p, s):
    r, g = _hid(c), c // math.gcd(8, c)
    return r * c * p + 2 * r * p + r * p + g * KK * r * p + KK * c * p


def _ddf(c, h, w, p, s):
    r = _hid(c)
    std = lambda rows, cols: 2 * KK * rows * cols + 4 * rows * cols  # noqa: E731  2 convs, mul/sqrt/div/gain
    return (KK * c * p + std(KK, p) + c * h * w + r * c + r + c * KK * r + std(c * KK, 1)
            + 2 * KK * c * p)


def _sasa(c, h, w, p, s):
    heads = math.gcd(8, c)
    return 3 * c * c * h * w + c * p + 3 * 49 * c * p + heads * 49 * p


def _axial(c, h, w, p, s):
    heads = math.gcd(8, c)
    oh, ow = -(-h // s), -(-w // s)
    one = lambda area, q, lp, lq, lk: 3 * c * c * area + q + (2 * c + heads) * lp * lq * lk  # noqa: E731
    return one(h * w, c * oh * w, w, oh, h) + one(oh * w, c * oh * ow, oh, ow, w)


#: per-op quirks: kwargs for a small layer, the hand MAC count of one layer (None: counted in
#: the op's own tests), whether the full export checks are slow, and the export expectation
QUIRKS = {
    "depthwise": dict(macs=lambda c, h, w, p, s: KK * c * p),
    "tvconv": dict(kwargs=dict(inter_channels=8, inter_layers=1), macs=None, model_only=False),
    "filtergen": dict(macs=None, model_only=True),  # needs the model's autoencoder
    "condconv": dict(macs=_condconv),
    "weightnet": dict(macs=_weightnet),
    "dyconv": dict(macs=_dyconv),
    "involution": dict(macs=_involution),
    "ddf": dict(macs=_ddf),
    "sasa": dict(macs=_sasa, slow_onnx=True),  # 2 x 49 window slices per layer: a big graph
    "axial": dict(macs=_axial),
}
NEW_OPS = ["condconv", "weightnet", "dyconv", "involution", "ddf", "sasa", "axial"]


def quirk(op, key, default=None):
    return QUIRKS.get(op, {}).get(key, default)


def layer(op, c=16, stride=1, hw=(8, 8)):
    return build_op(op, c, stride=stride, in_hw=hw, **quirk(op, "kwargs", {}))


def test_every_registered_op_has_quirks_and_the_new_ops_are_registered():
    assert set(NEW_OPS) <= set(list_ops())
    assert set(list_ops()) <= set(QUIRKS), "add the new op to QUIRKS"
    assert [op for op in list_ops() if op_spec(op).stages] == ["sasa", "axial"]


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("hw", [(8, 8), (7, 9)])
# ops built by a model (filtergen: tests/test_filtergen.py) are left out, not skipped
@pytest.mark.parametrize("op", [o for o in list_ops() if not quirk(o, "model_only")])
def test_forward_backward_shape(op, stride, hw):
    torch.manual_seed(0)
    m = layer(op, 16, stride, hw)
    x = torch.randn(3, 16, *hw, requires_grad=True)
    y = m(x)
    assert y.shape == (3, 16, -(-hw[0] // stride), -(-hw[1] // stride))
    y.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)


@pytest.mark.parametrize("op", NEW_OPS)
def test_per_image_independence(op):
    """Each image's output depends on that image only (no batch mixing in the generators)."""
    torch.manual_seed(0)
    m = layer(op, 16, 2).eval()
    x = torch.randn(4, 16, 8, 8)
    with torch.no_grad():
        both, alone = m(x), m(x[1:2])
    assert (both[1:2] - alone).abs().max() < 1e-5
    assert (both[0] - both[1]).abs().max() > 1e-4  # and the data moves it


def _unfold_dynamic(x, kernels, k, stride):
    """Reference: per-image (and per-pixel) kernels (N, C, k*k, h|1, w|1) on F.unfold columns."""
    n, c = x.shape[:2]
    cols = F.unfold(x, k, padding=k // 2, stride=stride)
    h = -(-x.shape[2] // stride)
    cols = cols.view(n, c, k * k, h, -1)
    return (cols * kernels).sum(2)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("op", ["condconv", "weightnet", "dyconv", "involution"])
def test_generated_kernels_match_an_unfold_reference(op, stride):
    torch.manual_seed(1)
    m = layer(op, 16, stride, (9, 8)).eval()
    x = torch.randn(2, 16, 9, 8)
    with torch.no_grad():
        w = m.kernels(x)                               # (N, C*k*k, h|1, w|1) channel-major
        ref = _unfold_dynamic(x, w.unflatten(1, (16, KK)), 3, stride)
        assert (m(x) - ref).abs().max() < 1e-5


def test_ddf_matches_an_unfold_reference():
    torch.manual_seed(2)
    m = layer("ddf", 16, 2, (9, 8)).eval()
    x = torch.randn(2, 16, 9, 8)
    with torch.no_grad():
        sp, ch = m.filters(x)
        kern = ch.unflatten(1, (16, KK)) * sp.unsqueeze(1)   # (N, C, kk, h, w)
        assert (m(x) - _unfold_dynamic(x, kern, 3, 2)).abs().max() < 1e-5


def test_sasa_matches_a_direct_window_reference():
    torch.manual_seed(3)
    m = layer("sasa", 16, 1, (6, 5)).eval()
    x = torch.randn(2, 16, 6, 5)
    h, d = m.heads, m.head_dim
    with torch.no_grad():
        q, k, v = m.qkv(x).split(16, dim=1)
        q = q * m.scale
        cols_k = F.unfold(k, 7, padding=3).view(2, h, d, 49, 6, 5)
        cols_v = F.unfold(v, 7, padding=3).view(2, h, d, 49, 6, 5)
        valid = F.unfold(torch.ones(1, 1, 6, 5), 7, padding=3).view(1, 1, 49, 6, 5)
        qh = q.view(2, h, d, 1, 6, 5)
        logits = (qh * (cols_k + m.rel[0].unsqueeze(0))).sum(2)
        logits = logits.masked_fill(valid == 0, float("-inf"))
        ref = (torch.softmax(logits, 2).unsqueeze(2) * cols_v).sum(3).view(2, 16, 6, 5)
        assert (m(x) - ref).abs().max() < 1e-4


def test_dyconv_temperature_anneals_and_the_trainer_sets_it():
    m = layer("dyconv")
    assert float(m.temperature) == 30.0
    m.set_epoch(5)
    assert abs(float(m.temperature) - 15.5) < 1e-6
    m.set_epoch(12)
    assert float(m.temperature) == 1.0
    assert "temperature" in m.state_dict()  # evaluation/export use the trained temperature


@pytest.mark.parametrize("stride", [1, 2])
# ops whose MACs are counted in their own tests (test_profile.py) are left out
@pytest.mark.parametrize("op", [o for o in list_ops() if quirk(o, "macs") is not None])
def test_macs_match_a_hand_count(op, stride):
    pytest.importorskip("fvcore")
    from edgeconv.profiling.macs import count_macs

    hand = quirk(op, "macs")
    c, hw = 16, (8, 8)
    m = layer(op, c, stride, hw)
    p = (-(-hw[0] // stride)) * (-(-hw[1] // stride))
    macs, _ = count_macs(m, hw, channels=c)
    assert macs == hand(c, *hw, p, stride), (macs, hand(c, *hw, p, stride))


@pytest.mark.parametrize("op", NEW_OPS)
def test_profile_model_gives_sensible_macs(op):
    """Whole model: non-zero, above the depthwise baseline (the ops add generators/attention),
    and within 3x of it at x0.1 (a sanity bound, not a claim)."""
    pytest.importorskip("fvcore")
    from edgeconv.profiling.report import profile_model

    base = profile_model("mbv2_x0_1", "depthwise", (32, 32))["macs"]
    macs = profile_model("mbv2_x0_1", op, (32, 32))["macs"]
    assert base < macs < 3 * base


def test_stage_limited_ops_use_depthwise_elsewhere():
    from edgeconv.models import create_model
    from edgeconv.ops.depthwise import DepthwiseConv
    from edgeconv.ops.sasa import SASA

    m = create_model("mbv2_x0_1", op="sasa", input_size=32)
    kinds = [type(x) for x in m.modules() if isinstance(x, (SASA, DepthwiseConv))]
    assert kinds == [DepthwiseConv] * 10 + [SASA] * 7  # stages 1-4 (1+2+3+4), last 3 (3+3+1)


def test_mixer_is_a_model_and_takes_no_op():
    pytest.importorskip("fvcore")
    from edgeconv.errors import EdgeconvError
    from edgeconv.models import create_model
    from edgeconv.profiling.report import profile_model

    m = create_model("mixer_x0_1", input_size=32, embedding_dim=16)
    m(torch.randn(2, 3, 32, 32)).sum().backward()
    with pytest.raises(EdgeconvError, match="takes no op"):
        create_model("mixer_x0_1", op="tvconv", input_size=32)
    for mix, mb in (("mixer_x0_1", "mbv2_x0_1"), ("mixer_x0_5", "mbv2_x0_5")):
        a = profile_model(mix, "depthwise", (32, 32))["macs"]
        b = profile_model(mb, "depthwise", (32, 32))["macs"]
        assert 0.75 < a / b < 1.33


# ----------------------------------------------------------------------------- export
def _ckpt(tmp_path, op, name="mbv2_x0_1"):
    from edgeconv.models import create_model
    from edgeconv.train.checkpoint import save_checkpoint
    from tests.test_ops import randomise

    torch.manual_seed(0)
    model = randomise(create_model(name, op=op, input_size=32, embedding_dim=16)).eval()
    with torch.no_grad():  # non-trivial generators, as after training
        for mod in model.modules():
            if hasattr(mod, "set_epoch"):
                mod.set_epoch(10)
    path = tmp_path / f"{name}_{op}.ckpt"
    save_checkpoint(path, model)
    return path


def _export(tmp_path, op, formats, batch, name="mbv2_x0_1"):
    from edgeconv.export.exporter import export_checkpoint

    rep = export_checkpoint(_ckpt(tmp_path, op, name), formats=formats,
                            output_dir=tmp_path / "out", batch=batch, echo=lambda *a, **k: None)
    for f in formats.split(","):
        assert rep["parity"][f]["passed"] and rep["parity"][f]["min_cosine"] >= 0.9999
    return rep


@pytest.mark.parametrize("op", [o for o in NEW_OPS if not quirk(o, "slow_onnx")])
def test_onnx_export_parity_dynamic_batch(tmp_path, op, torch_one_thread):
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    _export(tmp_path, op, "onnx", "dynamic")
    path = next((tmp_path / "out").glob("*.onnx"))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    assert sess.run(None, {sess.get_inputs()[0].name: x})[0].shape == (3, 16)


@pytest.mark.slow
@pytest.mark.parametrize("op", [o for o in NEW_OPS if quirk(o, "slow_onnx")])
def test_onnx_export_parity_slow(tmp_path, op, torch_one_thread):
    pytest.importorskip("onnxruntime")
    _export(tmp_path, op, "onnx", "dynamic")


@pytest.mark.parametrize("op", [o for o in list_ops() if op_spec(o).pins_batch
                                and not quirk(o, "model_only")])  # filtergen: its own tests
def test_tflite_dynamic_batch_refused_in_one_line_before_converting(tmp_path, op):
    from edgeconv.errors import EdgeconvError
    from edgeconv.export.exporter import export_checkpoint
    with pytest.raises(EdgeconvError, match="--batch N") as exc:
        export_checkpoint(_ckpt(tmp_path, op), formats="tflite", output_dir=tmp_path / "o",
                          echo=lambda *a, **k: None)
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("op", NEW_OPS + ["mixer"])
def test_tflite_export_parity_fixed_batch(tmp_path, op, torch_one_thread):
    pytest.importorskip("litert_torch")
    if op == "mixer":
        _export(tmp_path, "depthwise", "tflite", "2", name="mixer_x0_1")
    else:
        _export(tmp_path, op, "tflite", "2")
