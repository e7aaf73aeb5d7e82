"""``edgeconv train``: the published recipe (AM-Softmax, SGD, MultiStep) with exact resume.

Run folder (``config.output``)::

    config.json      the resolved TrainConfig
    history.json     one entry per finished epoch (loss, accuracy, lr, images/s, validation)
    last.ckpt        written atomically after every epoch (model + full training state)
    best.ckpt        the epoch with the best validation accuracy (lowest loss without validation)

Exact resume: everything random is a pure function of the config and the epoch (the sampler
order is ``DistributedSampler(seed, epoch)``; the flip generator is re-seeded from
``(seed, epoch, rank)`` at each epoch start), and the checkpoint holds model, head, optimizer
(momentum buffers), scheduler and the torch / numpy / python RNG states. Resuming from
``last.ckpt`` therefore gives bit-identical weights to an uninterrupted run (same machine,
same thread count). Checkpoints are only written at epoch ends, atomically: Ctrl-C mid-epoch
leaves the last complete one intact.
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

from edgeconv.errors import EdgeconvError
from edgeconv.fileio import atomic_write_json
from edgeconv.train import distributed as ddp
from edgeconv.train.config import TrainConfig

LAST, BEST = "last.ckpt", "best.ckpt"
#: When set, every rank writes ``rank<N>.json`` (checksum of its weights) there at the end.
CHECKSUM_ENV = "EDGECONV_RANK_CHECKSUM_DIR"


# --------------------------------------------------------------------------- RNG state
def capture_rng() -> dict:
    """torch / numpy / python global RNG states as tensors, lists and numbers (weights_only-safe)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, pystate, gauss_next = random.getstate()
    out = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "state": torch.tensor(pystate, dtype=torch.int64),
                   "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def epoch_generator(seed: int, epoch: int, rank: int) -> torch.Generator:
    """The augmentation generator of one epoch on one rank (stateless across epochs)."""
    g = torch.Generator()
    g.manual_seed((int(seed) * 1_000_003 + int(epoch) * 7_919 + int(rank) * 104_729) % (2**63))
    return g


# --------------------------------------------------------------------------- data
def build_train_data(config: TrainConfig, progress: bool = False):
    """A map-style data set of ``(uint8 (H, W, 3), label)`` with ``num_classes``."""
    size = tuple(config.input_size)
    if config.data == "synthetic":
        from edgeconv.data.synthetic import SyntheticFaces

        ds = SyntheticFaces(config.identities, config.images_per_identity, size=size,
                            seed=config.data_seed, difficulty=config.difficulty)
        ds.materialize(progress=progress)
        return ds
    path = Path(config.data)
    if not path.is_dir():
        raise EdgeconvError(f"--data: {path} is neither 'synthetic' nor an image folder")
    from edgeconv.data.imagefolder import ImageFolder

    ds = ImageFolder(path, size=size)
    if ds.num_classes < 2:
        raise EdgeconvError(
            f"--data: {path} holds {ds.num_classes} identity ({', '.join(ds.classes)}); a face "
            "model learns to tell identities apart: give at least 2 identity sub-folders "
            "(hundreds for a usable model)")
    return ds


def build_val_pairs(config: TrainConfig, spec: str | None = None, num_pairs: int | None = None):
    """Validation pairs (:class:`~edgeconv.data.pairs.PairSet`) or None for ``none``."""
    spec = config.val if spec is None else spec
    if spec in (None, "", "none"):
        return None
    from edgeconv.train.evaluate import load_pairs

    return load_pairs(spec, size=tuple(config.input_size),
                      num_pairs=num_pairs or config.val_pairs, identities=config.identities,
                      difficulty=config.difficulty, data_seed=config.data_seed)


def _collate(items):
    images = torch.from_numpy(np.stack([np.asarray(im, dtype=np.uint8) for im, _ in items]))
    labels = torch.tensor([int(lb) for _, lb in items], dtype=torch.int64)
    return images, labels


def to_input(images_u8: torch.Tensor, device, flip_gen: torch.Generator | None) -> torch.Tensor:
    """uint8 NHWC -> float32 NCHW in [-1, 1] (``(x/255 - 0.5)/0.5``), random horizontal flips."""
    x = images_u8.to(device).permute(0, 3, 1, 2).float()
    x = x.mul_(2.0 / 255.0).sub_(1.0)
    if flip_gen is not None:
        mask = torch.rand(x.shape[0], generator=flip_gen) < 0.5
        if mask.any():
            idx = mask.nonzero().flatten().to(device)
            x[idx] = x[idx].flip(-1)
    return x.contiguous()


# --------------------------------------------------------------------------- trainer
GENERATOR_PARAMS = ("affinity", "weight_gen.", "bias_gen.")


def param_groups(module: torch.nn.Module, config: TrainConfig) -> list[dict]:
    """One SGD group, or two when TVConv's affinity maps and weight generators get their own
    lr multiplier / weight decay (``generator_lr_mult``, ``generator_weight_decay``)."""
    if config.generator_lr_mult == 1.0 and config.generator_weight_decay is None:
        return [{"params": list(module.parameters()), "lr_mult": 1.0}]
    gen, rest = [], []
    for name, p in module.named_parameters():
        (gen if any(k in name for k in GENERATOR_PARAMS) else rest).append(p)
    groups = [{"params": rest, "lr_mult": 1.0}]
    if gen:
        g = {"params": gen, "lr_mult": float(config.generator_lr_mult)}
        if config.generator_weight_decay is not None:
            g["weight_decay"] = float(config.generator_weight_decay)
        groups.append(g)
    return groups



class Trainer:
    """One training run; ``run()`` trains from the current epoch to ``config.epochs``."""

    def __init__(self, config: TrainConfig, progress: bool = True, log=None,
                 step_hook=None):
        self.config = config.resolve()
        self.dist = ddp.setup(config.device)
        self.progress = progress and self.dist.is_main
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.step_hook = step_hook
        self.run_dir = Path(config.output)
        try:
            self._build()
        except BaseException:
            ddp.cleanup(self.dist)
            raise

    def _build(self) -> None:
        from edgeconv.models import create_model
        from edgeconv.train.losses import AMSoftmax, TrainModule

        config = self.config
        if self.config.batch_size % self.dist.world_size:
            raise EdgeconvError(f"batch size {config.batch_size} is not divisible by the "
                                f"{self.dist.world_size} processes")
        self.data = build_train_data(self.config, progress=self.progress)
        self.num_classes = int(getattr(self.data, "num_classes"))
        self.per_rank_batch = self.config.batch_size // self.dist.world_size
        if len(self.data) < self.config.batch_size:
            raise EdgeconvError(f"batch size {config.batch_size} is larger than the data set "
                                f"({len(self.data)} images)")
        self.val_pairs = build_val_pairs(self.config) if self.dist.is_main else None

        torch.manual_seed(self.config.seed)
        self.model = create_model(self.config.model, **self.config.model_kwargs())
        self.head = AMSoftmax(self.config.embedding_dim, self.num_classes,
                              scale=self.config.am_scale, margin=self.config.am_margin)
        self.module = TrainModule(self.model, self.head,
                                  recon_weight=self.config.recon_weight).to(self.dist.device)
        self.optimizer = torch.optim.SGD(param_groups(self.module, self.config),
                                         lr=self.config.lr, momentum=self.config.momentum,
                                         weight_decay=self.config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, milestones=list(self.config.milestones), gamma=self.config.gamma)
        self.epoch = 0
        self.history: list[dict] = []
        self.best: dict | None = None
        self.wrapped = ddp.wrap(self.module, self.dist)

    # -- state -----------------------------------------------------------------------
    def training_state(self) -> dict:
        sched = self.scheduler.state_dict()
        sched["milestones"] = {int(k): int(v) for k, v in sched["milestones"].items()}
        return {
            "epoch": self.epoch,
            "config": self.config.to_dict(),
            "world_size": self.dist.world_size,
            "head": {k: v.detach().cpu().clone() for k, v in self.head.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": sched,
            "rng": capture_rng(),
            "history": self.history,
            "best": self.best,
            "complete": self.epoch >= self.config.epochs,
        }

    def load_training_state(self, ckpt: dict, path) -> None:
        from collections import Counter

        from edgeconv.train.checkpoint import _load_state

        t = ckpt["training"]
        problem = _load_state(self.model, ckpt["state_dict"])
        if problem:
            raise EdgeconvError(f"{path}: weights do not fit the model: {problem}")
        try:
            self.head.load_state_dict(t["head"])
            self.optimizer.load_state_dict(t["optimizer"])
            sched = dict(t["scheduler"])
            sched["milestones"] = Counter({int(k): int(v) for k, v in sched["milestones"].items()})
            self.scheduler.load_state_dict(sched)
            restore_rng(t["rng"])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise EdgeconvError(f"{path}: training state does not fit this run "
                                f"({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from None
        self.epoch = int(t["epoch"])
        self.history = list(t.get("history") or [])
        self.best = t.get("best")

    def checkpoint(self, metrics: dict) -> dict:
        from edgeconv.train.checkpoint import make_checkpoint

        return make_checkpoint(self.model, training=self.training_state(), metrics=metrics)

    # -- loop ------------------------------------------------------------------------
    def loader(self, epoch: int):
        from torch.utils.data import DataLoader, DistributedSampler

        sampler = DistributedSampler(self.data, num_replicas=self.dist.world_size,
                                     rank=self.dist.rank, shuffle=True, seed=self.config.seed,
                                     drop_last=True)
        sampler.set_epoch(epoch)
        return DataLoader(self.data, batch_size=self.per_rank_batch, sampler=sampler,
                          num_workers=self.config.workers, collate_fn=_collate, drop_last=True,
                          pin_memory=self.dist.device.type == "cuda")

    def train_epoch(self, epoch: int) -> dict:
        from edgeconv.progress import Progress

        self.wrapped.train()
        for m in self.model.modules():  # epoch-scheduled op state (DYConv's temperature)
            if callable(getattr(m, "set_epoch", None)):
                m.set_epoch(epoch)
        loader = self.loader(epoch)
        gen = epoch_generator(self.config.seed, epoch, self.dist.rank) if self.config.hflip else None
        lr0 = self.config.lr_at(epoch + 0.5)  # mid-epoch: a warm-up epoch does not read 0
        bar = Progress(len(loader), f"epoch {epoch + 1}/{self.config.epochs}", unit="step",
                       enabled=self.progress)
        loss_sum = correct = seen = 0.0
        t0 = time.perf_counter()
        try:
            steps = max(len(loader), 1)
            for step, (images, labels) in enumerate(loader):
                e = epoch + step / steps
                lr = self.config.lr_at(e)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr * group.get("lr_mult", 1.0)
                self.head.margin = self.config.margin_at(e)
                x = to_input(images, self.dist.device, gen)
                y = labels.to(self.dist.device)
                loss, cos = self.wrapped(x, y)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                n = y.shape[0]
                loss_val = float(loss.detach())
                if not np.isfinite(loss_val):
                    raise EdgeconvError(f"training diverged (loss {loss_val}) at epoch {epoch + 1}, "
                                        f"step {step + 1}: lower --lr")
                loss_sum += loss_val * n
                correct += float((cos.argmax(1) == y).sum())
                seen += n
                elapsed = time.perf_counter() - t0
                bar.set_postfix_str(f"loss={loss_val:.3f}, lr={lr:.3g}, img_s="
                                    f"{seen * self.dist.world_size / max(elapsed, 1e-9):.0f}",
                                    refresh=False)
                bar.update(1)
                if self.step_hook is not None:
                    self.step_hook(self, epoch, step)
        finally:
            bar.close()
        elapsed = time.perf_counter() - t0
        ddp.sync_buffers(self.wrapped, self.dist)
        loss_sum, correct, seen = ddp.all_reduce_sum([loss_sum, correct, seen], self.dist)
        self.scheduler.step()  # kept for the checkpoint format; the lr is set per step above
        return {"epoch": epoch + 1, "loss": loss_sum / max(seen, 1),
                "train_accuracy": correct / max(seen, 1), "lr": lr0,
                "images_per_s": seen / max(elapsed, 1e-9), "seconds": elapsed}

    def validate(self) -> dict | None:
        if self.val_pairs is None:
            return None
        from edgeconv.train.evaluate import evaluate_pairs

        return evaluate_pairs(self.model, self.val_pairs, flip=self.config.flip_test,
                              device=self.dist.device)

    def save(self, record: dict) -> None:
        from edgeconv.train.checkpoint import save_checkpoint

        val = record.get("val")
        score = (val["accuracy"], 0.0) if val else (0.0, -record["loss"])
        is_best = self.best is None or score > tuple(self.best["score"])
        if is_best:
            self.best = {"epoch": record["epoch"], "score": list(score),
                         "accuracy": val["accuracy"] if val else None}
        metrics = {"train_loss": record["loss"], "trained": True}
        if val:
            metrics["verification"] = dict(val, epoch=record["epoch"])
        ckpt = self.checkpoint(metrics)
        if is_best:
            save_checkpoint(self.run_dir / BEST, ckpt)
        save_checkpoint(self.run_dir / LAST, ckpt)
        atomic_write_json(self.run_dir / "history.json", self.history)

    def run(self, stop_after: int | None = None) -> dict:
        cfg = self.config
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.run_dir / "config.json", cfg.to_dict())
            self.log(f"training {cfg.model} ({cfg.op}) {cfg.input_size[0]}x{cfg.input_size[1]} on "
                     f"{len(self.data)} images / {self.num_classes} classes, batch {cfg.batch_size}"
                     f" x {self.dist.world_size} process(es), epochs {self.epoch + 1}..{cfg.epochs}"
                     f", lr {cfg.lr} {_schedule_text(cfg)} -> {self.run_dir}")
        end = cfg.epochs if stop_after is None else min(cfg.epochs, stop_after)
        try:
            while self.epoch < end:
                record = self.train_epoch(self.epoch)
                self.epoch += 1
                if self.dist.is_main:
                    val = self.validate()
                    if val is not None:
                        from edgeconv.train.evaluate import compact

                        record["val"] = compact(val, f"{cfg.val} (val split)" if cfg.val ==
                                                "synthetic" else cfg.val)
                    self.history.append(record)
                    self.save(record)
                    self.log(_epoch_line(record, cfg.epochs))
                ddp.barrier(self.dist)
            if os.environ.get(CHECKSUM_ENV):
                write_rank_checksum(self, os.environ[CHECKSUM_ENV])
        except KeyboardInterrupt:
            if self.dist.is_main:
                last = self.run_dir / LAST
                where = (f"last complete checkpoint: {last} (epoch {self.epoch}); continue with "
                         f"`edgeconv train --resume {last}`" if last.exists()
                         else "no epoch was completed, nothing saved")
                self.log(f"interrupted: {where}")
            raise
        return self.summary()

    def summary(self) -> dict:
        rates = [h["images_per_s"] for h in self.history]
        return {"is_main": self.dist.is_main, "world_size": self.dist.world_size,
                "run_dir": str(self.run_dir), "last": str(self.run_dir / LAST),
                "best": str(self.run_dir / BEST), "epochs_done": self.epoch,
                "history": self.history, "best_epoch": (self.best or {}).get("epoch"),
                "best_accuracy": (self.best or {}).get("accuracy"),
                "images_per_s": float(np.median(rates)) if rates else None}


def _schedule_text(cfg: TrainConfig) -> str:
    text = (f"milestones {cfg.milestones}" if cfg.schedule == "multistep" else cfg.schedule)
    if cfg.warmup_epochs:
        text += f", warm-up {cfg.warmup_epochs:g} epoch(s)"
    if cfg.margin_warmup_epochs:
        text += f", margin warm-up {cfg.margin_warmup_epochs:g} epoch(s)"
    return text


def _epoch_line(r: dict, epochs: int) -> str:
    line = (f"epoch {r['epoch']}/{epochs}  loss {r['loss']:.4f}  train-acc "
            f"{100 * r['train_accuracy']:.1f}%  lr {r['lr']:.3g}  {r['images_per_s']:.0f} img/s")
    v = r.get("val")
    if v:
        line += (f"  |  val acc {100 * v['accuracy']:.2f} +- {100 * v['accuracy_std']:.2f}%"
                 f"  EER {100 * v['eer']:.2f}%")
    return line


# --------------------------------------------------------------------------- entry points
def resolve_resume_path(resume) -> Path:
    path = Path(resume)
    if path.is_dir():
        path = path / LAST
    return path


def _checkpoint_epoch(path: Path) -> int | None:
    """The epoch a run folder's checkpoint holds (None when there is none or it is unreadable)."""
    from edgeconv.train.checkpoint import load_checkpoint

    if not path.is_file():
        return None
    try:
        t = load_checkpoint(path).get("training")
        return int(t["epoch"]) if isinstance(t, dict) else None
    except (EdgeconvError, KeyError, TypeError, ValueError):
        return None


def clean_stale_temps(folder: Path, log=None) -> list[Path]:
    """Remove the temporary files an interrupted write (kill -9) left: ``.<name>.*.tmp``."""
    removed = []
    if not folder.is_dir():
        return removed
    for p in folder.glob(".*.tmp"):
        if p.is_file() and any(p.name.startswith(f".{n}.") for n in
                               (LAST, BEST, "history.json", "config.json")):
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    if removed and log is not None:
        log(f"removed {len(removed)} temporary file(s) an interrupted run left in {folder}")
    return removed


def train(config: TrainConfig | None = None, resume=None, progress: bool = True,
          workers: int | None = None, overwrite: bool = False, stop_after: int | None = None,
          log=None, step_hook=None, output=None, epochs: int | None = None) -> dict:
    """Train (or resume) a run; returns a summary dict (rank 0's view).

    ``epochs`` (resume only): the --epochs the user gave; a value other than the run's own is
    refused, as is resuming a run that is already complete (it would print "done" having
    written nothing).

    Resuming writes into ``output`` (default: the checkpoint's run folder) and never moves a
    run backwards: resuming from an older checkpoint (``best.ckpt``) into a folder whose
    ``last.ckpt`` is further on is refused.
    """
    from edgeconv.train.checkpoint import load_checkpoint

    ckpt = None
    if resume is not None:
        path = resolve_resume_path(resume)
        ckpt = load_checkpoint(path)  # safe loading: refuses pickles that would run code
        t = ckpt.get("training")
        if not isinstance(t, dict) or "config" not in t or "optimizer" not in t:
            raise EdgeconvError(f"{path}: has no training state (not written by `edgeconv train`)"
                                f"; cannot resume from it")
        config = TrainConfig.from_dict(dict(t["config"]))
        done = int(t.get("epoch", 0))
        if epochs is not None and int(epochs) != int(config.epochs):
            raise EdgeconvError(
                f"--epochs {epochs} with --resume: a resumed run keeps its own schedule "
                f"({config.epochs} epochs; its learning-rate schedule was laid out for that "
                "total), so it cannot be extended; start a new run (e.g. `edgeconv train "
                f"--epochs {epochs} ...`) instead")
        target = Path(output) if output is not None else path.parent
        config.output = str(target)
        last = target / LAST
        if last.exists() and last.resolve() != path.resolve():
            there, here = _checkpoint_epoch(last), int(t.get("epoch", 0))
            if target.resolve() != path.parent.resolve() and not overwrite:
                raise EdgeconvError(f"{target} already holds a run ({last}): pass another -o, "
                                    "or --overwrite to replace it")
            if there is not None and there > here and not overwrite:
                raise EdgeconvError(
                    f"{last} is at epoch {there}, further than {path} (epoch {here}): resuming "
                    f"would move the run back; resume from {last}, or write the new branch "
                    "elsewhere with -o")
        if done >= int(config.epochs):
            raise EdgeconvError(
                f"{path}: the run is complete (epoch {done} of {config.epochs}); there is "
                "nothing to resume and nothing was written (a finished run cannot be extended:"
                " its learning-rate schedule ended; start a new run)")
        if workers is not None:
            config.workers = workers
    else:
        config = config or TrainConfig()
        if workers is not None:
            config.workers = workers
        last = Path(config.output) / LAST
        if last.exists() and not overwrite:
            raise EdgeconvError(f"{config.output} already holds a run ({last}): resume it with "
                                f"--resume {last}, or pass --overwrite / another -o")
    trainer = Trainer(config, progress=progress, log=log, step_hook=step_hook)
    try:
        if trainer.dist.is_main:
            clean_stale_temps(Path(config.output), trainer.log)
        if ckpt is not None:
            trainer.load_training_state(ckpt, resolve_resume_path(resume))
            if trainer.dist.is_main:
                trainer.log(f"resuming from {resolve_resume_path(resume)} (epoch "
                            f"{trainer.epoch}), writing to {config.output}")
        return trainer.run(stop_after=stop_after)
    finally:
        ddp.cleanup(trainer.dist)


def state_checksum(module: torch.nn.Module) -> str:
    """sha256 over every parameter and buffer (name, dtype, bytes): equal iff bit-identical."""
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def write_rank_checksum(trainer: "Trainer", folder) -> Path:
    """Debug aid (DDP tests): each rank writes the checksum of model + head it holds."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"rank{trainer.dist.rank}.json"
    atomic_write_json(path, {"rank": trainer.dist.rank, "world_size": trainer.dist.world_size,
                             "epoch": trainer.epoch, "checksum": state_checksum(trainer.module),
                             "model_checksum": state_checksum(trainer.model)})
    return path
