"""MLP-Mixer (Tolstikhin et al., 2021) as a standalone face model, sized near MobileNetV2's MACs.

Patch embedding (a p x p stride-p conv, p = 4) -> ``depth`` Mixer layers (LayerNorm -> token MLP
across patches, LayerNorm -> channel MLP, both with GELU and residuals) -> LayerNorm -> the
usual face head (on the token grid as an (N, D, H/p, W/p) map). It has no depthwise conv, so it
takes no op (only the baseline name); its token MLP is built for one input size (size-bound).

At the quickstart's 32x32 input: ``mixer_x0_1`` ~ MobileNetV2 x0.1 MACs, ``mixer_x0_5`` ~ x0.5.
"""

from __future__ import annotations

from torch import nn

from edgeconv.errors import EdgeconvError
from edgeconv.models.common import FaceModel
from edgeconv.models.registry import register_model
from edgeconv.ops import baseline_op

# width -> (dim, token hidden, channel hidden, depth)
SIZES = {0.1: (48, 32, 96, 3), 0.5: (96, 64, 160, 3)}
PATCH = 4


class MixerLayer(nn.Module):
    def __init__(self, tokens: int, dim: int, token_hidden: int, channel_hidden: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.token_mlp = nn.Sequential(nn.Linear(tokens, token_hidden), nn.GELU(),
                                       nn.Linear(token_hidden, tokens))
        self.norm2 = nn.LayerNorm(dim)
        self.channel_mlp = nn.Sequential(nn.Linear(dim, channel_hidden), nn.GELU(),
                                         nn.Linear(channel_hidden, dim))

    def forward(self, x):  # (N, T, D)
        x = x + self.token_mlp(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.norm2(x))


class MixerBackbone(nn.Module):
    def __init__(self, input_size, dim, token_hidden, channel_hidden, depth, patch=PATCH):
        super().__init__()
        h, w = input_size
        if h % patch or w % patch:
            raise EdgeconvError(f"MLP-Mixer needs an input size divisible by its patch {patch}, "
                                f"got {h}x{w}")
        self.grid = (h // patch, w // patch)
        self.embed = nn.Conv2d(3, dim, patch, patch)
        tokens = self.grid[0] * self.grid[1]
        self.layers = nn.Sequential(*[MixerLayer(tokens, dim, token_hidden, channel_hidden)
                                      for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        x = self.embed(x).flatten(2).transpose(1, 2)          # (N, T, D)
        x = self.norm(self.layers(x))
        return x.transpose(1, 2).unflatten(2, self.grid)      # (N, D, H/p, W/p)


def mlpmixer(width: float, op: str = "depthwise", input_size=(32, 32), embedding_dim: int = 512,
             op_kwargs: dict | None = None) -> FaceModel:
    if op != baseline_op() or op_kwargs:
        raise EdgeconvError(f"MLP-Mixer has no depthwise conv to replace: it takes no op "
                            f"(got '{op}'; use the default)")
    dim, th, ch, depth = SIZES[width]
    backbone = MixerBackbone(tuple(input_size), dim, th, ch, depth)
    model = FaceModel(backbone, dim, input_size, embedding_dim, size_bound=True)
    model.width = width
    return model


@register_model
def mixer_x0_1(**kw):
    return mlpmixer(0.1, **kw)


@register_model
def mixer_x0_5(**kw):
    return mlpmixer(0.5, **kw)
