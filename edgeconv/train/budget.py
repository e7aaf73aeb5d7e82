"""Fit the quickstart's training into a time budget on whatever machine runs it.

The quickstart recipe (docs/quickstart_recipe.md) was tuned on a build machine where it took
14.6 of its 15 minutes; one of the other build machines trains 3-4x slower (depthwise
MB x0.1 at 32x32: 207 vs 854 images/s), where the same recipe would take about an hour.
So the quickstart measures its training speed on the machine first (a few real training
steps of each op), then gives each op the epochs that fit::

    plan = plan_epochs(wanted={"tvconv": 24, "depthwise": 18}, images_per_epoch=20000,
                       images_per_s={"tvconv": 210, "depthwise": 240}, seconds_left=800,
                       overhead_s=120)

Epochs are cut in the same proportion for every op (TVConv keeps its extra epochs'
share), never below :data:`MIN_EPOCHS`; when even that does not fit, the training images
are cut too. The plan says what was cut; the quickstart reports what it cost in accuracy
against the full recipe's documented run. Pure functions, tested with made-up speeds.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

#: fewest epochs an op is trained for (below this the cosine schedule's warm-ups dominate)
MIN_EPOCHS = 4
#: fewest training images per identity the data may be cut to
MIN_IMAGES_PER_IDENTITY = 6
#: an epoch costs a little more than its training steps (validation pairs, checkpoint write)
EPOCH_OVERHEAD = 1.08
#: time of everything but training (data rendering, evaluation with calibration, profile,
#: export, benchmark, unlock trial, report) on the machine the recipe was tuned on, and that
#: machine's depthwise training speed. The compute-bound half (rendering, evaluation,
#: conversion) is scaled by the measured speed on other machines; the benchmark's share runs
#: for fixed seconds whatever the machine.
REFERENCE_OVERHEAD_S = 150.0
SCALED_SHARE = 0.5
REFERENCE_IMAGES_PER_S = 1088.0


#: the full recipe's result on the machine it was tuned on (docs/quickstart_recipe.md, the
#: quickstart on its defaults, seed 0): what a cut is compared with
FULL_RECIPE_RESULT = {"tvconv": {"epochs": 24, "accuracy": 0.9845, "tar_1e-3": 0.830},
                      "depthwise": {"epochs": 18, "accuracy": 0.9855, "tar_1e-3": 0.821}}


def cost_lines(plan: "EpochPlan", results: dict) -> list[str]:
    """What the cut cost: each op's accuracy and TAR@1e-3 against the full recipe's run."""
    out = []
    for op, r in results.items():
        ref = FULL_RECIPE_RESULT.get(op)
        if ref is None or r.get("accuracy") is None:
            continue
        line = (f"{op}: {plan.epochs.get(op)} of {ref['epochs']} epochs, accuracy "
                f"{100 * r['accuracy']:.2f}% vs {100 * ref['accuracy']:.2f}% "
                f"({100 * (r['accuracy'] - ref['accuracy']):+.2f} points)")
        if r.get("tar_1e-3") is not None:
            line += (f", TAR@1e-3 {100 * r['tar_1e-3']:.1f}% vs {100 * ref['tar_1e-3']:.1f}% "
                     f"({100 * (r['tar_1e-3'] - ref['tar_1e-3']):+.1f} points)")
        out.append(line)
    return out


@dataclass
class EpochPlan:
    wanted: dict                      # op -> epochs of the full recipe
    epochs: dict                      # op -> epochs planned
    images_per_identity: int          # training images per identity planned
    wanted_images_per_identity: int
    images_per_s: dict                # op -> measured training speed
    seconds_left: float
    overhead_s: float
    planned_train_s: float
    cut: bool = False
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        ops = ", ".join(f"{op} {self.epochs[op]}" + (f" of {self.wanted[op]}"
                                                     if self.epochs[op] != self.wanted[op]
                                                     else "")
                        for op in self.epochs)
        speed = ", ".join(f"{op} {v:.0f}" for op, v in self.images_per_s.items())
        data = ("" if self.images_per_identity == self.wanted_images_per_identity else
                f"; {self.images_per_identity} of {self.wanted_images_per_identity} images per "
                "identity")
        return (f"epochs {ops}{data} (measured training images/s: {speed}; "
                f"{self.planned_train_s / 60:.1f} min of training planned, "
                f"{self.overhead_s / 60:.1f} min for the other steps)")


def overhead_estimate(depthwise_images_per_s: float) -> float:
    """Seconds of the non-training steps on a machine that trains depthwise this fast."""
    ratio = max(1.0, REFERENCE_IMAGES_PER_S / max(float(depthwise_images_per_s), 1e-6))
    return REFERENCE_OVERHEAD_S * ((1 - SCALED_SHARE) + SCALED_SHARE * ratio)


def plan_epochs(wanted: dict, images_per_epoch: int, images_per_s: dict, seconds_left: float,
                overhead_s: float, identities: int | None = None,
                images_per_identity: int | None = None) -> EpochPlan:
    """The epochs (and training images) per op that fit ``seconds_left`` minus
    ``overhead_s`` at the measured ``images_per_s`` (see the module's rules)."""
    def train_s(epochs: dict, n_images: int) -> float:
        return sum(epochs[op] * n_images / max(images_per_s[op], 1e-6) * EPOCH_OVERHEAD
                   for op in epochs)

    ipi = images_per_identity
    plan = EpochPlan(dict(wanted), dict(wanted), ipi or 0, ipi or 0, dict(images_per_s),
                     float(seconds_left), float(overhead_s), train_s(wanted, images_per_epoch))
    available = float(seconds_left) - float(overhead_s)
    if plan.planned_train_s <= available:
        return plan
    plan.cut = True
    scale = max(available, 0.0) / plan.planned_train_s
    plan.epochs = {op: min(e, max(MIN_EPOCHS, int(math.floor(e * scale))))
                   for op, e in wanted.items()}
    n_images = images_per_epoch
    if train_s(plan.epochs, n_images) > available and identities and ipi:
        # even the fewest epochs do not fit: fewer images per identity
        need = train_s(plan.epochs, n_images)
        new_ipi = max(MIN_IMAGES_PER_IDENTITY,
                      int(math.floor(ipi * max(available, 0.0) / need)))
        if new_ipi < ipi:
            plan.images_per_identity = new_ipi
            n_images = identities * new_ipi
    plan.planned_train_s = train_s(plan.epochs, n_images)
    if plan.planned_train_s > available:
        plan.notes.append(f"even {MIN_EPOCHS} epochs on "
                          f"{plan.images_per_identity or '?'} images per identity do not fit: "
                          "the run will overrun its budget")
    return plan


def measure_images_per_s(config, steps: int = 4, warmup: int = 2,
                         max_seconds: float = 30.0) -> float:
    """Training images/s of ``config`` (a TrainConfig) on this machine: ``warmup`` +
    ``steps`` real SGD steps (forward, AM-Softmax, backward, update) on random images at its
    batch size, as the trainer runs them."""
    import torch

    from edgeconv.models import create_model
    from edgeconv.train.losses import AMSoftmax, TrainModule

    torch.manual_seed(0)
    config = config.resolve()
    net = create_model(config.model, **config.model_kwargs())
    module = TrainModule(net, AMSoftmax(config.embedding_dim, max(2, config.identities)))
    opt = torch.optim.SGD(module.parameters(), lr=1e-3, momentum=0.9)
    batch_size = config.batch_size
    h, w = config.input_size
    x = torch.randn(batch_size, 3, h, w)
    y = torch.randint(0, max(2, config.identities), (batch_size,))
    module.train()
    done, t0 = 0, None
    start = time.perf_counter()
    for k in range(warmup + steps):
        if k == warmup:
            t0 = time.perf_counter()
        loss, _ = module(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if k >= warmup:
            done += batch_size
        if time.perf_counter() - start > max_seconds and done:
            break
    timed = time.perf_counter() - (t0 if t0 is not None else start)
    return done / max(timed, 1e-9) if done else batch_size / max(timed, 1e-9)
