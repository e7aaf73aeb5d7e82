"""Folded model -> ONNX bytes: torch.onnx (TorchScript exporter), simplify, check, metadata."""

from __future__ import annotations

import io
import json
import warnings

import torch

from edgeconv.errors import EdgeconvError, require
from edgeconv.metadata import ONNX_METADATA_KEY

INPUT_NAME = "input"
OUTPUT_NAME = "embedding"
RUNTIME_LABEL = "ONNX (onnxruntime)"
#: file-name suffix of a fused export per weight storage given with --weight-dtype: the
#: default export of a TVConv model (fused nodes + function bodies) is NAME.onnx; an explicit
#: --formulation fused keeps the _fused names. Without --weight-dtype (the default storage)
#: no storage suffix: NAME.onnx / NAME_fused.onnx, as before the default became float16.
FUSED_SUFFIX = {"float32": "_fused", "float16": "_fused_fp16", "int8": "_fused_int8"}
DEFAULT_FUSED_SUFFIX = {"float32": "", "float16": "_fp16", "int8": "_int8"}


def convert(subject, net, options, formulation: str | None, weight_dtype: str):
    """The ONNX conversion of the export loop (edgeconv.export.pipeline): -> Converted."""
    from edgeconv.export.formulations import FUSED
    from edgeconv.export.job import Converted

    proto, extra = export_onnx(net, subject.input_size, options.batch,
                               options.opset_for("onnx"), options.simplify or "auto",
                               channels=subject.channels, output_name=subject.output_name)
    fused = formulation == FUSED
    names = FUSED_SUFFIX if options.formulation == FUSED else DEFAULT_FUSED_SUFFIX
    suffix = ("" if not fused else names[weight_dtype] if options.weight_dtype
              else names["float32"])
    return Converted(proto, proto.SerializeToString(),
                     {"opset": extra["opset"], "simplifier": extra["simplifier"]},
                     suffix, fused_nodes=extra["tvconv_nodes"],
                     dynamic_batch=options.batch is None)


def run(data: bytes, inputs: dict, dynamic_batch: bool = True) -> dict:
    """The file's outputs in ONNX Runtime (its default thread count) for the parity gate."""
    from edgeconv.export.parity import guarded_run

    def _run(data, inputs):
        from edgeconv.runtime.backends import ort_session

        sess = ort_session(data, threads=0)
        name = sess.get_inputs()[0].name
        return {k: sess.run(None, {name: v})[0] for k, v in inputs.items()}

    return guarded_run(_run, data, inputs, "ONNX Runtime")


def finalize(proto, meta: dict) -> tuple[bytes, bool]:
    """The file's bytes with ``meta`` embedded (always embedded in ONNX)."""
    return finalize_onnx(proto, meta), True


def torch_to_onnx(model: torch.nn.Module, input_size, batch: int | None, opset: int,
                  channels: int = 3, output_name: str = OUTPUT_NAME):
    """Export ``model`` (eval, folded) to an onnx.ModelProto; batch None = dynamic."""
    onnx = require("onnx", "export")
    x = torch.zeros(batch or 1, channels, *input_size)
    buf = io.BytesIO()
    dynamic_axes = None if batch else {INPUT_NAME: {0: "batch"}, output_name: {0: "batch"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=[output_name],
                          dynamic_axes=dynamic_axes, do_constant_folding=True,
                          custom_opsets=_custom_opsets(model))
    return onnx.load_from_string(buf.getvalue())


def _custom_opsets(model) -> dict:
    from edgeconv.export.fused import FusedTVConv
    from edgeconv.kernels import DOMAIN, OP_VERSION

    return {DOMAIN: OP_VERSION} if any(isinstance(m, FusedTVConv) for m in model.modules()) else {}


def simplify(model_proto, how: str = "auto"):
    """onnxsim (preferred) or onnxslim; returns (model, tool name). ``how``: auto|onnxsim|onnxslim|none."""
    if how == "none":
        return model_proto, "none"
    errors = []
    if how in ("auto", "onnxsim"):
        try:
            import onnxsim

            simplified, ok = onnxsim.simplify(model_proto)
            if ok:
                return simplified, "onnxsim"
            errors.append("onnxsim: check failed")
        except ImportError:
            if how == "onnxsim":
                require("onnxsim", "export")
        except Exception as exc:  # onnxsim raises plain RuntimeError on odd graphs
            errors.append(f"onnxsim: {exc}")
    if how in ("auto", "onnxslim"):
        try:
            import onnxslim

            return onnxslim.slim(model_proto), "onnxslim"
        except ImportError:
            if how == "onnxslim":
                require("onnxslim", "export")
        except Exception as exc:
            errors.append(f"onnxslim: {exc}")
    if errors:
        raise EdgeconvError("ONNX simplification failed: " + "; ".join(errors))
    raise EdgeconvError("no ONNX simplifier installed: pip install 'edgeconv[export]'")


def set_metadata(model_proto, meta: dict) -> None:
    onnx = require("onnx", "export")
    for prop in list(model_proto.metadata_props):
        if prop.key == ONNX_METADATA_KEY:
            model_proto.metadata_props.remove(prop)
    onnx.helper.set_model_props(model_proto, {
        **{p.key: p.value for p in model_proto.metadata_props},
        ONNX_METADATA_KEY: json.dumps(meta, sort_keys=False)})
    model_proto.producer_name = "edgeconv"
    model_proto.doc_string = (
        f"edgeconv {meta.get('model')} {meta.get('direction')} image translator"
        if meta.get("kind") == "translator"
        else f"edgeconv {meta.get('model')} ({meta.get('op')}) {meta.get('aspp')} disc/cup segmenter"
        if meta.get("kind") == "segmenter"
        else f"edgeconv {meta.get('model')} face generator ({meta.get('lis_modules')} LIS modules)"
        if meta.get("kind") == "generator"
        else f"edgeconv {meta.get('model')} ({meta.get('op')}) face embedding")


def export_onnx(model: torch.nn.Module, input_size, batch: int | None, opset: int,
                simplify_with: str = "auto", channels: int = 3,
                output_name: str = OUTPUT_NAME) -> tuple[bytes, dict]:
    """Returns (serialized model without edgeconv metadata, info dict)."""
    onnx = require("onnx", "export")
    proto = torch_to_onnx(model, input_size, batch, opset, channels, output_name)
    proto, tool = simplify(proto, simplify_with)
    from edgeconv.export.onnx_function import add_function_bodies

    # after the simplifier (it never sees them): each edgeconv.TVConv node's standard-op body
    n_tvconv = add_function_bodies(proto)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:
        raise EdgeconvError(f"exported ONNX graph fails the ONNX checker: {exc}") from None
    ops: dict[str, int] = {}
    for node in proto.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return proto, {"opset": opset, "simplifier": tool, "ops": ops, "tvconv_nodes": n_tvconv}


def finalize_onnx(proto, meta: dict) -> bytes:
    set_metadata(proto, meta)
    return proto.SerializeToString()


def onnx_op_types(path_or_proto) -> dict[str, int]:
    onnx = require("onnx", "export")
    proto = onnx.load(str(path_or_proto)) if not hasattr(path_or_proto, "graph") else path_or_proto
    ops: dict[str, int] = {}
    for node in proto.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return ops
