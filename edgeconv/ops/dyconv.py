"""Dynamic convolution (Chen et al., CVPR 2020), its depthwise form (DY-Conv DW).

attention = softmax(FC2(ReLU(FC1(global average pool(x)))) / T) over K = 4 kernels (FC1 reduces
the channels by 4); the attention mixes the K depthwise kernels per image. The temperature T is
a buffer: :meth:`set_epoch` anneals it linearly from 30 to 1 over the first ``anneal_epochs``
(10) epochs; the trainer calls ``set_epoch`` on every module that has one at each epoch start.
The temperature is saved with the weights, so an evaluated or exported model uses the one it
was trained with last.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from edgeconv.ops import out_hw as _out_hw
from edgeconv.ops.dynamic import ExpertMix, apply_taps, check_odd, global_pool


class DYConv(nn.Module):
    T_START, T_END = 30.0, 1.0

    def __init__(self, channels: int, stride: int = 1, in_hw=(96, 96), kernel_size: int = 3,
                 experts: int = 4, reduction: int = 4, anneal_epochs: int = 10):
        super().__init__()
        check_odd(kernel_size)
        self.channels, self.stride, self.kernel_size, self.experts = channels, stride, kernel_size, experts
        self.in_hw, self.out_hw = tuple(in_hw), _out_hw(in_hw, kernel_size, stride)
        self.anneal_epochs = anneal_epochs
        hidden = max(channels // reduction, 4)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, experts, 1)
        self.mix = ExpertMix(channels, kernel_size, experts)
        self.register_buffer("temperature", torch.tensor(self.T_START))

    def extra_repr(self) -> str:
        return (f"{self.channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"experts={self.experts}, temperature={float(self.temperature):g}")

    def set_epoch(self, epoch: float) -> None:
        """Temperature for training epoch ``epoch`` (0-based): 30 -> 1 linearly, then 1."""
        frac = min(max(float(epoch) / max(self.anneal_epochs, 1), 0.0), 1.0)
        self.temperature.fill_(self.T_START + (self.T_END - self.T_START) * frac)

    def attention(self, x):
        logits = self.fc2(F.relu(self.fc1(global_pool(x))))
        return torch.softmax(logits / self.temperature, dim=1)

    def kernels(self, x):
        return self.mix(self.attention(x))

    def forward(self, x):
        return apply_taps(x, self.kernels(x), self.kernel_size, self.stride, self.out_hw)
