"""Stand-alone self-attention (SASA, Ramachandran et al., NeurIPS 2019): local multi-head
self-attention over a k x k window (k = 7, 8 heads) in place of the depthwise conv.

q, k, v = 1x1 convs; each output pixel attends over the 7x7 window around it (zero-padded
positions masked out), with a learned relative-position embedding per head and window offset
(logit = q . (k + r)). Stride s: queries at the strided positions (the output grid), keys and
values over the full input. Heads = gcd(8, C), so small channel counts work.
Registered for the last three stages of a model only (``OpSpec.stages``), as in the paper.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from edgeconv.ops import out_hw as _out_hw

WINDOW = 7


class SASA(nn.Module):
    def __init__(self, channels: int, stride: int = 1, in_hw=(96, 96), kernel_size: int = 3,
                 heads: int = 8, window: int = WINDOW):
        super().__init__()
        # kernel_size is the replaced conv's; the attention window is its own (7)
        self.channels, self.stride, self.kernel_size, self.window = channels, stride, kernel_size, window
        self.in_hw, self.out_hw = tuple(in_hw), _out_hw(in_hw, kernel_size, stride)
        self.heads = h = math.gcd(heads, channels)
        self.head_dim = channels // h
        self.qkv = nn.Conv2d(channels, 3 * channels, 1, bias=False)
        self.rel = nn.Parameter(torch.randn(1, h, self.head_dim, window * window, 1, 1) * 0.02)
        self.scale = self.head_dim ** -0.5

    def extra_repr(self) -> str:
        return (f"{self.channels}, stride={self.stride}, window={self.window}, heads={self.heads}")

    def forward(self, x):
        n_c, h, d, kw, s = self.channels, self.heads, self.head_dim, self.window, self.stride
        oh, ow = self.out_hw
        H, W = x.shape[-2:]
        p = kw // 2
        q, k, v = self.qkv(x).split(n_c, dim=1)
        q = (q[:, :, ::s, ::s] * self.scale).unflatten(1, (h, d))        # (N, h, d, oh, ow)
        kp = F.pad(k, (p, p, p, p)).unflatten(1, (h, d))
        vp = F.pad(v, (p, p, p, p)).unflatten(1, (h, d))
        # -1e4 at the padded positions: masked out of the softmax (constant, no products)
        neg = F.pad(x.new_zeros(1, 1, 1, H, W), (p, p, p, p), value=-1e4)
        logits = []
        for u in range(kw):
            for w in range(kw):
                sl = (..., slice(u, u + (oh - 1) * s + 1, s), slice(w, w + (ow - 1) * s + 1, s))
                logits.append((q * kp[sl]).sum(2) + neg[sl][:, 0])
        logits = torch.stack(logits, 2)                                   # (N, h, kw*kw, oh, ow)
        logits = logits + (q.unsqueeze(3) * self.rel).sum(2)               # q . r per offset
        attn = torch.softmax(logits, dim=2)
        out = None
        for u in range(kw):
            for w in range(kw):
                sl = (..., slice(u, u + (oh - 1) * s + 1, s), slice(w, w + (ow - 1) * s + 1, s))
                term = attn[:, :, u * kw + w].unsqueeze(2) * vp[sl]
                out = term if out is None else out + term
        return out.flatten(1, 2)
