"""``edgeconv seg-train``, ``seg-eval`` (torch) and the torch-free device command ``segment``:
optic disc / cup segmentation (issue 25); implementations are imported inside the commands."""

from __future__ import annotations

import json

import click

from edgeconv.commands.common import set_threads
from edgeconv.errors import EdgeconvError


def _op_kwargs(pairs) -> dict:
    out = {}
    for item in pairs or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


@click.command("seg-train")
@click.option("--data", default="synthetic", show_default=True,
              help="'synthetic' (the four rendered centres) or a folder of domain folders, "
                   "each with image/ + mask/ (REFUGE masks: 0 cup, 128 disc rim, 255 "
                   "background).")
@click.option("--test-domain", default=0, show_default=True, type=click.IntRange(0),
              help="The held-out (unseen) domain; training uses the others.")
@click.option("--aspp", default="plain", show_default=True,
              help="plain, ir_depthwise, ir_tvconv (ir_<op>: any registered op).")
@click.option("--width", default=1.0, show_default=True, type=click.FloatRange(0, 2, min_open=True),
              help="Channel width multiplier (small for CPU runs).")
@click.option("--op-kwarg", "op_kwarg", multiple=True,
              help="KEY=VALUE for the ASPP op, e.g. inter_channels=16 (repeatable).")
@click.option("--size", default=128, show_default=True, type=click.IntRange(32),
              help="Square input side (divisible by 16; the paper trains at 256).")
@click.option("--images-per-domain", default=60, show_default=True, type=click.IntRange(4),
              help="Synthetic images per centre.")
@click.option("--data-seed", default=0, show_default=True, type=int)
@click.option("--epochs", default=40, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", default=12, show_default=True, type=click.IntRange(3),
              help="Per step, drawn equally from the source domains.")
@click.option("--lr", default=1e-3, show_default=True, type=click.FloatRange(0, min_open=True))
@click.option("--holdout", default=0.15, show_default=True,
              type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Share of each SOURCE domain held out for checkpoint selection.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--threads", default=None, type=click.IntRange(1), help="torch CPU threads.")
@click.option("-o", "--output", default="runs/seg", show_default=True,
              type=click.Path(file_okay=False), help="Run folder.")
@click.option("--overwrite", is_flag=True, help="Replace an existing run in --output.")
def seg_train_cmd(data, test_domain, aspp, width, op_kwarg, size, images_per_domain, data_seed,
                  epochs, batch_size, lr, holdout, seed, threads, output, overwrite):
    """Leave-one-domain-out optic disc / cup segmentation training (DeepLabV3+ MobileNetV2).

    Trains on every domain but --test-domain, selects the checkpoint on held-out images of
    the SOURCE domains, then evaluates best.ckpt on the unseen domain (eval.json, overlays/).
    """
    from edgeconv.models.registry import check_model_name

    check_model_name("deeplabv3p_mbv2", task="segmentation")
    if size % 16:
        raise EdgeconvError(f"--size must be divisible by 16, got {size}")
    set_threads(threads)
    from edgeconv.segmentation.train import SegTrainConfig, seg_train

    cfg = SegTrainConfig(data=data, n_per_domain=images_per_domain, data_seed=data_seed,
                         size=size, test_domain=test_domain, aspp=aspp, width=width,
                         op_kwargs=_op_kwargs(op_kwarg), epochs=epochs, batch_size=batch_size,
                         lr=lr, holdout=holdout, seed=seed, output=output)
    s = seg_train(cfg, log=click.echo, overwrite=overwrite)
    click.echo(f"done: best epoch {s['best_epoch']} -> {output}/best.ckpt; "
               f"{output}/eval.json")


@click.command("seg-eval")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--data", default=None,
              help="Evaluate on this folder of domain folders instead of the training data.")
@click.option("--test-domain", default=None, type=click.IntRange(0),
              help="Domain to evaluate (default: the checkpoint's held-out domain).")
@click.option("-o", "--output-dir", default=None, type=click.Path(file_okay=False),
              help="Write eval.json and overlays/ here.")
@click.option("--overlays", default=6, show_default=True, type=click.IntRange(0))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def seg_eval_cmd(checkpoint, data, test_domain, output_dir, overlays, as_json):
    """DSC / HD95 / ASD (pixels) of a seg-train checkpoint on a held-out domain, after
    thresholding at 0.5, keeping the largest component and filling holes (an empty
    prediction: DSC 0, HD95 = the image diagonal)."""
    from edgeconv.segmentation.train import seg_eval

    domains = None
    if data is not None:
        from edgeconv.segmentation.data import folder_domains
        from edgeconv.train.checkpoint import load_checkpoint

        size = load_checkpoint(checkpoint)["model_config"].get("input_size") or [256, 256]
        domains = folder_domains(data, tuple(size))
    s = seg_eval(checkpoint, domains=domains, test_domain=test_domain, output_dir=output_dir,
                 overlays=overlays, log=(lambda *a: None) if as_json else click.echo)
    if as_json:
        click.echo(json.dumps(s))


@click.command("segment")
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("images", nargs=-1, required=True)
@click.option("-o", "--output-dir", required=True, type=click.Path(file_okay=False),
              help="Folder for <stem>_mask.png (0 cup, 128 disc rim, 255 background) and "
                   "<stem>_overlay.png.")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1))
@click.option("--backend", type=click.Choice(["onnxruntime", "tflite"]), default=None,
              help="Default: by file type.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per image.")
def segment_cmd(model, images, output_dir, threads, backend, as_json):
    """Segment optic disc and cup in fundus IMAGES with an exported MODEL (.onnx / .tflite;
    torch-free). Images must have the model's size (or its aspect ratio)."""
    from edgeconv.segmentation.runtime import segment_files

    rows = segment_files(model, list(images), output_dir, threads=threads, backend=backend,
                         echo=(lambda *a: None) if as_json else click.echo)
    if as_json:
        for r in rows:
            click.echo(json.dumps(r))


COMMANDS = (seg_train_cmd, seg_eval_cmd, segment_cmd)
