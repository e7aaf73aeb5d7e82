"""Axial attention (Wang et al., ECCV 2020): multi-head self-attention along the height axis,
then along the width axis (8 heads), in place of the depthwise conv.

Each axis: q, k, v = 1x1 convs, logits = q . k / sqrt(d) + a learned positional bias per head
and (query, key) position pair, softmax over the axis, weighted sum of v. Stride s: queries at
the strided rows (height pass) and columns (width pass). Heads = gcd(8, C). The positional bias
makes it size-bound (built for one input size, like TVConv). Registered for the last three
stages of a model only (``OpSpec.stages``), as in the paper.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgeconv.ops import out_hw as _out_hw


class AxialPass(nn.Module):
    """Attention along one axis (``axis`` 0: height, 1: width) of an (N, C, H, W) map."""

    def __init__(self, channels: int, heads: int, length: int, out_length: int, stride: int,
                 axis: int):
        super().__init__()
        self.heads, self.head_dim, self.stride, self.axis = heads, channels // heads, stride, axis
        self.qkv = nn.Conv2d(channels, 3 * channels, 1, bias=False)
        self.pos = nn.Parameter(torch.zeros(1, heads, 1, out_length, length))
        self.scale = self.head_dim ** -0.5
        self.channels = channels

    def forward(self, x):
        h, d, s = self.heads, self.head_dim, self.stride
        q, k, v = self.qkv(x).split(self.channels, dim=1)
        if self.axis == 0:   # (N, h, d, H, W) -> (N, h, W, H, d): attend over H per column
            q = q[:, :, ::s]
            perm = (0, 1, 4, 3, 2)
        else:                # (N, h, d, H, W) -> (N, h, H, W, d): attend over W per row
            q = q[:, :, :, ::s]
            perm = (0, 1, 3, 4, 2)
        q, k, v = (t.unflatten(1, (h, d)).permute(perm) for t in (q * self.scale, k, v))
        logits = torch.matmul(q, k.transpose(-1, -2)) + self.pos     # (N, h, L', Lq, Lk)
        out = torch.matmul(torch.softmax(logits, dim=-1), v)        # (N, h, L', Lq, d)
        inv = (0, 1, 4, 3, 2) if self.axis == 0 else (0, 1, 4, 2, 3)
        return out.permute(inv).flatten(1, 2)


class AxialAttention(nn.Module):
    def __init__(self, channels: int, stride: int = 1, in_hw=(96, 96), kernel_size: int = 3,
                 heads: int = 8):
        super().__init__()
        self.channels, self.stride, self.kernel_size = channels, stride, kernel_size
        self.in_hw, self.out_hw = tuple(in_hw), _out_hw(in_hw, kernel_size, stride)
        self.heads = math.gcd(heads, channels)
        (H, W), (oh, ow) = self.in_hw, self.out_hw
        self.height = AxialPass(channels, self.heads, H, oh, stride, axis=0)
        self.width = AxialPass(channels, self.heads, W, ow, stride, axis=1)

    def extra_repr(self) -> str:
        return f"{self.channels}, stride={self.stride}, heads={self.heads}, in_hw={self.in_hw}"

    def forward(self, x):
        return self.width(self.height(x))
