"""The baseline: an ordinary k x k depthwise convolution (no bias; a BatchNorm follows it)."""

from __future__ import annotations

from torch import nn

from edgeconv.ops import out_hw


class DepthwiseConv(nn.Conv2d):
    """``nn.Conv2d(C, C, k, stride, k//2, groups=C, bias=False)`` with the common op signature."""

    def __init__(self, channels: int, stride: int = 1, in_hw=(96, 96), kernel_size: int = 3):
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        super().__init__(channels, channels, kernel_size, stride=stride, padding=kernel_size // 2,
                         groups=channels, bias=False)
        self.in_hw = tuple(in_hw)
        self.out_hw = out_hw(in_hw, kernel_size, stride)
