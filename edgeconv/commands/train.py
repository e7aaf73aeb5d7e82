"""``edgeconv train``, ``eval`` and ``quickstart`` (torch, imported inside the commands).

``train`` and ``quickstart`` mirror their config dataclasses: their options are generated
from :class:`~edgeconv.train.config.TrainConfig` and :class:`~edgeconv.quickstart.
QuickstartOptions` by the tables below (:mod:`edgeconv.commands.config_options`).
"""

from __future__ import annotations

import os

import click

from edgeconv import options as _opts
from edgeconv.commands.common import click_csv_ints, click_input_size, set_threads
from edgeconv.commands.config_options import ConfigOptions, Field, cli_only
from edgeconv.errors import EdgeconvError
from edgeconv.quickstart import QuickstartOptions  # torch-free dataclass
from edgeconv.train.config import TrainConfig  # torch-free dataclass

_POSITIVE = click.FloatRange(0, min_open=True)

#: the train command's options in --help order: TrainConfig fields and CLI-only options
TRAIN_OPTIONS = ConfigOptions(TrainConfig, [
    Field("model", help="Registered model name."),
    Field("op", help="Operator: tvconv, depthwise or filtergen."),
    Field("input_size", default="96", callback=click_input_size, convert=list,
          help="Input size N or HxW (the data is rendered / resized to it)."),
    Field("embedding_dim", type=click.IntRange(1)),
    # op kwargs, folded into TrainConfig.op_kwargs by the op registry (OpSpec.cli_options)
    cli_only("--tvconv-inter-channels", type=click.IntRange(1), default=None,
             help="TVConv weight-generator width (default 64, the paper's)."),
    cli_only("--tvconv-inter-layers", type=click.IntRange(0), default=None,
             help="TVConv weight-generator extra layers (default 3)."),
    cli_only("--tvconv-affinity-channels", type=click.IntRange(1), default=None,
             help="TVConv affinity-map channels (default 4)."),
    cli_only("--filtergen-repository-size", type=click.IntRange(1), default=None,
             help="filtergen: base filters in each layer's repository (default k*k = 9)."),
    cli_only("--filtergen-feature-dim", type=click.IntRange(1), default=None,
             help="filtergen: length of the sample-specific feature vector (default 32)."),
    Field("recon_weight", type=click.FloatRange(0),
          help="filtergen: weight of the autoencoder's reconstruction (BCE) loss."),
    Field("data", help="'synthetic' (built-in faces) or an ImageFolder path (one folder per "
                       "identity)."),
    Field("identities", type=click.IntRange(2), help="Synthetic data: number of identities."),
    Field("images_per_identity", type=click.IntRange(1),
          help="Synthetic data: images per identity."),
    Field("difficulty", type=click.FloatRange(0, 1), help="Synthetic data: 0 easy .. 1 hard."),
    Field("data_seed", type=int,
          help="Synthetic data seed (validation pairs use unseen identities of it)."),
    Field("val", help="Per-epoch verification: synthetic, PAIRS.txt, FILE.bin or none."),
    Field("val_pairs", type=click.IntRange(20), help="Synthetic validation pairs."),
    Field("flip_test", help="Flip test in the per-epoch verification."),
    Field("epochs", type=click.IntRange(1)),
    Field("batch_size", type=click.IntRange(2),
          help="Global batch (split over torchrun processes); the paper used 512."),
    Field("lr", type=_POSITIVE),
    Field("momentum", type=click.FloatRange(0, 1)),
    Field("weight_decay", type=click.FloatRange(0)),
    Field("milestones", callback=click_csv_ints,
          help="LR x gamma at these epochs (default: [22,30,35] of 38, scaled to --epochs)."),
    Field("gamma", type=click.FloatRange(0, 1)),
    Field("schedule", type=click.Choice(["multistep", "cosine"]),
          help="multistep (the paper's, --milestones/--gamma) or cosine (per step; the "
               "quickstart's)."),
    Field("warmup_epochs", type=click.FloatRange(0),
          help="Linear LR warm-up from 0 over this many epochs (per step)."),
    Field("margin_warmup_epochs", type=click.FloatRange(0),
          help="Ramp the AM-Softmax margin from 0 to --am-margin over this many epochs."),
    Field("generator_lr_mult", type=_POSITIVE,
          help="TVConv affinity maps and weight generators train at this times the lr "
               "(the quickstart uses 0.1)."),
    Field("am_scale", type=_POSITIVE, help="AM-Softmax scale s."),
    Field("am_margin", type=click.FloatRange(0), help="AM-Softmax margin m."),
    Field("hflip", help="Random horizontal flip augmentation."),
    Field("workers", type=click.IntRange(0), help="DataLoader worker processes."),
    cli_only("--threads", default=None, type=int, callback=_opts.click_threads,
             help="torch CPU threads per process (default: torch's = cores; use 1 on a busy "
                  "machine: oversubscribed threads can make steps 10x slower)."),
    Field("seed", type=int, help="Initialisation, data order and flip seed."),
    Field("device", type=click.Choice(["auto", "cpu", "cuda"])),
    Field("output", flags=("-o", "--output"), type=click.Path(file_okay=False),
          help="Run folder."),
    cli_only("--resume", type=click.Path(), default=None,
             help="Continue the run of this last.ckpt (or run folder) exactly; the other "
                  "options are taken from it (except --workers/--threads/--progress)."),
    cli_only("--overwrite", is_flag=True, help="Replace an existing run in --output."),
    cli_only("--progress/--no-progress", default=True, show_default=True,
             help="Progress bars on stderr."),
], skip=("op_kwargs",            # from the --tvconv-* / --filtergen-* options
         "generator_weight_decay"))  # not offered: the rest's weight decay


@click.command()
@TRAIN_OPTIONS
def train(config, tvconv_inter_channels, tvconv_inter_layers, tvconv_affinity_channels,
          filtergen_repository_size, filtergen_feature_dim, threads, resume, overwrite,
          progress):
    """Train a face model (AM-Softmax, SGD, MultiStep: the published recipe, by default).

    Writes config.json, history.json, last.ckpt and best.ckpt (atomically, every epoch) to
    the run folder. Distributed: torchrun --nproc_per_node N -m edgeconv.cli train ...
    """
    if resume is None:  # before torch is imported (seconds): an unknown name fails at once
        from edgeconv.models.registry import check_model_name
        from edgeconv.ops import check_op

        check_model_name(config.model, task="face")
        check_op(config.op)
    set_threads(threads)
    from edgeconv.train.loop import train as run_train

    if resume is not None:
        ctx = click.get_current_context()

        def explicit(name):
            given = ctx.get_parameter_source(name)
            return given is not None and given.name != "DEFAULT"

        summary = run_train(resume=resume, progress=progress, overwrite=overwrite,
                            workers=config.workers if config.workers else None,
                            output=config.output if explicit("output") else None,
                            epochs=config.epochs if explicit("epochs") else None)
    else:
        config.op_kwargs = op_kwargs_from_options(config.op, {
            "--tvconv-inter-channels": tvconv_inter_channels,
            "--tvconv-inter-layers": tvconv_inter_layers,
            "--tvconv-affinity-channels": tvconv_affinity_channels,
            "--filtergen-repository-size": filtergen_repository_size,
            "--filtergen-feature-dim": filtergen_feature_dim})
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


def op_kwargs_from_options(op: str, given: dict) -> dict:
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


@click.command("eval")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--pairs", default="synthetic", show_default=True,
              help="synthetic (test split of the checkpoint's data settings), PAIRS.txt or "
                   "FILE.bin.")
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
@click.option("--threads", default=None, type=int, callback=_opts.click_threads,
              help="torch CPU threads.")
def eval_cmd(checkpoint, pairs, num_pairs, flip, target_far, batch_size, output_dir, plot,
             write_back, threads):
    """Face verification of CHECKPOINT: 10-fold accuracy, TAR@FAR, EER, ROC.

    Writes eval_<name>.json (+ _roc.png) and, unless --no-write, stores accuracy, thresholds
    (10-fold, FAR 1e-3 / 1e-4, target FAR) and EER in the checkpoint (atomic rewrite).
    """
    set_threads(threads)
    from edgeconv.train.evaluate import evaluate_checkpoint

    evaluate_checkpoint(checkpoint, pairs=pairs, flip=flip, target_far=target_far,
                        num_pairs=num_pairs, output_dir=output_dir, batch_size=batch_size,
                        write_back=write_back, plot=plot, echo=click.echo)


#: the quickstart command's options in --help order: QuickstartOptions fields (the recipe's
#: other settings are not offered: docs/quickstart_recipe.md) and --threads
QUICKSTART_OPTIONS = ConfigOptions(QuickstartOptions, [
    Field("output", flags=("-o", "--output"), type=click.Path(file_okay=False),
          help="Run folder: training runs, evaluations, exported files, bench.json, "
               "roc.png and summary.md/.json."),
    Field("model", help="Registered model trained twice, with TVConv and with depthwise "
                        "convolution (`edgeconv models` lists them)."),
    Field("input_size", type=click.IntRange(16, 1024), help="Square face-crop size in pixels."),
    Field("identities", type=click.IntRange(2), help="Synthetic training identities (classes)."),
    Field("images_per_identity", type=click.IntRange(1),
          help="Training images rendered per identity."),
    Field("difficulty", type=click.FloatRange(0, 1),
          help="Synthetic-face difficulty: pose, lighting and expression spread (0 easy)."),
    Field("epochs", type=click.IntRange(1),
          help="Training epochs of each op (cosine lr schedule with warm-ups)."),
    Field("tvconv_epochs", type=click.IntRange(1),
          help="TVConv's own epoch budget (default: --epochs + 6; it fits more slowly)."),
    Field("am_scale", type=_POSITIVE, help="AM-Softmax scale s."),
    Field("batch_size", type=click.IntRange(2), help="Training batch size."),
    Field("lr", type=_POSITIVE, help="Peak SGD learning rate (TVConv's generators train at "
                                     "0.1x)."),
    Field("test_pairs", type=click.IntRange(20),
          help="Balanced test pairs of unseen identities for 10-fold accuracy and EER."),
    Field("seed", type=int, help="Initialisation and data-order seed."),
    cli_only("--threads", default=None, type=int, callback=_opts.click_threads,
             help="torch CPU threads (default: all cores; use 1 if other jobs are running)."),
    Field("progress", help="Progress bars on a terminal (one line per epoch when redirected)."),
    Field("budget_min", flags=("--budget",), type=float, callback=_opts.click_minutes,
          help="Wall-clock budget of the whole run in minutes: the training speed is "
               "measured first and the epochs (then the images) are cut to fit; the "
               "summary says what was cut and what it cost. 0: the full recipe, however "
               "long it takes."),
], skip=("schedule", "warmup_epochs", "margin_warmup_epochs", "generator_lr_mult",
         "embedding_dim", "val_pairs", "inter_channels", "inter_layers", "flip_test",
         "export_formats", "bench_threads", "bench_batches", "bench_min_secs",
         "bench_memory_batch", "trial_users", "trial_enrol_images", "trial_attempts",
         "trial_impostors", "trial_claims"), arg="opts")


@click.command()
@QUICKSTART_OPTIONS
def quickstart(opts, threads):
    """Train TVConv and its depthwise twin on built-in synthetic faces, evaluate (accuracy,
    EER, calibrated TAR@FAR on unseen identities), export (ONNX + TFLite, TVConv folded),
    benchmark the files and try them as unlock verifiers; compare them in one table.

    Within --budget minutes (default 15) on the machine it runs on: the quickstart recipe
    (docs/quickstart_recipe.md) cut to fit where this machine trains more slowly;
    `edgeconv train` keeps the paper's recipe for real data.
    """
    from edgeconv.models.registry import check_model_name

    check_model_name(opts.model, task="face")  # before torch is imported
    set_threads(threads)
    from edgeconv.quickstart import run_quickstart

    run_quickstart(opts, echo=click.echo)


COMMANDS = (train, eval_cmd, quickstart)
