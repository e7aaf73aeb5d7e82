"""The ONE export loop: stage -> convert -> parity -> metadata -> write, for every kind.

Every kind of model (face embedder and segmenter: ``edgeconv.export.exporter``; UNIT
translator: ``edgeconv.export.translator``; LIS generator: ``edgeconv.export.generator``)
hands :func:`run_export` a :class:`~edgeconv.export.job.Subject`; the formats come from the
ONE table (``edgeconv.export.formats``), each with the module that holds its code. Nothing
here compares format names: what differs between formats is in their table entries and
modules (ultralytics' exporter is the example for the table, not for its class).

Nothing is written until every requested file has passed its parity gate; then every file and
its sidecar are written atomically (all or nothing).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import time
from pathlib import Path

from edgeconv.errors import EdgeconvError
from edgeconv.export import formats as fmt
from edgeconv.export.formats import FUSED
from edgeconv.export.job import Converted, ExportOptions, Subject
from edgeconv.metadata import sidecar_path

def format_module(name: str):
    """The module holding format ``name``'s conversion, run and finalize functions."""
    return importlib.import_module(fmt.EXPORT_FORMATS[name].module)


def fused_module(name: str):
    """The module of format ``name``'s fused TVConv form (fuse, gate, kernels metadata)."""
    mod = fmt.EXPORT_FORMATS[name].fused_module
    if not mod:
        raise EdgeconvError(f"format {name} has no fused TVConv form")
    return importlib.import_module(mod)


SIMPLIFIERS = ("auto", "onnxsim", "onnxslim", "none")


def make_options(formats, output_dir=".", *, batch="dynamic", opset=None, simplify=None,
                 fp16: bool = False, weight_dtype: str | None = None,
                 formulation: str | None = None, force: bool = False,
                 echo=print) -> ExportOptions:
    """Parse and check a run's options against the format table, before anything loads:
    an option no selected format takes is an error (never silently ignored); missing
    packages are named (never installed)."""
    formats = fmt.parse_formats(formats)
    fmt.validate_options(formats, {"opset": opset, "fp16": fp16, "simplify": simplify,
                                   "weight_dtype": weight_dtype, "formulation": formulation})
    if simplify is not None and simplify not in SIMPLIFIERS:
        raise EdgeconvError(f"--simplify must be {', '.join(SIMPLIFIERS[:-1])} or "
                            f"{SIMPLIFIERS[-1]}, got {simplify!r}")
    batch_n = fmt.parse_batch(batch)
    fmt.check_packages(formats)
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise EdgeconvError(f"{out}: exists and is not a directory")
    return ExportOptions(formats=formats, output_dir=out, batch=batch_n, opset=opset,
                         simplify=simplify, fp16=bool(fp16), weight_dtype=weight_dtype,
                         formulation=formulation, force=force, echo=echo)


def tolerance(options: ExportOptions, fmt_name: str, fused: bool, weight_dtype: str,
              floor: float) -> tuple[float, float]:
    """(max abs diff, min cosine) of the gate: float16 weights, fused storage or float32;
    never below twice float32's own distance from the float64 reference."""
    from edgeconv.export import parity as par

    tol = ((par.FP16_MAX_ABS_DIFF, par.FP16_MIN_COSINE) if options.fp16_for(fmt_name)
           else par.FUSED_TOLERANCE[weight_dtype] if fused
           else (par.MAX_ABS_DIFF, par.MIN_COSINE))
    return max(tol[0], 2.0 * floor), tol[1]


def gate(subject: Subject, fmt_name: str, conv: Converted, fused: bool, file_name: str,
         tol) -> tuple[dict, dict | None]:
    """Run the converted file in its runtime(s) and compare with the reference: (summary,
    extra parity metadata of a fused file's runs). Raises ParityError (one line)."""
    from edgeconv.export import parity as par

    inputs = conv.inputs or subject.inputs
    refs = subject.refs
    missing = [k for k in inputs if k not in refs]
    if missing:  # a fixed-batch file's own inputs
        refs.update({k: subject.reference_of(inputs[k]) for k in missing})
    note = fmt.EXPORT_FORMATS[fmt_name].dynamic_batch_note
    try:
        if fused:
            summary, both = fused_module(fmt_name).gate(conv.data, inputs, refs, tol, file_name)
        else:
            mod = format_module(fmt_name)
            outs = mod.run(conv.data, inputs, conv.dynamic_batch)
            results = {k: par.compare(refs[k], outs[k]) for k in inputs}
            summary = par.check(results, *tol, label=f"{file_name} [{mod.RUNTIME_LABEL}]")
            summary["runtime"], both = mod.RUNTIME_LABEL, None
    except par.ParityError as exc:
        if conv.dynamic_batch and note:
            raise par.ParityError(f"{exc} ({note})") from None
        raise
    return summary, both


def run_export(subject: Subject, options: ExportOptions, t0: float | None = None) -> dict:
    """Export ``subject`` to every format of ``options``; returns the report. Raises
    EdgeconvError with nothing written when any file fails."""
    t0 = time.perf_counter() if t0 is None else t0
    echo, out_dir = options.echo, Path(options.output_dir)
    staged: list[tuple[Path, bytes, dict]] = []
    for f in options.formats:
        spec = fmt.EXPORT_FORMATS[f]
        net, form, meta_extra = (subject.stage(f, options) if subject.stage is not None
                                 else (subject.net, None, {}))
        fused = form == FUSED
        wd = options.weight_dtype_for(f)
        conv = format_module(f).convert(subject, net, options, form, wd)
        meta = dict(subject.meta, format=f, **meta_extra)
        meta["batch"] = options.batch or "dynamic"
        meta.update(conv.meta)
        if fused:
            meta["kernels"] = fused_module(f).kernels_metadata(wd, conv.data)
        path = out_dir / f"{subject.stem}{conv.name_suffix}{spec.suffix}"
        check_overwrite(path, subject.ckpt_sha, options.force)
        summary, both = gate(subject, f, conv, fused, path.name,
                             tolerance(options, f, fused, wd, subject.floor))
        label = summary["runtime"]
        summary.update(subject.summary_extra)
        summary["float32_floor"] = subject.floor
        meta["parity"] = {"runtime": label, "max_abs_diff": summary["max_abs_diff"],
                          "float32_floor": subject.floor, "tolerance": summary["tolerance"],
                          "min_cosine": summary["min_cosine"], "inputs": summary["inputs"],
                          "reference": subject.reference}
        if both is not None:
            meta["parity"].update(both)
        subject.report["parity"][f] = summary
        echo(f"parity {f:<6} {label}: max abs diff {summary['max_abs_diff']:.2e}, "
             f"min cosine {summary['min_cosine']:.8f} on {', '.join(summary['inputs'])}"
             f"{subject.inputs_note}")
        if fused:  # the fused file's other run(s): kernel / body, delegate / portable
            for line in fused_module(f).report_lines(summary, path.name, conv):
                echo(line)
            echo(f"weights {f:<6} fused TVConv layers store {wd} per-pixel weights, computed "
                 "in float32" + ("" if options.weight_dtype else
                                                   " (the default; see --weight-dtype)"))
        staged.append(stage_file(path, conv.artifact, meta, f))
    return write_staged(staged, subject.report, echo, t0)


def stage_file(path: Path, artifact, meta: dict, fmt_name: str) -> tuple[Path, bytes, dict]:
    """(path, bytes with the metadata embedded, sidecar dict) of one verified file."""
    data, embedded = format_module(fmt_name).finalize(artifact, meta)
    side = dict(meta, file=path.name, sha256=hashlib.sha256(data).hexdigest(),
                bytes=len(data), metadata_embedded=embedded)
    return path, data, side


def write_staged(staged, report: dict, echo, t0: float) -> dict:
    """Write every staged file + sidecar atomically, list them in ``report``, time it."""
    write_all(staged)
    for path, data, side in staged:
        report["files"].append({"path": str(path), "sidecar": str(sidecar_path(path)),
                                "bytes": len(data), "metadata_embedded": side["metadata_embedded"]})
        echo(f"wrote {path} ({len(data) / 1e6:.2f} MB) + {sidecar_path(path).name}"
             + ("" if side["metadata_embedded"] else " (metadata in sidecar only)"))
    report["seconds"] = round(time.perf_counter() - t0, 2)
    return report


def check_overwrite(path: Path, ckpt_sha: str, force: bool) -> None:
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


def write_all(staged) -> None:
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
