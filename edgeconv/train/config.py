"""The resolved training configuration (torch-free): defaults = the published recipe.

Saved as ``config.json`` next to the run and inside every checkpoint's ``training`` slot, so a
run can be resumed or reproduced from either.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from edgeconv.errors import EdgeconvError

#: Published schedule: lr / 10 at epochs 22, 30 and 35 of 38.
PUBLISHED_EPOCHS = 38
PUBLISHED_MILESTONES = (22, 30, 35)
SCHEDULES = ("multistep", "cosine")


def scale_milestones(epochs: int, published=PUBLISHED_MILESTONES,
                     total: int = PUBLISHED_EPOCHS) -> list[int]:
    """The published milestones scaled to ``epochs`` (rounded, >= 1, deduplicated)."""
    out: list[int] = []
    for m in published:
        v = max(1, int(round(m * epochs / total)))
        if not out or v > out[-1]:
            out.append(v)
    return out


@dataclass
class TrainConfig:
    # model
    model: str = "mbv2_x0_1"
    op: str = "tvconv"
    input_size: list = field(default_factory=lambda: [96, 96])
    embedding_dim: int = 512
    op_kwargs: dict = field(default_factory=dict)
    # data
    data: str = "synthetic"                 # "synthetic" or an ImageFolder path
    identities: int = 1000                  # synthetic only
    images_per_identity: int = 20           # synthetic only
    difficulty: float = 0.5                 # synthetic only (0 easy .. 1 hard)
    data_seed: int = 0                      # synthetic only
    val: str = "synthetic"                  # "synthetic", PAIRS.txt, FILE.bin or "none"
    val_pairs: int = 1000                   # synthetic validation pairs
    flip_test: bool = False                 # add the flipped image's embedding in validation
    # optimisation (published recipe)
    epochs: int = PUBLISHED_EPOCHS
    batch_size: int = 128                   # global batch (published: 512), split over ranks
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: list | None = None          # None: the published ones scaled to `epochs`
    gamma: float = 0.1
    schedule: str = "multistep"             # "multistep" (published) or "cosine" (per step)
    warmup_epochs: float = 0.0              # linear lr warm-up from 0 (per step)
    am_scale: float = 32.0
    am_margin: float = 0.35
    generator_lr_mult: float = 1.0          # TVConv affinity maps + weight generators: lr x this
    generator_weight_decay: float | None = None  # ... and this weight decay (None: as the rest)
    margin_warmup_epochs: float = 0.0       # AM-Softmax margin ramps 0 -> am_margin (per step)
    recon_weight: float = 1.0               # filtergen only: weight of the autoencoder's BCE loss
    hflip: bool = True
    # run
    workers: int = 0
    seed: int = 0
    output: str = "runs/train"
    device: str = "auto"                    # auto, cpu, cuda

    def resolve(self) -> "TrainConfig":
        """Fill derived values and validate; returns self."""
        from edgeconv.config import parse_input_size

        self.input_size = list(parse_input_size(self.input_size))
        if self.epochs < 1:
            raise EdgeconvError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 2:
            raise EdgeconvError(f"batch size must be >= 2, got {self.batch_size}")
        if self.lr <= 0:
            raise EdgeconvError(f"learning rate must be positive, got {self.lr}")
        if self.data == "synthetic":
            if self.identities < 2:
                raise EdgeconvError(f"need at least 2 identities, got {self.identities}")
            if self.images_per_identity < 1:
                raise EdgeconvError("images per identity must be >= 1")
        if not self.generator_lr_mult > 0:
            raise EdgeconvError(f"generator lr multiplier must be > 0, got {self.generator_lr_mult}")
        if self.generator_weight_decay is not None and not self.generator_weight_decay >= 0:
            raise EdgeconvError("generator weight decay must be >= 0")
        if self.schedule not in SCHEDULES:
            raise EdgeconvError(f"schedule must be one of {', '.join(SCHEDULES)}, "
                                f"got {self.schedule!r}")
        for name in ("warmup_epochs", "margin_warmup_epochs"):
            v = float(getattr(self, name))
            if not (v >= 0.0 and v == v):  # longer than the run: it ramps the whole run
                raise EdgeconvError(f"{name.replace('_', '-')} must be >= 0, got {v}")
        if self.milestones is None:
            self.milestones = scale_milestones(self.epochs)
        self.milestones = sorted(int(m) for m in self.milestones)
        if self.val_pairs < 20:
            raise EdgeconvError(f"need at least 20 validation pairs (10 folds), got {self.val_pairs}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise EdgeconvError(f"device must be auto, cpu or cuda, got {self.device!r}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise EdgeconvError(f"unknown training config keys: {', '.join(unknown)}")
        return cls(**{k: v for k, v in d.items()})

    def lr_at(self, epoch: float) -> float:
        """Learning rate at fractional epoch ``epoch`` (a pure function: resume-exact)."""
        import math

        if self.schedule == "cosine":
            lr = self.lr * 0.5 * (1.0 + math.cos(math.pi * min(epoch, self.epochs) / self.epochs))
        else:
            lr = self.lr * self.gamma ** sum(1 for m in self.milestones if int(epoch) >= m)
        if self.warmup_epochs > 0 and epoch < self.warmup_epochs:
            lr *= epoch / self.warmup_epochs
        return lr

    def margin_at(self, epoch: float) -> float:
        """AM-Softmax margin at fractional epoch ``epoch``."""
        if self.margin_warmup_epochs > 0 and epoch < self.margin_warmup_epochs:
            return self.am_margin * epoch / self.margin_warmup_epochs
        return self.am_margin

    def model_kwargs(self) -> dict:
        return {"op": self.op, "input_size": tuple(self.input_size),
                "embedding_dim": self.embedding_dim, "op_kwargs": dict(self.op_kwargs)}
