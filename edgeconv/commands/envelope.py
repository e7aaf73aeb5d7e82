"""``edgeconv envelope``: accuracy vs MACs / max FPS / peak memory over models x ops x widths x
seeds (the TVConv paper's Figs. 5, 7-9 on your data and your machine). See
:mod:`edgeconv.envelope`.

The options are generated from :class:`~edgeconv.envelope.EnvelopeConfig` (torch-free) by the
table below (:mod:`edgeconv.commands.config_options`)."""

from __future__ import annotations

import click

from edgeconv.commands.config_options import (
    ConfigOptions,
    Field,
    csv_callback,
    csv_text,
)
from edgeconv.envelope import EnvelopeConfig  # torch-free dataclass

_DEFAULTS = EnvelopeConfig()


def _csv(name: str, cast=str, **facts) -> Field:
    """A tuple field as a comma-separated option (its default written the same way)."""
    return Field(name, default=csv_text(getattr(_DEFAULTS, name)), callback=csv_callback(cast),
                 **facts)


#: the envelope command's options in --help order (bench_batches and bench_min_secs: the
#: quickstart's, not offered)
ENVELOPE_OPTIONS = ConfigOptions(EnvelopeConfig, [
    Field("output", flags=("-o", "--output"), type=click.Path(file_okay=False),
          help="Output folder (rerun to resume)."),
    _csv("models",
         help="Model stems, comma-separated: mbv2, sfv2, mixer (MLP-Mixer: no op)."),
    _csv("ops", help="Ops, comma-separated (edgeconv models lists them)."),
    _csv("widths", float, help="Width multipliers."),
    _csv("seeds", int, help="Seeds, comma-separated."),
    Field("epochs", type=click.IntRange(1), help="Epochs per cell (the quickstart recipe's)."),
    Field("cell_minutes", type=click.FloatRange(0),
          help="Fit each cell's epochs (at most --epochs) into this many minutes, measured."),
    Field("data", help="'synthetic' (built-in faces) or an ImageFolder path."),
    Field("pairs", help="Test pairs: 'synthetic' or a pair list / .bin for an ImageFolder."),
    Field("input_size", type=click.IntRange(8)),
    Field("identities", type=click.IntRange(2)),
    Field("images_per_identity", type=click.IntRange(2)),
    Field("difficulty", type=click.FloatRange(0, 1)),
    Field("embedding_dim", type=click.IntRange(1)),
    Field("test_pairs", type=click.IntRange(10)),
    Field("val_pairs", type=click.IntRange(10)),
    Field("batch_size", type=click.IntRange(2)),
    Field("formats", help="Export formats to bench ('' skips export and bench)."),
    _csv("bench_threads", int),
    Field("memory_batch", type=click.IntRange(0)),
    Field("jobs", type=click.IntRange(1),
          help="Cells at a time (processes with 1 torch thread each)."),
    Field("device", type=click.Choice(["auto", "cpu", "cuda"]), help="Training device."),
    Field("rebench",
          help="Export and bench the finished cells of OUTPUT with this recipe again, one at "
               "a time, without training (after a kernel change, or benches run beside "
               "training)."),
], skip=("bench_batches", "bench_min_secs"), arg="cfg")


@click.command("envelope")
@ENVELOPE_OPTIONS
def envelope(cfg):
    """Train, evaluate, export and bench every models x ops x widths x seeds cell; plot accuracy
    against MACs, max FPS and peak memory (one curve per op over widths) with a table.

    Each finished cell is kept in OUTPUT/cells; rerunning skips them. Works under torchrun
    (each rank takes every world-size-th cell; rank 0 writes the report).
    """
    from edgeconv.envelope import run_envelope

    run_envelope(cfg, echo=lambda m: click.echo(m))


COMMANDS = (envelope,)
