"""Decoupled dynamic filter (Zhou et al., CVPR 2021), pure PyTorch (the public code is CUDA-only).

The per-pixel, per-channel filter is the product of a *spatial* filter (per pixel, shared by all
channels: a stride-s 1x1 conv C -> k*k, filter-normalised) and a *channel* filter (per image,
per channel: global pool -> FC (C -> C/4) -> ReLU -> FC (-> C*k*k), filter-normalised):
``out[n,c,p] = sum_t x[n,c,p+d_t] * spatial[n,t,p] * channel[n,c,t]``, applied as k*k slices with
two products each (no (N, C, k*k, h, w) filter tensor is built).

Filter normalisation (DDF's FilterNorm, simplified): each filter is standardised over its k*k
taps and scaled by a learned per-channel (channel branch) or per-tap (spatial branch) gain
initialised at 1/k.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from edgeconv.ops import out_hw as _out_hw
from edgeconv.ops.dynamic import apply_taps, check_odd, global_pool


def _standardise(f: torch.Tensor, avg: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Standardise groups of k*k consecutive channels (N, G*k*k, h, w) -- via a constant
    grouped averaging conv ``avg`` (G*k*k, k*k, 1, 1), so no reshape touches the batch axis."""
    g = avg.shape[0] // avg.shape[1]
    mean = F.conv2d(f, avg, groups=g)
    centred = f - mean
    var = F.conv2d(centred * centred, avg, groups=g)
    return centred / torch.sqrt(var + eps)


class DDFConv(nn.Module):
    def __init__(self, channels: int, stride: int = 1, in_hw=(96, 96), kernel_size: int = 3,
                 reduction: int = 4):
        super().__init__()
        check_odd(kernel_size)
        k, kk = kernel_size, kernel_size * kernel_size
        self.channels, self.stride, self.kernel_size = channels, stride, k
        self.in_hw, self.out_hw = tuple(in_hw), _out_hw(in_hw, k, stride)
        hidden = max(channels // reduction, 4)
        self.spatial = nn.Conv2d(channels, kk, 1, stride=stride, bias=False)
        self.channel = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
                                     nn.Conv2d(hidden, channels * kk, 1))
        self.spatial_gain = nn.Parameter(torch.full((1, kk, 1, 1), 1.0 / k))
        self.channel_gain = nn.Parameter(torch.full((1, channels * kk, 1, 1), 1.0 / k))
        self.register_buffer("spatial_avg", torch.full((kk, kk, 1, 1), 1.0 / kk), persistent=False)
        self.register_buffer("channel_avg", torch.full((channels * kk, kk, 1, 1), 1.0 / kk),
                             persistent=False)

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size={self.kernel_size}, stride={self.stride}"

    def filters(self, x):
        """(spatial (N, k*k, h, w), channel (N, C*k*k, 1, 1) channel-major)."""
        sp = _standardise(self.spatial(x), self.spatial_avg) * self.spatial_gain
        ch = _standardise(self.channel(global_pool(x)), self.channel_avg) * self.channel_gain
        return sp, ch

    def forward(self, x):
        sp, ch = self.filters(x)
        return apply_taps(x, ch, self.kernel_size, self.stride, self.out_hw, spatial=sp)
