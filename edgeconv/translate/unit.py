"""UNIT: two VAE-GANs whose encoders share their last and whose generators share their first
residual blocks (the shared-latent-space assumption), with VAE, GAN and cycle-consistency losses.

Architecture (the paper's Table 3, width-scalable): encoder = conv 7x7 s1, ``n_down`` conv 3x3
s2 (LeakyReLU), ``n_res`` residual blocks of which the last ``shared`` are one set of modules
used by both domains; generator = ``n_res`` residual blocks of which the first ``shared`` are
shared, ``n_down`` transposed convs s2 (LeakyReLU), a 1x1 conv to the domain's channels and
tanh; discriminator = ``dis_layers`` conv 3x3 s2 (LeakyReLU) and a 1-channel conv (logits; the
sigmoid is in the loss). Latent: the encoder's output is the mean of a unit-variance Gaussian,
sampled as ``mu + N(0, 1)`` in training (the official implementation's choice); KL to the prior
N(0, I) is then ``mean(mu^2) / 2`` per element.

Losses and defaults (the paper's): lambda0 = 10 (GAN), lambda1 = 0.1 (KL), lambda2 = 100
(reconstruction, L1 = Laplacian NLL), lambda3 = 0.1 (cycle KL), lambda4 = 100 (cycle L1); Adam
lr 1e-4, betas (0.5, 0.999). ``shared`` 1-4 and ``cycle`` on/off are the paper's ablations.
Images are in [-1, 1], NCHW.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgeconv.errors import EdgeconvError


@dataclass
class UNITConfig:
    channels_a: int = 3
    channels_b: int = 1
    width: int = 64          # first conv's channels (paper: 64, doubled at each downsampling)
    n_down: int = 2
    n_res: int = 4
    shared: int = 1          # residual blocks shared by the encoders and by the generators
    dis_layers: int = 4
    cycle: bool = True
    lambda_gan: float = 10.0
    lambda_kl: float = 0.1
    lambda_recon: float = 100.0
    lambda_cycle_kl: float = 0.1
    lambda_cycle: float = 100.0
    lr: float = 1e-4
    betas: tuple = (0.5, 0.999)

    def check(self) -> "UNITConfig":
        if not 1 <= int(self.shared) <= int(self.n_res):
            raise EdgeconvError(f"shared must be 1..n_res ({self.n_res}), got {self.shared}")
        for name in ("channels_a", "channels_b", "width", "n_down", "n_res", "dis_layers"):
            if int(getattr(self, name)) < 1:
                raise EdgeconvError(f"{name} must be >= 1, got {getattr(self, name)}")
        return self

    @classmethod
    def from_dict(cls, d: dict) -> "UNITConfig":
        """The inverse of :meth:`to_dict` (JSON lists back to tuples), checked."""
        kw = dict(d)
        if "betas" in kw:
            kw["betas"] = tuple(kw["betas"])
        return cls(**kw).check()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d


def _act():
    return nn.LeakyReLU(0.2, inplace=True)


class ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(F.leaky_relu(self.conv1(x), 0.2))


class Encoder(nn.Module):
    """Private front-end + private residual blocks + the ``shared`` blocks (given)."""

    def __init__(self, in_ch: int, cfg: UNITConfig, shared: nn.ModuleList):
        super().__init__()
        ch = cfg.width
        layers = [nn.Conv2d(in_ch, ch, 7, padding=3), _act()]
        for _ in range(cfg.n_down):
            layers += [nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1), _act()]
            ch *= 2
        self.front = nn.Sequential(*layers)
        self.private = nn.ModuleList(ResBlock(ch) for _ in range(cfg.n_res - cfg.shared))
        self.shared = shared

    def forward(self, x):
        h = self.front(x)
        for blk in list(self.private) + list(self.shared):
            h = blk(h)
        return h


class Generator(nn.Module):
    """The ``shared`` blocks (given) + private residual blocks + private upsampling."""

    def __init__(self, out_ch: int, cfg: UNITConfig, shared: nn.ModuleList):
        super().__init__()
        ch = cfg.width * 2 ** cfg.n_down
        self.shared = shared
        self.private = nn.ModuleList(ResBlock(ch) for _ in range(cfg.n_res - cfg.shared))
        layers = []
        for _ in range(cfg.n_down):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 3, stride=2, padding=1,
                                          output_padding=1), _act()]
            ch //= 2
        layers += [nn.Conv2d(ch, out_ch, 1), nn.Tanh()]
        self.back = nn.Sequential(*layers)

    def forward(self, z):
        for blk in list(self.shared) + list(self.private):
            z = blk(z)
        return self.back(z)


class Discriminator(nn.Module):
    def __init__(self, in_ch: int, cfg: UNITConfig):
        super().__init__()
        ch, layers = cfg.width, []
        for _ in range(cfg.dis_layers):
            layers += [nn.Conv2d(in_ch, ch, 3, stride=2, padding=1), _act()]
            in_ch, ch = ch, ch * 2
        layers.append(nn.Conv2d(in_ch, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)             # logits, one per patch


class UNIT(nn.Module):
    def __init__(self, cfg: UNITConfig | None = None):
        super().__init__()
        self.cfg = (cfg or UNITConfig()).check()
        c = self.cfg
        ch = c.width * 2 ** c.n_down
        enc_shared = nn.ModuleList(ResBlock(ch) for _ in range(c.shared))
        gen_shared = nn.ModuleList(ResBlock(ch) for _ in range(c.shared))
        self.enc_a, self.enc_b = Encoder(c.channels_a, c, enc_shared), Encoder(c.channels_b, c,
                                                                               enc_shared)
        self.gen_a, self.gen_b = Generator(c.channels_a, c, gen_shared), Generator(
            c.channels_b, c, gen_shared)
        self.dis_a, self.dis_b = Discriminator(c.channels_a, c), Discriminator(c.channels_b, c)

    def generator_parameters(self):
        """Encoders + generators, each shared parameter once."""
        seen, out = set(), []
        for m in (self.enc_a, self.enc_b, self.gen_a, self.gen_b):
            for p in m.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    out.append(p)
        return out

    def discriminator_parameters(self):
        return list(self.dis_a.parameters()) + list(self.dis_b.parameters())

    @staticmethod
    def _sample(mu):
        return mu + torch.randn_like(mu)

    def translate_ab(self, x_a):
        """A -> B at inference (the latent mean, no sampling)."""
        return self.gen_b(self.enc_a(x_a))

    def translate_ba(self, x_b):
        return self.gen_a(self.enc_b(x_b))

    def generator_loss(self, x_a, x_b) -> tuple[torch.Tensor, dict]:
        c = self.cfg
        mu_a, mu_b = self.enc_a(x_a), self.enc_b(x_b)
        z_a, z_b = self._sample(mu_a), self._sample(mu_b)
        x_aa, x_bb = self.gen_a(z_a), self.gen_b(z_b)          # reconstruction streams
        x_ba, x_ab = self.gen_a(z_b), self.gen_b(z_a)          # translation streams
        parts = {
            "recon": F.l1_loss(x_aa, x_a) + F.l1_loss(x_bb, x_b),
            "kl": 0.5 * (mu_a.pow(2).mean() + mu_b.pow(2).mean()),
            "gan": _bce(self.dis_a(x_ba), True) + _bce(self.dis_b(x_ab), True),
        }
        total = (c.lambda_recon * parts["recon"] + c.lambda_kl * parts["kl"]
                 + c.lambda_gan * parts["gan"])
        if c.cycle:                                            # cycle-reconstruction streams
            mu_ab, mu_ba = self.enc_b(x_ab), self.enc_a(x_ba)
            x_aba = self.gen_a(self._sample(mu_ab))
            x_bab = self.gen_b(self._sample(mu_ba))
            parts["cycle"] = F.l1_loss(x_aba, x_a) + F.l1_loss(x_bab, x_b)
            parts["cycle_kl"] = 0.5 * (mu_ab.pow(2).mean() + mu_ba.pow(2).mean())
            total = total + c.lambda_cycle * parts["cycle"] + c.lambda_cycle_kl * parts["cycle_kl"]
        return total, {k: float(v.detach()) for k, v in parts.items()}

    def discriminator_loss(self, x_a, x_b) -> torch.Tensor:
        with torch.no_grad():
            x_ba = self.gen_a(self._sample(self.enc_b(x_b)))
            x_ab = self.gen_b(self._sample(self.enc_a(x_a)))
        return (_bce(self.dis_a(x_a), True) + _bce(self.dis_a(x_ba), False)
                + _bce(self.dis_b(x_b), True) + _bce(self.dis_b(x_ab), False))


def _bce(logits, real: bool):
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def optimizers(model: UNIT):
    c = model.cfg
    return (torch.optim.Adam(model.generator_parameters(), lr=c.lr, betas=tuple(c.betas)),
            torch.optim.Adam(model.discriminator_parameters(), lr=c.lr, betas=tuple(c.betas)))


def train_step(model: UNIT, opt_g, opt_d, x_a, x_b) -> dict:
    """One alternating update: discriminators first, then encoders + generators."""
    opt_d.zero_grad(set_to_none=True)
    d_loss = model.discriminator_loss(x_a, x_b)
    d_loss.backward()
    opt_d.step()
    opt_g.zero_grad(set_to_none=True)
    g_loss, parts = model.generator_loss(x_a, x_b)
    g_loss.backward()
    opt_g.step()
    return dict(parts, dis=float(d_loss.detach()), gen=float(g_loss.detach()))
