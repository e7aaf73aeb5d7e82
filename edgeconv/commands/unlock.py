"""``edgeconv enroll``, ``verify``, ``identify``, ``users`` and ``unlock``: face unlock on the
device (torch-free; :mod:`edgeconv.runtime.unlock`)."""

from __future__ import annotations

import click

from edgeconv import options as _opts
from edgeconv.commands.common import exit_with


def _unlock_common(f):
    """Options shared by enroll / verify / identify / unlock."""
    f = click.option("--db", type=click.Path(dir_okay=False), default=None,
                     help="Template database (default: $EDGECONV_HOME/templates.db or "
                          "~/.local/share/edgeconv/templates.db).")(f)
    f = click.option("--threads", default=1, show_default=True, type=int,
                     callback=_opts.click_threads,
                     help="Inference threads.")(f)
    f = click.option("--flip/--no-flip", default=None,
                     help="Flip-test: average the embeddings of the image and its mirror "
                          "(default: as the model's threshold calibration did).")(f)
    f = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(f)
    f = click.option("--translate", "translate", type=click.Path(dir_okay=False), default=None,
                     help="Translator file (edgeconv export UNIT.ckpt --direction ...): every "
                          "image goes through it before MODEL, e.g. NIR probes -> RGB.")(f)
    return f


def _unlock_threshold(f):
    f = click.option("--far", default=None,
                     help="Target false-accept rate: use the model's threshold calibrated at "
                          "it (metadata verification.far_thresholds; default 1e-3, else the "
                          "strictest calibrated).")(f)
    f = click.option("--threshold", type=float, default=None,
                     help="Explicit cosine-similarity threshold (overrides --far).")(f)
    return f


def _click_cooldown(ctx, param, value):
    """unlock --cooldown: 0 .. the policy's longest lock-out (1 h)."""
    from edgeconv.runtime.policy import DEFAULT_MAX_COOLDOWN

    if value is None:
        return None
    return _opts.check_seconds(value, _opts._name(param), maximum=DEFAULT_MAX_COOLDOWN)


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--user", required=True, help="Name to enrol.")
@click.option("--replace", is_flag=True, help="Overwrite an existing template of the user.")
@_unlock_common
def enroll(model, images, user, replace, db, threads, flip, as_json, translate):
    """Enrol USER from aligned face IMAGES (averaged into one template) with MODEL.

    Only the normalised template and the model's identity are stored, never images.
    """
    from edgeconv.runtime.unlock import enroll_command

    exit_with(enroll_command(model, user, list(images), db=db, replace=replace, flip=flip,
                             threads=threads, as_json=as_json,
                             translate=translate))


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--user", required=True, help="Enrolled user to verify against.")
@_unlock_threshold
@_unlock_common
def verify(model, image, user, far, threshold, db, threads, flip, as_json, translate):
    """1:1: score IMAGE against USER's template (exit 0 accept, 1 reject).

    Diagnostic: no lock-out policy (use `edgeconv unlock` for that).
    """
    from edgeconv.runtime.unlock import verify_command

    exit_with(verify_command(model, user, image, db=db, far=far, threshold=threshold,
                             flip=flip, threads=threads, as_json=as_json,
                             translate=translate))


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--top", default=3, show_default=True, type=click.IntRange(1),
              help="Show this many best candidates.")
@_unlock_threshold
@_unlock_common
def identify(model, image, top, far, threshold, db, threads, flip, as_json, translate):
    """1:N: the enrolled user IMAGE matches best, or none (exit 0 match, 1 none)."""
    from edgeconv.runtime.unlock import identify_command

    exit_with(identify_command(model, image, db=db, far=far, threshold=threshold, top=top,
                               flip=flip, threads=threads, as_json=as_json,
                               translate=translate))


@click.group()
def users():
    """Enrolled users of the template database (list, remove, reset)."""


@users.command("list")
@click.option("--db", type=click.Path(dir_okay=False), default=None, help="Template database.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def users_list(db, as_json):
    """List enrolled users, their model and lock-out state."""
    from edgeconv.runtime.unlock import users_list_command

    exit_with(users_list_command(db=db, as_json=as_json))


@users.command("remove")
@click.argument("names", nargs=-1, required=True)
@click.option("--db", type=click.Path(dir_okay=False), default=None, help="Template database.")
def users_remove(names, db):
    """Delete the templates (and lock-out state) of NAMES."""
    from edgeconv.runtime.unlock import users_remove_command

    exit_with(users_remove_command(list(names), db=db))


@users.command("reset")
@click.argument("name", required=False)
@click.option("--db", type=click.Path(dir_okay=False), default=None, help="Template database.")
def users_reset(name, db):
    """Clear NAME's lock-out (without NAME: the identify-mode lock-out)."""
    from edgeconv.runtime.unlock import users_reset_command

    exit_with(users_reset_command(name, db=db))


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("images", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--user", default=None, help="Unlock as this user (1:1); without it: any "
                                           "enrolled user (1:N).")
@click.option("--camera", type=int, default=None,
              help="Live attempts from this camera index (needs edgeconv[camera]).")
@click.option("--max-failures", default=5, show_default=True, type=click.IntRange(1),
              help="Consecutive rejections before a lock-out.")
@click.option("--cooldown", default=30.0, show_default=True, type=float,
              callback=_click_cooldown,
              help="First lock-out in seconds (doubles with each further lock-out, max 1 h).")
@click.option("--frames", default=3, show_default=True, type=click.IntRange(1),
              help="Camera: frames averaged per attempt.")
@click.option("--interval", default=0.5, show_default=True, type=float,
              callback=_opts.click_seconds,
              help="Camera: seconds between attempts.")
@click.option("--crop", default=0.6, show_default=True, type=click.FloatRange(0.05, 1.0),
              help="Camera: centre crop as a fraction of the frame (no face detector).")
@click.option("--max-attempts", default=0, show_default=True, type=click.IntRange(0),
              help="Camera: stop after this many attempts (0: until unlocked or locked out).")
@click.option("--save-crop", type=click.Path(dir_okay=False), default=None,
              help="Camera: write the last crop the model saw to this image file.")
@click.option("--show-score", is_flag=True,
              help="Print the score and threshold of a rejected attempt too (off by default: "
                   "it is feedback for someone tuning an attack at the camera).")
@_unlock_threshold
@_unlock_common
def unlock(model, images, user, camera, max_failures, cooldown, frames, interval, crop,
           max_attempts, save_crop, show_score, far, threshold, db, threads, flip, as_json,
           translate):
    """Unlock attempt(s) through the lock-out policy, from IMAGES or --camera.

    Exit 0 unlocked, 1 rejected, 3 locked out. Faces must be aligned and centred.
    """
    from edgeconv.runtime.unlock import unlock_command

    exit_with(unlock_command(model, user=user, images=list(images), camera=camera, db=db,
                             far=far, threshold=threshold, max_failures=max_failures,
                             cooldown=cooldown, flip=flip, threads=threads, frames=frames,
                             interval=interval, crop=crop, max_attempts=max_attempts,
                             save_crop=save_crop, as_json=as_json,
                             translate=translate, show_score=show_score))


COMMANDS = (enroll, verify, identify, users, unlock)
