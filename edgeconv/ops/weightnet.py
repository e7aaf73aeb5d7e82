"""WeightNet (Ma et al., ECCV 2020), its depthwise form.

global average pool -> grouped FC (C -> M*C, G groups) + sigmoid -> grouped FC (M*C -> C*k*k, one
group per channel) that outputs each image's depthwise kernel; M = 2, G = 2 (G falls back to
gcd(G, C) for channel counts it does not divide).
"""

from __future__ import annotations

import math

from torch import nn

from edgeconv.ops import out_hw as _out_hw
from edgeconv.ops.dynamic import apply_taps, check_odd, global_pool


class WeightNetConv(nn.Module):
    def __init__(self, channels: int, stride: int = 1, in_hw=(96, 96), kernel_size: int = 3,
                 ratio_m: int = 2, groups_g: int = 2):
        super().__init__()
        check_odd(kernel_size)
        self.channels, self.stride, self.kernel_size = channels, stride, kernel_size
        self.in_hw, self.out_hw = tuple(in_hw), _out_hw(in_hw, kernel_size, stride)
        self.m, self.g = ratio_m, math.gcd(groups_g, channels)
        self.fc1 = nn.Conv2d(channels, ratio_m * channels, 1, groups=self.g)
        self.fc2 = nn.Conv2d(ratio_m * channels, channels * kernel_size ** 2, 1, groups=channels,
                             bias=False)

    def extra_repr(self) -> str:
        return (f"{self.channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"M={self.m}, G={self.g}")

    def kernels(self, x):
        """(N, C*k*k, 1, 1) per-image kernels, channel-major (the grouped FC's own layout)."""
        return self.fc2(self.fc1(global_pool(x)).sigmoid())

    def forward(self, x):
        return apply_taps(x, self.kernels(x), self.kernel_size, self.stride, self.out_hw)

