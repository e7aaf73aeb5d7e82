"""The ``edgeconv`` console script.

One click group; every subcommand imports its implementation lazily inside the
command body, so ``import edgeconv.cli`` (and ``edgeconv --help``) never imports
torch. User errors (:class:`edgeconv.errors.EdgeconvError`) print one line and
exit with status 2.
"""

from __future__ import annotations

import sys

import click

from edgeconv import __version__
from edgeconv.errors import EdgeconvError

EXIT_USER_ERROR = 2

# Optional packages -> the extra that installs them (for a clean error when one is missing).
EXTRA_OF = {"torch": "train", "fvcore": "train", "onnx": "export", "onnxslim": "export",
            "onnxscript": "export", "litert_torch": "export", "matplotlib": "plot",
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
def cli():
    """edgeconv: layout-aware (TVConv) face models from training to the edge device."""


# --------------------------------------------------------------------------- profile
@cli.command()
@click.argument("models", nargs=-1)
@click.option("--op", "ops", default="depthwise,tvconv", show_default=True,
              help="Operator(s), comma separated: depthwise, tvconv.")
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
@click.option("--op", default="tvconv", show_default=True, help="Operator: depthwise or tvconv.")
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
    from edgeconv.train.checkpoint import describe_checkpoint

    describe_checkpoint(checkpoint, as_json=as_json)


# --------------------------------------------------------------------------- list
@cli.command("models")
def list_models_cmd():
    """List registered model names and operators."""
    from edgeconv.models.registry import list_models
    from edgeconv.ops import list_ops

    click.echo("models: " + " ".join(list_models()))
    click.echo("ops:    " + " ".join(list_ops()))


# --------------------------------------------------------------------------- bench
@cli.command()
@click.argument("models", nargs=-1, required=True)
@click.option("--backend", "backends", default="onnxruntime,tflite", show_default=True,
              help="Backend(s), comma separated; each runs the files of its format "
                   "(.onnx -> onnxruntime, .tflite -> tflite).")
@click.option("--threads", callback=_csv_ints, default="1,2,4", show_default=True,
              help="Thread counts, comma separated.")
@click.option("--batch", "batches", callback=_csv_ints, default="1,2,4,8,16",
              show_default=True, help="Batch sizes, comma separated.")
@click.option("--warmup-runs", default=3, show_default=True, type=click.IntRange(0),
              help="Minimum warm-up runs (after the first inference).")
@click.option("--warmup-secs", default=0.5, show_default=True, type=click.FloatRange(0),
              help="Minimum warm-up seconds.")
@click.option("--min-runs", default=20, show_default=True, type=click.IntRange(1),
              help="Minimum timed runs.")
@click.option("--min-secs", default=1.0, show_default=True, type=click.FloatRange(0),
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
              help="Write PNG plots (FILE.png, FILE_accuracy.png); needs edgeconv[plot].")
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


def main(argv=None):
    """Console-script entry point: one-line errors, exit status 2."""
    try:
        cli.main(args=argv, prog_name="edgeconv", standalone_mode=False)
    except EdgeconvError as exc:
        click.echo(f"edgeconv: error: {exc}", err=True)
        sys.exit(EXIT_USER_ERROR)
    except ModuleNotFoundError as exc:
        root = (exc.name or "").split(".")[0]
        if root not in EXTRA_OF:
            raise
        click.echo(f"edgeconv: error: this command needs the optional package '{root}': "
                   f"pip install 'edgeconv[{EXTRA_OF[root]}]'", err=True)
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
