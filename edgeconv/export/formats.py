"""The ONE table of export formats (torch-free): name, suffix, options, needed packages.

``edgeconv export`` validates every option against this table before loading anything:
an option that a selected format does not take is an error, never silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeconv.errors import EdgeconvError


@dataclass(frozen=True)
class ExportFormat:
    name: str
    suffix: str
    options: tuple[str, ...]      # CLI options (dest names) this format honours
    packages: tuple[str, ...]     # importable modules needed (in the format's extra)
    extra: str = "export"
    description: str = ""
    #: the module that holds the format's code: ``convert(subject, net, options, formulation,
    #: weight_dtype) -> Converted``, ``run(data, inputs, dynamic_batch) -> outputs`` and
    #: ``finalize(artifact, meta) -> (bytes, metadata embedded)`` (edgeconv.export.pipeline)
    module: str = ""
    #: the module of its fused TVConv form (``--formulation fused``): ``fuse(model,
    #: weight_dtype)``, ``gate(data, inputs, refs, tol, file_name) -> (summary, metadata)``,
    #: ``kernels_metadata(weight_dtype, data)``, ``report_lines(summary, file_name, converted)``
    fused_module: str = ""
    #: a dynamic-batch file is converted at batch 1 and resized at run time (TFLite); ONNX
    #: keeps a symbolic batch axis
    resized_batch: bool = False
    #: added to a failed parity gate of a dynamic-batch file
    dynamic_batch_note: str = ""
    title: str = ""
    #: the TVConv formulation (edgeconv.export.formulations) a plain export writes
    default_formulation: str = "tapconv"
    #: formulations this format cannot carry, (name, why)
    cannot_carry: tuple[tuple[str, str], ...] = ()
    #: formulations whose graph pins the batch size in this format (no dynamic batch)
    batch_pinning: tuple[str, ...] = ()


#: the formulation whose TVConv layers are the format's fused form (one node / composite per
#: layer, the format entry's ``fused_module``); edgeconv.export.formulations re-exports it
FUSED = "fused"

# Options every format takes.
COMMON_OPTIONS = ("batch", "input_size", "formulation", "lowrank", "output_dir", "parity")

EXPORT_FORMATS: dict[str, ExportFormat] = {
    "onnx": ExportFormat(
        "onnx", ".onnx", COMMON_OPTIONS + ("opset", "simplify", "weight_dtype"),
        ("torch", "onnx", "onnxruntime"),
        description="ONNX (torch.onnx, onnxsim/onnxslim simplified, ONNX-checked), "
                    "checked in ONNX Runtime; TVConv layers as edgeconv.TVConv nodes with "
                    "standard-op function bodies (the default)",
        module="edgeconv.export.onnx_export", fused_module="edgeconv.export.onnx_function",
        title="ONNX",
        # edgeconv.TVConv nodes with standard-op function bodies: portable, and fast where
        # the kernel library is loaded (docs/default_export_speed.md)
        default_formulation=FUSED),
    "tflite": ExportFormat(
        "tflite", ".tflite", COMMON_OPTIONS + ("fp16", "weight_dtype"),
        ("torch", "litert_torch", "ai_edge_litert"), extra="tflite",
        description="TFLite flatbuffer via litert-torch (no TensorFlow), float32 "
                    "(--fp16: float16 weights), checked in the LiteRT interpreter; TVConv "
                    "layers as edgeconv.tvconv composites with --formulation fused "
                    "(--weight-dtype sets their weight storage)",
        module="edgeconv.export.tflite_export", fused_module="edgeconv.export.litert_fused",
        resized_batch=True,
        dynamic_batch_note="TFLite dynamic batch = a batch-1 file resized at run time; this "
                           "model's graph pins the batch size: export it with --batch N",
        title="TFLite",
        # a stock LiteRT runs the fused file's composite bodies outside XNNPACK (slower than
        # tapconv, docs/litert_delegate.md): --formulation fused where the delegate is built
        default_formulation="tapconv",
        # litert-torch lowers Col2Im to a stablehlo scatter the interpreter cannot run
        cannot_carry=(("col2im", "has no Col2Im op"),),
        # a dynamic-batch file resized to batch 3 computes one image (benchmarks/export_speed.py)
        batch_pinning=("onehot", "onehot_tap", "slices")),
}

DEFAULT_FORMATS = ("onnx", "tflite")
DEFAULT_OPSET = 18  # Col2Im (the col2im formulation) needs 18
OPSET_RANGE = (13, 21)


def parse_formats(value) -> list[str]:
    """'onnx,tflite' -> ['onnx', 'tflite'] (order kept, duplicates dropped)."""
    if value is None:
        return list(DEFAULT_FORMATS)
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    out: list[str] = []
    for item in items:
        name = str(item).strip().lower().lstrip(".")
        if not name:
            continue
        if name not in EXPORT_FORMATS:
            raise EdgeconvError(f"unknown export format '{name}' "
                                f"(choose from: {', '.join(EXPORT_FORMATS)})")
        if name not in out:
            out.append(name)
    if not out:
        raise EdgeconvError("no export format given")
    return out


def parse_batch(value) -> int | None:
    """'dynamic' -> None; '8' -> 8."""
    if value is None or str(value).strip().lower() == "dynamic":
        return None
    try:
        n = int(str(value).strip())
    except ValueError:
        raise EdgeconvError(f"--batch must be 'dynamic' or a positive integer, got {value!r}") from None
    if n < 1:
        raise EdgeconvError(f"--batch must be 'dynamic' or a positive integer, got {value!r}")
    return n


def parse_lowrank(value):
    """None -> None (exact); '2' -> rank 2; '0.01' -> relative error budget per layer."""
    if value is None:
        return None
    text = str(value).strip()
    try:
        if text.isdigit():
            rank = int(text)
            if rank < 1:
                raise ValueError
            return rank
        tol = float(text)
        if not 0 < tol < 1:
            raise ValueError
        return tol
    except ValueError:
        raise EdgeconvError(f"--lowrank takes a rank (integer >= 1) or a relative error budget "
                            f"in (0, 1), got {value!r}") from None


def validate_options(formats: list[str], given: dict) -> None:
    """Refuse options that none of the selected formats takes (``given``: name -> value set)."""
    for opt, value in given.items():
        if value is None or value is False:
            continue
        takers = [f for f in formats if opt in EXPORT_FORMATS[f].options]
        if not takers:
            owners = [f for f, spec in EXPORT_FORMATS.items() if opt in spec.options]
            flag = "--" + opt.replace("_", "-")
            raise EdgeconvError(f"{flag} applies to format(s) {', '.join(owners) or 'none'}, "
                                f"not to the selected {', '.join(formats)}")
    wd = given.get("weight_dtype")
    if wd is not None:
        from edgeconv.kernels.pack import WEIGHT_DTYPES

        if wd not in WEIGHT_DTYPES:
            raise EdgeconvError(f"--weight-dtype must be one of {', '.join(WEIGHT_DTYPES)}, "
                                f"got {wd!r}")
        form = given.get("formulation")
        if form != FUSED and not (form is None and all(
                EXPORT_FORMATS[f].default_formulation == FUSED for f in formats)):
            raise EdgeconvError("--weight-dtype is the storage of the fused kernel's weights: "
                                "it needs --formulation fused")
    opset = given.get("opset")
    if opset is not None and not OPSET_RANGE[0] <= int(opset) <= OPSET_RANGE[1]:
        raise EdgeconvError(f"--opset must be in {OPSET_RANGE[0]}..{OPSET_RANGE[1]}, got {opset}")


def check_packages(formats: list[str]) -> None:
    """Raise MissingExtraError for the first missing package (never installs anything)."""
    import importlib.util

    from edgeconv.errors import MissingExtraError

    for f in formats:
        spec = EXPORT_FORMATS[f]
        for mod in spec.packages:
            if importlib.util.find_spec(mod) is None:
                raise MissingExtraError(mod.replace("_", "-"), "train" if mod == "torch" else spec.extra)


def formats_table() -> str:
    """Markdown table of the formats (for --help epilog and docs)."""
    rows = ["| format | suffix | options | needs |", "|---|---|---|---|"]
    for spec in EXPORT_FORMATS.values():
        opts = ", ".join("--" + o.replace("_", "-") for o in spec.options
                         if o not in COMMON_OPTIONS)
        rows.append(f"| {spec.name} | {spec.suffix} | {opts or '-'} | "
                    f"edgeconv[{spec.extra}]: {', '.join(spec.packages)} |")
    return "\n".join(rows)
