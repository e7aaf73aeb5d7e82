"""``edgeconv translate-train``: train UNIT on unpaired synthetic RGB (A) and NIR (B) faces.

Domain A and domain B come from DISJOINT identities (A: ``0 .. identities-1``, B: the next
``identities``), so training never sees a pair; evaluation can use the pairs the generator
renders. Same conventions as ``edgeconv train``: a run folder with ``config.json``,
``history.json`` and ``last.ckpt`` written atomically every epoch; exact resume (the epoch's
data order is a pure function of seed and epoch; the RNG states travel in the checkpoint);
one line per epoch. Checkpoints are versioned dicts loaded with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from edgeconv.errors import EdgeconvError
from edgeconv.metadata import TRANSLATOR_DIRECTIONS as DIRECTIONS
from edgeconv.translate.unit import UNIT, UNITConfig, optimizers, train_step

CHECKPOINT_FORMAT = "edgeconv.unit"
FORMAT_VERSION = 1
LAST = "last.ckpt"


#: --size range: the synthetic renderer's smallest face is 16 px (edgeconv.config)
MIN_SIZE, MAX_SIZE = 16, 512


@dataclass
class TranslateConfig:
    unit: dict = field(default_factory=dict)      # UNITConfig fields (defaults: the paper's)
    identities: int = 200                          # per domain (disjoint)
    images_per_identity: int = 10
    size: int = 32
    difficulty: float = 0.5
    epochs: int = 10
    batch_size: int = 16
    seed: int = 0
    output: str = "runs/translate"

    def unit_config(self) -> UNITConfig:
        return UNITConfig.from_dict(self.unit)

    def check(self) -> "TranslateConfig":
        for name in ("identities", "images_per_identity", "size", "epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise EdgeconvError(f"{name} must be >= 1, got {getattr(self, name)}")
        step = 2 ** self.unit_config().n_down
        if not (MIN_SIZE <= int(self.size) <= MAX_SIZE) or self.size % step:
            raise EdgeconvError(f"--size {self.size}: must be {MIN_SIZE}..{MAX_SIZE} and a "
                                f"multiple of {step}")
        return self


def domain_images(cfg: TranslateConfig) -> tuple[np.ndarray, np.ndarray]:
    """float32 NCHW in [-1, 1]: A = RGB of identities [0, n), B = NIR (1 channel) of [n, 2n)."""
    from edgeconv.data.synthetic import SyntheticFaces

    n, k = int(cfg.identities), int(cfg.images_per_identity)
    kw = dict(num_identities=2 * n, images_per_identity=k, size=(cfg.size, cfg.size),
              seed=cfg.seed, difficulty=cfg.difficulty)
    idx = np.tile(np.arange(k), n)
    a = SyntheticFaces(**kw).render_batch(np.repeat(np.arange(n), k), idx)
    b = SyntheticFaces(**kw, sensor="nir").render_batch(np.repeat(np.arange(n, 2 * n), k), idx)
    to = lambda x: (x.astype(np.float32) / 127.5 - 1.0).transpose(0, 3, 1, 2)  # noqa: E731
    return to(a), to(b[..., :1])


def epoch_order(seed: int, epoch: int, n_a: int, n_b: int) -> tuple[np.ndarray, np.ndarray]:
    """The unpaired pairing of one epoch: independent permutations of A and B."""
    rng = np.random.default_rng([int(seed), int(epoch), 0x0417])
    return rng.permutation(n_a), rng.permutation(n_b)


class TranslateTrainer:
    def __init__(self, cfg: TranslateConfig, log=print):
        self.cfg = cfg.check()
        torch.manual_seed(cfg.seed)
        self.model = UNIT(cfg.unit_config())
        self.opt_g, self.opt_d = optimizers(self.model)
        self.epoch = 0
        self.history: list[dict] = []
        self.log = log
        self.run_dir = Path(cfg.output)
        self.a, self.b = domain_images(cfg)

    def state(self) -> dict:
        from edgeconv import __version__
        from edgeconv.train.loop import capture_rng

        return {"format": CHECKPOINT_FORMAT, "format_version": FORMAT_VERSION,
                "edgeconv_version": __version__, "config": _json(asdict(self.cfg)),
                "unit_config": self.model.cfg.to_dict(), "epoch": self.epoch,
                "state_dict": self.model.state_dict(), "opt_g": self.opt_g.state_dict(),
                "opt_d": self.opt_d.state_dict(), "rng": capture_rng(),
                "history": self.history}

    def load(self, ckpt: dict) -> None:
        from edgeconv.train.loop import restore_rng

        try:
            self.model.load_state_dict(ckpt["state_dict"])
            self.opt_g.load_state_dict(ckpt["opt_g"])
            self.opt_d.load_state_dict(ckpt["opt_d"])
            restore_rng(ckpt["rng"])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise EdgeconvError(f"translation checkpoint does not fit this run "
                                f"({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") \
                from None
        self.epoch = int(ckpt["epoch"])
        self.history = list(ckpt.get("history") or [])

    def run(self, stop_after: int | None = None) -> dict:
        from edgeconv.fileio import atomic_path, atomic_write_json
        from edgeconv.train.loop import clean_stale_temps

        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(self.run_dir, self.log)
        atomic_write_json(self.run_dir / "config.json", _json(asdict(cfg)))
        end = cfg.epochs if stop_after is None else min(cfg.epochs, stop_after)
        self.log(f"UNIT on {len(self.a)} RGB (domain A) / {len(self.b)} NIR (domain B) images "
                 f"of disjoint identities, {cfg.size}x{cfg.size}, batch {cfg.batch_size}, "
                 f"epochs {self.epoch + 1}..{cfg.epochs} -> {self.run_dir}")
        self.model.train()
        while self.epoch < end:
            t0 = time.perf_counter()
            pa, pb = epoch_order(cfg.seed, self.epoch, len(self.a), len(self.b))
            steps = min(len(pa), len(pb)) // cfg.batch_size
            sums: dict = {}
            for s in range(steps):
                sl = slice(s * cfg.batch_size, (s + 1) * cfg.batch_size)
                parts = train_step(self.model, self.opt_g, self.opt_d,
                                   torch.from_numpy(self.a[pa[sl]]),
                                   torch.from_numpy(self.b[pb[sl]]))
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + v
            self.epoch += 1
            rec = {"epoch": self.epoch, "seconds": time.perf_counter() - t0,
                   **{k: v / max(steps, 1) for k, v in sums.items()}}
            self.history.append(rec)
            with atomic_path(self.run_dir / LAST) as tmp:
                torch.save(self.state(), tmp)
            atomic_write_json(self.run_dir / "history.json", self.history)
            self.log(f"epoch {self.epoch}/{cfg.epochs}  gen {rec.get('gen', 0):.3f}  dis "
                     f"{rec.get('dis', 0):.3f}  recon {rec.get('recon', 0):.4f}"
                     + (f"  cycle {rec['cycle']:.4f}" if "cycle" in rec else "")
                     + f"  {rec['seconds']:.1f} s")
        return {"run_dir": str(self.run_dir), "last": str(self.run_dir / LAST),
                "epochs_done": self.epoch, "history": self.history}


def _json(d):
    import json

    return json.loads(json.dumps(d, default=list))


def load_translate_checkpoint(path) -> dict:
    from edgeconv.train.checkpoint import read_torch_file

    return validate_translate_checkpoint(read_torch_file(path, "translation checkpoint"), path)


def validate_translate_checkpoint(ckpt, path) -> dict:
    """The header checks of :func:`load_translate_checkpoint` on an already-read object."""
    from edgeconv.train.run_folder import check_header

    return check_header(ckpt, path, CHECKPOINT_FORMAT, FORMAT_VERSION, "translation")


def unit_from_checkpoint(ckpt: dict, path) -> UNIT:
    """The UNIT model of a validated translation checkpoint, weights loaded, in eval mode."""
    from edgeconv.train.run_folder import model_from_checkpoint

    return model_from_checkpoint(ckpt, path, lambda c: UNIT(UNITConfig.from_dict(c)),
                                 "unit_config", "UNIT")


def translate_train(cfg: TranslateConfig | None = None, resume=None, log=print,
                    stop_after: int | None = None, overwrite: bool = False) -> dict:
    """Train (or resume, from a ``last.ckpt`` or its run folder) a UNIT translator."""
    from edgeconv.train.run_folder import start_or_resume

    return start_or_resume(TranslateTrainer, TranslateConfig, load_translate_checkpoint, cfg,
                           resume, log, overwrite, "translation", stop_after)




def output_names(images, direction: str) -> list[str]:
    """``<stem>_<direction>.png`` per input, unique: inputs sharing a stem (``a/x.png``,
    ``b/x.png``) get ``x_<direction>.png``, ``x-1_<direction>.png``, ... in input order."""
    used: set[str] = set()
    out = []
    for p in images:
        stem, k = Path(p).stem, 0
        name = f"{stem}_{direction}.png"
        while name in used:
            k += 1
            name = f"{stem}-{k}_{direction}.png"
        used.add(name)
        out.append(name)
    return out


def translate_files(checkpoint, images, output_dir, direction: str = "nir2rgb",
                    log=None) -> list[Path]:
    """Translate image files with a trained UNIT checkpoint; writes ``<stem>_<direction>.png``
    (numbered ``<stem>-1_<direction>.png`` ... when inputs share a name; ``log`` says so)."""
    from edgeconv.data.images import load_image, save_image

    if direction not in DIRECTIONS:
        raise EdgeconvError(f"--direction must be one of {', '.join(DIRECTIONS)}")
    if not images:
        raise EdgeconvError("give at least one image")
    ckpt = load_translate_checkpoint(checkpoint)
    model = unit_from_checkpoint(ckpt, checkpoint)
    size = int(ckpt["config"]["size"])
    arrs = [load_image(p, size=(size, size)) for p in images]  # every input checked first
    out_dir = Path(output_dir)
    names = output_names(images, direction)
    renamed = [(p, n) for p, n in zip(images, names) if n != f"{Path(p).stem}_{direction}.png"]
    if renamed and log is not None:
        log(f"note: {len(renamed)} input(s) share a file name with an earlier one; their "
            f"outputs are numbered: " + ", ".join(f"{p} -> {n}" for p, n in renamed[:5])
            + (" ..." if len(renamed) > 5 else ""))
    written = []
    with torch.no_grad():
        for p, arr, out_name in zip(images, arrs, names):
            x = torch.from_numpy(arr.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
            if direction == "nir2rgb":
                y = model.translate_ba(x.mean(1, keepdim=True))
            else:
                y = model.translate_ab(x)
            img = ((y[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
            if img.shape[2] == 1:
                img = np.repeat(img, 3, axis=2)
            written.append(save_image(out_dir / out_name, img))
    return written


def describe_translate_checkpoint(path, ckpt: dict | None = None, as_json: bool = False) -> dict:
    """``edgeconv info`` of a translation checkpoint (``ckpt``: the file already read):
    config, epochs, last losses, weights checked against the UNIT config; printed."""
    import json

    import click

    ckpt = (validate_translate_checkpoint(ckpt, path) if ckpt is not None
            else load_translate_checkpoint(path))
    model = unit_from_checkpoint(ckpt, path)
    cfg = ckpt.get("config") or {}
    last = (ckpt.get("history") or [{}])[-1]
    d = {"file": str(path), "kind": "UNIT translator (edgeconv translate-train)",
         "format_version": ckpt.get("format_version"),
         "edgeconv_version": ckpt.get("edgeconv_version"),
         "unit_config": ckpt["unit_config"],
         "epochs": f"{int(ckpt.get('epoch', 0))}/{cfg.get('epochs')}",
         "data": {k: cfg.get(k) for k in ("identities", "images_per_identity", "size",
                                          "difficulty", "seed")},
         "last_epoch_losses": {k: round(float(v), 4) for k, v in last.items()
                               if k not in ("epoch", "seconds")},
         "params": sum(p.numel() for p in model.generator_parameters()),
         "export": "edgeconv export FILE --direction nir2rgb|rgb2nir"}
    if as_json:
        click.echo(json.dumps(d, indent=2))
    else:
        for k, v in d.items():
            click.echo(f"{k + ':':<20}{json.dumps(v) if isinstance(v, dict) else v}")
    return d
