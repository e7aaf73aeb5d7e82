"""``edgeconv envelope``: accuracy vs MACs / max FPS / peak memory over models x ops x widths x seeds
(the TVConv paper's Figs. 5, 7-9 on your data and your machine). See :mod:`edgeconv.envelope`."""

from __future__ import annotations

import click


def _csv(value: str) -> tuple:
    return tuple(v.strip() for v in value.split(",") if v.strip())


@click.command("envelope")
@click.option("-o", "--output", default="runs/envelope", show_default=True,
              type=click.Path(file_okay=False), help="Output folder (rerun to resume).")
@click.option("--models", default="mbv2", show_default=True,
              help="Model stems, comma-separated: mbv2, sfv2, mixer (MLP-Mixer: no op).")
@click.option("--ops", default="depthwise,tvconv", show_default=True,
              help="Ops, comma-separated (edgeconv models lists them).")
@click.option("--widths", default="0.1,0.5", show_default=True, help="Width multipliers.")
@click.option("--seeds", default="0", show_default=True, help="Seeds, comma-separated.")
@click.option("--epochs", default=18, show_default=True, type=click.IntRange(1),
              help="Epochs per cell (the quickstart recipe's).")
@click.option("--cell-minutes", default=0.0, show_default=True, type=click.FloatRange(0),
              help="Fit each cell's epochs (at most --epochs) into this many minutes, measured.")
@click.option("--data", default="synthetic", show_default=True,
              help="'synthetic' (built-in faces) or an ImageFolder path.")
@click.option("--pairs", default="synthetic", show_default=True,
              help="Test pairs: 'synthetic' or a pair list / .bin for an ImageFolder.")
@click.option("--input-size", default=32, show_default=True, type=click.IntRange(8))
@click.option("--identities", default=1000, show_default=True, type=click.IntRange(2))
@click.option("--images-per-identity", default=20, show_default=True, type=click.IntRange(2))
@click.option("--difficulty", default=0.5, show_default=True, type=click.FloatRange(0, 1))
@click.option("--embedding-dim", default=512, show_default=True, type=click.IntRange(1))
@click.option("--test-pairs", default=2000, show_default=True, type=click.IntRange(10))
@click.option("--val-pairs", default=600, show_default=True, type=click.IntRange(10))
@click.option("--batch-size", default=128, show_default=True, type=click.IntRange(2))
@click.option("--formats", default="onnx,tflite", show_default=True,
              help="Export formats to bench ('' skips export and bench).")
@click.option("--bench-threads", default="1", show_default=True)
@click.option("--memory-batch", default=8, show_default=True, type=click.IntRange(0))
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(1),
              help="Cells at a time (processes with 1 torch thread each).")
@click.option("--device", default="auto", show_default=True,
              type=click.Choice(["auto", "cpu", "cuda"]), help="Training device.")
def envelope(output, models, ops, widths, seeds, epochs, cell_minutes, data, pairs, input_size,
             identities, images_per_identity, difficulty, embedding_dim, test_pairs, val_pairs,
             batch_size, formats,
             bench_threads, memory_batch, jobs, device):
    """Train, evaluate, export and bench every models x ops x widths x seeds cell; plot accuracy
    against MACs, max FPS and peak memory (one curve per op over widths) with a table.

    Each finished cell is kept in OUTPUT/cells; rerunning skips them. Works under torchrun
    (each rank takes every world-size-th cell; rank 0 writes the report).
    """
    from edgeconv.envelope import EnvelopeConfig, run_envelope

    try:
        w = tuple(float(x) for x in _csv(widths))
        s = tuple(int(x) for x in _csv(seeds))
        t = tuple(int(x) for x in _csv(bench_threads))
    except ValueError as exc:
        raise click.BadParameter(f"expected comma-separated numbers ({exc})") from None
    cfg = EnvelopeConfig(output=output, models=_csv(models), ops=_csv(ops), widths=w, seeds=s,
                         epochs=epochs, cell_minutes=cell_minutes, data=data, pairs=pairs,
                         input_size=input_size, identities=identities,
                         images_per_identity=images_per_identity, difficulty=difficulty,
                         embedding_dim=embedding_dim, test_pairs=test_pairs, val_pairs=val_pairs,
                         batch_size=batch_size, formats=formats,
                         bench_threads=t, memory_batch=memory_batch, jobs=jobs, device=device)
    run_envelope(cfg, echo=lambda m: click.echo(m))
