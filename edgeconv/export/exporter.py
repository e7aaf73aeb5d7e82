"""``edgeconv export``: checkpoint -> folded, verified ONNX / TFLite files with metadata.

Order of work (nothing is written until every requested file has passed the parity gate):

1. validate the options against the format table (``edgeconv.export.formats``);
2. load the checkpoint safely (``weights_only``), model in eval mode;
3. fold every TVConv (``B(A)`` computed once) and every foldable BatchNorm, choose the graph
   formulation of the per-pixel product (or the explicit low-rank approximation);
4. convert each format in memory, run it in its runtime (ONNX Runtime / LiteRT interpreter)
   on random inputs and synthetic faces and compare with the eager (training-form) model;
5. only then write each file and its sidecar ``<file>.json`` atomically (temp + rename).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from edgeconv.errors import EdgeconvError
from edgeconv.export import formats as fmt
from edgeconv.export.job import ExportOptions, Subject  # noqa: F401 (ExportOptions: stage)
from edgeconv.export.pipeline import make_options, run_export
from edgeconv.metadata import file_sha256, header

MEAN = [0.5, 0.5, 0.5]
STD = [0.5, 0.5, 0.5]


def _json_safe(obj):
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def _model_width(model, cfg) -> float | None:
    width = getattr(model, "width", None)
    return float(width) if width is not None else None


def base_metadata(model, ckpt: dict, input_size, macs, params_train, params_inference) -> dict:
    cfg = ckpt["model_config"]
    metrics = ckpt.get("metrics") or {}
    meta = {
        **header(),
        "model": cfg["name"], "op": cfg["op"], "width": _model_width(model, cfg),
        "input_size": [int(input_size[0]), int(input_size[1])],
        "layout": "NCHW", "color": "RGB",
        "scale": 1.0 / 255.0, "mean": MEAN, "std": STD,
        "embedding_dim": int(cfg.get("embedding_dim", 512)),
        "macs": int(macs) if macs is not None else None,
        "params_train": int(params_train),          # edgeconv.profiling.counts
        "params_inference": int(params_inference),
        "input_name": "input", "output_name": "embedding",
        "op_kwargs": cfg.get("op_kwargs") or {},
        "checkpoint": {"edgeconv_version": ckpt.get("edgeconv_version"),
                       "format_version": ckpt.get("format_version")},
    }
    ver = metrics.get("verification") if isinstance(metrics, dict) else None
    if isinstance(ver, dict):
        meta["verification"] = _json_safe(ver)
    for key in ("threshold", "accuracy"):
        if isinstance(metrics, dict) and key in metrics and "verification" not in meta:
            meta.setdefault("verification", {})[key] = _json_safe(metrics[key])
    if isinstance(metrics, dict) and "trained" in metrics:
        meta["trained"] = bool(metrics["trained"])
    task_meta = getattr(model, "task_metadata", None)
    if callable(task_meta):  # another task (segmentation) describes its own output
        meta.pop("embedding_dim", None)
        meta.pop("verification", None)
        meta.update(_json_safe(task_meta()))
    return meta


def _prepare(checkpoint, input_size, lowrank):
    """Load, check sizes, fold; returns (reference model, exported model, ckpt, info)."""
    from edgeconv.config import parse_input_size
    from edgeconv.ops.folding import fold_model
    from edgeconv.ops.tvconv import FoldedTVConv, TVConv
    from edgeconv.train.checkpoint import load_model

    model, ckpt = load_model(checkpoint)
    cfg = ckpt["model_config"]
    built = tuple(parse_input_size(cfg.get("input_size") or 96))
    size = tuple(parse_input_size(input_size)) if input_size is not None else built
    size_bound = bool(getattr(model, "size_bound", False)) or any(
        isinstance(m, TVConv) for m in model.modules())
    if size != built and size_bound:
        raise EdgeconvError(
            f"{checkpoint}: {cfg['name']} ({cfg['op']}) was built for {built[0]}x{built[1]} inputs "
            f"and its per-pixel weights exist only at that size; --input-size {size[0]}x{size[1]} "
            f"would need a model built (and trained) at {size[0]}x{size[1]}")
    folded = fold_model(model, fuse_bn=True)
    info = {"input_size": size}
    from edgeconv.profiling.counts import param_counts

    info.update(param_counts(model, folded))
    try:
        from edgeconv.profiling.macs import count_macs

        # paper convention: folded TVConv, BatchNorm still counted (2 per element)
        info["macs"], _ = count_macs(fold_model(model, fuse_bn=False), size)
    except EdgeconvError:  # fvcore missing: MACs unknown, still exportable
        info["macs"] = None
    info["tvconv_layers"] = sum(isinstance(m, FoldedTVConv) for m in folded.modules())
    info["lowrank"] = None
    if lowrank is not None:
        if not info["tvconv_layers"]:
            raise EdgeconvError(f"--lowrank applies to TVConv models; {cfg['name']} uses "
                                f"op '{cfg['op']}'")
        from edgeconv.export.lowrank import lowrank_model

        exact = folded
        import copy

        folded, layers = lowrank_model(copy.deepcopy(exact), lowrank)
        info["lowrank"] = {"requested": lowrank, "layers": layers,
                           "max_rank": max(layer["rank"] for layer in layers),
                           "mean_rank": float(np.mean([layer["rank"] for layer in layers]))}
        info["exact_model"] = exact
    return model, folded.eval(), ckpt, info


def _eager(model, x: np.ndarray, exact: bool = False) -> np.ndarray:
    """The eager model's output; ``exact=True`` runs a float64 copy (the parity reference).

    A float64 reference measures each exported file against the model's true function rather
    than against another float32 evaluation order: on trained TVConv models the unfused float32
    eager graph can itself be ~1e-3 off (its BatchNorms amplify rounding), while the folded,
    fused export is ~5e-5 off.
    """
    import copy

    import torch

    with torch.no_grad():
        if exact:
            ref = copy.deepcopy(model).double()
            return ref(torch.from_numpy(x).double()).numpy()
        return model(torch.from_numpy(x)).numpy()


def export_checkpoint(checkpoint, formats=None, output_dir=".", opset=None, batch="dynamic",
                      input_size=None, fp16: bool = False, formulation: str | None = None,
                      lowrank=None, simplify: str | None = None, name: str | None = None,
                      seed: int = 0, echo=print, weight_dtype: str | None = None,
                      force: bool = False) -> dict:
    """Export ``checkpoint``; returns a report dict. Raises EdgeconvError (nothing written).

    Files of another model (or of unknown origin) already at an output path are never
    replaced unless ``force``; re-exporting the same checkpoint replaces its own files.
    """
    opts = make_options(formats, output_dir, batch=batch, opset=opset, simplify=simplify,
                        fp16=fp16, weight_dtype=weight_dtype, formulation=formulation,
                        force=force, echo=echo)
    lowrank = fmt.parse_lowrank(lowrank)
    if formulation is not None:
        from edgeconv.export.formulations import check_formulation_for

        for f in opts.formats:  # a low-rank graph has no per-pixel formulation to pin the batch
            check_formulation_for(formulation, f, opts.opset_for(f),
                                  dynamic_batch=opts.batch is None and lowrank is None)
    if formulation == fmt.FUSED and lowrank is not None:
        raise EdgeconvError("--formulation fused exports the exact folded weights; it cannot "
                            "be combined with --lowrank")
    t0 = time.perf_counter()
    model, exported, ckpt, info = _prepare(checkpoint, input_size, lowrank)
    _check_resized_batch(ckpt, opts)
    batch_n = opts.batch
    if weight_dtype is not None and (not info["tvconv_layers"] or lowrank is not None):
        cfg = ckpt["model_config"]
        raise EdgeconvError("--weight-dtype is the storage of fused TVConv layers, and "
                            + (f"{cfg['name']} (op '{cfg['op']}') has none" if lowrank is None
                               else "a --lowrank export has none"))
    ckpt_sha = file_sha256(checkpoint)
    size = info["input_size"]
    inputs, face_source = parity_inputs_for(size, batch_n, seed)
    refs = {k: _eager(model, v, exact=True) for k, v in inputs.items()}
    from edgeconv.export import parity as par

    # How far float32 itself is from the exact (float64) function for this model: a trained
    # model's BatchNorms can amplify float32 rounding past the fixed 1e-4, in eager torch as
    # much as in any runtime. The gate allows twice that floor, never less than its limit.
    floor = par.float32_floor(refs, {k: _eager(exported, v) for k, v in inputs.items()}) \
        if lowrank is None else 0.0
    report = {"checkpoint": str(checkpoint), "model": ckpt["model_config"]["name"],
              "op": ckpt["model_config"]["op"], "input_size": list(size),
              "batch": batch_n or "dynamic", "formulation": {},
              "faces": face_source, "files": [], "parity": {}}
    meta0 = base_metadata(model, ckpt, size, info["macs"], info["params_train"],
                          info["params_inference"])
    meta0["checkpoint"]["sha256"] = ckpt_sha

    if info["lowrank"] is not None:
        exact_out = {k: _eager(info["exact_model"], v) for k, v in inputs.items()}
        low_out = {k: _eager(exported, v) for k, v in inputs.items()}
        cost = {k: par.compare(exact_out[k], low_out[k]) for k in inputs}
        info["lowrank"]["vs_exact"] = {
            "min_cosine_faces": min(c["min_cosine"] for k, c in cost.items() if k.startswith("faces")),
            "min_cosine_random": min(c["min_cosine"] for k, c in cost.items() if k.startswith("random")),
            "max_abs_diff": max(c["max_abs_diff"] for c in cost.values())}
        # the gate checks the graph against the (approximate) model it was asked to export
        refs = low_out
        report["lowrank"] = info["lowrank"]

    stem = name or Path(checkpoint).stem
    if lowrank is not None:
        stem += f"_lowrank{lowrank}"

    def stage(f: str, opts: ExportOptions):
        form, model_f = _select_formulation(exported, info, f, formulation, opts.opset_for(f),
                                            opts.weight_dtype_for(f))
        report["formulation"][f] = form
        extra = {"folding": "lowrank" if lowrank is not None else "exact", "formulation": form}
        if lowrank is not None:
            low = {k: info["lowrank"][k] for k in ("requested", "max_rank", "mean_rank")}
            low["ranks"] = [layer["rank"] for layer in info["lowrank"]["layers"]]
            low["vs_exact"] = info["lowrank"]["vs_exact"]
            extra["lowrank"] = low
        return model_f, form, extra

    subject = Subject(
        kind=meta0.get("kind", "embedder"), net=exported, inputs=inputs, refs=refs, meta=meta0,
        report=report, stem=stem, ckpt_sha=ckpt_sha, input_size=tuple(size),
        output_name=meta0["output_name"],
        reference="eager lowrank model" if lowrank is not None else "eager training-form model",
        floor=floor, inputs_note=f" (faces: {face_source})",
        summary_extra={"faces": face_source}, stage=stage)
    return run_export(subject, opts, t0)


def _select_formulation(model, info, fmt_name, requested, opset, weight_dtype="float32"):
    """The per-pixel formulation ``fmt_name`` gets: (its name, the model to convert).

    ``None`` for models without TVConv, ``"lowrank"`` for low-rank exports; otherwise the
    user's ``--formulation`` (already validated for every format) or the format's default.
    ``fused`` converts a copy whose TVConv -> BN -> activation are custom kernel nodes.
    """
    if not info["tvconv_layers"]:
        return None, model
    if info["lowrank"] is not None:
        return "lowrank", model
    from edgeconv.export.formulations import FUSED, default_formulation, set_formulation

    name = requested or default_formulation(fmt_name, opset)
    if name == FUSED:
        import copy

        from edgeconv.export.pipeline import fused_module

        fused = copy.deepcopy(model)
        fused_module(fmt_name).fuse(fused, weight_dtype)
        return name, fused.eval()
    set_formulation(model, name)
    return name, model


def parity_inputs_for(size, batch_n, seed):
    from edgeconv.export.parity import parity_inputs

    return parity_inputs(size, batch_n, seed)


def _check_resized_batch(ckpt: dict, opts: ExportOptions) -> None:
    """Refuse, before any conversion, a dynamic-batch file that its runtime resizes at run
    time (TFLite: converted at batch 1) where the model's graph pins the batch (the parity
    gate would refuse it after minutes of converting): an op or a model whose graph reshapes
    over the batch axis says so in its registry entry (``pins_batch``)."""
    resized = [f for f in opts.formats if fmt.EXPORT_FORMATS[f].resized_batch]
    if not resized or opts.batch is not None:
        return
    from edgeconv.models.registry import model_spec
    from edgeconv.ops import op_spec

    cfg = ckpt["model_config"]
    why = op_spec(cfg.get("op", "depthwise")).pins_batch or model_spec(cfg["name"]).pins_batch
    if why:
        raise EdgeconvError(f"{cfg['name']} ({cfg['op']}): {why}, so a dynamic-batch "
                            f"{'/'.join(resized)} file (converted at batch 1, resized at run "
                            f"time) cannot run other batches; export {'/'.join(resized)} with "
                            "--batch N (ONNX stays dynamic)")
