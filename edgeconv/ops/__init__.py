"""Operators that replace the 3x3 depthwise convolution of a block, chosen by name.

``list_ops()`` is torch-free; ``build_op()`` imports the operator module lazily.

Every operator takes the same construction arguments::

    build_op(name, channels, stride=1, in_hw=(h, w), kernel_size=3, **op_kwargs)

and maps (N, C, H, W) -> (N, C, ceil(H/stride), ceil(W/stride)) with zero padding k//2.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from edgeconv.errors import EdgeconvError

@dataclass(frozen=True)
class OpSpec:
    """An operator and the traits other layers ask about (instead of comparing names).

    ``cli_options``: (option name, op_kwargs key) pairs the ``train`` command offers for it,
    e.g. ``("--tvconv-inter-channels", "inter_channels")``.
    """

    name: str
    module: str                       # where the class lives (imported lazily: torch)
    cls: str
    description: str = ""
    size_bound: bool = False          # built for one input size (h, w fixed per layer)
    foldable: bool = False            # has an exact static inference form (export folds it)
    generator_macs: bool = False      # has a weight generator whose cost profile reports
    per_image: bool = False           # weights generated per image (dynamic filters)
    autoencoder: bool = False         # the model owns one shared input autoencoder
    pins_batch: str | None = None     # why its export cannot resize the batch (else None)
    export_forms: tuple = ("standard",)  # which export forms exist for it
    cli_options: tuple = ()           # (CLI option, op_kwargs key)
    quickstart_kwargs: tuple = ()     # op_kwargs keys the quickstart's generator settings set
    baseline: bool = False            # the op the paper's MACs/params table describes
    stages: int | None = None         # only in a model's last N stages (baseline op elsewhere)


_OPS: dict[str, OpSpec] = {}


def register_op(spec: OpSpec) -> OpSpec:
    """Register an operator (one line per operator; a name may be registered once)."""
    if spec.name in _OPS:
        raise ValueError(f"op '{spec.name}' is already registered")
    _OPS[spec.name] = spec
    return spec


def unregister_op(name: str) -> None:
    """Remove a registration (tests register toy ops and take them away again)."""
    _OPS.pop(name, None)


register_op(OpSpec("depthwise", "edgeconv.ops.depthwise", "DepthwiseConv",
                   "the ordinary 3x3 depthwise convolution", baseline=True))
register_op(OpSpec("tvconv", "edgeconv.ops.tvconv", "TVConv",
                   "translation-variant convolution (CVPR 2022)", size_bound=True,
                   foldable=True, generator_macs=True,
                   export_forms=("fused", "col2im", "tapconv", "slices", "onehot",
                                 "onehot_tap", "lowrank"),
                   cli_options=(("--tvconv-inter-channels", "inter_channels"),
                                ("--tvconv-inter-layers", "inter_layers"),
                                ("--tvconv-affinity-channels", "affinity_channels")),
                   quickstart_kwargs=("inter_channels", "inter_layers")))
register_op(OpSpec("filtergen", "edgeconv.ops.filtergen", "FilterGenConv",
                   "per-image dynamic filters (learning to generate filters)", per_image=True,
                   autoencoder=True, pins_batch="filtergen generates its filters per image",
                   cli_options=(("--filtergen-repository-size", "repository_size"),
                                ("--filtergen-feature-dim", "feature_dim"))))

_PER_IMAGE = "its kernels are generated per image"
register_op(OpSpec("condconv", "edgeconv.ops.condconv", "CondConv", "CondConv: sigmoid routing mixes K=4 expert kernels per image", per_image=True, pins_batch=_PER_IMAGE))
register_op(OpSpec("weightnet", "edgeconv.ops.weightnet", "WeightNetConv", "WeightNet: pooled features -> FC+sigmoid -> grouped FC outputs the kernel (M=2, G=2)", per_image=True, pins_batch=_PER_IMAGE))
register_op(OpSpec("dyconv", "edgeconv.ops.dyconv", "DYConv", "dynamic convolution (DW): softmax attention (T 30->1) mixes K=4 kernels per image", per_image=True, pins_batch=_PER_IMAGE))
register_op(OpSpec("involution", "edgeconv.ops.involution", "Involution", "involution: per-pixel kernels from the pixel's own features (group channels 8, reduction 4)", per_image=True, pins_batch=_PER_IMAGE))
register_op(OpSpec("ddf", "edgeconv.ops.ddf", "DDFConv", "decoupled dynamic filter: per-pixel spatial x per-image channel filters", per_image=True, pins_batch=_PER_IMAGE))
register_op(OpSpec("sasa", "edgeconv.ops.sasa", "SASA", "stand-alone local self-attention (7x7, 8 heads), last three stages", per_image=True, pins_batch="its attention heads are reshaped per image", stages=3))
register_op(OpSpec("axial", "edgeconv.ops.axial", "AxialAttention", "axial attention (height then width, 8 heads), last three stages", size_bound=True, per_image=True, pins_batch="its attention heads are reshaped per image", stages=3))


def baseline_op() -> str:
    """The registered baseline op (the ordinary depthwise conv)."""
    return next(n for n, s in _OPS.items() if s.baseline)


def stage_op(name: str, op_kwargs: dict, stage: int, num_stages: int) -> tuple[str, dict]:
    """(op, kwargs) for stage ``stage`` (0-based) of ``num_stages``: an op registered for the
    last N stages only (``OpSpec.stages``) gives way to the baseline op in the earlier ones."""
    n = op_spec(name).stages
    if n is None or stage >= num_stages - n:
        return name, op_kwargs
    return baseline_op(), {}


def list_ops() -> list[str]:
    return list(_OPS)


def check_op(name: str) -> str:
    if name not in _OPS:
        raise EdgeconvError(f"unknown op '{name}' (choose from: {', '.join(_OPS)})")
    return name


def op_spec(name: str) -> OpSpec:
    """The registered :class:`OpSpec` of ``name`` (one line for unknown names)."""
    return _OPS[check_op(name)]


def op_class(name: str):
    spec = op_spec(name)
    return getattr(importlib.import_module(spec.module), spec.cls)


def build_op(name: str, channels: int, stride: int = 1, in_hw=(96, 96), kernel_size: int = 3,
             **op_kwargs):
    """Construct operator ``name`` for a (channels, *in_hw) input."""
    return op_class(name)(channels, stride=stride, in_hw=tuple(in_hw), kernel_size=kernel_size,
                          **op_kwargs)


def conv_out_size(size: int, kernel_size: int, stride: int) -> int:
    """Output length of a conv/pool with padding k//2 (the 'same'-style padding used throughout)."""
    pad = kernel_size // 2
    return (size + 2 * pad - kernel_size) // stride + 1


def out_hw(in_hw, kernel_size: int, stride: int) -> tuple[int, int]:
    return (conv_out_size(in_hw[0], kernel_size, stride), conv_out_size(in_hw[1], kernel_size, stride))
