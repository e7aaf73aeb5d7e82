"""The ``edgeconv`` console script.

One click group; every subcommand imports its implementation lazily inside the
command body, so ``import edgeconv.cli`` (and ``edgeconv --help``) never imports
torch. User errors (:class:`edgeconv.errors.EdgeconvError`) print one line and
exit with status 2.
"""

from __future__ import annotations

import os
import sys

import click

from edgeconv import __version__
from edgeconv import options as _opts
from edgeconv.errors import EdgeconvError

EXIT_USER_ERROR = 2
#: longest error message printed (the rest is cut with an ellipsis)
MAX_ERROR_CHARS = 2000

# Optional packages -> the extra that installs them (for a clean error when one is missing).
EXTRA_OF = {"torch": "train", "fvcore": "train", "onnx": "export", "onnxslim": "export",
            "onnxscript": "export", "litert_torch": "tflite", "matplotlib": "plot",
            "cv2": "camera"}


def _csv_ints(ctx, param, value):
    """click callback: '1,2,4' -> [1, 2, 4]."""
    if value is None or isinstance(value, list):
        return value
    try:
        out = [int(v) for v in str(value).split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}")
    if not out or any(v <= 0 for v in out):
        raise click.BadParameter(f"expected positive integers, got {value!r}")
    return out


def _input_size(ctx, param, value):
    """click callback: '96' -> (96, 96); '112x96' -> (112, 96) (height x width)."""
    if value is None:
        return None
    from edgeconv.config import parse_input_size

    try:
        return parse_input_size(value)
    except EdgeconvError as exc:
        raise click.BadParameter(str(exc))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgeconv")
@click.option("-v", "--verbose", is_flag=True,
              help="Show third-party logs (TFLite converter, LiteRT, absl) that are hidden "
                   "by default.")
def cli(verbose):
    """edgeconv: layout-aware (TVConv) face models from training to the edge device."""
    from edgeconv.quiet import set_verbose

    if verbose:
        set_verbose(True)


# --------------------------------------------------------------------------- profile
@cli.command()
@click.argument("models", nargs=-1)
@click.option("--op", "ops", default="depthwise,tvconv", show_default=True,
              help="Operator(s), comma separated: depthwise, tvconv, filtergen.")
@click.option("--input-size", callback=_input_size, default=None,
              help="Input size N or HxW (default: the model's, 96).")
@click.option("--generator", is_flag=True,
              help="Count TVConv with the weight-generating block left in the graph.")
@click.option("--layers", is_flag=True, help="Print the per-layer breakdown.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def profile(models, ops, input_size, generator, layers, as_json):
    """MACs, params and TVConv cached-map size of face models.

    With no MODELS, profiles every registered model (the paper's Fig. 5 table).
    """
    from edgeconv.profiling.report import run_profile

    run_profile(list(models), [o.strip() for o in ops.split(",") if o.strip()],
                input_size=input_size, generator=generator, layers=layers, as_json=as_json)


# --------------------------------------------------------------------------- init
@cli.command()
@click.argument("model")
@click.option("--op", default="tvconv", show_default=True,
              help="Operator: depthwise, tvconv or filtergen.")
@click.option("--input-size", callback=_input_size, default=None, help="Input size N or HxW.")
@click.option("--embedding-dim", default=512, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Checkpoint file to write (.ckpt).")
def init(model, op, input_size, embedding_dim, seed, output):
    """Write a freshly initialised checkpoint of MODEL."""
    from edgeconv.train.checkpoint import init_checkpoint

    path = init_checkpoint(model, op=op, input_size=input_size, embedding_dim=embedding_dim,
                           seed=seed, output=output)
    click.echo(f"wrote {path}")


# --------------------------------------------------------------------------- info
@cli.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def info(checkpoint, as_json):
    """Summarise a checkpoint: model config, training state and stored metrics."""
    from edgeconv.train.checkpoint import describe_checkpoint, read_torch_file

    ckpt = read_torch_file(checkpoint)  # read once; the summary that fits its header
    if isinstance(ckpt, dict) and ckpt.get("format") == "edgeconv.unit":
        from edgeconv.translate.train import describe_translate_checkpoint

        describe_translate_checkpoint(checkpoint, ckpt, as_json=as_json)
    else:
        describe_checkpoint(checkpoint, as_json=as_json, ckpt=ckpt)


# --------------------------------------------------------------------------- list
@cli.command("models")
def list_models_cmd():
    """List registered model names and operators."""
    from edgeconv.models.registry import model_names  # torch-free: no model is built
    from edgeconv.ops import list_ops

    click.echo("models: " + " ".join(model_names()))
    click.echo("segmentation models: " + " ".join(model_names("segmentation")))
    click.echo("ops:    " + " ".join(list_ops()))


# --------------------------------------------------------------------------- bench
@cli.command()
@click.argument("models", nargs=-1, required=True)
@click.option("--backend", "backends", default="onnxruntime,tflite", show_default=True,
              help="Backend(s), comma separated; each runs the files of its format "
                   "(.onnx -> onnxruntime, .tflite -> tflite).")
@click.option("--threads", callback=_opts.click_threads_list, default="1,2,4", show_default=True,
              help="Thread counts, comma separated.")
@click.option("--batch", "batches", callback=_csv_ints, default="1,2,4,8,16",
              show_default=True, help="Batch sizes, comma separated.")
@click.option("--warmup-runs", default=3, show_default=True, type=click.IntRange(0),
              help="Minimum warm-up runs (after the first inference).")
@click.option("--warmup-secs", default=0.5, show_default=True, type=float,
              callback=_opts.click_seconds,
              help="Minimum warm-up seconds.")
@click.option("--min-runs", default=20, show_default=True, type=click.IntRange(1),
              help="Minimum timed runs.")
@click.option("--min-secs", default=1.0, show_default=True, type=float,
              callback=_opts.click_seconds,
              help="Minimum timed seconds.")
@click.option("--memory-batch", default=8, show_default=True, type=click.IntRange(0),
              help="Batch of the peak-memory measurement (fresh child process); 0 skips it.")
@click.option("--spinning", type=click.Choice(["on", "off"]), default="on", show_default=True,
              help="ONNX Runtime session.intra_op.allow_spinning for the sweep "
                   "(both are measured once per ONNX model regardless).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the random input.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write JSON here.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Write CSV here.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Write the throughput plot FILE.png (and FILE_accuracy.png when two or more "
                   "models carry a verification accuracy and MACs); needs edgeconv[plot].")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Progress bar on stderr.")
def bench(models, backends, threads, batches, warmup_runs, warmup_secs, min_runs, min_secs,
          memory_batch, spinning, seed, json_path, csv_path, plot_path, progress):
    """Throughput, latency and peak memory of ONNX / TFLite MODEL files (torch-free).

    Sweeps backend x threads x batch; reports the best configuration per model.
    Ctrl-C writes the results gathered so far (partial) and exits 130.
    """
    from edgeconv.profiling.bench import bench_command

    code = bench_command(list(models), backends=backends, threads=threads, batches=batches,
                         warmup_runs=warmup_runs, warmup_secs=warmup_secs, min_runs=min_runs,
                         min_secs=min_secs, memory_batch=memory_batch, spinning=spinning,
                         json_path=json_path, csv_path=csv_path, plot_path=plot_path,
                         seed=seed, progress=progress)
    if code:
        sys.exit(code)


# --------------------------------------------------------------------------- kernels
@cli.command()
@click.option("--path", "path_only", is_flag=True,
              help="Print only the library path (for SessionOptions.register_custom_ops_library "
                   "in your own ONNX Runtime code).")
@click.option("--delegate-path", "delegate_only", is_flag=True,
              help="Print only the LiteRT delegate's path (for ai_edge_litert.interpreter."
                   "load_delegate in your own LiteRT code).")
@click.option("--json", "as_json", is_flag=True, help="Print the build information as JSON.")
def kernels(path_only, delegate_only, as_json):
    """Build of the fused TVConv kernel library: path, SIMD path, ORT headers.

    TVConv models exported to ONNX (by default) hold its ONNX Runtime custom op edgeconv.TVConv,
    each node with a standard-op function body that runs where the library is not loaded;
    edgeconv loads it by itself, --path is for your own ONNX Runtime code. TFLite files hold
    edgeconv.tvconv composites that the LiteRT delegate runs (--delegate-path for your own
    LiteRT code). Exit 2 with one line when the library is not built or cannot be loaded.
    """
    from edgeconv import kernels as K
    from edgeconv.runtime import litert_delegate as LD

    if sum(map(bool, (path_only, delegate_only, as_json))) > 1:
        raise click.UsageError("--path, --delegate-path and --json are exclusive")
    lib_env = os.environ.get("EDGECONV_KERNELS_LIB")
    if lib_env and not os.path.isfile(lib_env):  # not "not built": the variable is wrong
        raise EdgeconvError(f"EDGECONV_KERNELS_LIB={lib_env}: no such file (point it at a "
                            "built libedgeconv_kernels.so, or unset it)")
    if delegate_only:
        try:
            click.echo(str(LD.delegate_path(required=True)))
        except K.KernelsMissing as exc:
            click.echo(f"edgeconv kernels: {exc}", err=True)
            sys.exit(EXIT_USER_ERROR)
        return
    if path_only:
        path = K.library_path()
        K.load()  # a file that cannot be loaded is not a path to hand to ONNX Runtime
        click.echo(str(path))
        return
    if as_json:
        import json

        click.echo(json.dumps(dict(K.info(), onnxruntime_version=_ort_version(),
                                   litert_delegate=LD.info(selftest=True)), indent=2))
        return
    try:
        info = K.info()
    except K.KernelsMissing as exc:
        msg = str(exc)  # "the edgeconv kernels are not built (...)" / "... at PATH cannot ..."
        for prefix in ("the edgeconv kernels are ", "the edgeconv kernels at "):
            if msg.startswith(prefix):
                msg = msg[len(prefix):]
                break
        click.echo(f"edgeconv kernels: {msg}", err=True)
        sys.exit(EXIT_USER_ERROR)
    forced = os.environ.get("EDGECONV_KERNEL_ISA")
    if forced and (info["isa"] == "unavailable" or info["isa"] not in info["available_isas"]):
        raise EdgeconvError(f"EDGECONV_KERNEL_ISA={forced}: not available on this machine "
                            f"(available: {', '.join(info['available_isas'])})")
    api = info["ort_api_version"]
    ort_version = _ort_version()
    ort_note = ""
    try:
        major, minor = (int(v) for v in str(ort_version).split(".")[:2])
        if (major, minor) < (1, api):
            ort_note = f" (older than the headers: this library needs onnxruntime >= 1.{api})"
    except ValueError:
        pass
    rows = [
        ("library", info["library"]),
        ("version", info["version"]),
        ("op", f"{info['domain']}.{info['op']} (version {info['op_version']})"),
        ("weight layout", info["layout"]),
        ("simd", f"{info['isa']}" + (f" (EDGECONV_KERNEL_ISA={forced})" if forced else "")
         + f"; available: {', '.join(info['available_isas'])}"),
        ("ort headers", f"ORT_API_VERSION {api} (runs on onnxruntime >= 1.{api})"),
        ("onnxruntime", f"{ort_version or 'not installed'}{ort_note}"),
    ]
    d = LD.info(selftest=True)
    rows.append(("delegate", (f"LiteRT {d['library']} (version {d['version']}, isa {d['isa']}, "
                                     f"self-test {d['selftest']})") if d["available"]
                 else f"not built ({d['library']} missing): fused TFLite files run their "
                      "portable body"))
    for key, value in rows:
        click.echo(f"{key + ':':<15}{value}")


def _ort_version() -> str | None:
    """Version of the installed onnxruntime, without importing it."""
    from importlib import metadata

    try:
        return metadata.version("onnxruntime")
    except metadata.PackageNotFoundError:
        return None


# --------------------------------------------------------------------------- face unlock
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


def _unlock_exit(code):
    if code:
        sys.exit(code)


@cli.command()
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

    _unlock_exit(enroll_command(model, user, list(images), db=db, replace=replace, flip=flip,
                                threads=threads, as_json=as_json,
                                translate=translate))


@cli.command()
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

    _unlock_exit(verify_command(model, user, image, db=db, far=far, threshold=threshold,
                                flip=flip, threads=threads, as_json=as_json,
                                translate=translate))


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--top", default=3, show_default=True, type=click.IntRange(1),
              help="Show this many best candidates.")
@_unlock_threshold
@_unlock_common
def identify(model, image, top, far, threshold, db, threads, flip, as_json, translate):
    """1:N: the enrolled user IMAGE matches best, or none (exit 0 match, 1 none)."""
    from edgeconv.runtime.unlock import identify_command

    _unlock_exit(identify_command(model, image, db=db, far=far, threshold=threshold, top=top,
                                  flip=flip, threads=threads, as_json=as_json,
                                translate=translate))


@cli.group()
def users():
    """Enrolled users of the template database (list, remove, reset)."""


@users.command("list")
@click.option("--db", type=click.Path(dir_okay=False), default=None, help="Template database.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def users_list(db, as_json):
    """List enrolled users, their model and lock-out state."""
    from edgeconv.runtime.unlock import users_list_command

    _unlock_exit(users_list_command(db=db, as_json=as_json))


@users.command("remove")
@click.argument("names", nargs=-1, required=True)
@click.option("--db", type=click.Path(dir_okay=False), default=None, help="Template database.")
def users_remove(names, db):
    """Delete the templates (and lock-out state) of NAMES."""
    from edgeconv.runtime.unlock import users_remove_command

    _unlock_exit(users_remove_command(list(names), db=db))


@users.command("reset")
@click.argument("name", required=False)
@click.option("--db", type=click.Path(dir_okay=False), default=None, help="Template database.")
def users_reset(name, db):
    """Clear NAME's lock-out (without NAME: the identify-mode lock-out)."""
    from edgeconv.runtime.unlock import users_reset_command

    _unlock_exit(users_reset_command(name, db=db))


@cli.command()
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

    _unlock_exit(unlock_command(model, user=user, images=list(images), camera=camera, db=db,
                                far=far, threshold=threshold, max_failures=max_failures,
                                cooldown=cooldown, flip=flip, threads=threads, frames=frames,
                                interval=interval, crop=crop, max_attempts=max_attempts,
                                save_crop=save_crop, as_json=as_json,
                                translate=translate, show_score=show_score))


# --------------------------------------------------------------------------- export
@cli.command("export")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--format", "formats", default="onnx,tflite", show_default=True,
              help="Format(s), comma separated: onnx (.onnx, --opset, --simplify; "
                   "edgeconv[export]), tflite (.tflite, --fp16; edgeconv[tflite]).")
@click.option("-o", "--output-dir", default=".", show_default=True,
              type=click.Path(file_okay=False), help="Folder for the files and sidecars.")
@click.option("--opset", type=int, default=None, help="ONNX opset (default 18; onnx only).")
@click.option("--batch", default="dynamic", show_default=True,
              help="'dynamic' or a fixed batch size N.")
@click.option("--input-size", callback=_input_size, default=None,
              help="N or HxW; must equal the size a TVConv model was built for.")
@click.option("--fp16", is_flag=True, help="TFLite: store float16 weights (tflite only).")
@click.option("--formulation", default=None,
              help="Graph form of the folded per-pixel product, all exact: fused (ONNX "
                   "default: one edgeconv.TVConv node per layer with its BatchNorm and "
                   "activation, run by the edgeconv kernel where it is loaded and by the "
                   "node's standard-op function body elsewhere; written as NAME.onnx by "
                   "default, NAME_fused.onnx when asked for by name), col2im (opset >= 18), "
                   "tapconv, slices, onehot, onehot_tap.")
@click.option("--weight-dtype", default=None,
              help="Fused TVConv layers (the default): storage of the per-pixel weights, "
                   "float32 (default), "
                   "float16 or int8 (per channel-tap scales); computed in float32.")
@click.option("--lowrank", default=None,
              help="APPROXIMATE: per-layer SVD of the folded weights; an integer rank r or a "
                   "relative error budget in (0, 1). Exact folding is the default.")
@click.option("--simplify", default=None,
              help="ONNX simplifier: auto (onnxsim, else onnxslim), onnxsim, onnxslim, none.")
@click.option("--name", default=None, help="File stem (default: the checkpoint's).")
@click.option("--force", is_flag=True,
              help="Replace files another checkpoint exported at the same paths.")
@click.option("--direction", type=click.Choice(["nir2rgb", "rgb2nir"]), default=None,
              help="A UNIT translation checkpoint (edgeconv translate-train): export this "
                   "direction (source encoder + target generator) as a translator file.")
@click.option("--json", "as_json", is_flag=True, help="Print the export report as JSON.")
def export_cmd(checkpoint, formats, output_dir, opset, batch, input_size, fp16, formulation,
               weight_dtype, lowrank, simplify, name, force, direction, as_json):
    """Fold CHECKPOINT (TVConv weights computed once, BatchNorm fused) and write verified
    ONNX / TFLite files with metadata (sidecar <file>.json + embedded).

    Every file is checked against the eager model in its runtime before anything is
    written; a failure exits non-zero and leaves no file behind. With --direction,
    CHECKPOINT is a UNIT translator and one direction of it is exported the same way.
    """
    echo = (lambda *a, **k: None) if as_json else click.echo
    _check_export_options(name, batch, input_size)
    if direction is not None:
        from edgeconv.export.translator import export_translator

        given = {"--input-size": input_size, "--formulation": formulation,
                 "--weight-dtype": weight_dtype, "--lowrank": lowrank}
        bad = [k for k, v in given.items() if v is not None]
        if bad:
            raise click.UsageError(f"{', '.join(bad)} appl{'ies' if len(bad) == 1 else 'y'} to "
                                   "face models, not to a translator (--direction)")
        report = export_translator(checkpoint, direction, formats=formats,
                                   output_dir=output_dir, opset=opset, batch=batch, fp16=fp16,
                                   simplify=simplify, name=name, echo=echo, force=force)
        if as_json:
            import json

            click.echo(json.dumps(report, default=str))
        return
    from edgeconv.export.exporter import export_checkpoint

    report = export_checkpoint(checkpoint, formats=formats, output_dir=output_dir, opset=opset,
                               batch=batch, input_size=input_size, fp16=fp16,
                               formulation=formulation, weight_dtype=weight_dtype,
                               lowrank=lowrank, simplify=simplify,
                               name=name, echo=echo, force=force)
    if not report.get("files"):  # never a success that wrote nothing
        raise EdgeconvError(f"{checkpoint}: nothing was exported (no file written for "
                            f"--format {formats}"
                            + (f", --formulation {formulation}" if formulation else "") + ")")
    if as_json:
        import json

        click.echo(json.dumps(report, default=str))


#: bytes one image of an export's parity batch may take (input plus the eager model's
#: activations, a generous estimate), per pixel
_EXPORT_BYTES_PER_PIXEL = 3 * 4 * 32


def _check_export_options(name, batch, input_size) -> None:
    """Refuse, before torch is imported, a --name that would write outside -o and a fixed
    --batch whose parity run would not fit in memory."""
    if name is not None:
        text = str(name)
        seps = {"/", os.sep} | ({os.altsep} if os.altsep else set())
        if (text.strip() in ("", ".") or ".." in text or "\0" in text
                or any(sep in text for sep in seps) or os.path.isabs(text)):
            raise EdgeconvError(f"--name {text!r}: a file stem, not a path (no '/', no '..'); "
                                "the folder is -o/--output-dir")
    if batch is not None and str(batch).strip().lower() != "dynamic":
        try:
            n = int(str(batch).strip())
        except ValueError:
            return  # the exporter's own message
        h, w = input_size or (112, 112)
        _opts.check_size(n, "--batch", h * w * _EXPORT_BYTES_PER_PIXEL,
                         "parity inputs and activations")


# --------------------------------------------------------------------------- train / eval / quickstart
def _set_threads(threads):
    if threads:
        import torch

        torch.set_num_threads(threads)


@cli.command()
@click.option("--model", default="mbv2_x0_1", show_default=True, help="Registered model name.")
@click.option("--op", default="tvconv", show_default=True,
              help="Operator: tvconv, depthwise or filtergen.")
@click.option("--input-size", callback=_input_size, default="96", show_default=True,
              help="Input size N or HxW (the data is rendered / resized to it).")
@click.option("--embedding-dim", default=512, show_default=True, type=click.IntRange(1))
@click.option("--tvconv-inter-channels", type=click.IntRange(1), default=None,
              help="TVConv weight-generator width (default 64, the paper's).")
@click.option("--tvconv-inter-layers", type=click.IntRange(0), default=None,
              help="TVConv weight-generator extra layers (default 3).")
@click.option("--tvconv-affinity-channels", type=click.IntRange(1), default=None,
              help="TVConv affinity-map channels (default 4).")
@click.option("--filtergen-repository-size", type=click.IntRange(1), default=None,
              help="filtergen: base filters in each layer's repository (default k*k = 9).")
@click.option("--filtergen-feature-dim", type=click.IntRange(1), default=None,
              help="filtergen: length of the sample-specific feature vector (default 32).")
@click.option("--recon-weight", default=1.0, show_default=True, type=click.FloatRange(0),
              help="filtergen: weight of the autoencoder's reconstruction (BCE) loss.")
@click.option("--data", default="synthetic", show_default=True,
              help="'synthetic' (built-in faces) or an ImageFolder path (one folder per identity).")
@click.option("--identities", default=1000, show_default=True, type=click.IntRange(2),
              help="Synthetic data: number of identities.")
@click.option("--images-per-identity", default=20, show_default=True, type=click.IntRange(1),
              help="Synthetic data: images per identity.")
@click.option("--difficulty", default=0.5, show_default=True, type=click.FloatRange(0, 1),
              help="Synthetic data: 0 easy .. 1 hard.")
@click.option("--data-seed", default=0, show_default=True, type=int,
              help="Synthetic data seed (validation pairs use unseen identities of it).")
@click.option("--val", default="synthetic", show_default=True,
              help="Per-epoch verification: synthetic, PAIRS.txt, FILE.bin or none.")
@click.option("--val-pairs", default=1000, show_default=True, type=click.IntRange(20),
              help="Synthetic validation pairs.")
@click.option("--flip-test", is_flag=True, help="Flip test in the per-epoch verification.")
@click.option("--epochs", default=38, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", default=128, show_default=True, type=click.IntRange(2),
              help="Global batch (split over torchrun processes); the paper used 512.")
@click.option("--lr", default=0.1, show_default=True, type=click.FloatRange(0, min_open=True))
@click.option("--momentum", default=0.9, show_default=True, type=click.FloatRange(0, 1))
@click.option("--weight-decay", default=5e-4, show_default=True, type=click.FloatRange(0))
@click.option("--milestones", callback=_csv_ints, default=None,
              help="LR x gamma at these epochs (default: [22,30,35] of 38, scaled to --epochs).")
@click.option("--gamma", default=0.1, show_default=True, type=click.FloatRange(0, 1))
@click.option("--schedule", type=click.Choice(["multistep", "cosine"]), default="multistep",
              show_default=True,
              help="multistep (the paper's, --milestones/--gamma) or cosine (per step; the "
                   "quickstart's).")
@click.option("--warmup-epochs", default=0.0, show_default=True, type=click.FloatRange(0),
              help="Linear LR warm-up from 0 over this many epochs (per step).")
@click.option("--margin-warmup-epochs", default=0.0, show_default=True,
              type=click.FloatRange(0),
              help="Ramp the AM-Softmax margin from 0 to --am-margin over this many epochs.")
@click.option("--generator-lr-mult", default=1.0, show_default=True,
              type=click.FloatRange(0, min_open=True),
              help="TVConv affinity maps and weight generators train at this times the lr "
                   "(the quickstart uses 0.1).")
@click.option("--am-scale", default=32.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="AM-Softmax scale s.")
@click.option("--am-margin", default=0.35, show_default=True, type=click.FloatRange(0),
              help="AM-Softmax margin m.")
@click.option("--hflip/--no-hflip", default=True, show_default=True,
              help="Random horizontal flip augmentation.")
@click.option("--workers", default=0, show_default=True, type=click.IntRange(0),
              help="DataLoader worker processes.")
@click.option("--threads", default=None, type=int, callback=_opts.click_threads,
              help="torch CPU threads per process (default: torch's = cores; use 1 on a busy "
                   "machine: oversubscribed threads can make steps 10x slower).")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Initialisation, data order and flip seed.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True)
@click.option("-o", "--output", default="runs/train", show_default=True,
              type=click.Path(file_okay=False), help="Run folder.")
@click.option("--resume", type=click.Path(), default=None,
              help="Continue the run of this last.ckpt (or run folder) exactly; the other "
                   "options are taken from it (except --workers/--threads/--progress).")
@click.option("--overwrite", is_flag=True, help="Replace an existing run in --output.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Progress bars on stderr.")
def train(model, op, input_size, embedding_dim, tvconv_inter_channels, tvconv_inter_layers,
          tvconv_affinity_channels, filtergen_repository_size, filtergen_feature_dim,
          recon_weight, data, identities, images_per_identity, difficulty, data_seed,
          val, val_pairs, flip_test, epochs, batch_size, lr, momentum, weight_decay, milestones,
          gamma, schedule, warmup_epochs, margin_warmup_epochs, generator_lr_mult, am_scale,
          am_margin, hflip,
          workers, threads, seed, device, output, resume, overwrite, progress):
    """Train a face model (AM-Softmax, SGD, MultiStep: the published recipe, by default).

    Writes config.json, history.json, last.ckpt and best.ckpt (atomically, every epoch) to
    the run folder. Distributed: torchrun --nproc_per_node N -m edgeconv.cli train ...
    """
    if resume is None:  # before torch is imported (seconds): an unknown name fails at once
        from edgeconv.models.registry import check_model_name
        from edgeconv.ops import check_op

        check_model_name(model, task="face")
        check_op(op)
    _set_threads(threads)
    from edgeconv.train.config import TrainConfig
    from edgeconv.train.loop import train as run_train

    if resume is not None:
        ctx = click.get_current_context()

        def explicit(name):
            given = ctx.get_parameter_source(name)
            return given is not None and given.name != "DEFAULT"

        summary = run_train(resume=resume, progress=progress, overwrite=overwrite,
                            workers=workers if workers else None,
                            output=output if explicit("output") else None,
                            epochs=epochs if explicit("epochs") else None)
    else:
        op_kwargs = _op_kwargs_from_options(op, {
            "--tvconv-inter-channels": tvconv_inter_channels,
            "--tvconv-inter-layers": tvconv_inter_layers,
            "--tvconv-affinity-channels": tvconv_affinity_channels,
            "--filtergen-repository-size": filtergen_repository_size,
            "--filtergen-feature-dim": filtergen_feature_dim})
        config = TrainConfig(
            model=model, op=op, input_size=list(input_size), embedding_dim=embedding_dim,
            op_kwargs=op_kwargs, data=data, identities=identities,
            images_per_identity=images_per_identity, difficulty=difficulty, data_seed=data_seed,
            val=val, val_pairs=val_pairs, flip_test=flip_test, epochs=epochs,
            batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay,
            milestones=milestones, gamma=gamma, schedule=schedule, warmup_epochs=warmup_epochs,
            margin_warmup_epochs=margin_warmup_epochs, generator_lr_mult=generator_lr_mult,
            am_scale=am_scale, am_margin=am_margin,
            recon_weight=recon_weight,
            hflip=hflip, workers=workers, seed=seed, output=output, device=device)
        summary = run_train(config, progress=progress, overwrite=overwrite)
    if summary.get("is_main", True):
        best = summary.get("best_accuracy")
        if not os.path.exists(summary["last"]):  # never report a file that was not written
            raise EdgeconvError(f"no epoch was trained: {summary['last']} was not written")
        best_file = summary["best"] if os.path.exists(summary["best"]) else (
            f"{summary['best']} not written in this folder: the best epoch is in the run "
            "resumed from")
        click.echo(f"done: {summary['epochs_done']} epoch(s) -> {summary['last']}"
                   + (f" (best val accuracy {100 * best:.2f}% at epoch {summary['best_epoch']}"
                      f": {best_file})" if best is not None else ""))


@cli.command("eval")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--pairs", default="synthetic", show_default=True,
              help="synthetic (test split of the checkpoint's data settings), PAIRS.txt or FILE.bin.")
@click.option("--num-pairs", type=click.IntRange(20), default=None,
              help="Synthetic: number of pairs (default 2000); files: use the first N.")
@click.option("--flip/--no-flip", default=False, show_default=True,
              help="Flip test: add the mirrored image's embedding.")
@click.option("--target-far", default=1e-3, show_default=True, type=float,
              help="Also report the threshold for this false-accept rate.")
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(1))
@click.option("-o", "--output-dir", type=click.Path(file_okay=False), default=None,
              help="Folder of the JSON report and ROC PNG (default: the checkpoint's).")
@click.option("--plot/--no-plot", default=True, show_default=True, help="Write the ROC PNG.")
@click.option("--write/--no-write", "write_back", default=True, show_default=True,
              help="Store the results in the checkpoint's metrics['verification'].")
@click.option("--threads", default=None, type=int, callback=_opts.click_threads, help="torch CPU threads.")
def eval_cmd(checkpoint, pairs, num_pairs, flip, target_far, batch_size, output_dir, plot,
             write_back, threads):
    """Face verification of CHECKPOINT: 10-fold accuracy, TAR@FAR, EER, ROC.

    Writes eval_<name>.json (+ _roc.png) and, unless --no-write, stores accuracy, thresholds
    (10-fold, FAR 1e-3 / 1e-4, target FAR) and EER in the checkpoint (atomic rewrite).
    """
    _set_threads(threads)
    from edgeconv.train.evaluate import evaluate_checkpoint

    evaluate_checkpoint(checkpoint, pairs=pairs, flip=flip, target_far=target_far,
                        num_pairs=num_pairs, output_dir=output_dir, batch_size=batch_size,
                        write_back=write_back, plot=plot, echo=click.echo)


def _op_kwargs_from_options(op: str, given: dict) -> dict:
    """op_kwargs from the op-specific CLI options given (None: not given); an option of
    another op is refused in one line. Which option belongs to which op is the op registry's
    (OpSpec.cli_options)."""
    from edgeconv.ops import list_ops, op_spec

    owner = {opt: (name, key) for name in list_ops() for opt, key in op_spec(name).cli_options}
    out = {}
    for opt, value in given.items():
        if value is None:
            continue
        name, key = owner[opt]
        if name != op:
            raise EdgeconvError(f"{opt} is an option of op {name}: its options need --op "
                                f"{name} (got --op {op})")
        out[key] = value
    return out


def _quickstart_defaults():
    from edgeconv.quickstart import QuickstartOptions  # torch-free dataclass

    return QuickstartOptions()


_QS = _quickstart_defaults()


@cli.command()
@click.option("-o", "--output", default=_QS.output, show_default=True,
              type=click.Path(file_okay=False),
              help="Run folder: training runs, evaluations, exported files, bench.json, "
                   "roc.png and summary.md/.json.")
@click.option("--model", default=_QS.model, show_default=True,
              help="Registered model trained twice, with TVConv and with depthwise convolution "
                   "(`edgeconv models` lists them).")
@click.option("--input-size", default=_QS.input_size, show_default=True,
              type=click.IntRange(16, 1024), help="Square face-crop size in pixels.")
@click.option("--identities", default=_QS.identities, show_default=True, type=click.IntRange(2),
              help="Synthetic training identities (classes).")
@click.option("--images-per-identity", default=_QS.images_per_identity, show_default=True,
              type=click.IntRange(1), help="Training images rendered per identity.")
@click.option("--difficulty", default=_QS.difficulty, show_default=True,
              type=click.FloatRange(0, 1),
              help="Synthetic-face difficulty: pose, lighting and expression spread (0 easy).")
@click.option("--epochs", default=_QS.epochs, show_default=True, type=click.IntRange(1),
              help="Training epochs of each op (cosine lr schedule with warm-ups).")
@click.option("--tvconv-epochs", default=_QS.tvconv_epochs, show_default=True,
              type=click.IntRange(1),
              help="TVConv's own epoch budget (default: --epochs + 6; it fits more slowly).")
@click.option("--am-scale", default=_QS.am_scale, show_default=True,
              type=click.FloatRange(0, min_open=True), help="AM-Softmax scale s.")
@click.option("--batch-size", default=_QS.batch_size, show_default=True, type=click.IntRange(2),
              help="Training batch size.")
@click.option("--lr", default=_QS.lr, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Peak SGD learning rate (TVConv's generators train at 0.1x).")
@click.option("--test-pairs", default=_QS.test_pairs, show_default=True, type=click.IntRange(20),
              help="Balanced test pairs of unseen identities for 10-fold accuracy and EER.")
@click.option("--seed", default=_QS.seed, show_default=True, type=int,
              help="Initialisation and data-order seed.")
@click.option("--threads", default=None, type=int, callback=_opts.click_threads,
              help="torch CPU threads (default: all cores; use 1 if other jobs are running).")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Progress bars on a terminal (one line per epoch when redirected).")
@click.option("--budget", "budget_min", default=_QS.budget_min, show_default=True,
              type=float, callback=_opts.click_minutes,
              help="Wall-clock budget of the whole run in minutes: the training speed is "
                   "measured first and the epochs (then the images) are cut to fit; the "
                   "summary says what was cut and what it cost. 0: the full recipe, however "
                   "long it takes.")
def quickstart(output, model, input_size, identities, images_per_identity, difficulty, epochs,
               tvconv_epochs, am_scale, batch_size, lr, test_pairs, seed, threads, progress,
               budget_min):
    """Train TVConv and its depthwise twin on built-in synthetic faces, evaluate (accuracy,
    EER, calibrated TAR@FAR on unseen identities), export (ONNX + TFLite, TVConv folded),
    benchmark the files and try them as unlock verifiers; compare them in one table.

    Within --budget minutes (default 15) on the machine it runs on: the quickstart recipe
    (docs/quickstart_recipe.md) cut to fit where this machine trains more slowly;
    `edgeconv train` keeps the paper's recipe for real data.
    """
    from edgeconv.models.registry import check_model_name

    check_model_name(model, task="face")  # before torch is imported
    _set_threads(threads)
    from edgeconv.quickstart import QuickstartOptions, run_quickstart

    run_quickstart(QuickstartOptions(output=output, model=model, input_size=input_size,
                                     identities=identities,
                                     images_per_identity=images_per_identity,
                                     difficulty=difficulty, epochs=epochs,
                                     tvconv_epochs=tvconv_epochs, am_scale=am_scale,
                                     batch_size=batch_size, lr=lr, test_pairs=test_pairs,
                                     seed=seed, budget_min=budget_min, progress=progress),
                   echo=click.echo)


# --------------------------------------------------------------------------- translation
@cli.command("translate-train")
@click.option("-o", "--output", default="runs/translate", show_default=True,
              type=click.Path(file_okay=False), help="Run folder (config, history, last.ckpt).")
@click.option("--identities", default=200, show_default=True, type=click.IntRange(1),
              help="Identities per domain (RGB and NIR identities are disjoint: unpaired).")
@click.option("--images-per-identity", default=10, show_default=True, type=click.IntRange(1),
              help="Images rendered per identity and domain.")
@click.option("--size", default=32, show_default=True, type=int,
              help="Square image size: 16..512 and a multiple of 4.")
@click.option("--epochs", default=10, show_default=True, type=click.IntRange(1),
              help="Training epochs.")
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(1),
              help="Images per domain per step.")
@click.option("--width", default=64, show_default=True, type=click.IntRange(1),
              help="Channels of the first conv (doubled at each downsampling).")
@click.option("--shared", default=1, show_default=True, type=click.IntRange(1, 4),
              help="Residual blocks shared by the encoders and by the generators.")
@click.option("--cycle/--no-cycle", default=True, show_default=True,
              help="Cycle-consistency losses.")
@click.option("--seed", default=0, show_default=True, type=int, help="Initialisation, data order.")
@click.option("--resume", type=click.Path(), default=None,
              help="Continue this run's last.ckpt (or its folder) exactly.")
@click.option("--overwrite", is_flag=True, help="Replace an existing run in --output.")
def translate_train_cmd(output, identities, images_per_identity, size, epochs, batch_size,
                        width, shared, cycle, seed, resume, overwrite):
    """Train UNIT (unsupervised RGB <-> NIR translation) on unpaired synthetic faces."""
    from edgeconv.translate.train import TranslateConfig, translate_train

    cfg = TranslateConfig(unit={"width": width, "shared": shared, "cycle": cycle},
                          identities=identities, images_per_identity=images_per_identity,
                          size=size, epochs=epochs, batch_size=batch_size, seed=seed,
                          output=output)
    s = translate_train(None if resume else cfg, resume=resume, log=click.echo,
                        overwrite=overwrite)
    click.echo(f"done: {s['epochs_done']} epoch(s) -> {s['last']}")


@cli.command("translate")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.argument("images", nargs=-1, required=True)
@click.option("--direction", type=click.Choice(["nir2rgb", "rgb2nir"]), default="nir2rgb",
              show_default=True, help="Translation direction.")
@click.option("-o", "--output-dir", default=".", show_default=True,
              type=click.Path(file_okay=False), help="Folder for <stem>_<direction>.png.")
def translate_cmd(checkpoint, images, direction, output_dir):
    """Translate IMAGES with a trained UNIT checkpoint (torch)."""
    from edgeconv.translate.train import translate_files

    for p in translate_files(checkpoint, list(images), output_dir, direction, log=click.echo):
        click.echo(f"wrote {p}")


from edgeconv.cli_gan import register as _register_gan  # noqa: E402  (issue #27)

_register_gan(cli)

cli.add_command(__import__("edgeconv.cli_envelope", fromlist=["envelope"]).envelope)  # issue #26


from edgeconv.cli_segment import register as _register_segmentation  # noqa: E402  (issue 25)

_register_segmentation(cli)


def main(argv=None):
    """Console-script entry point: one-line errors, exit status 2."""
    # OpenMP workers that spin after each torch op take the cores the TVConv training kernels
    # run their threads on (measured: 0.56x -> 0.88x of depthwise at 2 threads); a value the
    # user set wins. Set before torch (and its libgomp) is imported by any subcommand.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        cli.main(args=argv, prog_name="edgeconv", standalone_mode=False)
    except EdgeconvError as exc:
        from edgeconv.metadata import escape_text

        # one line, whatever a file or a runtime put in the message (escape sequences,
        # newlines, 200k-character names)
        click.echo(f"edgeconv: error: {escape_text(exc, MAX_ERROR_CHARS)}", err=True)
        sys.exit(EXIT_USER_ERROR)
    except ModuleNotFoundError as exc:
        root = (exc.name or "").split(".")[0]
        if root not in EXTRA_OF:
            raise
        click.echo(f"edgeconv: error: this command needs the optional package '{root}': "
                   f"pip install 'edgeconv[{EXTRA_OF[root]}]'", err=True)
        sys.exit(EXIT_USER_ERROR)
    except OSError as exc:  # a file system refusal no check foresaw: one line, not a traceback
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        click.echo(f"edgeconv: error: {where}{exc.strerror or exc}", err=True)
        sys.exit(EXIT_USER_ERROR)
    except click.exceptions.Abort:
        click.echo("edgeconv: aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("edgeconv: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_USER_ERROR if exc.exit_code == 2 else exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(0)


if __name__ == "__main__":  # pragma: no cover
    main()
