"""MobileNetV2 face models (stride-1 stem, 96x96 input), depthwise 3x3 replaceable by any op."""

from __future__ import annotations

from torch import nn

from edgeconv.models.common import FaceModel, conv_bn, op_setup, make_divisible
from edgeconv.models.registry import register_model
from edgeconv.ops import build_op, op_spec, out_hw, stage_op

# t (expansion), c (channels), n (repeats), s (stride of the first repeat)
INVERTED_RESIDUAL_SETTING = [
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
    (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
]


class InvertedResidual(nn.Module):
    """1x1 expand -> op (depthwise/TVConv) -> BN -> ReLU6 -> 1x1 project -> BN (+ residual)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand_ratio: int, op: str,
                 in_hw, op_kwargs: dict):
        super().__init__()
        hidden = int(round(in_ch * expand_ratio))
        self.use_res = stride == 1 and in_ch == out_ch
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers += conv_bn(in_ch, hidden, 1)
        layers += [build_op(op, hidden, stride=stride, in_hw=in_hw, **op_kwargs),
                   nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += conv_bn(hidden, out_ch, 1, act=None)
        self.conv = nn.Sequential(*layers)
        self.out_hw = out_hw(in_hw, 3, stride)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


def mobilenetv2(width: float, op: str = "depthwise", input_size=(96, 96), embedding_dim: int = 512,
                op_kwargs: dict | None = None) -> FaceModel:
    """The one MobileNetV2 builder; registered variants differ only in ``width``."""
    op_kwargs, autoencoder = op_setup(op, op_kwargs or {}, input_size)
    in_ch = make_divisible(32 * width, 8)
    layers: list[nn.Module] = conv_bn(3, in_ch, 3, stride=1)
    hw = tuple(input_size)
    for stage, (t, c, n, s) in enumerate(INVERTED_RESIDUAL_SETTING):
        out_ch = make_divisible(c * width, 8)
        s_op, s_kwargs = stage_op(op, op_kwargs, stage, len(INVERTED_RESIDUAL_SETTING))
        for i in range(n):
            block = InvertedResidual(in_ch, out_ch, s if i == 0 else 1, t, s_op, hw, s_kwargs)
            layers.append(block)
            hw = block.out_hw
            in_ch = out_ch
    last_ch = int(512 * max(1.0, width))
    layers += conv_bn(in_ch, last_ch, 1)
    model = FaceModel(nn.Sequential(*layers), last_ch, input_size, embedding_dim,
                      size_bound=op_spec(op).size_bound, autoencoder=autoencoder)
    model.width = width
    return model


@register_model
def mbv2_x0_1(**kw):
    return mobilenetv2(0.1, **kw)


@register_model
def mbv2_x0_2(**kw):
    return mobilenetv2(0.2, **kw)


@register_model
def mbv2_x0_3(**kw):
    return mobilenetv2(0.3, **kw)


@register_model
def mbv2_x0_5(**kw):
    return mobilenetv2(0.5, **kw)


@register_model
def mbv2_x1_0(**kw):
    return mobilenetv2(1.0, **kw)
