"""What the GAN and UNIT trainers share about their run folder: the checkpoint header check,
the model rebuilt from a checkpoint, and "start a new run, or resume ``last.ckpt``" with the
one-line refusal of a folder that already holds a run."""

from __future__ import annotations

from pathlib import Path

from edgeconv.errors import EdgeconvError

LAST = "last.ckpt"


def check_header(ckpt, path, fmt: str, version: int, what: str) -> dict:
    """``ckpt`` if it is a dict of checkpoint format ``fmt`` at ``version``, else one line."""
    if not isinstance(ckpt, dict) or ckpt.get("format") != fmt:
        raise EdgeconvError(f"{path}: not an edgeconv {what} checkpoint")
    if ckpt.get("format_version") != version:
        raise EdgeconvError(f"{path}: {what} checkpoint version "
                            f"{ckpt.get('format_version')!r} is not supported")
    return ckpt


def model_from_checkpoint(ckpt: dict, path, build, config_key: str, what: str):
    """``build(ckpt[config_key])`` with the checkpoint's weights, in eval mode; a config or
    weights that do not fit are one line."""
    try:
        model = build(ckpt[config_key])
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise EdgeconvError(f"{path}: weights do not fit its {what} config "
                            f"({str(exc).splitlines()[0][:120]})") from None
    return model.eval()


def start_or_resume(trainer_cls, config_cls, load, cfg, resume, log, overwrite: bool,
                    what: str, stop_after: int | None = None) -> dict:
    """Run ``trainer_cls(cfg)``, or resume the run of ``resume`` (a ``last.ckpt`` or its
    folder, read with ``load``) exactly where it stopped; a folder that already holds a run is
    refused unless ``overwrite``."""
    if resume is not None:
        path = Path(resume)
        path = path / LAST if path.is_dir() else path
        ckpt = load(path)
        cfg = config_cls(**ckpt["config"])
        cfg.output = str(path.parent)
        trainer = trainer_cls(cfg, log=log)
        trainer.load(ckpt)
        log(f"resuming from {path} (epoch {trainer.epoch})")
    else:
        cfg = cfg or config_cls()
        if (Path(cfg.output) / LAST).exists() and not overwrite:
            raise EdgeconvError(f"{cfg.output} already holds a {what} run: resume it with "
                                "--resume, or pass --overwrite / another -o")
        trainer = trainer_cls(cfg, log=log)
    return trainer.run(stop_after=stop_after)
