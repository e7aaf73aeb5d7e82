"""``edgeconv gan-train``, ``gan-export`` (torch) and the torch-free generator-impostor
``unlock-trial``: the LIS face generator (issue #27)."""

from __future__ import annotations

import json

import click

from edgeconv import options as _opts
from edgeconv.commands.common import set_threads


@click.command("gan-train")
@click.option("-o", "--output", default="runs/gan", show_default=True,
              type=click.Path(file_okay=False), help="Run folder (config, history, last.ckpt, "
                                                     "grid_eNNN.png).")
@click.option("--data", default="synthetic", show_default=True,
              help="'synthetic' (built-in faces, rendered at --size) or an ImageFolder path.")
@click.option("--size", default=80, show_default=True, type=click.Choice(["64", "80"]),
              help="Image size (the paper's: 80).")
@click.option("--lis-modules", default=1, show_default=True, type=click.IntRange(0, 3),
              help="LIS modules in front of G (0: a plain GAN).")
@click.option("--width", default=1.0, show_default=True, type=click.FloatRange(0, 4, min_open=True),
              help="Channel multiplier of G, D and R (1: the paper's 512..64).")
@click.option("--lam", default=0.9, show_default=True, type=click.FloatRange(0, 1),
              help="Similarity constraint: module i's MSE(z_i, z) is weighted lam^(i+1).")
@click.option("--identities", default=500, show_default=True, type=click.IntRange(1),
              help="Synthetic data: identities.")
@click.option("--images-per-identity", default=4, show_default=True, type=click.IntRange(1),
              help="Synthetic data: images per identity.")
@click.option("--difficulty", default=0.5, show_default=True, type=click.FloatRange(0, 1),
              help="Synthetic data: 0 easy .. 1 hard.")
@click.option("--epochs", default=10, show_default=True, type=click.IntRange(1),
              help="Epochs of G and D.")
@click.option("--reverser-epochs", default=0, show_default=True, type=click.IntRange(0),
              help="R-separate: epochs of the reverser R after G and D (0: none).")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1))
@click.option("--lr", default=2e-4, show_default=True, type=click.FloatRange(0, min_open=True),
              help="RMSprop learning rate (alpha 0.9, eps 1e-6).")
@click.option("--seed", default=0, show_default=True, type=int, help="Initialisation, data order.")
@click.option("--threads", default=None, type=int, callback=_opts.click_threads,
              help="torch CPU threads (use 1 on a busy machine).")
@click.option("--resume", type=click.Path(), default=None,
              help="Continue this run's last.ckpt (or its folder) exactly.")
@click.option("--overwrite", is_flag=True, help="Replace an existing run in --output.")
def gan_train_cmd(output, data, size, lis_modules, width, lam, identities, images_per_identity,
                  difficulty, epochs, reverser_epochs, batch_size, lr, seed, threads, resume,
                  overwrite):
    """Train a face GAN with learned input spaces (LIS modules; optionally R-separate)."""
    set_threads(threads)
    from edgeconv.gan.train import GanTrainConfig, gan_train

    cfg = GanTrainConfig(gan={"size": int(size), "lis_modules": lis_modules, "width": width,
                              "lam": lam},
                         data=data, identities=identities,
                         images_per_identity=images_per_identity, difficulty=difficulty,
                         epochs=epochs, reverser_epochs=reverser_epochs,
                         batch_size=batch_size, lr=lr, seed=seed, output=output)
    s = gan_train(None if resume else cfg, resume=resume, log=click.echo, overwrite=overwrite)
    click.echo(f"done: {s['epochs_done']} epoch(s) -> {s['last']}")


@click.command("gan-export")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--format", "formats", default="onnx,tflite", show_default=True,
              help="Format(s), comma separated: onnx, tflite.")
@click.option("-o", "--output-dir", default=".", show_default=True,
              type=click.Path(file_okay=False), help="Folder for the files and sidecars.")
@click.option("--opset", type=int, default=None, help="ONNX opset (default 18; onnx only).")
@click.option("--batch", default="dynamic", show_default=True,
              help="'dynamic' or a fixed batch N (TFLite files are always fixed: N, else 1).")
@click.option("--reverse", is_flag=True,
              help="Export R-separate's G(R(G(z))) (needs a GAN trained with --reverser-epochs).")
@click.option("--simplify", default=None, help="ONNX simplifier: auto, onnxsim, onnxslim, none.")
@click.option("--name", default=None, help="File stem (default: <checkpoint>_generator).")
@click.option("--force", is_flag=True, help="Replace files another checkpoint exported there.")
@click.option("--json", "as_json", is_flag=True, help="Print the export report as JSON.")
def gan_export_cmd(checkpoint, formats, output_dir, opset, batch, reverse, simplify, name, force,
                   as_json):
    """Export the generator of CHECKPOINT (z -> image, LIS modules included) to verified ONNX /
    TFLite files with metadata kind "generator"; nothing is written unless every file passes
    its parity check."""
    from edgeconv.export.generator import export_generator

    echo = (lambda *a, **k: None) if as_json else click.echo
    report = export_generator(checkpoint, formats=formats, output_dir=output_dir, opset=opset,
                              batch=batch, reverse=reverse, simplify=simplify, name=name,
                              echo=echo, force=force)
    if as_json:
        click.echo(json.dumps(report, default=str))


@click.command("unlock-trial")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--impostors", "generator", required=True, type=click.Path(dir_okay=False),
              help="A generator file (edgeconv gan-export): impostor faces are drawn from it.")
@click.option("--count", default=200, show_default=True, type=click.IntRange(1, 100000),
              help="Generated faces; each claims every enrolled user.")
@click.option("--users", default=10, show_default=True, type=click.IntRange(1, 1000),
              help="Synthetic users enrolled.")
@click.option("--enrol-images", default=3, show_default=True, type=click.IntRange(1, 100))
@click.option("--genuine-images", default=3, show_default=True, type=click.IntRange(1, 100))
@click.option("--far", default=None,
              help="Use the threshold calibrated at this FAR (default: the model's default).")
@click.option("--difficulty", default=0.5, show_default=True, type=click.FloatRange(0, 1),
              help="Synthetic users' difficulty.")
@click.option("--synthetic/--no-synthetic", default=True, show_default=True,
              help="Also run the trial with as many synthetic impostors, for comparison.")
@click.option("--seed", default=0, show_default=True, type=int, help="Noise and user seed.")
@click.option("--threads", default=1, show_default=True, type=int, callback=_opts.click_threads)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def unlock_trial_cmd(model, generator, count, users, enrol_images, genuine_images, far,
                     difficulty, synthetic, seed, threads, as_json):
    """Unlock trial of face MODEL with impostors from a generator file: false-accept rate with
    95% confidence intervals (torch-free)."""
    from edgeconv.runtime.gen_trial import format_report, generator_trial

    r = generator_trial(model, generator, count=count, users=users, enrol_images=enrol_images,
                        genuine_images=genuine_images, far=far, difficulty=difficulty,
                        seed=seed, threads=threads or 1, synthetic=synthetic)
    if as_json:
        click.echo(json.dumps(r, default=str))
    else:
        for line in format_report(r):
            click.echo(line)


COMMANDS = (gan_train_cmd, gan_export_cmd, unlock_trial_cmd)
