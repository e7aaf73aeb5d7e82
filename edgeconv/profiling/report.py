"""`edgeconv profile`: MACs / params / TVConv map size per model and op, as a table or JSON lines."""

from __future__ import annotations

import json

import click

from edgeconv.config import DEFAULT_INPUT_SIZE

# The TVConv paper's Fig. 5 table (input 96x96): MACs (M), params of the depthwise model (M).
PAPER_TABLE = {
    "mbv2_x0_1": (22.47, 0.325), "mbv2_x0_2": (28.00, 0.404), "mbv2_x0_3": (44.20, 0.527),
    "mbv2_x0_5": (74.03, 0.828), "mbv2_x1_0": (225.72, 2.241), "sfv2_x0_5": (31.95, 0.870),
    "sfv2_x1_0": (110.53, 1.781), "sfv2_x1_5": (222.99, 3.006),
}


def profile_model(name: str, op: str, input_size=DEFAULT_INPUT_SIZE, generator: bool = False,
                  layers: bool = False, op_kwargs: dict | None = None,
                  embedding_dim: int | None = None) -> dict:
    """One profile record (the JSON object printed by ``edgeconv profile --json``)."""
    import torch

    from edgeconv.ops.folding import fold_model
    from edgeconv.models import create_model
    from edgeconv.ops import op_spec
    from edgeconv.ops.tvconv import FoldedTVConv
    from edgeconv.profiling.counts import param_counts
    from edgeconv.profiling.macs import count_macs, per_layer

    torch.manual_seed(0)
    extra = {"embedding_dim": int(embedding_dim)} if embedding_dim else {}
    model = create_model(name, op=op, input_size=input_size, op_kwargs=op_kwargs or None,
                         **extra).eval()
    folded = fold_model(model)
    macs, analysis = count_macs(folded, input_size)
    record = {
        "model": name, "op": op, "input_size": list(input_size), "op_kwargs": op_kwargs or {},
        "macs": macs, **param_counts(model),
        "tvconv_map_bytes": sum(m.map_bytes for m in folded.modules() if isinstance(m, FoldedTVConv)),
    }
    record = _with_params_alias(record)
    if op_spec(op).generator_macs:
        macs_gen, gen_analysis = count_macs(model, input_size)
        record["generator_macs"] = macs_gen - macs
        record["macs_with_generator"] = macs_gen
        if generator:
            record["macs"] = macs_gen
            analysis = gen_analysis
    if layers:
        record["layers"] = per_layer(analysis, folded if not generator else model)
    paper = PAPER_TABLE.get(name)
    if paper and tuple(input_size) == (96, 96):
        record["paper_macs_m"], record["paper_params_m"] = paper
    return record


def _baseline(op: str) -> bool:
    """The paper's params column is that of the baseline (depthwise) models."""
    from edgeconv.ops import op_spec

    return op_spec(op).baseline


def _with_params_alias(record: dict) -> dict:
    """``params`` (documented, the training-form count) placed right before ``params_train``."""
    out = {}
    for k, v in record.items():
        if k == "params_train":
            out["params"] = v
        out[k] = v
    return out


def _table(records: list[dict]) -> str:
    head = ["model", "op", "input", "MACs (M)", "paper", "params train (M)", "paper",
            "params inference (M)", "map (MB)", "generator (GMACs)"]
    rows = []
    for r in records:
        rows.append([
            r["model"], r["op"], "x".join(str(v) for v in r["input_size"]),
            f"{r['macs'] / 1e6:.2f}", f"{r['paper_macs_m']:.2f}" if "paper_macs_m" in r else "-",
            f"{r['params_train'] / 1e6:.3f}",
            f"{r['paper_params_m']:.3f}" if "paper_params_m" in r and _baseline(r["op"]) else "-",
            f"{r['params_inference'] / 1e6:.3f}",
            f"{r['tvconv_map_bytes'] / 1e6:.1f}" if r["tvconv_map_bytes"] else "-",
            f"{r['generator_macs'] / 1e9:.2f}" if "generator_macs" in r else "-",
        ])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    fmt = lambda row: "  ".join(str(x).rjust(w) if i > 2 else str(x).ljust(w)  # noqa: E731
                                 for i, (x, w) in enumerate(zip(row, widths)))
    lines = [fmt(head), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows]
    return "\n".join(lines)


def run_profile(models: list[str], ops: list[str], input_size=None, generator: bool = False,
                layers: bool = False, as_json: bool = False) -> list[dict]:
    from edgeconv.models import list_models
    from edgeconv.models.registry import create_model  # noqa: F401  (validates names below)
    from edgeconv.ops import check_op
    from edgeconv.errors import EdgeconvError

    known = list_models()
    models = models or known
    for name in models:
        if name not in known:
            raise EdgeconvError(f"unknown model '{name}' (choose from: {', '.join(known)})")
    for op in ops:
        check_op(op)
    input_size = tuple(input_size or DEFAULT_INPUT_SIZE)
    jobs = [(m, o) for m in models for o in ops]
    from edgeconv.progress import Progress

    records = []
    bar = Progress(len(jobs), "profile", unit="model", enabled=len(jobs) >= 2)
    for name, op in jobs:
        records.append(profile_model(name, op, input_size, generator=generator, layers=layers))
        bar.update(1)
    bar.close()
    if as_json:
        for r in records:
            click.echo(json.dumps(r))
    else:
        click.echo(_table(records))
        if layers:
            for r in records:
                click.echo(f"\n{r['model']} ({r['op']}) per layer:")
                for lname, v in r["layers"].items():
                    click.echo(f"  {lname:<14} {v / 1e6:10.3f} M")
        click.echo("\nMACs: convs and Linear (bias counted), BN/LN 2 and ReLU 1 per element, "
                   "pooling 1 per input element, folded TVConv k*k per output (the paper's "
                   "convention). 'generator' = the weight-generating block, run once at fold "
                   "time; 'map' = the cached per-pixel weights (fp32).")
    return records
