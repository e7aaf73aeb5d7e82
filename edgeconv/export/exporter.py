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

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from edgeconv import __version__
from edgeconv.errors import EdgeconvError
from edgeconv.export.parity import guarded_run as _guarded
from edgeconv.export import formats as fmt
from edgeconv.metadata import METADATA_FORMAT_VERSION, sidecar_path

#: file-name suffix of a fused export per weight storage (never the portable file's name)
_FUSED_SUFFIX = {"float32": "_fused", "float16": "_fused_fp16", "int8": "_fused_int8"}
#: ... and of the default ONNX export of a TVConv model (fused nodes + function bodies):
#: NAME.onnx; the explicit --formulation fused keeps the _fused names above
_DEFAULT_FUSED_SUFFIX = {"float32": "", "float16": "_fp16", "int8": "_int8"}
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
        "format_version": METADATA_FORMAT_VERSION,
        "edgeconv_version": __version__,
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
    formats = fmt.parse_formats(formats)
    fmt.validate_options(formats, {"opset": opset, "fp16": fp16, "simplify": simplify,
                                   "weight_dtype": weight_dtype, "formulation": formulation})
    # validated: only fused TVConv layers use it; TFLite --fp16 stores them as float16 too
    tfl_weight_dtype = weight_dtype or ("float16" if fp16 else "float32")
    given_weight_dtype, weight_dtype = weight_dtype, weight_dtype or "float32"
    if simplify is not None and simplify not in ("auto", "onnxsim", "onnxslim", "none"):
        raise EdgeconvError(f"--simplify must be auto, onnxsim, onnxslim or none, got {simplify!r}")
    batch_n = fmt.parse_batch(batch)
    lowrank = fmt.parse_lowrank(lowrank)
    if formulation is not None:
        from edgeconv.export.formulations import check_formulation_for

        for f in formats:  # a low-rank graph has no per-pixel formulation to pin the batch
            check_formulation_for(formulation, f, opset if f == "onnx" else None,
                                  dynamic_batch=batch_n is None and lowrank is None)
    fmt.check_packages(formats)
    if formulation == "fused":
        if lowrank is not None:
            raise EdgeconvError("--formulation fused exports the exact folded weights; it cannot "
                                "be combined with --lowrank")
    out_dir = Path(output_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise EdgeconvError(f"{out_dir}: exists and is not a directory")

    t0 = time.perf_counter()
    model, exported, ckpt, info = _prepare(checkpoint, input_size, lowrank)
    _check_tflite_batch(ckpt, formats, batch_n)
    if given_weight_dtype is not None and (not info["tvconv_layers"] or lowrank is not None):
        cfg = ckpt["model_config"]
        raise EdgeconvError("--weight-dtype is the storage of fused TVConv layers, and "
                            + (f"{cfg['name']} (op '{cfg['op']}') has none" if lowrank is None
                               else "a --lowrank export has none"))
    from edgeconv.runtime.model_meta import file_sha256

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
    staged: list[tuple[Path, bytes, dict]] = []
    for f in formats:
        spec = fmt.EXPORT_FORMATS[f]
        wd = weight_dtype if f == "onnx" else tfl_weight_dtype
        form, model_f = _select_formulation(exported, info, f, formulation,
                                            int(opset or fmt.DEFAULT_OPSET) if f == "onnx" else None,
                                            wd)
        report["formulation"][f] = form
        meta = dict(meta0, format=f, folding="lowrank" if lowrank is not None else "exact",
                    formulation=form, batch=batch_n or "dynamic")
        fused = form == "fused"
        if fused and f == "onnx":
            meta["kernels"] = _kernels_metadata(weight_dtype)
        elif fused:
            from edgeconv.export.litert_fused import kernels_metadata

            meta["kernels"] = kernels_metadata(wd)
        if lowrank is not None:
            meta["lowrank"] = {k: info["lowrank"][k] for k in ("requested", "max_rank", "mean_rank")}
            meta["lowrank"]["ranks"] = [layer["rank"] for layer in info["lowrank"]["layers"]]
            meta["lowrank"]["vs_exact"] = info["lowrank"]["vs_exact"]
        if f == "onnx":
            from edgeconv.export.onnx_export import export_onnx

            proto, extra = export_onnx(model_f, size, batch_n, int(opset or fmt.DEFAULT_OPSET),
                                       simplify or "auto", output_name=meta0["output_name"])
            meta.update(opset=extra["opset"], simplifier=extra["simplifier"])
            data = proto.SerializeToString()
            suffix = ((_FUSED_SUFFIX if formulation == "fused" else _DEFAULT_FUSED_SUFFIX)
                      [weight_dtype] if fused else "")
            path = out_dir / f"{stem}{suffix}{spec.suffix}"
            if fused:  # portable: function bodies and (where built) the kernel, both gated below
                outs, label = None, None
            else:
                outs = _guarded(_run_onnx, data, inputs, "ONNX Runtime")
                label = "ONNX (onnxruntime)"
        else:
            from edgeconv.export import tflite_export as tfl

            data = tfl.export_tflite(model_f, size, batch_n)
            if fused:
                from edgeconv.export.litert_fused import batch_free_bodies

                data, _ = batch_free_bodies(data)
            meta["precision"] = "float32"
            if fp16:
                data, n16 = tfl.to_fp16_weights(data)
                meta["precision"] = "float16-weights"
                meta["fp16_tensors"] = n16
            if fused:  # portable: both runs are gated below (edgeconv.export.litert_fused)
                from edgeconv.export import litert_fused

                outs = None
                label = litert_fused.PORTABLE_LABEL
            else:
                outs = _guarded(_run_tflite_all, data, inputs, "the LiteRT interpreter",
                                hint=None if batch_n else "export it with --batch N")
                label = "TFLite (LiteRT interpreter)"
            wsuffix = {"float32": "", "float16": "" if fp16 else "_fp16", "int8": "_int8"}
            path = out_dir / (f"{stem}{'_fp16' if fp16 else ''}"
                              f"{wsuffix[wd] if fused else ''}{spec.suffix}")
        _check_overwrite(path, ckpt_sha, force)
        tol = ((par.FP16_MAX_ABS_DIFF, par.FP16_MIN_COSINE) if (f == "tflite" and fp16)
               else par.FUSED_TOLERANCE[wd] if fused
               else (par.MAX_ABS_DIFF, par.MIN_COSINE))
        tol = (max(tol[0], 2.0 * floor), tol[1])
        try:
            if outs is None and f == "onnx":  # fused ONNX: bodies and kernel both gated
                from edgeconv.export import onnx_function as onf

                summary, both = onf.gate_both(data, inputs, refs, tol, path.name, _guarded)
                label = summary["runtime"]
            elif outs is None:  # fused TFLite: with the delegate and without, both gated
                summary, both = litert_fused.gate_both(data, inputs, refs, tol, path.name)
            else:
                results = {k: par.compare(refs[k], outs[k]) for k in inputs}
                summary = par.check(results, *tol, label=f"{path.name} [{label}]")
                both = None
        except par.ParityError as exc:
            if f == "tflite" and batch_n is None:
                raise par.ParityError(
                    f"{exc} (TFLite dynamic batch = a batch-1 file resized at run time; this "
                    f"model's graph pins the batch size: export it with --batch N)") from None
            raise
        summary["faces"] = face_source
        summary["float32_floor"] = floor
        meta["parity"] = {"runtime": label, "max_abs_diff": summary["max_abs_diff"],
                          "float32_floor": floor, "tolerance": summary["tolerance"],
                          "min_cosine": summary["min_cosine"], "inputs": summary["inputs"],
                          "reference": "eager lowrank model" if lowrank is not None
                          else "eager training-form model"}
        if both is not None:
            meta["parity"].update(both)
        report["parity"][f] = summary
        echo(f"parity {f:<6} {label}: max abs diff {summary['max_abs_diff']:.2e}, "
             f"min cosine {summary['min_cosine']:.8f} on {', '.join(summary['inputs'])} "
             f"(faces: {face_source})")
        if both is not None and f == "onnx":
            body, kern = summary["function_body"], summary["kernel"]
            if "skipped" in kern:
                echo(f"parity {f:<6} edgeconv kernel: not run ({kern['skipped']})")
            else:
                echo(f"parity {f:<6} {onf.BODY_LABEL}: max abs diff "
                     f"{body['max_abs_diff']:.2e}, min cosine {body['min_cosine']:.8f}")
            echo(onf.where_line(path.name, extra.get("tvconv_nodes", 0)))
        elif both is not None:
            d = summary["delegate"]
            echo(f"parity {f:<6} {litert_fused.DELEGATE_LABEL}: " + (
                f"max abs diff {d['max_abs_diff']:.2e}, min cosine {d['min_cosine']:.8f}"
                if "skipped" not in d else f"not run ({d['skipped']})"))
        staged.append(stage_file(path, proto if f == "onnx" else data, meta))
    return write_staged(staged, report, echo, t0)


def stage_file(path: Path, model, meta: dict) -> tuple[Path, bytes, dict]:
    """(path, bytes with the metadata embedded, sidecar dict) of one verified file; ``model``
    is an ONNX ModelProto or TFLite flatbuffer bytes."""
    if isinstance(model, (bytes, bytearray)):
        from edgeconv.export import tflite_export as tfl

        data, embedded = tfl.embed_metadata(bytes(model), meta)
    else:
        from edgeconv.export.onnx_export import finalize_onnx

        data, embedded = finalize_onnx(model, meta), True
    side = dict(meta, file=path.name, sha256=hashlib.sha256(data).hexdigest(),
                bytes=len(data), metadata_embedded=embedded)
    return path, data, side


def write_staged(staged, report: dict, echo, t0: float) -> dict:
    """Write every staged file + sidecar atomically, list them in ``report``, time it."""
    _write_all(staged)
    for path, data, side in staged:
        report["files"].append({"path": str(path), "sidecar": str(sidecar_path(path)),
                                "bytes": len(data), "metadata_embedded": side["metadata_embedded"]})
        echo(f"wrote {path} ({len(data) / 1e6:.2f} MB) + {sidecar_path(path).name}"
             + ("" if side["metadata_embedded"] else " (metadata in sidecar only)"))
    report["seconds"] = round(time.perf_counter() - t0, 2)
    return report


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

        from edgeconv.export.fused import fuse_model
        from edgeconv.export.litert_fused import fuse_model_litert

        fused = copy.deepcopy(model)
        (fuse_model if fmt_name == "onnx" else fuse_model_litert)(fused, weight_dtype)
        return name, fused.eval()
    set_formulation(model, name)
    return name, model


def _kernels_metadata(weight_dtype: str) -> dict:
    """What a fused file needs at run time (checked by the device side before loading)."""
    from edgeconv import kernels
    from edgeconv.kernels.pack import LAYOUT

    try:  # the file runs without the library too (function bodies): its version is a note
        built = kernels.info()["version"]
    except kernels.KernelsMissing:
        built = None
    return {"domain": kernels.DOMAIN, "op": kernels.OP_TYPE, "op_version": kernels.OP_VERSION,
            "layout": LAYOUT, "weight_dtype": weight_dtype,
            "library_version": built, "library": "edgeconv kernels (edgeconv/kernels)",
            "function_body": True}


def parity_inputs_for(size, batch_n, seed):
    from edgeconv.export.parity import parity_inputs

    return parity_inputs(size, batch_n, seed)


def _run_tflite_all(data: bytes, inputs: dict) -> dict:
    from edgeconv.export import tflite_export as tfl

    interp = tfl.make_interpreter(data)
    return {k: tfl.run_tflite(interp, v) for k, v in inputs.items()}


def _run_onnx(data: bytes, inputs: dict) -> dict:
    from edgeconv.runtime.backends import ort_session

    sess = ort_session(data, threads=0)  # 0: ONNX Runtime's default thread count
    name = sess.get_inputs()[0].name
    return {k: sess.run(None, {name: v})[0] for k, v in inputs.items()}


def _check_tflite_batch(ckpt: dict, formats, batch_n) -> None:
    """Refuse, before any conversion, a dynamic-batch TFLite export the interpreter could not
    resize (the parity gate would refuse it after minutes of converting): an op or a model
    whose graph reshapes over the batch axis says so in its registry entry (``pins_batch``)."""
    if "tflite" not in formats or batch_n is not None:
        return
    from edgeconv.models.registry import model_spec
    from edgeconv.ops import op_spec

    cfg = ckpt["model_config"]
    why = op_spec(cfg.get("op", "depthwise")).pins_batch or model_spec(cfg["name"]).pins_batch
    if why:
        raise EdgeconvError(f"{cfg['name']} ({cfg['op']}): {why}, so a dynamic-batch TFLite "
                            "file (converted at batch 1, resized at run time) cannot run other "
                            "batches; export TFLite with --batch N (ONNX stays dynamic)")


def _check_overwrite(path: Path, ckpt_sha: str, force: bool) -> None:
    """Refuse to replace a file (or sidecar) that another checkpoint wrote, unless forced."""
    side = sidecar_path(path)
    if force or not (path.exists() or side.exists()):
        return
    owner, what = None, "a file of unknown origin"
    try:
        meta = json.loads(side.read_text())
        owner = (meta.get("checkpoint") or {}).get("sha256")
        what = f"{meta.get('model')} ({meta.get('op')})"
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    if owner == ckpt_sha:
        return                               # the same checkpoint's earlier export
    raise EdgeconvError(f"{path} already exists and holds {what} from another checkpoint; "
                        "nothing was written: choose another -o / --name, or pass --force "
                        "to replace it")


def _write_all(staged) -> None:
    """Write every file + sidecar atomically; on any failure remove what this call wrote."""
    from edgeconv.fileio import atomic_path

    written: list[Path] = []
    try:
        for path, data, side in staged:
            with atomic_path(path, mode=0o644) as tmp:
                tmp.write_bytes(data)
            written.append(path)
            with atomic_path(sidecar_path(path), mode=0o644) as tmp:
                tmp.write_text(json.dumps(side, indent=2) + "\n")
            written.append(sidecar_path(path))
    except BaseException:
        for p in written:
            try:
                p.unlink()
            except OSError:
                pass
        raise
