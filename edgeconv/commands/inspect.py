"""``edgeconv profile``, ``init``, ``info`` and ``models``: look at models and checkpoints."""

from __future__ import annotations

import click

from edgeconv.commands.common import click_input_size


@click.command()
@click.argument("models", nargs=-1)
@click.option("--op", "ops", default="depthwise,tvconv", show_default=True,
              help="Operator(s), comma separated: depthwise, tvconv, filtergen.")
@click.option("--input-size", callback=click_input_size, default=None,
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


@click.command()
@click.argument("model")
@click.option("--op", default="tvconv", show_default=True,
              help="Operator: depthwise, tvconv or filtergen.")
@click.option("--input-size", callback=click_input_size, default=None,
              help="Input size N or HxW.")
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


@click.command()
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


@click.command("models")
def list_models_cmd():
    """List registered model names and operators."""
    from edgeconv.models.registry import model_names  # torch-free: no model is built
    from edgeconv.ops import list_ops

    click.echo("models: " + " ".join(model_names()))
    click.echo("segmentation models: " + " ".join(model_names("segmentation")))
    click.echo("ops:    " + " ".join(list_ops()))


COMMANDS = (profile, init, info, list_models_cmd)
