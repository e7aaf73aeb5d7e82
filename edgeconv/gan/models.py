"""G, D and the reverser R of the LIS paper (DCGAN-like, weight normalisation + TPReLU).

80x80 (the paper's main setting; 64x64 is the same with a 4x4 start):

* G: [LIS modules] -> FC 256 -> 5x5x512 (WN, TPReLU) -> transposed convs 4x4 s2 to 256, 128,
  64 (WN, TPReLU) and 3 (affine WN, sigmoid): 5 -> 10 -> 20 -> 40 -> 80, images in [0, 1].
* D: convs 4x4 s2 64, 128, 256, 512 (WN, TPReLU): 80 -> 5, then a 5x5 conv -> 1 (affine WN);
  D returns the logit, the sigmoid is in the loss (``binary_cross_entropy_with_logits``: the
  same BCE, numerically safe).
* R: D's layout with half the filters (32 .. 256), 10% spatial dropout, and a 5x5 conv -> 256
  (affine WN, no activation): image -> z.

``width`` multiplies every channel count (CPU-sized runs use 0.25 or less).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from edgeconv.errors import EdgeconvError
from edgeconv.gan.lis import (LAMBDA, MAX_MODULES, Z_DIM, LISModule, TPReLU, WNConv2d,
                              WNConvTranspose2d, WNLinear, sample_stop, similarity_loss)

SIZES = {64: 4, 80: 5}          # image size -> first feature map side
#: initial WN scale of a layer followed by TPReLU (slope 0.25): He's gain sqrt(2 / (1 + a^2)),
#: so activations keep their scale through the stack at initialisation
GAIN = (2 / (1 + 0.25 ** 2)) ** 0.5
#: a stride-2 4x4 transposed conv sums 4 of its 16 taps into each output pixel: x2 more, or
#: the signal (and G's dependence on z) shrinks 4x per layer and G starts as a constant grey
UP_GAIN = 2.0


@dataclass
class GANConfig:
    size: int = 80
    z_dim: int = Z_DIM
    lis_modules: int = 1
    width: float = 1.0
    lam: float = LAMBDA
    reverser: bool = False       # R-separate: train R after G and D

    def check(self) -> "GANConfig":
        if int(self.size) not in SIZES:
            raise EdgeconvError(f"--size must be one of {', '.join(map(str, SIZES))}, got "
                                f"{self.size}")
        if not 0 <= int(self.lis_modules) <= MAX_MODULES:
            raise EdgeconvError(f"--lis-modules must be 0..{MAX_MODULES}, got {self.lis_modules}")
        if not 0 < float(self.width) <= 4:
            raise EdgeconvError(f"--width must be in (0, 4], got {self.width}")
        if int(self.z_dim) < 1:
            raise EdgeconvError(f"z_dim must be >= 1, got {self.z_dim}")
        if not 0 <= float(self.lam) <= 1:
            raise EdgeconvError(f"lambda must be in [0, 1], got {self.lam}")
        return self

    @classmethod
    def from_dict(cls, d: dict) -> "GANConfig":
        return cls(**dict(d)).check()

    def to_dict(self) -> dict:
        return asdict(self)

    def ch(self, c: int) -> int:
        return max(1, int(round(c * float(self.width))))


class Generator(nn.Module):
    def __init__(self, cfg: GANConfig):
        super().__init__()
        self.cfg = cfg
        self.s0 = SIZES[cfg.size]
        chans = [cfg.ch(c) for c in (512, 256, 128, 64)]
        self.lis = nn.ModuleList(LISModule(cfg.z_dim) for _ in range(cfg.lis_modules))
        self.fc = WNLinear(cfg.z_dim, chans[0] * self.s0 * self.s0, scale=GAIN)
        self.fc_act = TPReLU(chans[0])
        ups = []
        for a, b in zip(chans, chans[1:]):
            ups += [WNConvTranspose2d(a, b, 4, 2, 1, scale=GAIN * UP_GAIN), TPReLU(b)]
        ups += [WNConvTranspose2d(chans[-1], 3, 4, 2, 1, scale=UP_GAIN), nn.Sigmoid()]
        self.up = nn.Sequential(*ups)
        self.c0 = chans[0]

    def manipulate(self, z, modules: int | None = None):
        """(z after the first ``modules`` LIS modules (all: None), [each module's output])."""
        zs = []
        for m in list(self.lis)[:len(self.lis) if modules is None else modules]:
            z = m(z)
            zs.append(z)
        return z, zs

    def render(self, z):
        """The image of an already-manipulated z (no LIS modules)."""
        h = self.fc(z).unflatten(1, (self.c0, self.s0, self.s0))
        return self.up(self.fc_act(h))

    def forward(self, z, modules: int | None = None):
        return self.render(self.manipulate(z, modules)[0])

    def train_forward(self, z):
        """Training pass: early-stopped manipulation; (images, similarity loss, modules run)."""
        k = sample_stop(len(self.lis))
        zk, zs = self.manipulate(z, k)
        return self.render(zk), similarity_loss(zs, z, self.cfg.lam), k


class _Convs(nn.Module):
    def __init__(self, cfg: GANConfig, chans, out: int, dropout: float = 0.0):
        super().__init__()
        layers, cin = [], 3
        for c in chans:
            layers += [WNConv2d(cin, c, 4, 2, 1, scale=GAIN), TPReLU(c)]
            if dropout:
                layers.append(nn.Dropout2d(dropout))
            cin = c
        self.body = nn.Sequential(*layers)
        self.head = WNConv2d(cin, out, SIZES[cfg.size])

    def forward(self, x):
        return self.head(self.body(x)).flatten(1)


class Discriminator(_Convs):
    def __init__(self, cfg: GANConfig):
        super().__init__(cfg, [cfg.ch(c) for c in (64, 128, 256, 512)], 1)


class Reverser(_Convs):
    def __init__(self, cfg: GANConfig):
        super().__init__(cfg, [cfg.ch(c) for c in (32, 64, 128, 256)], cfg.z_dim, dropout=0.1)


class GAN(nn.Module):
    def __init__(self, cfg: GANConfig | None = None):
        super().__init__()
        self.cfg = (cfg or GANConfig()).check()
        self.G = Generator(self.cfg)
        self.D = Discriminator(self.cfg)
        self.R = Reverser(self.cfg) if self.cfg.reverser else None

    @torch.no_grad()
    def sample(self, z, reverse: bool = False):
        """Images of ``z`` at inference (every LIS module); ``reverse``: R-separate's
        ``G(R(G(z)))``."""
        was = self.training
        self.eval()
        x = self.G(z)
        if reverse:
            if self.R is None:
                raise EdgeconvError("this GAN has no reverser (train with --reverser-epochs)")
            x = self.G(self.R(x))
        self.train(was)
        return x


class ReversedGenerator(nn.Module):
    """R-separate at inference as one network: ``G(R(G(z)))`` (exportable like G)."""

    def __init__(self, G: Generator, R: Reverser):
        super().__init__()
        self.G, self.R = G, R

    def forward(self, z):
        return self.G(self.R(self.G(z)))
