"""Distributed data parallel on the existing engine: ``torchrun`` sets the environment, we follow it.

Run the same command under torchrun::

    torchrun --nproc_per_node 2 -m edgeconv.cli train --epochs 4 -o runs/ddp

* backend: gloo on CPU, nccl on CUDA; each process takes ``batch_size / world_size`` images per
  step from a :class:`~torch.utils.data.DistributedSampler` (seed + epoch: the data order is a
  pure function of the config, which is what makes resuming exact);
* one :class:`~torch.nn.parallel.DistributedDataParallel` wraps backbone + AM-Softmax head, so
  the class weights and TVConv's affinity maps / generator are all-reduced like any parameter;
* only rank 0 writes (config, checkpoints, logs); the others wait at barriers;
* BatchNorm: plain per-process BatchNorm, NOT SyncBatchNorm. Batch statistics are computed on
  each process's share of the batch; DDP broadcasts rank 0's running statistics to every rank
  before each forward (and at every epoch end), so all ranks hold identical models. With
  the published per-process batch sizes (>= 64) the difference to SyncBatchNorm is small, and
  it saves an all-reduce per BN layer per step (costly with gloo on CPU).

Without torchrun (no ``WORLD_SIZE`` in the environment) everything here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from edgeconv.errors import EdgeconvError


@dataclass
class DistState:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1 or self.backend is not None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise EdgeconvError(f"environment variable {name}={value!r} is not an integer") from None


def pick_device(pref: str = "auto", local_rank: int = 0) -> torch.device:
    if pref == "cuda" or (pref == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise EdgeconvError("--device cuda requested but CUDA is not available")
        return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
    return torch.device("cpu")


def setup(device_pref: str = "auto") -> DistState:
    """Initialise the process group when launched by torchrun; otherwise a single process."""
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1 and "TORCHELASTIC_RUN_ID" not in os.environ:
        return DistState(device=pick_device(device_pref))
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    device = pick_device(device_pref, local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistState(rank=rank, world_size=world, local_rank=local_rank, device=device,
                     backend=backend)


def cleanup(state: DistState) -> None:
    if state.backend is not None and dist.is_initialized():
        dist.destroy_process_group()


def barrier(state: DistState) -> None:
    if state.backend is not None:
        dist.barrier()


def wrap(module: torch.nn.Module, state: DistState) -> torch.nn.Module:
    """DDP-wrap ``module`` when distributed (rank 0's initial weights are broadcast)."""
    if state.backend is None:
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [state.device.index] if state.device.type == "cuda" else None
    return DDP(module, device_ids=ids)  # default: rank 0's buffers synced before each forward


def sync_buffers(module: torch.nn.Module, state: DistState) -> None:
    """Broadcast rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP syncs them at the start of each forward; after an epoch's last step each rank holds
    its own update, so call this at epoch ends to make every rank's model bit-identical.
    """
    if state.backend is None:
        return
    for buf in unwrap(module).buffers():
        dist.broadcast(buf, 0)


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    return getattr(module, "module", module)


def all_reduce_sum(values: list[float], state: DistState) -> list[float]:
    """Sum a few scalars over ranks (for logging: loss sums, counts)."""
    if state.backend is None:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=state.device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_flag(flag: bool, state: DistState) -> bool:
    """Rank 0's boolean to every rank."""
    if state.backend is None:
        return flag
    t = torch.tensor([1 if flag else 0], device=state.device)
    dist.broadcast(t, 0)
    return bool(t.item())
