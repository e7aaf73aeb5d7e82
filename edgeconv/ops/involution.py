"""Involution (Li et al., CVPR 2021).

A k x k kernel per output pixel, generated from that pixel's own features and shared by the
channels of a group (group channels 8, reduction 4, the TVConv authors' setting):
``kernel = Conv1x1(ReLU(BN(Conv1x1_stride(x))))`` -> (N, G*k*k, h, w). Stride s takes the
generator's input at the output positions (a stride-s 1x1 conv). The group -> channel expansion
is a constant index gather along the channel axis (no reshape over the batch).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgeconv.ops import out_hw as _out_hw
from edgeconv.ops.dynamic import apply_taps, check_odd


class Involution(nn.Module):
    def __init__(self, channels: int, stride: int = 1, in_hw=(96, 96), kernel_size: int = 3,
                 group_channels: int = 8, reduction: int = 4):
        super().__init__()
        check_odd(kernel_size)
        k, kk = kernel_size, kernel_size * kernel_size
        self.channels, self.stride, self.kernel_size = channels, stride, k
        self.in_hw, self.out_hw = tuple(in_hw), _out_hw(in_hw, k, stride)
        self.group_channels = gc = math.gcd(group_channels, channels)
        self.groups = g = channels // gc
        hidden = max(channels // reduction, 4)
        self.reduce = nn.Sequential(nn.Conv2d(channels, hidden, 1, stride=stride, bias=False),
                                    nn.BatchNorm2d(hidden), nn.ReLU(inplace=True))
        self.span = nn.Conv2d(hidden, g * kk, 1)  # group-major: (g, t) at g*kk + t
        # channel-major index: channel c, tap t reads the kernel of group c // gc
        idx = torch.tensor([(c // gc) * kk + t for c in range(channels) for t in range(kk)])
        self.register_buffer("expand_index", idx, persistent=False)

    def extra_repr(self) -> str:
        return (f"{self.channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"groups={self.groups}")

    def kernels(self, x):
        """(N, C*k*k, h, w) per-pixel kernels, channel-major."""
        return self.span(self.reduce(x)).index_select(1, self.expand_index)

    def forward(self, x):
        return apply_taps(x, self.kernels(x), self.kernel_size, self.stride, self.out_hw)
