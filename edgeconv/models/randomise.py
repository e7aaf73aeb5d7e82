"""Randomised weights for tests and benchmarks: a default init hides mistakes.

A freshly built TVConv model has constant affinity maps (so every TVConv is a plain depthwise
conv in the interior), LayerNorm at identity and BatchNorm at zero mean / unit variance: a
folding or export bug that mixes positions, channels or statistics up can pass on it.
:func:`randomise` gives every one of them seeded random values::

    from edgeconv.models.randomise import randomise
    model = randomise(create_model("mbv2_x0_5", op="tvconv").eval(), seed=3)
"""

from __future__ import annotations

import torch
from torch import nn

from edgeconv.ops.tvconv import TVConv


def randomise(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random TVConv affinity maps, LayerNorm affine and BatchNorm statistics/affine, in place.

    Seeded by ``seed`` (a private generator: torch's global one is untouched); returns
    ``module``. Other parameters keep their values.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, TVConv):
                m.affinity.copy_(torch.randn(m.affinity.shape, generator=g))
            elif isinstance(m, nn.LayerNorm):
                m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=g))
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(0.2 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
    return module
