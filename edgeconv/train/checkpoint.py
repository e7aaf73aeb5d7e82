"""The project's checkpoint format: a versioned dict loaded with ``torch.load(weights_only=True)``.

::

    {
      "format": "edgeconv.checkpoint", "format_version": 1, "edgeconv_version": "0.1.0",
      "model_config": {"name", "op", "input_size", "embedding_dim", "op_kwargs"},
      "state_dict": {...},            # model weights (training form)
      "training": None | {...},       # optimizer, scheduler, epoch, ... (set by `edgeconv train`)
      "metrics": {...},               # e.g. verification results (set by `edgeconv eval`)
    }

Checkpoints are never loaded with plain pickle: ``weights_only=True`` refuses any pickle that
would import or call code. Every failure is an :class:`EdgeconvError` naming the file.
"""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import torch

from edgeconv import __version__
from edgeconv.errors import EdgeconvError, clean_message
from edgeconv.fileio import atomic_path

CHECKPOINT_FORMAT = "edgeconv.checkpoint"
FORMAT_VERSION = 1


def make_checkpoint(model: torch.nn.Module, training: dict | None = None,
                    metrics: dict | None = None) -> dict:
    config = getattr(model, "config", None)
    if config is None:
        raise ValueError("model has no .config: build it with edgeconv.models.create_model")
    return {
        "format": CHECKPOINT_FORMAT,
        "format_version": FORMAT_VERSION,
        "edgeconv_version": __version__,
        "model_config": dict(config),
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "training": training,
        "metrics": dict(metrics or {}),
    }


def save_checkpoint(path: str | os.PathLike, ckpt_or_model, training: dict | None = None,
                    metrics: dict | None = None) -> Path:
    """Write atomically: a crash mid-write leaves any previous file intact."""
    ckpt = (ckpt_or_model if isinstance(ckpt_or_model, dict)
            else make_checkpoint(ckpt_or_model, training, metrics))
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    return Path(path)


def read_torch_file(path: str | os.PathLike, kind: str = "checkpoint"):
    """``torch.load(weights_only=True)`` of a user-supplied file, with one clear line for
    every kind of bad file (missing, empty, not a PyTorch file, refused globals, corrupt)."""
    from edgeconv.fileio import check_input_file

    path = check_input_file(path, kind)
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise EdgeconvError(f"{path}: cannot read the {kind} ({exc.strerror or exc})") \
            from None
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        raise EdgeconvError(f"{path}: not an edgeconv {kind} (not a PyTorch file: neither "
                            "a torch.save zip archive nor a pickle)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()
        detail = next((ln for ln in reason if "GLOBAL" in ln or "Unsupported" in ln), "")
        if not detail:  # not a pickle at all (text, an image, random bytes): no code was found
            first = clean_message(reason[-1] if reason else type(exc).__name__)[:120]
            raise EdgeconvError(f"{path}: not an edgeconv {kind} (not a PyTorch file: "
                                f"{first})") from None
        raise EdgeconvError(f"{path}: refused: the file holds objects a {kind} never needs, "
                            f"possibly code (safe loading is on): {detail.strip()}") from None
    except Exception as exc:  # torch raises RuntimeError, EOFError, KeyError, ... for bad bytes
        first = clean_message((str(exc).strip().splitlines() or [type(exc).__name__])[0])
        first = f"{type(exc).__name__}: {first.split('. ')[0][:120]}"
        raise EdgeconvError(f"{path}: corrupt or truncated {kind} ({first})") from None


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load and validate a checkpoint; clear one-line errors for every kind of bad file."""
    return validate_checkpoint(read_torch_file(path, "checkpoint"), Path(path))


def validate_checkpoint(ckpt, path="checkpoint") -> dict:
    if isinstance(ckpt, dict) and ckpt.get("format") == "edgeconv.unit":
        raise EdgeconvError(f"{path}: a UNIT translation checkpoint, not a face model; export "
                            "one direction with `edgeconv export CKPT --direction nir2rgb` "
                            "(or rgb2nir)")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise EdgeconvError(f"{path}: not an edgeconv checkpoint (no '{CHECKPOINT_FORMAT}' header)")
    version = ckpt.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise EdgeconvError(f"{path}: checkpoint format version {version!r} is not supported by "
                            f"edgeconv {__version__} (supports 1..{FORMAT_VERSION})")
    config = ckpt.get("model_config")
    if not isinstance(config, dict) or "name" not in config or "op" not in config:
        raise EdgeconvError(f"{path}: checkpoint has no valid model_config")
    if not isinstance(ckpt.get("state_dict"), dict):
        raise EdgeconvError(f"{path}: checkpoint has no state_dict")
    return ckpt


def model_from_checkpoint(ckpt: dict, path="checkpoint") -> torch.nn.Module:
    """Rebuild the model from ``model_config`` and load its weights strictly."""
    from edgeconv.models import create_model

    config = dict(ckpt["model_config"])
    name = config.pop("name")
    model = create_model(name, **config)
    result = _load_state(model, ckpt["state_dict"])
    if result:
        raise EdgeconvError(f"{path}: weights do not fit {name} ({ckpt['model_config'].get('op')}): {result}")
    return model


def _load_state(model: torch.nn.Module, state: dict) -> str:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        return ", ".join(parts)
    for k, v in state.items():
        if not isinstance(v, torch.Tensor) or v.shape != own[k].shape:
            shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            return f"{k} has shape {shape}, expected {tuple(own[k].shape)}"
    model.load_state_dict(state, strict=True)
    return ""


def load_model(path: str | os.PathLike) -> tuple[torch.nn.Module, dict]:
    """Checkpoint file -> (model in eval mode, checkpoint dict)."""
    ckpt = load_checkpoint(path)
    model = model_from_checkpoint(ckpt, path)
    return model.eval(), ckpt


def init_checkpoint(name: str, op: str = "tvconv", input_size=None, embedding_dim: int = 512,
                    seed: int = 0, output: str | os.PathLike = "model.ckpt",
                    op_kwargs: dict | None = None) -> Path:
    """Write a freshly initialised checkpoint (``edgeconv init``)."""
    from edgeconv.models import create_model

    torch.manual_seed(seed)
    model = create_model(name, op=op, input_size=input_size or 96, embedding_dim=embedding_dim,
                         op_kwargs=op_kwargs or None)
    return save_checkpoint(output, model, metrics={"seed": seed, "trained": False})


def random_checkpoint(path: str | os.PathLike, name: str, op: str, size: int, seed: int,
                      op_kwargs: dict | None = None, metrics: dict | None = None) -> Path:
    """Write a checkpoint of ``name`` (``op``, ``size`` x ``size`` input) with randomised
    weights: seeded init, then random affinity maps, LayerNorm affine and BatchNorm
    statistics (:func:`edgeconv.models.randomise.randomise`), for tests and benchmarks whose
    checks a default init would hide. Returns ``path``."""
    from edgeconv.models import create_model
    from edgeconv.models.randomise import randomise

    torch.manual_seed(seed)
    model = create_model(name, op=op, input_size=size, op_kwargs=op_kwargs or None).eval()
    randomise(model, seed)
    return save_checkpoint(path, model, metrics=metrics)


def _param_counts(model) -> dict:
    from edgeconv.profiling.counts import param_counts

    return param_counts(model.eval())


def _num(v) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _metric_lines(metrics) -> list[str]:
    """``info``'s readable lines for the stored metrics (no dict reprs, rounded numbers)."""
    if not isinstance(metrics, dict):
        return []
    lines = []
    for k, v in metrics.items():
        if k == "verification" and isinstance(v, dict):
            parts = []
            if isinstance(v.get("accuracy"), (int, float)):
                parts.append(f"accuracy {100 * v['accuracy']:.2f}%"
                             + (f" +- {100 * v['accuracy_std']:.2f}"
                                if isinstance(v.get("accuracy_std"), (int, float)) else ""))
            if isinstance(v.get("eer"), (int, float)):
                parts.append(f"EER {100 * v['eer']:.2f}%")
            pairs = v.get("pairs")
            src = pairs.get("source") if isinstance(pairs, dict) else pairs
            if src:
                parts.append(f"on {src}")
            lines.append(f"{'verify':<9} " + ", ".join(parts))
            thr = v.get("far_thresholds")
            if isinstance(thr, dict) and thr:
                tar = v.get("tar_at_far") if isinstance(v.get("tar_at_far"), dict) else {}
                cells = [f"FAR {f}: thr {_num(t)}"
                         + (f", TAR {100 * tar[f]:.1f}%" if isinstance(tar.get(f), (int, float))
                            else "") for f, t in thr.items()]
                lines.append(f"{'calibrated':<9} " + "; ".join(cells))
            cal = v.get("calibration")
            if isinstance(cal, dict) and cal.get("num_impostors"):
                lines.append(f"{'':<9} from {cal.get('source', '?')}: "
                             f"{cal.get('num_genuine')} genuine / {cal['num_impostors']} "
                             "impostor pairs")
        elif isinstance(v, (dict, list)):
            lines.append(f"{k:<9} ({len(v)} entries; --json shows them)")
        else:
            lines.append(f"{k:<9} {_num(v)}")
    return lines


def describe_checkpoint(path: str | os.PathLike, as_json: bool = False,
                        ckpt=None) -> dict:
    """`edgeconv info`: validate the checkpoint fully (weights included) and summarise it
    (``ckpt``: the file's content when the caller has already read it)."""
    import json

    import click

    ckpt = validate_checkpoint(ckpt, Path(path)) if ckpt is not None else load_checkpoint(path)
    model = model_from_checkpoint(ckpt, path)
    training = ckpt.get("training") or {}
    summary = {
        "file": str(path),
        "format_version": ckpt["format_version"],
        "edgeconv_version": ckpt.get("edgeconv_version"),
        "model_config": ckpt["model_config"],
        **_param_counts(model),
        "epoch": training.get("epoch") if isinstance(training, dict) else None,
        "metrics": ckpt.get("metrics", {}),
    }
    if as_json:
        click.echo(json.dumps(summary, default=str))
    else:
        cfg = summary["model_config"]
        click.echo(f"{path}: edgeconv checkpoint v{summary['format_version']}")
        click.echo(f"  model     {cfg['name']} op={cfg['op']} input={cfg.get('input_size')} "
                   f"embedding={cfg.get('embedding_dim')}")
        click.echo(f"  params    {summary['params_train'] / 1e6:.3f} M training form, "
                   f"{summary['params_inference'] / 1e6:.3f} M inference form (cached maps "
                   "included)")
        click.echo(f"  epoch     {summary['epoch'] if summary['epoch'] is not None else '-'}")
        for line in _metric_lines(summary["metrics"]):
            click.echo(f"  {line}")
    return summary
