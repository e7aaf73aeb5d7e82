"""``edgeconv translate-train`` and ``translate``: UNIT RGB <-> NIR translation (torch,
imported inside the commands)."""

from __future__ import annotations

import click


@click.command("translate-train")
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


@click.command("translate")
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


COMMANDS = (translate_train_cmd, translate_cmd)
