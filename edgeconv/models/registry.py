"""timm-style model registry: ``@register_model`` on thin variant functions over one builder.

The registry itself is torch-free; model modules (which import torch) register on import,
triggered by the first lookup.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from edgeconv.config import parse_input_size
from edgeconv.errors import EdgeconvError

@dataclass(frozen=True)
class ModelSpec:
    """A registered model and the traits other layers ask about (torch-free).

    ``module`` holds the builder function (registered there with ``@register_model``; it is
    imported on first use, so listing and checking names needs no torch).
    """

    name: str
    module: str
    family: str
    task: str = "face"                # what the model outputs: "face" embeddings, ...
    width: float | None = None
    pins_batch: str | None = None     # why a batch-1 TFLite file of it cannot be resized
    takes_op: bool = True             # has depthwise convs an op replaces (MLP-Mixer: no)


_SPECS: dict[str, ModelSpec] = {}
_REGISTRY: dict[str, Callable] = {}
_loaded_modules: set[str] = set()


def register_model_spec(spec: ModelSpec) -> ModelSpec:
    """Register a model's name and traits (one line per model)."""
    if spec.name in _SPECS:
        raise ValueError(f"model '{spec.name}' is already registered")
    _SPECS[spec.name] = spec
    return spec


def unregister_model(name: str) -> None:
    """Remove a model (tests register toy models and take them away again)."""
    _SPECS.pop(name, None)
    _REGISTRY.pop(name, None)


_SHUFFLE = "ShuffleNetV2's channel shuffle reshapes over the batch axis"
for _w, _n in ((0.1, "mbv2_x0_1"), (0.2, "mbv2_x0_2"), (0.3, "mbv2_x0_3"), (0.5, "mbv2_x0_5"),
               (1.0, "mbv2_x1_0")):
    register_model_spec(ModelSpec(_n, "edgeconv.models.mobilenetv2", "mobilenetv2", width=_w))
for _w, _n in ((0.5, "sfv2_x0_5"), (1.0, "sfv2_x1_0"), (1.5, "sfv2_x1_5")):
    register_model_spec(ModelSpec(_n, "edgeconv.models.shufflenetv2", "shufflenetv2", width=_w,
                                  pins_batch=_SHUFFLE))
for _w, _n in ((0.1, "mixer_x0_1"), (0.5, "mixer_x0_5")):
    register_model_spec(ModelSpec(_n, "edgeconv.models.mixer", "mlpmixer", width=_w, takes_op=False))
register_model_spec(ModelSpec("deeplabv3p_mbv2", "edgeconv.segmentation.models", "deeplabv3p",
                              task="segmentation"))


def register_model(fn: Callable) -> Callable:
    """Register builder ``fn`` under its ``__name__`` (timm's decorator). A name without a
    :class:`ModelSpec` gets a plain one (family = its name, module = fn's module)."""
    name = fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"model '{name}' is already registered")
    if name not in _SPECS:
        register_model_spec(ModelSpec(name, fn.__module__, name))
    _REGISTRY[name] = fn
    return fn


def _load(name: str | None = None) -> None:
    specs = [_SPECS[name]] if name in _SPECS else list(_SPECS.values())
    for spec in specs:
        if spec.module not in _loaded_modules:
            _loaded_modules.add(spec.module)
            importlib.import_module(spec.module)


def _selected(spec: ModelSpec, task: str | None, takes_op: bool | None) -> bool:
    return ((task is None or spec.task == task)
            and (takes_op is None or spec.takes_op == takes_op))


def list_models(task: str | None = "face", takes_op: bool | None = None) -> list[str]:
    """Names with a builder, of one task (default: the face models; None: all); ``takes_op``
    True / False: only the models an op goes into / that take none."""
    _load()
    return [n for n in _REGISTRY if _selected(_SPECS[n], task, takes_op)]


def model_names(task: str | None = "face", takes_op: bool | None = None) -> list[str]:
    """The registered names (torch-free) of one task (default: the face models the face
    commands take; None: every task's); ``takes_op`` as in :func:`list_models`."""
    return [n for n, s in _SPECS.items() if _selected(s, task, takes_op)]


def model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``; one line listing the names when unknown."""
    return _SPECS[check_model_name(name)]


def check_model_name(name: str, task: str | None = None) -> str:
    """``name`` if it is a registered model (of ``task`` when given); else one line listing
    them (torch-free)."""
    names = model_names(task)
    if name not in names:
        what = f"{task} model" if task and name in _SPECS else "model"
        raise EdgeconvError(f"unknown {what} '{name}' (choose from: {', '.join(names)})")
    return name


def is_model(name: str) -> bool:
    return name in _SPECS


def create_model(name: str, op: str = "depthwise", input_size=96, embedding_dim: int = 512,
                 op_kwargs: dict | None = None, **kwargs):
    """Build registered model ``name`` with operator ``op`` for ``input_size`` (N or (H, W)).

    The returned module carries ``model.config``: everything needed to build it again
    (stored in checkpoints and export metadata).
    """
    check_model_name(name)
    _load(name)
    if name not in _REGISTRY:
        raise EdgeconvError(f"model '{name}' has no builder in {_SPECS[name].module}")
    from edgeconv.ops import check_op

    check_op(op)
    if embedding_dim < 1:
        raise EdgeconvError(f"embedding_dim must be positive, got {embedding_dim}")
    hw = parse_input_size(input_size)
    model = _REGISTRY[name](op=op, input_size=hw, embedding_dim=embedding_dim,
                            op_kwargs=dict(op_kwargs or {}), **kwargs)
    model.config = {"name": name, "op": op, "input_size": list(hw),
                    "embedding_dim": embedding_dim, "op_kwargs": dict(op_kwargs or {}), **kwargs}
    return model
