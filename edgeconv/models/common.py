"""Pieces shared by the face models: channel rounding, conv-BN-act, the face head."""

from __future__ import annotations

import torch
from torch import nn

from edgeconv.ops.tvconv import InputSizeError


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round channels to a multiple of ``divisor`` without going more than 10% below ``v``."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def conv_bn(in_ch: int, out_ch: int, kernel_size: int = 1, stride: int = 1,
            act: type[nn.Module] | None = nn.ReLU6) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel_size, stride, kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if act is not None:
        layers.append(act(inplace=True))
    return layers


class FaceHead(nn.Sequential):
    """BatchNorm2d(C) -> global average pool -> Linear(C, D) with bias -> BatchNorm1d(D)."""

    def __init__(self, in_ch: int, embedding_dim: int = 512):
        super().__init__(nn.BatchNorm2d(in_ch), nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
                         nn.Linear(in_ch, embedding_dim), nn.BatchNorm1d(embedding_dim))


def op_setup(op: str, op_kwargs: dict, input_size) -> tuple[dict, nn.Module | None]:
    """Per-model extras an operator needs: (kwargs for every build_op call, auxiliary module).

    An operator class that needs a model-level module (filtergen's shared input autoencoder)
    says so with a ``model_setup(op_kwargs, input_size)`` static method; the model owns what
    it returns.
    """
    from edgeconv.ops import op_class

    setup = getattr(op_class(op), "model_setup", None)
    if setup is not None:
        return setup(dict(op_kwargs), tuple(input_size))
    return dict(op_kwargs), None


class FaceModel(nn.Module):
    """Backbone ``features`` + :class:`FaceHead`; checks the input size when layers are size-bound.

    ``autoencoder`` (filtergen models) runs on the input first and publishes its features to the
    backbone's per-sample filter generators; ``reconstruction_loss(x)`` is its training loss.
    """

    def __init__(self, features: nn.Module, out_ch: int, input_size, embedding_dim: int,
                 size_bound: bool, autoencoder: nn.Module | None = None):
        super().__init__()
        self.features = features
        self.head = FaceHead(out_ch, embedding_dim)
        self.autoencoder = autoencoder
        self.input_size = tuple(input_size)
        self.size_bound = size_bound

    def reconstruction_loss(self, x: torch.Tensor) -> torch.Tensor | None:
        """The autoencoder's BCE loss for ``x`` (None for models without one)."""
        return self.autoencoder.reconstruction_loss(x) if self.autoencoder is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size_bound and tuple(x.shape[-2:]) != self.input_size:
            name = getattr(self, "config", {}).get("name", type(self).__name__)
            raise InputSizeError(
                f"{name} was built for {self.input_size[0]}x{self.input_size[1]} inputs, got "
                f"{x.shape[-2]}x{x.shape[-1]} (rebuild it with input_size={x.shape[-2]}x{x.shape[-1]})")
        if self.autoencoder is not None:
            self.autoencoder.encode(x)
        return self.head(self.features(x))
