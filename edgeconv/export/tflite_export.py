"""Folded model -> TFLite bytes with litert-torch (no TensorFlow), metadata, float16 weights.

* Conversion: ``litert_torch.convert(model, (x,))``; the NCHW interface of the torch model is
  kept (litert-torch inserts the transposes). Dynamic batch: litert-torch 0.10 cannot lower
  torch.export dynamic dims through reductions, so the file is converted at batch 1 with a
  reshape-free head (:func:`batch_free_head`) and the interpreter resizes the input at run
  time (``resize_tensor_input``); the parity gate runs batch 1 and 3. Models whose graph
  reshapes over the batch axis (ShuffleNetV2's channel shuffle) cannot be resized: the gate
  refuses them and the error says to use ``--batch N`` (a file converted at that batch).
* Metadata: the flatbuffer's ``metadata`` list gets an entry named ``edgeconv`` whose buffer
  holds the same JSON as the sidecar, written with the ``flatbuffers`` package and the TFLite
  schema module shipped in ai-edge-litert (``schema_py_generated``). Refused (sidecar only)
  when the model keeps buffers outside the flatbuffer (offset/size buffers, > 2 GB models).
* ``--fp16``: every float32 constant tensor of more than ``FP16_MIN_ELEMENTS`` values is
  stored as float16 and a DEQUANTIZE op (float16 -> float32) is inserted in front of its
  consumers: the layout the TensorFlow converter produces for float16 post-training
  quantization, which XNNPACK folds back into float32 weights at load time (or runs as is).
"""

from __future__ import annotations

import json

import numpy as np
import torch

from edgeconv.errors import EdgeconvError, require
from edgeconv.metadata import TFLITE_METADATA_NAME

FP16_MIN_ELEMENTS = 16
RUNTIME_LABEL = "TFLite (LiteRT interpreter)"


def convert(subject, net, options, formulation: str | None, weight_dtype: str):
    """The TFLite conversion of the export loop (edgeconv.export.pipeline): -> Converted.

    The subject's ``tflite_net`` gives the form litert-torch lowers; a kind whose graph bakes
    the batch in (``tflite_fixed_batch``) gets a fixed-batch file (batch 1 where the run is
    dynamic) gated on its own inputs. Fused composites' bodies are made batch-free; --fp16
    stores float weights as float16."""
    from edgeconv.export.formulations import FUSED
    from edgeconv.export.job import Converted

    batch = options.batch or (1 if subject.tflite_fixed_batch else None)
    meta = {}
    if subject.tflite_net is not None:
        net, extra = subject.tflite_net(net, batch is None)
        meta.update(extra)
    data = export_tflite(net, subject.input_size, batch, channels=subject.channels)
    fused = formulation == FUSED
    if fused:
        data, _ = batch_free_bodies(data)
    if batch is not None and options.batch is None:
        meta["batch"] = batch
    meta["precision"] = "float32"
    fp16 = options.fp16_for("tflite")
    if fp16:
        data, meta["fp16_tensors"] = to_fp16_weights(data)
        meta["precision"] = "float16-weights"
    # fused weight storage given with --weight-dtype (--fp16 already names a float16 file);
    # the default storage adds nothing
    wsuffix = {"float32": "", "float16": "" if fp16 else "_fp16", "int8": "_int8"}
    suffix = ("_fp16" if fp16 else "") + (wsuffix[weight_dtype] if fused and
                                          options.weight_dtype else "")
    inputs = (subject.inputs_at(batch) if batch is not None and options.batch is None
              and subject.inputs_at is not None else None)
    return Converted(data, data, meta, suffix, inputs=inputs, dynamic_batch=batch is None)


def run(data: bytes, inputs: dict, dynamic_batch: bool = False) -> dict:
    """The file's outputs in the LiteRT interpreter for the parity gate."""
    from edgeconv.export.parity import guarded_run

    def _run(data, inputs):
        interp = make_interpreter(data)
        return {k: run_tflite(interp, v) for k, v in inputs.items()}

    return guarded_run(_run, data, inputs, "the LiteRT interpreter",
                       hint="export it with --batch N" if dynamic_batch else None)


def finalize(data: bytes, meta: dict) -> tuple[bytes, bool]:
    """The file's bytes with ``meta`` embedded (False: too big, sidecar only)."""
    return embed_metadata(bytes(data), meta)


class GlobalAvgPool(torch.nn.Module):
    """(N, C, H, W) -> (N, C) as one MEAN op: no Reshape that would pin the batch size."""

    def forward(self, x):
        return x.mean((2, 3))


def batch_free_head(model: torch.nn.Module) -> int:
    """AdaptiveAvgPool2d(1) -> Flatten becomes one mean over (H, W) (exact), in place.

    litert-torch 0.10 cannot lower torch.export dynamic batch dims through reductions, so
    TFLite files are converted at batch 1 and resized by the interpreter at run time
    (``resize_tensor_input``); that works only when no Reshape bakes the batch size in.
    """
    n = 0
    for module in model.modules():
        if not isinstance(module, torch.nn.Sequential):
            continue
        keys = list(module._modules)
        for a, b in zip(keys, keys[1:]):
            pool, flat = module._modules[a], module._modules[b]
            if (isinstance(pool, torch.nn.AdaptiveAvgPool2d)
                    and pool.output_size in (1, (1, 1), [1, 1])
                    and isinstance(flat, torch.nn.Flatten) and flat.start_dim == 1):
                module._modules[a] = GlobalAvgPool()
                module._modules[b] = torch.nn.Identity()
                n += 1
    return n


def export_tflite(model: torch.nn.Module, input_size, batch: int | None,
                  channels: int = 3) -> bytes:
    """Convert at ``batch`` (None = dynamic: converted at batch 1, resizable at run time)."""
    import copy

    from edgeconv.quiet import third_party_output

    model = copy.deepcopy(model).eval()
    batch_free_head(model)
    x = torch.zeros(batch or 1, channels, *input_size)
    # the converter's own timeline, absl/oneDNN/torchao notices: shown only with `edgeconv -v`
    with third_party_output(), torch.no_grad():
        litert_torch = require("litert_torch", "tflite", package="litert-torch")
        try:
            edge = litert_torch.convert(model, (x,))
            data = bytes(edge.model_content())
        except Exception as exc:
            raise EdgeconvError(f"TFLite conversion failed: {str(exc).splitlines()[0][:300]} "
                                "(`edgeconv -v export ...` shows the converter's log)") from None
    return data


def _schema():
    return require("ai_edge_litert.schema_py_generated", "export", package="ai-edge-litert")


def _load(data: bytes):
    fb = _schema()
    return fb.ModelT.InitFromObj(fb.Model.GetRootAs(bytearray(data), 0))


def _save(model_t) -> bytes:
    flatbuffers = require("flatbuffers", "export")
    builder = flatbuffers.Builder(1024)
    builder.Finish(model_t.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _has_external_buffers(model_t) -> bool:
    return any((b.offset or 0) > 1 for b in (model_t.buffers or []))


def embed_metadata(data: bytes, meta: dict) -> tuple[bytes, bool]:
    """Add/replace metadata entry ``edgeconv``; returns (bytes, embedded?)."""
    try:
        fb = _schema()
        model_t = _load(data)
    except Exception:
        return data, False
    if _has_external_buffers(model_t):
        return data, False
    payload = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8).copy()
    model_t.metadata = [m for m in (model_t.metadata or [])
                        if (m.name.decode() if isinstance(m.name, bytes) else m.name)
                        != TFLITE_METADATA_NAME]
    buf = fb.BufferT()
    buf.data = payload
    model_t.buffers.append(buf)
    entry = fb.MetadataT()
    entry.name = TFLITE_METADATA_NAME
    entry.buffer = len(model_t.buffers) - 1
    model_t.metadata.append(entry)
    try:
        out = _save(model_t)
        ok = read_tflite_metadata(out) == json.loads(json.dumps(meta))
    except Exception:  # noqa: BLE001 - embedding is best effort: the sidecar always exists
        return data, False
    return (out, True) if ok else (data, False)


def read_tflite_metadata(path_or_bytes) -> dict | None:
    """The embedded ``edgeconv`` metadata of a .tflite file, or None."""
    data = path_or_bytes if isinstance(path_or_bytes, (bytes, bytearray)) else open(path_or_bytes, "rb").read()
    fb = _schema()
    m = fb.Model.GetRootAs(bytearray(data), 0)
    for i in range(m.MetadataLength()):
        md = m.Metadata(i)
        name = md.Name().decode() if md.Name() else ""
        if name == TFLITE_METADATA_NAME:
            raw = m.Buffers(md.Buffer()).DataAsNumpy().tobytes()
            return json.loads(raw.decode("utf-8"))
    return None


def to_fp16_weights(data: bytes) -> tuple[bytes, int]:
    """Store float32 constant tensors as float16 + DEQUANTIZE; returns (bytes, n converted)."""
    fb = _schema()
    model_t = _load(data)
    if _has_external_buffers(model_t):
        raise EdgeconvError("--fp16: the model keeps weights outside the flatbuffer; not supported")
    codes = model_t.operatorCodes
    deq = None
    for i, code in enumerate(codes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == fb.BuiltinOperator.DEQUANTIZE:
            deq = i
    if deq is None:
        code = fb.OperatorCodeT()
        code.builtinCode = fb.BuiltinOperator.DEQUANTIZE
        code.deprecatedBuiltinCode = fb.BuiltinOperator.DEQUANTIZE
        code.version = 2
        codes.append(code)
        deq = len(codes) - 1
    converted = 0
    composite = getattr(fb.BuiltinOperator, "STABLEHLO_COMPOSITE", None)
    for sg in model_t.subgraphs:
        consumers: dict[int, list] = {}
        # inputs of edgeconv.tvconv composites keep their storage (--weight-dtype): the
        # delegate needs them constant, not behind a DEQUANTIZE
        pinned = {int(t) for op in sg.operators if composite is not None
                  and max(codes[op.opcodeIndex].builtinCode,
                          codes[op.opcodeIndex].deprecatedBuiltinCode) == composite
                  for t in (op.inputs if op.inputs is not None else [])}
        for op in sg.operators:
            for t in (op.inputs if op.inputs is not None else []):
                if t >= 0:
                    consumers.setdefault(int(t), []).append(op)
        new_ops = []
        for idx, tensor in enumerate(sg.tensors):
            if tensor.type != fb.TensorType.FLOAT32 or idx not in consumers or idx in pinned:
                continue
            buf = model_t.buffers[tensor.buffer]
            if buf.data is None or len(buf.data) < 4 * FP16_MIN_ELEMENTS:
                continue
            values = np.frombuffer(np.asarray(buf.data, dtype=np.uint8).tobytes(), dtype=np.float32)
            half = values.astype(np.float16)
            new_buf = fb.BufferT()
            new_buf.data = np.frombuffer(half.tobytes(), dtype=np.uint8).copy()
            model_t.buffers.append(new_buf)
            t16 = fb.TensorT()
            t16.shape = tensor.shape
            t16.shapeSignature = tensor.shapeSignature
            t16.type = fb.TensorType.FLOAT16
            t16.buffer = len(model_t.buffers) - 1
            t16.name = (tensor.name.decode() if isinstance(tensor.name, bytes) else tensor.name) + "_fp16"
            sg.tensors.append(t16)
            # the float32 tensor becomes the DEQUANTIZE output (no data of its own); its
            # float32 data is dropped unless another tensor still shares the buffer
            old = tensor.buffer
            empty = fb.BufferT()
            model_t.buffers.append(empty)
            tensor.buffer = len(model_t.buffers) - 1
            if not any(t.buffer == old for g in model_t.subgraphs for t in g.tensors):
                model_t.buffers[old].data = None
            op = fb.OperatorT()
            op.opcodeIndex = deq
            op.inputs = [len(sg.tensors) - 1]
            op.outputs = [idx]
            new_ops.append(op)
            converted += 1
        sg.operators = new_ops + list(sg.operators)
    return _save(model_t), converted


def make_interpreter(data: bytes, num_threads: int | None = None):
    interp_mod = require("ai_edge_litert.interpreter", "export", package="ai-edge-litert")
    from edgeconv.quiet import third_party_output

    with third_party_output():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
        interp = interp_mod.Interpreter(model_content=data, num_threads=num_threads)
        interp.allocate_tensors()
    return interp


def run_tflite(interpreter, x: np.ndarray) -> np.ndarray:
    inp = interpreter.get_input_details()[0]
    if tuple(inp["shape"]) != tuple(x.shape):
        interpreter.resize_tensor_input(inp["index"], list(x.shape), strict=False)
        interpreter.allocate_tensors()
        inp = interpreter.get_input_details()[0]
    interpreter.set_tensor(inp["index"], x.astype(np.float32, copy=False))
    interpreter.invoke()
    out = interpreter.get_output_details()[0]
    return interpreter.get_tensor(out["index"]).copy()


def tflite_op_names(data: bytes) -> dict[str, int]:
    """Op name -> count, from the interpreter (after allocate_tensors)."""
    interp = make_interpreter(data)
    ops: dict[str, int] = {}
    for d in interp._get_ops_details():
        ops[d["op_name"]] = ops.get(d["op_name"], 0) + 1
    return ops


# ------------------------------------------------------------------ edgeconv.tvconv composites
def _op_name(model_t, op) -> int:
    code = model_t.operatorCodes[op.opcodeIndex]
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def composite_ops(model_t):
    """(subgraph index, op) of every ``edgeconv.tvconv`` composite."""
    from edgeconv.runtime.litert_delegate import COMPOSITE_NAME

    fb = _schema()
    out = []
    for si, sg in enumerate(model_t.subgraphs):
        for op in sg.operators:
            if _op_name(model_t, op) == fb.BuiltinOperator.STABLEHLO_COMPOSITE:
                opts = op.builtinOptions2
                name = getattr(opts, "name", b"") or b""
                if (name.decode() if isinstance(name, bytes) else name) == COMPOSITE_NAME:
                    out.append((si, op))
    return out


def batch_free_bodies(data: bytes) -> tuple[bytes, int]:
    """Let the composites' decomposition bodies run any batch size; returns (bytes, n ops).

    The current body takes its input planes with depthwise convs, which carry any batch: for
    it this only writes the batch signatures. Bodies written before (Pad + Slices of the input:
    the shipped self-test file, older exports) need the slice fix: litert-torch converts at
    batch 1 and writes every slice of the input with an explicit batch extent of 1 (SLICE
    size[0] = 1, STRIDED_SLICE end[0] = 1), so a file resized to batch N would compute one
    image. The slices of the input chain (X -> PAD -> SLICE /
    STRIDED_SLICE) always take the whole batch axis: SLICE gets size[0] = -1 (a new constant:
    size tensors are shared with RESHAPEs of the weights) and STRIDED_SLICE the begin/end mask
    bit of axis 0.
    """
    fb = _schema()
    model_t = _load(data)
    ops = fb.BuiltinOperator
    patched = 0
    for _, comp in composite_ops(model_t):
        sg = model_t.subgraphs[comp.builtinOptions2.decompositionSubgraphIndex]
        chain = {int(sg.inputs[0])}
        for op in sg.operators:  # topological order: the chain grows as it is walked
            code = _op_name(model_t, op)
            if code not in (ops.PAD, ops.SLICE, ops.STRIDED_SLICE) or int(op.inputs[0]) not in chain:
                continue
            chain.add(int(op.outputs[0]))
            if code == ops.SLICE:
                size_t = sg.tensors[int(op.inputs[2])]
                raw = model_t.buffers[size_t.buffer].data
                dtype = np.int64 if size_t.type == fb.TensorType.INT64 else np.int32
                size = np.frombuffer(np.asarray(raw, np.uint8).tobytes(), dtype).copy()
                if size[0] == -1:
                    continue
                size[0] = -1
                buf = fb.BufferT()
                buf.data = np.frombuffer(size.tobytes(), np.uint8).copy()
                model_t.buffers.append(buf)
                t = fb.TensorT()
                t.shape, t.type = [len(size)], size_t.type
                t.buffer = len(model_t.buffers) - 1
                t.name = "edgeconv_batch_free_size"
                sg.tensors.append(t)
                op.inputs[2] = len(sg.tensors) - 1
                patched += 1
            elif code == ops.STRIDED_SLICE:
                o = op.builtinOptions
                o.beginMask = int(o.beginMask or 0) | 1
                o.endMask = int(o.endMask or 0) | 1
                patched += 1
        # every tensor the input reaches carries the batch: signature -1 on axis 0
        batched = {int(sg.inputs[0])}
        for op in sg.operators:
            if any(int(t) in batched for t in op.inputs):
                batched.update(int(t) for t in op.outputs)
        for idx in batched:
            t = sg.tensors[idx]
            if t.shape is not None and len(t.shape) and int(t.shape[0]) == 1:
                sig = [int(v) for v in t.shape]
                sig[0] = -1
                t.shapeSignature = sig
    return _save(model_t), patched
