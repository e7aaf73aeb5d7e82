"""``edgeconv export``: fold a checkpoint and write verified ONNX / TFLite files (torch,
imported inside the command; the options are checked before it is)."""

from __future__ import annotations

import os

import click

from edgeconv import options as _opts
from edgeconv.commands.common import click_input_size
from edgeconv.errors import EdgeconvError


@click.command("export")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--format", "formats", default="onnx,tflite", show_default=True,
              help="Format(s), comma separated: onnx (.onnx, --opset, --simplify; "
                   "edgeconv[export]), tflite (.tflite, --fp16; edgeconv[tflite]).")
@click.option("-o", "--output-dir", default=".", show_default=True,
              type=click.Path(file_okay=False), help="Folder for the files and sidecars.")
@click.option("--opset", type=int, default=None, help="ONNX opset (default 18; onnx only).")
@click.option("--batch", default="dynamic", show_default=True,
              help="'dynamic' or a fixed batch size N.")
@click.option("--input-size", callback=click_input_size, default=None,
              help="N or HxW; must equal the size a TVConv model was built for.")
@click.option("--fp16", is_flag=True, help="TFLite: store float16 weights (tflite only).")
@click.option("--formulation", default=None,
              help="Graph form of the folded per-pixel product, all exact: fused (ONNX "
                   "default: one edgeconv.TVConv node per layer with its BatchNorm and "
                   "activation, run by the edgeconv kernel where it is loaded and by the "
                   "node's standard-op function body elsewhere; written as NAME.onnx by "
                   "default, NAME_fused.onnx when asked for by name), col2im (opset >= 18), "
                   "tapconv, slices, onehot, onehot_tap.")
@click.option("--weight-dtype", default=None,
              help="Fused TVConv layers (the default): storage of the per-pixel weights, "
                   "float16 (default: half the file and weight traffic of float32), float32 "
                   "or int8 (per channel-tap scales); computed in float32.")
@click.option("--lowrank", default=None,
              help="APPROXIMATE: per-layer SVD of the folded weights; an integer rank r or a "
                   "relative error budget in (0, 1). Exact folding is the default.")
@click.option("--simplify", default=None,
              help="ONNX simplifier: auto (onnxsim, else onnxslim), onnxsim, onnxslim, none.")
@click.option("--name", default=None, help="File stem (default: the checkpoint's).")
@click.option("--force", is_flag=True,
              help="Replace files another checkpoint exported at the same paths.")
@click.option("--direction", type=click.Choice(["nir2rgb", "rgb2nir"]), default=None,
              help="A UNIT translation checkpoint (edgeconv translate-train): export this "
                   "direction (source encoder + target generator) as a translator file.")
@click.option("--json", "as_json", is_flag=True, help="Print the export report as JSON.")
def export_cmd(checkpoint, formats, output_dir, opset, batch, input_size, fp16, formulation,
               weight_dtype, lowrank, simplify, name, force, direction, as_json):
    """Fold CHECKPOINT (TVConv weights computed once, BatchNorm fused) and write verified
    ONNX / TFLite files with metadata (sidecar <file>.json + embedded).

    Every file is checked against the eager model in its runtime before anything is
    written; a failure exits non-zero and leaves no file behind. With --direction,
    CHECKPOINT is a UNIT translator and one direction of it is exported the same way.
    """
    echo = (lambda *a, **k: None) if as_json else click.echo
    check_export_options(name, batch, input_size)
    if direction is not None:
        from edgeconv.export.translator import export_translator

        given = {"--input-size": input_size, "--formulation": formulation,
                 "--weight-dtype": weight_dtype, "--lowrank": lowrank}
        bad = [k for k, v in given.items() if v is not None]
        if bad:
            raise click.UsageError(f"{', '.join(bad)} appl{'ies' if len(bad) == 1 else 'y'} to "
                                   "face models, not to a translator (--direction)")
        report = export_translator(checkpoint, direction, formats=formats,
                                   output_dir=output_dir, opset=opset, batch=batch, fp16=fp16,
                                   simplify=simplify, name=name, echo=echo, force=force)
        if as_json:
            import json

            click.echo(json.dumps(report, default=str))
        return
    from edgeconv.export.exporter import export_checkpoint

    report = export_checkpoint(checkpoint, formats=formats, output_dir=output_dir, opset=opset,
                               batch=batch, input_size=input_size, fp16=fp16,
                               formulation=formulation, weight_dtype=weight_dtype,
                               lowrank=lowrank, simplify=simplify,
                               name=name, echo=echo, force=force)
    if not report.get("files"):  # never a success that wrote nothing
        raise EdgeconvError(f"{checkpoint}: nothing was exported (no file written for "
                            f"--format {formats}"
                            + (f", --formulation {formulation}" if formulation else "") + ")")
    if as_json:
        import json

        click.echo(json.dumps(report, default=str))


#: bytes one image of an export's parity batch may take (input plus the eager model's
#: activations, a generous estimate), per pixel
_EXPORT_BYTES_PER_PIXEL = 3 * 4 * 32


def check_export_options(name, batch, input_size) -> None:
    """Refuse, before torch is imported, a --name that would write outside -o and a fixed
    --batch whose parity run would not fit in memory."""
    if name is not None:
        text = str(name)
        seps = {"/", os.sep} | ({os.altsep} if os.altsep else set())
        if (text.strip() in ("", ".") or ".." in text or "\0" in text
                or any(sep in text for sep in seps) or os.path.isabs(text)):
            raise EdgeconvError(f"--name {text!r}: a file stem, not a path (no '/', no '..'); "
                                "the folder is -o/--output-dir")
    if batch is not None and str(batch).strip().lower() != "dynamic":
        try:
            n = int(str(batch).strip())
        except ValueError:
            return  # the exporter's own message
        h, w = input_size or (112, 112)
        _opts.check_size(n, "--batch", h * w * _EXPORT_BYTES_PER_PIXEL,
                         "parity inputs and activations")


COMMANDS = (export_cmd,)
