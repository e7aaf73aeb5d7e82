"""The training form of the per-pixel product: exact forward and backward, both paths.

``per_pixel_train`` (an autograd function) runs the native training kernels on float32 CPU
tensors when the library is built, and torch ops otherwise; both must match the reference
``apply_per_pixel`` (whose backward is autograd's) for every shape class.
"""

from __future__ import annotations

import pytest
import torch

from edgeconv.ops.per_pixel import apply_per_pixel
from edgeconv.ops.per_pixel_train import per_pixel_train
from tests._kernels import skip_reason

# (N, C, H, W, k, s): odd and even sizes, both strides, both kernel sizes, batch 1 and many,
# planes narrower than a vector and the 2x2 / 1x1 ends of a network
SHAPES = [(1, 3, 7, 11, 3, 1), (3, 5, 9, 7, 3, 1), (2, 4, 9, 8, 3, 2), (4, 6, 10, 9, 5, 2),
          (1, 3, 7, 11, 5, 1), (5, 2, 2, 2, 3, 1), (2, 3, 1, 1, 3, 1), (3, 2, 3, 5, 5, 2),
          (17, 8, 16, 16, 3, 1), (9, 16, 8, 8, 3, 2)]
NATIVE_SKIP = skip_reason()


def _out(H, W, k, s):
    p = k // 2
    return (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1


def _case(shape, dtype, bias=None, seed=0):
    n, c, H, W, k, s = shape
    g = torch.Generator().manual_seed(seed)
    h, w = _out(H, W, k, s)
    x = torch.randn(n, c, H, W, generator=g, dtype=dtype, requires_grad=True)
    wt = torch.randn(1, c, k * k, h, w, generator=g, dtype=dtype, requires_grad=True)
    b = None
    if bias == "pixel":
        b = torch.randn(1, c, h, w, generator=g, dtype=dtype, requires_grad=True)
    elif bias == "channel":
        b = torch.randn(1, c, 1, 1, generator=g, dtype=dtype, requires_grad=True)
    return x, wt, b, k, s, (h, w)


def _grads(fn, x, wt, b, k, s, hw, seed=1):
    y = fn(x, wt, b, k, s, hw)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=y.dtype)
    inputs = [x, wt] + ([b] if b is not None else [])
    return (y, *torch.autograd.grad(y, inputs, g))


# finite differences cost O(inputs): gradcheck on the small shapes (the rest: float32 below)
SMALL = [s for s in SHAPES if s[0] * s[1] * s[2] * s[3] <= 2000]


@pytest.mark.parametrize("shape", SMALL, ids=lambda s: "n{}c{}_{}x{}_k{}s{}".format(*s))
def test_gradcheck_float64_torch_path(shape, monkeypatch):
    """float64 never takes the native path: the torch backward is gradchecked directly."""
    x, wt, b, k, s, hw = _case(shape, torch.float64, bias="pixel")
    assert torch.autograd.gradcheck(lambda a, w_, b_: per_pixel_train(a, w_, b_, k, s, hw),
                                    (x, wt, b), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("bias", [None, "pixel", "channel"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "n{}c{}_{}x{}_k{}s{}".format(*s))
@pytest.mark.parametrize("path", ["native", "torch"])
def test_float32_matches_reference(shape, bias, path, monkeypatch):
    if path == "native" and NATIVE_SKIP:
        pytest.skip(f"native training kernels unavailable: {NATIVE_SKIP}")
    monkeypatch.setenv("EDGECONV_TRAIN_KERNELS", "1" if path == "native" else "0")
    from edgeconv.ops import per_pixel_train as ppt

    assert ppt._use_native(torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 9, 1, 1)) == \
        (path == "native")
    case = _case(shape, torch.float32, bias=bias)
    ref = _grads(apply_per_pixel, *case)
    got = _grads(per_pixel_train, *case)
    assert len(ref) == len(got)
    for r, o in zip(ref, got):
        assert r.shape == o.shape
        scale = max(1.0, float(r.detach().abs().max()))
        assert float((r - o).detach().abs().max()) <= 1e-5 * scale


@pytest.mark.skipif(NATIVE_SKIP is not None, reason=f"native kernels unavailable: {NATIVE_SKIP}")
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_native_isas_and_threads_agree(threads):
    """Every ISA path the CPU has, at 1-3 threads, gives the same three results."""
    from edgeconv import kernels
    from edgeconv.kernels import train as native

    n, c, H, W, k, s = 6, 7, 11, 10, 3, 2
    h, w = _out(H, W, k, s)
    g = torch.Generator().manual_seed(3)
    x, wt = torch.randn(n, c, H, W, generator=g), torch.randn(1, c, 9, h, w, generator=g)
    gy = torch.randn(n, c, h, w, generator=g)
    results = {}
    for isa in kernels.info()["available_isas"]:
        outs = [torch.empty(n, c, h, w), torch.full((n, c, H, W), float("nan")),
                torch.full((1, c, 9, h, w), float("nan"))]
        for mode, (a, b) in enumerate([(x, wt), (gy, wt), (x, gy)]):
            native.run(mode, a.data_ptr(), b.data_ptr(), outs[mode].data_ptr(), x.shape, k, s,
                       threads=threads, isa=isa)
        results[isa] = outs
    x.requires_grad_()
    wt.requires_grad_()
    y_ref = apply_per_pixel(x, wt, None, k, s, (h, w))
    gx_ref, gw_ref = torch.autograd.grad(y_ref, (x, wt), gy)
    assert "scalar" in results
    for isa, (y, gx, gw) in results.items():
        assert torch.allclose(y, y_ref, atol=1e-5), isa
        assert torch.allclose(gx, gx_ref, atol=1e-5), isa
        assert torch.allclose(gw, gw_ref, atol=1e-5), isa


@pytest.mark.skipif(NATIVE_SKIP is not None, reason=f"native kernels unavailable: {NATIVE_SKIP}")
def test_native_refuses_bad_arguments():
    from edgeconv.kernels import train as native

    x = torch.zeros(1, 1, 4, 4)
    with pytest.raises(native.TrainKernelError, match="kernel_size"):
        native.run(0, x.data_ptr(), x.data_ptr(), x.data_ptr(), x.shape, 4, 1)
    with pytest.raises(native.TrainKernelError, match="mode"):
        native.run(7, x.data_ptr(), x.data_ptr(), x.data_ptr(), x.shape, 3, 1)
    with pytest.raises(native.TrainKernelError, match="ISA"):
        native.run(0, x.data_ptr(), x.data_ptr(), x.data_ptr(), x.shape, 3, 1, isa="nosuch")


def test_tvconv_layer_gradients_match_reference(monkeypatch):
    """The whole training-form layer (generator included) against the reference product."""
    from edgeconv.ops.tvconv import TVConv

    torch.manual_seed(0)
    layer = TVConv(6, stride=2, in_hw=(9, 10), inter_channels=8, inter_layers=1, bias=True)
    x = torch.randn(4, 6, 9, 10, requires_grad=True)
    weight, bias = layer.generate()
    ref = apply_per_pixel(x, weight, bias, 3, 2, layer.out_hw)
    out = layer(x)
    assert torch.allclose(out, ref, atol=1e-5)
    g = torch.randn_like(out)
    params = [x] + list(layer.parameters())
    got = torch.autograd.grad(out, params, g)
    want = torch.autograd.grad(ref, params, g)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


def test_per_image_weights_keep_the_reference_path():
    """(N, C, k*k, 1, 1) per-image filters (filtergen) are not batch-shared: reference path."""
    x = torch.randn(3, 2, 5, 5)
    w = torch.randn(3, 2, 9, 1, 1)
    assert torch.equal(per_pixel_train(x, w, None, 3, 1, (5, 5)),
                       apply_per_pixel(x, w, None, 3, 1, (5, 5)))


def test_traced_graphs_use_the_reference_ops():
    """A traced training-form layer (fvcore MACs, ONNX) holds standard ops, no Python op."""
    from edgeconv.ops.tvconv import TVConv

    layer = TVConv(4, in_hw=(6, 6), inter_channels=4, inter_layers=1).eval()
    x = torch.randn(2, 4, 6, 6)
    graph = torch.jit.trace(layer, x).graph
    kinds = {n.kind() for n in graph.nodes()}
    assert "prim::PythonOp" not in kinds and "aten::mul" in kinds
