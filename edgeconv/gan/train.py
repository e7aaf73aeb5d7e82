"""``edgeconv gan-train``: a face GAN with LIS modules (and optionally R-separate).

Same conventions as ``edgeconv translate-train``: a run folder with ``config.json``,
``history.json`` and ``last.ckpt`` written atomically every epoch; exact resume (the epoch's
data order is a pure function of seed and epoch; z draws, early stops and dropout come from
torch's global RNG, whose state travels in the checkpoint); one line per epoch; and a sample
grid ``grid_eNNN.png`` per epoch (fixed z, every LIS module; in the reverser epochs the grid is
R-separate's ``G(R(G(z)))``). Checkpoints are versioned dicts read with ``weights_only=True``.

Schedule: ``epochs`` epochs of G and D (RMSprop alpha 0.9, eps 1e-6, BCE; D step then G step
per batch; G's loss adds the LIS similarity constraint), then ``reverser_epochs`` epochs of R
alone (R-separate: MSE between R(G(z)) and z, G and D frozen).

Data: the built-in synthetic faces rendered at the GAN's size (``data="synthetic"``), or an
ImageFolder path (every image, labels ignored).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgeconv.errors import EdgeconvError
from edgeconv.gan.models import GAN, GANConfig

CHECKPOINT_FORMAT = "edgeconv.gan"
FORMAT_VERSION = 1
LAST = "last.ckpt"
GRID = 8                      # grid side: GRID x GRID samples


@dataclass
class GanTrainConfig:
    gan: dict = field(default_factory=dict)       # GANConfig fields
    data: str = "synthetic"
    identities: int = 500
    images_per_identity: int = 4
    difficulty: float = 0.5
    data_seed: int = 0
    epochs: int = 10
    reverser_epochs: int = 0
    batch_size: int = 32
    lr: float = 2e-4
    seed: int = 0
    output: str = "runs/gan"

    def gan_config(self) -> GANConfig:
        d = dict(self.gan)
        d["reverser"] = int(self.reverser_epochs) > 0
        return GANConfig.from_dict(d)

    def check(self) -> "GanTrainConfig":
        for name in ("identities", "images_per_identity", "epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise EdgeconvError(f"{name} must be >= 1, got {getattr(self, name)}")
        if int(self.reverser_epochs) < 0:
            raise EdgeconvError(f"reverser_epochs must be >= 0, got {self.reverser_epochs}")
        if not float(self.lr) > 0:
            raise EdgeconvError(f"lr must be > 0, got {self.lr}")
        self.gan_config()
        return self


def real_images(cfg: GanTrainConfig) -> np.ndarray:
    """uint8 NCHW training images at the GAN's size."""
    size = int(cfg.gan_config().size)
    if cfg.data == "synthetic":
        from edgeconv.data.synthetic import SyntheticFaces

        n, k = int(cfg.identities), int(cfg.images_per_identity)
        ds = SyntheticFaces(num_identities=n, images_per_identity=k, size=(size, size),
                            seed=cfg.data_seed, difficulty=cfg.difficulty, cache=False)
        imgs = ds.render_batch(np.repeat(np.arange(n), k), np.tile(np.arange(k), n))
    else:
        from edgeconv.data.imagefolder import ImageFolder

        ds = ImageFolder(cfg.data, size=(size, size))
        imgs = np.stack([ds[i][0] for i in range(len(ds))])
    if len(imgs) < cfg.batch_size:
        raise EdgeconvError(f"{len(imgs)} training images, fewer than one batch "
                            f"({cfg.batch_size})")
    return np.ascontiguousarray(imgs.transpose(0, 3, 1, 2))


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([int(seed), int(epoch), 0x6A4]).permutation(n)


def grid_z(cfg: GanTrainConfig, n: int = GRID * GRID) -> torch.Tensor:
    """The fixed noise of the per-epoch grids (a pure function of the seed)."""
    z_dim = cfg.gan_config().z_dim
    rng = np.random.default_rng([int(cfg.seed), 0x6D1])
    return torch.from_numpy(rng.standard_normal((n, z_dim)).astype(np.float32))


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """[0, 1] NCHW -> uint8 NHWC."""
    return (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def grid_image(images: np.ndarray, cols: int = GRID, pad: int = 2) -> np.ndarray:
    """uint8 NHWC -> one uint8 image, ``cols`` per row, ``pad`` px white gaps."""
    n, h, w, c = images.shape
    rows = -(-n // cols)
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
    for i, im in enumerate(images):
        r, q = divmod(i, cols)
        out[pad + r * (h + pad):pad + r * (h + pad) + h,
            pad + q * (w + pad):pad + q * (w + pad) + w] = im
    return out


def optimizers(model: GAN, lr: float):
    rms = dict(lr=lr, alpha=0.9, eps=1e-6)
    opts = {"g": torch.optim.RMSprop(model.G.parameters(), **rms),
            "d": torch.optim.RMSprop(model.D.parameters(), **rms)}
    if model.R is not None:
        opts["r"] = torch.optim.RMSprop(model.R.parameters(), **rms)
    return opts


def _bce(logits, real: bool):
    return F.binary_cross_entropy_with_logits(
        logits, torch.ones_like(logits) if real else torch.zeros_like(logits))


def gan_step(model: GAN, opts, real: torch.Tensor) -> dict:
    """D step (real vs G(z) of fresh z), then G step (BCE + similarity constraint)."""
    G, D = model.G, model.D
    b = len(real)
    z = torch.randn(b, model.cfg.z_dim)
    with torch.no_grad():
        fake, _, _ = G.train_forward(z)
    opts["d"].zero_grad(set_to_none=True)
    d_real, d_fake = D(real), D(fake)
    d_loss = _bce(d_real, True) + _bce(d_fake, False)
    d_loss.backward()
    opts["d"].step()
    opts["g"].zero_grad(set_to_none=True)
    z = torch.randn(b, model.cfg.z_dim)
    fake, sim, k = G.train_forward(z)
    g_adv = _bce(D(fake), True)
    (g_adv + sim).backward()
    opts["g"].step()
    return {"dis": float(d_loss.detach()), "gen": float(g_adv.detach()),
            "sim": float(sim.detach()), "modules_run": float(k),
            "d_real": float(torch.sigmoid(d_real.detach()).mean()),
            "d_fake": float(torch.sigmoid(d_fake.detach()).mean())}


def reverser_step(model: GAN, opts, b: int) -> dict:
    """R-separate: R(G(z)) regresses the ORIGINAL z (G frozen, every LIS module)."""
    z = torch.randn(b, model.cfg.z_dim)
    with torch.no_grad():
        x = model.G(z)
    opts["r"].zero_grad(set_to_none=True)
    loss = F.mse_loss(model.R(x), z)
    loss.backward()
    opts["r"].step()
    return {"rev": float(loss.detach())}


class GanTrainer:
    def __init__(self, cfg: GanTrainConfig, log=print):
        self.cfg = cfg.check()
        torch.manual_seed(cfg.seed)
        self.model = GAN(cfg.gan_config())
        self.opts = optimizers(self.model, float(cfg.lr))
        self.epoch = 0
        self.history: list[dict] = []
        self.log = log
        self.run_dir = Path(cfg.output)
        self.real = real_images(cfg)

    @property
    def total_epochs(self) -> int:
        return int(self.cfg.epochs) + int(self.cfg.reverser_epochs)

    def state(self) -> dict:
        from edgeconv import __version__
        from edgeconv.train.loop import capture_rng

        return {"format": CHECKPOINT_FORMAT, "format_version": FORMAT_VERSION,
                "edgeconv_version": __version__, "config": _json(asdict(self.cfg)),
                "gan_config": self.model.cfg.to_dict(), "epoch": self.epoch,
                "state_dict": self.model.state_dict(),
                "opts": {k: o.state_dict() for k, o in self.opts.items()},
                "rng": capture_rng(), "history": self.history}

    def load(self, ckpt: dict) -> None:
        from edgeconv.train.loop import restore_rng

        try:
            self.model.load_state_dict(ckpt["state_dict"])
            for k, o in self.opts.items():
                o.load_state_dict(ckpt["opts"][k])
            restore_rng(ckpt["rng"])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise EdgeconvError(f"GAN checkpoint does not fit this run "
                                f"({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") \
                from None
        self.epoch = int(ckpt["epoch"])
        self.history = list(ckpt.get("history") or [])

    def write_grid(self, reverse: bool) -> Path:
        from edgeconv.data.images import save_image

        x = self.model.sample(grid_z(self.cfg), reverse=reverse)
        return save_image(self.run_dir / f"grid_e{self.epoch:03d}.png",
                          grid_image(to_uint8(x)))

    def run(self, stop_after: int | None = None) -> dict:
        from edgeconv.fileio import atomic_path, atomic_write_json
        from edgeconv.train.loop import clean_stale_temps

        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(self.run_dir, self.log)
        atomic_write_json(self.run_dir / "config.json", _json(asdict(cfg)))
        total = self.total_epochs
        end = total if stop_after is None else min(total, stop_after)
        g = self.model.cfg
        self.log(f"GAN {g.size}x{g.size}, {g.lis_modules} LIS module(s), width {g.width:g}"
                 + (f", R-separate ({cfg.reverser_epochs} epoch(s) after G/D)"
                    if cfg.reverser_epochs else "")
                 + f" on {len(self.real)} images, batch {cfg.batch_size}, epochs "
                 f"{self.epoch + 1}..{total} -> {self.run_dir}")
        self.model.train()
        while self.epoch < end:
            t0 = time.perf_counter()
            reverse = self.epoch >= cfg.epochs
            order = epoch_order(cfg.seed, self.epoch, len(self.real))
            steps = len(order) // cfg.batch_size
            sums: dict = {}
            for s in range(steps):
                if reverse:
                    parts = reverser_step(self.model, self.opts, cfg.batch_size)
                else:
                    idx = order[s * cfg.batch_size:(s + 1) * cfg.batch_size]
                    real = torch.from_numpy(self.real[idx]).float().div_(255.0)
                    parts = gan_step(self.model, self.opts, real)
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + v
            self.epoch += 1
            rec = {"epoch": self.epoch, "phase": "reverser" if reverse else "gan",
                   "seconds": time.perf_counter() - t0,
                   **{k: v / max(steps, 1) for k, v in sums.items()}}
            self.history.append(rec)
            grid = self.write_grid(reverse)
            with atomic_path(self.run_dir / LAST) as tmp:
                torch.save(self.state(), tmp)
            atomic_write_json(self.run_dir / "history.json", self.history)
            if reverse:
                self.log(f"epoch {self.epoch}/{total}  reverser mse {rec['rev']:.4f}  "
                         f"{rec['seconds']:.1f} s  {grid.name}")
            else:
                self.log(f"epoch {self.epoch}/{total}  dis {rec['dis']:.3f}  gen "
                         f"{rec['gen']:.3f}  sim {rec['sim']:.5f}  D(real) "
                         f"{rec['d_real']:.2f}  D(fake) {rec['d_fake']:.2f}  "
                         f"{rec['seconds']:.1f} s  {grid.name}")
        return {"run_dir": str(self.run_dir), "last": str(self.run_dir / LAST),
                "epochs_done": self.epoch, "history": self.history}


def _json(d):
    import json

    return json.loads(json.dumps(d, default=list))


def load_gan_checkpoint(path) -> dict:
    from edgeconv.train.checkpoint import read_torch_file

    from edgeconv.train.run_folder import check_header

    return check_header(read_torch_file(path, "GAN checkpoint"), path, CHECKPOINT_FORMAT,
                        FORMAT_VERSION, "GAN")


def gan_from_checkpoint(ckpt: dict, path) -> GAN:
    from edgeconv.train.run_folder import model_from_checkpoint

    return model_from_checkpoint(ckpt, path, lambda c: GAN(GANConfig.from_dict(c)),
                                 "gan_config", "GAN")


def gan_train(cfg: GanTrainConfig | None = None, resume=None, log=print,
              stop_after: int | None = None, overwrite: bool = False) -> dict:
    """Train (or resume, from a ``last.ckpt`` or its run folder) a LIS GAN."""
    from edgeconv.train.run_folder import start_or_resume

    return start_or_resume(GanTrainer, GanTrainConfig, load_gan_checkpoint, cfg, resume, log,
                           overwrite, "GAN", stop_after)
