"""LIS building blocks: TPReLU, weight-normalised layers, LIS modules, similarity constraint.

* :class:`TPReLU` (Xiang & Li 2017): ``PReLU(x - b) + b`` with a learned threshold ``b`` per
  unit / channel; the slope is clamped to [0, 1] in the forward pass (the stored parameter
  may drift outside, what is used never does).
* :class:`WNLinear`, :class:`WNConv2d`, :class:`WNConvTranspose2d`: weight normalisation,
  ``W = g * V / ||V||`` per output unit, a learned bias; ``g`` is the layer's scale (the
  "affine" WN of the paper's tables: every layer here has it).
* :class:`LISModule`: ``z <- z + FC2(TPReLU(FC1(z)))``, both 256 -> 256 and weight-normalised
  (the issue's reading; the paper's appendix normalises only FC1). The small initialisation
  (factor 0.01) is FC2's scale ``g = 0.01``: with WN the magnitude of ``V`` cancels, so the
  scale is what makes the residual start at ~1% of ``z``.
* :func:`similarity_loss`: ``sum_i lambda^(i+1) * MSE(z_i, z)``, i = 0 for the first module's
  output, always against the ORIGINAL ``z``.
* :func:`sample_stop`: during training the manipulation stops before module i (0-based, of N)
  with probability ``(1/2)^(N - i)``, checked in order (given it reached module i): for 3
  modules 1/8, 1/4, 1/2, so the chain stops before module 0 / 1 / 2 or runs all three with
  probabilities 1/8, 7/32, 21/64, 21/64 (the full chain is the most frequent case, "always
  train on the last module"). Drawn from torch's global RNG (captured in checkpoints).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

Z_DIM = 256
LAMBDA = 0.9
LIS_INIT = 0.01
MAX_MODULES = 3


class TPReLU(nn.Module):
    """PReLU with a learned threshold: ``PReLU(x - b) + b``; slope clamped to [0, 1]."""

    def __init__(self, n: int, slope: float = 0.25):
        super().__init__()
        self.weight = nn.Parameter(torch.full((n,), float(slope)))
        self.threshold = nn.Parameter(torch.zeros(n))

    def _b(self, x):
        return self.threshold.view(1, -1, *([1] * (x.dim() - 2)))

    def forward(self, x):
        b = self._b(x)
        return F.prelu(x - b, self.weight.clamp(0.0, 1.0)) + b


def _wn(v: torch.Tensor, g: torch.Tensor, dim: int) -> torch.Tensor:
    """``g * v / ||v||`` with the norm over every axis but ``dim`` (the output units)."""
    axes = [a for a in range(v.dim()) if a != dim]
    norm = v.pow(2).sum(axes, keepdim=True).add(1e-12).sqrt()
    shape = [1] * v.dim()
    shape[dim] = -1
    return v / norm * g.view(shape)


class WNLinear(nn.Module):
    def __init__(self, n_in: int, n_out: int, scale: float = 1.0, bias: bool = True):
        super().__init__()
        self.v = nn.Parameter(torch.randn(n_out, n_in) / math.sqrt(n_in))
        self.g = nn.Parameter(torch.full((n_out,), float(scale)))
        self.bias = nn.Parameter(torch.zeros(n_out)) if bias else None

    def weight(self):
        return _wn(self.v, self.g, 0)

    def forward(self, x):
        return F.linear(x, self.weight(), self.bias)

    def plain(self) -> nn.Linear:
        """The same map as a plain ``nn.Linear`` (weights computed once: export)."""
        m = nn.Linear(self.v.shape[1], self.v.shape[0], bias=self.bias is not None)
        with torch.no_grad():
            m.weight.copy_(self.weight())
            if self.bias is not None:
                m.bias.copy_(self.bias)
        return m


class WNConv2d(nn.Module):
    def __init__(self, cin, cout, k, stride=1, padding=0, scale: float = 1.0):
        super().__init__()
        self.v = nn.Parameter(torch.randn(cout, cin, k, k) / math.sqrt(cin * k * k))
        self.g = nn.Parameter(torch.full((cout,), float(scale)))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.stride, self.padding = stride, padding

    def weight(self):
        return _wn(self.v, self.g, 0)

    def forward(self, x):
        return F.conv2d(x, self.weight(), self.bias, self.stride, self.padding)

    def plain(self) -> nn.Conv2d:
        cout, cin, k, _ = self.v.shape
        m = nn.Conv2d(cin, cout, k, self.stride, self.padding)
        with torch.no_grad():
            m.weight.copy_(self.weight())
            m.bias.copy_(self.bias)
        return m


class WNConvTranspose2d(nn.Module):
    def __init__(self, cin, cout, k, stride=2, padding=1, scale: float = 1.0):
        super().__init__()
        self.v = nn.Parameter(torch.randn(cin, cout, k, k) / math.sqrt(cin * k * k / 4))
        self.g = nn.Parameter(torch.full((cout,), float(scale)))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.stride, self.padding = stride, padding

    def weight(self):
        return _wn(self.v, self.g, 1)

    def forward(self, x):
        return F.conv_transpose2d(x, self.weight(), self.bias, self.stride, self.padding)

    def plain(self) -> nn.ConvTranspose2d:
        cin, cout, k, _ = self.v.shape
        m = nn.ConvTranspose2d(cin, cout, k, self.stride, self.padding)
        with torch.no_grad():
            m.weight.copy_(self.weight())
            m.bias.copy_(self.bias)
        return m


class LISModule(nn.Module):
    """``z + FC2(TPReLU(FC1(z)))``; FC2 starts at 1% scale (see the module docstring)."""

    def __init__(self, z_dim: int = Z_DIM, init: float = LIS_INIT):
        super().__init__()
        self.fc1 = WNLinear(z_dim, z_dim)
        self.act = TPReLU(z_dim)
        self.fc2 = WNLinear(z_dim, z_dim, scale=init)

    def forward(self, z):
        return z + self.fc2(self.act(self.fc1(z)))


def sample_stop(n_modules: int, draw=None) -> int:
    """How many modules run in one training batch: module i (0-based) is skipped, with all
    after it, with probability (1/2)^(N - i) given the chain reached it. ``draw``: a callable
    returning a uniform float (default: torch's global RNG, so checkpoints replay it)."""
    draw = draw or (lambda: float(torch.rand(())))
    for i in range(int(n_modules)):
        if draw() < 0.5 ** (n_modules - i):
            return i
    return int(n_modules)


def stop_distribution(n_modules: int) -> list[float]:
    """P(k modules run), k = 0..N, of :func:`sample_stop` (what the test measures against)."""
    out, reach = [], 1.0
    for i in range(n_modules):
        p = 0.5 ** (n_modules - i)
        out.append(reach * p)
        reach *= 1 - p
    return out + [reach]


def similarity_weights(k: int, lam: float = LAMBDA) -> list[float]:
    """``lambda^(i+1)`` of the first ``k`` modules' outputs."""
    return [float(lam) ** (i + 1) for i in range(int(k))]


def similarity_loss(zs, z, lam: float = LAMBDA) -> torch.Tensor:
    """``sum_i lambda^(i+1) MSE(zs[i], z)``: ``zs`` are the outputs of the modules that ran,
    ``z`` the ORIGINAL noise; 0 when no module ran."""
    total = z.new_zeros(())
    for w, zi in zip(similarity_weights(len(zs), lam), zs):
        total = total + w * F.mse_loss(zi, z)
    return total
