"""Shared pieces of the per-image dynamic operators (CondConv, WeightNet, DYConv, Involution, DDF).

Their kernels are generated per image (and, for Involution and DDF, per pixel) and applied with
the same exact, exportable form TVConv and filtergen use: k*k strided slices of the zero-padded
input, each times its tap's weights, summed. Weights arrive *channel-major*: ``w[:, c*k*k + t]``
is tap ``t`` of channel ``c`` (the layout a grouped 1x1 conv or a (C*k*k, K) matrix produces),
so tap ``t`` is the strided channel slice ``w[:, t::k*k]`` -- no reshape touches the batch axis.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def apply_taps(x: torch.Tensor, w: torch.Tensor, kernel_size: int, stride: int, out_hw,
               spatial: torch.Tensor | None = None) -> torch.Tensor:
    """out[n,c,i,j] = sum_t pad(x)[n,c,i*s+u_t,j*s+v_t] * w[n, c*kk+t, i|0, j|0] (* spatial[n,t,i,j]).

    ``w``: (N or 1, C*k*k, h or 1, w or 1), channel-major; ``spatial`` (DDF): None or
    (N, k*k, h, w), a per-pixel filter shared by all channels.
    """
    k, s = kernel_size, stride
    kk = k * k
    h, wd = out_hw
    p = k // 2
    xp = F.pad(x, (p, p, p, p))
    out = None
    for u in range(k):
        for v in range(k):
            t = u * k + v
            term = xp[:, :, u: u + (h - 1) * s + 1: s, v: v + (wd - 1) * s + 1: s] * w[:, t::kk]
            if spatial is not None:
                term = term * spatial[:, t: t + 1]
            out = term if out is None else out + term
    return out


def init_depthwise_bank(bank: torch.Tensor, kernel_size: int) -> None:
    """Kaiming-uniform init of a bank of depthwise kernels (fan-in k*k, like nn.Conv2d)."""
    bound = 1.0 / math.sqrt(kernel_size * kernel_size)
    with torch.no_grad():
        bank.uniform_(-bound * math.sqrt(3), bound * math.sqrt(3))


def global_pool(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, 1, 1): the routing input of CondConv / WeightNet / DYConv / DDF."""
    return x.mean((2, 3), keepdim=True)


def check_odd(kernel_size: int) -> None:
    if kernel_size % 2 != 1:
        raise ValueError(f"kernel_size must be odd, got {kernel_size}")


class ExpertMix(nn.Module):
    """(N, K, 1, 1) mixing coefficients x a bank of K depthwise kernels -> (N, C*k*k, 1, 1).

    A 1x1 conv whose weight is the bank (C*k*k, K): K*C*k*k MACs per image (what the paper counts
    for kernel mixing), batch-free.
    """

    def __init__(self, channels: int, kernel_size: int, experts: int):
        super().__init__()
        self.bank = nn.Parameter(torch.empty(channels * kernel_size * kernel_size, experts, 1, 1))
        init_depthwise_bank(self.bank, kernel_size)

    def forward(self, coeff: torch.Tensor) -> torch.Tensor:
        return F.conv2d(coeff, self.bank)
