"""``--formulation fused``: folded TVConv -> BatchNorm -> activation as ONE custom node.

Each ``FoldedTVConv`` (its BatchNorm already absorbed by the fold walker) and the ReLU/ReLU6
that follows it in its ``nn.Sequential`` become a :class:`FusedTVConv`, which exports as a node
``edgeconv.TVConv`` (layout version 2) of the edgeconv kernel library (``edgeconv/kernels``):

    Y = TVConv(X, W, scales, B; kernel_size, stride, activation, layout)

with ``W`` in the kernel's packed layout for the layer (``edgeconv.kernels.pack.layout_for``: flat
at stride 1, rows at stride 2) stored as float32, float16 or int8 (per-(channel, tap) scales).
In eager mode the module computes the same function with the reference product on the
dequantised weights, so the exporter's parity gate compares the file (run with the library
loaded) against the training-form model.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeconv.kernels import DOMAIN, OP_TYPE
from edgeconv.kernels import pack
from edgeconv.ops.per_pixel import apply_per_pixel
from edgeconv.ops.tvconv import FoldedTVConv

WEIGHT_DTYPES = pack.WEIGHT_DTYPES
_ACT = {nn.ReLU: "relu", nn.ReLU6: "relu6"}


class _TVConvNode(torch.autograd.Function):
    """Export-time stand-in: the TorchScript exporter writes ``symbolic``'s node."""

    @staticmethod
    def forward(ctx, x, w, scales, bias, k, s, act, layout, h, w_out):  # shape only
        return x.new_zeros((x.shape[0], x.shape[1], h, w_out))

    @staticmethod
    def symbolic(g, x, w, scales, bias, k, s, act, layout, h, w_out):
        none = g.op("prim::Constant")
        none.setType(torch._C.OptionalType.ofTensor())
        out = g.op(f"{DOMAIN}::{OP_TYPE}", x, w, scales if scales is not None else none,
                   bias if bias is not None else none, kernel_size_i=k, stride_i=s,
                   activation_s=act, layout_s=layout)
        try:
            sizes = x.type().varyingSizes()
            out.setType(x.type().with_sizes([sizes[0], sizes[1], h, w_out]))
        except (AttributeError, RuntimeError, TypeError, IndexError):
            pass  # no static type: ONNX Runtime infers the output at run time
        return out


def take_fused_geometry(module: nn.Module, folded: FoldedTVConv, activation: str,
                        weight_dtype: str) -> None:
    """Check a fused layer's activation and weight dtype and copy the folded layer's geometry
    onto it (shared by the ONNX node and the LiteRT composite forms)."""
    if activation not in pack.ACTIVATIONS:
        raise ValueError(f"activation must be one of {pack.ACTIVATIONS}, got {activation!r}")
    if weight_dtype not in WEIGHT_DTYPES:
        raise ValueError(f"weight dtype must be one of {WEIGHT_DTYPES}, got {weight_dtype!r}")
    module.kernel_size, module.stride = folded.kernel_size, folded.stride
    module.in_hw, module.out_hw, module.channels = folded.in_hw, folded.out_hw, folded.channels
    module.activation, module.weight_dtype = activation, weight_dtype


class FusedTVConv(nn.Module):
    """A folded TVConv (+ fused BatchNorm) + activation, weights packed for the kernel."""

    def __init__(self, folded: FoldedTVConv, activation: str = "none",
                 weight_dtype: str = "float32"):
        super().__init__()
        take_fused_geometry(self, folded, activation, weight_dtype)
        h, w = self.out_hw
        self.layout = pack.layout_for(self.stride, self.out_hw)
        weight = folded.weight.detach().double().numpy()[0]  # (C, k*k, h, w)
        packed, scales = pack.pack_weights(weight, self.in_hw, self.stride, weight_dtype,
                                           self.layout)
        bias = folded.bias.detach().double().numpy()[0] if folded.bias is not None else None
        self.register_buffer("packed", torch.from_numpy(packed))
        self.register_buffer("scales", torch.from_numpy(scales) if scales is not None else None)
        self.register_buffer("packed_bias", torch.from_numpy(
            pack.pack_bias(bias, self.channels, h, w, self.layout)) if bias is not None else None)
        # the function the node computes, for eager evaluation (dequantised weights)
        ref = pack.unpack_weights(packed, scales, w, self.layout)
        self.register_buffer("ref_weight", torch.from_numpy(ref).unsqueeze(0), persistent=False)
        self.register_buffer("ref_bias", folded.bias.detach().clone()
                             if folded.bias is not None else None, persistent=False)

    def extra_repr(self) -> str:
        return (f"{self.channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"in_hw={self.in_hw}, activation={self.activation}, weights={self.weight_dtype}, "
                f"layout={self.layout}")

    check_input = FoldedTVConv.check_input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        h, w = self.out_hw
        if torch.onnx.is_in_onnx_export():
            return _TVConvNode.apply(x, self.packed, self.scales, self.packed_bias,
                                     self.kernel_size, self.stride, self.activation,
                                     self.layout, h, w)
        y = apply_per_pixel(x, self.ref_weight.to(x.dtype), None if self.ref_bias is None
                            else self.ref_bias.to(x.dtype), self.kernel_size, self.stride,
                            self.out_hw)
        if self.activation == "relu":
            y = torch.relu(y)
        elif self.activation == "relu6":
            y = y.clamp(0.0, 6.0)
        return y

    @property
    def weight_bytes(self) -> int:
        n = self.packed.numel() * self.packed.element_size()
        for t in (self.scales, self.packed_bias):
            if t is not None:
                n += t.numel() * t.element_size()
        return n


def fuse_model(model: nn.Module, weight_dtype: str = "float32", fused_cls=None) -> int:
    """Replace (in place) every FoldedTVConv [+ ReLU/ReLU6 after it in a Sequential] by a
    ``fused_cls`` (default :class:`FusedTVConv`, the ONNX node; the LiteRT composite passes its
    own): the ONE fusing walker. Returns how many. Idempotent (fused layers are left alone)."""
    fused_cls = fused_cls or FusedTVConv
    count = 0
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            keys = list(module._modules)
            for i, key in enumerate(keys):
                child = module._modules[key]
                if not isinstance(child, FoldedTVConv):
                    continue
                act = "none"
                j = i + 1  # the next layer that is not an Identity (a fused BatchNorm's place)
                while j < len(keys) and isinstance(module._modules[keys[j]], nn.Identity):
                    j += 1
                if j < len(keys) and type(module._modules[keys[j]]) in _ACT:
                    act = _ACT[type(module._modules[keys[j]])]
                    module._modules[keys[j]] = nn.Identity()
                module._modules[key] = fused_cls(child, act, weight_dtype)
                count += 1
    for module in list(model.modules()):  # a FoldedTVConv outside any Sequential
        for name, child in list(module.named_children()):
            if isinstance(child, FoldedTVConv):
                setattr(module, name, fused_cls(child, "none", weight_dtype))
                count += 1
    return count
