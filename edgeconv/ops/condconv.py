"""CondConv (Yang et al., NeurIPS 2019) as a depthwise operator.

routing = sigmoid(FC(global average pool(x))) in (0, 1)^K mixes K expert depthwise kernels into
one kernel per image, which is then applied as a depthwise conv (exact, batch-free slices).
"""

from __future__ import annotations

from torch import nn

from edgeconv.ops import out_hw as _out_hw
from edgeconv.ops.dynamic import ExpertMix, apply_taps, check_odd, global_pool


class CondConv(nn.Module):
    def __init__(self, channels: int, stride: int = 1, in_hw=(96, 96), kernel_size: int = 3,
                 experts: int = 4):
        super().__init__()
        check_odd(kernel_size)
        self.channels, self.stride, self.kernel_size, self.experts = channels, stride, kernel_size, experts
        self.in_hw, self.out_hw = tuple(in_hw), _out_hw(in_hw, kernel_size, stride)
        self.route = nn.Conv2d(channels, experts, 1)  # the FC, on the pooled (N, C, 1, 1)
        self.mix = ExpertMix(channels, kernel_size, experts)

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size={self.kernel_size}, stride={self.stride}, experts={self.experts}"

    def kernels(self, x):
        """(N, C*k*k, 1, 1) per-image kernels, channel-major."""
        return self.mix(self.route(global_pool(x)).sigmoid())

    def forward(self, x):
        return apply_taps(x, self.kernels(x), self.kernel_size, self.stride, self.out_hw)
