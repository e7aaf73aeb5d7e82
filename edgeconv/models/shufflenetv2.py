"""ShuffleNetV2 face models (stride-1 conv1, maxpool to 48x48); every depthwise conv replaceable."""

from __future__ import annotations

import torch
from torch import nn

from edgeconv.models.common import FaceModel, conv_bn, op_setup
from edgeconv.models.registry import register_model
from edgeconv.ops import build_op, op_spec, out_hw, stage_op

STAGE_REPEATS = (4, 8, 4)
STAGE_OUT_CHANNELS = {
    0.5: (24, 48, 96, 192, 1024),
    1.0: (24, 116, 232, 464, 1024),
    1.5: (24, 176, 352, 704, 1024),
}


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.shape
    x = x.view(n, groups, c // groups, h, w).transpose(1, 2).contiguous()
    return x.view(n, c, h, w)


class ShuffleBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, op: str, in_hw, op_kwargs: dict):
        super().__init__()
        self.stride = stride
        bf = out_ch // 2
        if stride == 1 and in_ch != bf * 2:
            raise ValueError("stride-1 ShuffleNetV2 blocks keep the channel count")
        if stride > 1:
            self.branch1 = nn.Sequential(
                build_op(op, in_ch, stride=stride, in_hw=in_hw, **op_kwargs), nn.BatchNorm2d(in_ch),
                *conv_bn(in_ch, bf, 1, act=nn.ReLU))
        else:
            self.branch1 = nn.Sequential()
        b2_in = in_ch if stride > 1 else bf
        self.branch2 = nn.Sequential(
            *conv_bn(b2_in, bf, 1, act=nn.ReLU),
            build_op(op, bf, stride=stride, in_hw=in_hw, **op_kwargs), nn.BatchNorm2d(bf),
            *conv_bn(bf, bf, 1, act=nn.ReLU))
        self.out_hw = out_hw(in_hw, 3, stride)

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


def shufflenetv2(width: float, op: str = "depthwise", input_size=(96, 96), embedding_dim: int = 512,
                 op_kwargs: dict | None = None) -> FaceModel:
    """The one ShuffleNetV2 builder; registered variants differ only in ``width``."""
    op_kwargs, autoencoder = op_setup(op, op_kwargs or {}, input_size)
    chans = STAGE_OUT_CHANNELS[width]
    layers: list[nn.Module] = conv_bn(3, chans[0], 3, stride=1, act=nn.ReLU)
    layers.append(nn.MaxPool2d(3, 2, 1))
    hw = out_hw(tuple(input_size), 3, 2)
    in_ch = chans[0]
    for stage, (repeats, out_ch) in enumerate(zip(STAGE_REPEATS, chans[1:4])):
        s_op, s_kwargs = stage_op(op, op_kwargs, stage, len(STAGE_REPEATS))
        for i in range(repeats):
            block = ShuffleBlock(in_ch, out_ch, 2 if i == 0 else 1, s_op, hw, s_kwargs)
            layers.append(block)
            hw = block.out_hw
            in_ch = out_ch
    layers += conv_bn(in_ch, chans[4], 1, act=nn.ReLU)
    model = FaceModel(nn.Sequential(*layers), chans[4], input_size, embedding_dim,
                      size_bound=op_spec(op).size_bound, autoencoder=autoencoder)
    model.width = width
    return model


@register_model
def sfv2_x0_5(**kw):
    return shufflenetv2(0.5, **kw)


@register_model
def sfv2_x1_0(**kw):
    return shufflenetv2(1.0, **kw)


@register_model
def sfv2_x1_5(**kw):
    return shufflenetv2(1.5, **kw)
