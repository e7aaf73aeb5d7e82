"""Per-image dynamic filters (Shen et al., "Learning to generate filters for CNNs").

A model built with ``op="filtergen"`` owns one small convolutional autoencoder on the input
image (:class:`FilterGenAutoencoder`). Every :class:`FilterGenConv` layer reads the encoder
feature map at the level matching its resolution, reduces it (strided conv -> global pool ->
feature vector of ``feature_dim``), maps it by a learned matrix to per-sample coefficients
(N, C, R), and combines a repository of R base k x k filters (orthogonally initialised,
trainable) into each sample's depthwise filters. The mapping's bias is the static part.

Generated filters: ``filters[n, c] = sum_r coeff[n, c, r] * base_r`` (a matmul), applied as k*k
shifted slices of the padded input times per-sample, per-channel scalars, summed: batched (no
per-sample loop), differentiable, exportable with a dynamic batch (no per-sample conv groups),
and k*k MACs per output like a depthwise conv; the generator path adds its own MACs.
The decoder only serves the reconstruction loss (binary cross entropy on [0, 1] images).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from edgeconv.ops import out_hw as _out_hw
from edgeconv.ops.tvconv import apply_per_pixel


class FeatureContext:
    """Shared by a model and its FilterGenConv layers: the current batch's encoder features."""

    def __init__(self):
        self.features: list[torch.Tensor] | None = None

    def get(self, level: int) -> torch.Tensor:
        if self.features is None:
            raise RuntimeError("FilterGenConv needs the model's encoder features: run the whole "
                               "model, not the layer alone (or set context.features)")
        return self.features[level]


class FilterGenAutoencoder(nn.Module):
    """Encoder levels at 1/2, 1/4, 1/8 of the input; a decoder back to RGB logits."""

    def __init__(self, channels=(16, 32, 64)):
        super().__init__()
        self.channels = tuple(channels)
        enc, ch = [], 3
        for c in self.channels:
            enc.append(nn.Sequential(nn.Conv2d(ch, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c),
                                     nn.ReLU(inplace=True)))
            ch = c
        self.encoder = nn.ModuleList(enc)
        dec = []
        for c in reversed((3,) + self.channels[:-1]):
            last = c == 3
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, c, 3, 1, 1)]
            if not last:
                dec.append(nn.ReLU(inplace=True))
            ch = c
        self.decoder = nn.Sequential(*dec)
        self.context = FeatureContext()

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for layer in self.encoder:
            x = layer(x)
            feats.append(x)
        self.context.features = feats
        return feats

    def reconstruction_loss(self, x: torch.Tensor) -> torch.Tensor:
        """BCE between the decoded image and the input mapped back to [0, 1] (x was (v-0.5)/0.5).

        Uses the features of the last forward pass when they belong to ``x``.
        """
        feats = self.context.features
        if feats is None or feats[0].shape[0] != x.shape[0]:
            feats = self.encode(x)
        logits = self.decoder(feats[-1])
        if logits.shape[-2:] != x.shape[-2:]:
            logits = F.interpolate(logits, size=x.shape[-2:], mode="nearest")
        target = ((x + 1) / 2).clamp(0, 1)
        return F.binary_cross_entropy_with_logits(logits, target)

    def level_for(self, input_hw, layer_in_hw) -> int:
        """Encoder level whose resolution matches (or is just above) the layer's input."""
        ratio = max(1, round(input_hw[0] / max(1, layer_in_hw[0])))
        return min(len(self.channels) - 1, max(0, int(math.log2(ratio)) - 1))


class FilterGenConv(nn.Module):
    """Depthwise k x k conv whose filters are generated per sample (see the module docstring).

    Args:
        channels, stride, in_hw, kernel_size: as for every op.
        repository_size: R base filters (default k*k: a full orthogonal basis).
        feature_dim: length of the sample-specific feature vector.
        autoencoder: the model's :class:`FilterGenAutoencoder` (set by the model builder).
        input_hw: the model's input size (to pick the encoder level).
    """

    def __init__(self, channels: int, stride: int = 1, in_hw=(96, 96), kernel_size: int = 3,
                 repository_size: int | None = None, feature_dim: int = 32,
                 reduce_channels: int = 16, autoencoder: FilterGenAutoencoder | None = None,
                 input_hw=None):
        super().__init__()
        if autoencoder is None:
            raise ValueError("FilterGenConv is built by a model with op='filtergen' "
                             "(it needs the model's autoencoder)")
        k = kernel_size
        self.channels, self.kernel_size, self.stride = channels, k, stride
        self.in_hw = tuple(in_hw)
        self.out_hw = _out_hw(self.in_hw, k, stride)
        self.repository_size = r = repository_size or k * k
        self.context = autoencoder.context  # shared, not a submodule
        self.level = autoencoder.level_for(input_hw or in_hw, in_hw)
        enc_ch = autoencoder.channels[self.level]
        self.reduce = nn.Sequential(
            nn.Conv2d(enc_ch, reduce_channels, 3, 2, 1, bias=False), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
            nn.Linear(reduce_channels, feature_dim), nn.ReLU(inplace=True))
        self.mapping = nn.Linear(feature_dim, channels * r)  # the learned matrix (+ static bias)
        base = torch.empty(r, k * k)
        nn.init.orthogonal_(base)
        self.repository = nn.Parameter(base.view(r, 1, k, k))
        with torch.no_grad():  # static part: random filters of unit-ish norm, like a conv init
            nn.init.normal_(self.mapping.bias, std=1.0 / math.sqrt(r))

    @staticmethod
    def model_setup(op_kwargs: dict, input_size) -> tuple[dict, nn.Module]:
        """The model-level part: one autoencoder on the input image, shared by every layer
        (the model owns it); (kwargs for each layer, the autoencoder)."""
        autoencoder = FilterGenAutoencoder(op_kwargs.get("encoder_channels", (16, 32, 64)))
        layer_kwargs = {k: v for k, v in op_kwargs.items() if k != "encoder_channels"}
        return ({**layer_kwargs, "autoencoder": autoencoder, "input_hw": tuple(input_size)},
                autoencoder)

    def extra_repr(self) -> str:
        return (f"{self.channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"repository_size={self.repository_size}, level={self.level}")

    def coefficients(self, features: torch.Tensor) -> torch.Tensor:
        """(N, C, R) per-sample coefficients from encoder features."""
        return self.mapping(self.reduce(features)).view(-1, self.channels, self.repository_size)

    def filters(self, features: torch.Tensor) -> torch.Tensor:
        """The generated per-sample depthwise filters (N, C, k, k) (for inspection and tests)."""
        coeff = self.coefficients(features)
        base = self.repository.view(self.repository_size, -1)
        return (coeff @ base).view(-1, self.channels, self.kernel_size, self.kernel_size)

    def apply_filters(self, x: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
        """Convolve sample n, channel c with ``filters[n, c]`` (N, C, k, k): k*k shifted slices
        times per-sample scalars, summed (the same exact, exportable form TVConv uses)."""
        k = self.kernel_size
        return apply_per_pixel(x, filters.reshape(-1, self.channels, k * k, 1, 1), None, k,
                               self.stride, self.out_hw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply_filters(x, self.filters(self.context.get(self.level)))
