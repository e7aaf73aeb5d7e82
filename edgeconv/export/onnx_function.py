"""Portable ``edgeconv.TVConv`` nodes: a model-local ONNX function (FunctionProto) per variant.

A fused ONNX file (``edgeconv.export.fused``) holds one ``edgeconv.TVConv`` node per folded
TVConv layer. ONNX Runtime runs such a node with the edgeconv kernel library when it is
registered (a registered custom-op kernel is preferred over a model-local function of the same
domain and name) and otherwise inlines the node's *function body*, which this module writes:
the exact standard-op form of the same computation from the node's inputs

    X (N, C, H, W) float32, W (C, h, k*k, wpad) (layout "c_h_kk_w8") or (C, k*k, h, w)
    ("c_kk_hw", stride 1) float32|float16|int8 (``edgeconv.kernels.pack``),
    scales (C, k*k) float32 (int8 only), B (C) or (C, h, wpad) / (C, h, w) float32 (optional)

    Wf = Cast(W) [* scales]                                     # dequantise
    below, "wpad" is w in the flat layout (its grid has no padding columns)
    stride 1, opset >= 18 (the ``col2im`` lowering on the padded grid h x wpad):
      W' = the k*k planes of Wf moved to input coordinates       # Pad + Slice per tap, Concat
      Y  = Col2Im(Reshape(Unsqueeze(Pad(X, wpad - W on the right)) * W'))
    stride 2 or opset < 18 (the ``slices`` lowering):
      Y  = sum_t Slice(Pad(X), tap t, stride s, h x wpad) * Wf[:, :, t]
    Y  = Clip/Relu(Y + B)[..., :w],  w = (W + 2p - k) // s + 1

Every weight op depends on initializers only (sizes come from W's shape), so ONNX Runtime folds
the unpacking into constants at session start; per run it executes Pad, Mul, Col2Im (or the
k*k strided Slices, Mul and Add) and a few scalar shape ops. Columns ``>= w`` of the packed
weights and the weights of taps outside the image are zero, so the product over the padded
width is the same sum the kernel computes; the last Slice drops the padding columns.

The structure depends on kernel size, stride, activation, whether there are scales, the bias
kind and the layout, so there is one function per variant, all named ``edgeconv.TVConv`` and told
apart by the ONNX IR 10 ``overload`` field (``k3s1_relu6_int8_channel``, ``..._flat``): ONNX
Runtime resolves the body by (domain, name, overload) and the kernel by (domain, name) only.
Spatial sizes are not baked in: one body serves every layer of its variant.
"""

from __future__ import annotations

import numpy as np

from edgeconv.kernels import DOMAIN, OP_TYPE
from edgeconv.kernels.pack import FLAT_LAYOUT, LAYOUT, LAYOUTS, WIDTH_ALIGN

#: ONNX IR version that carries FunctionProto.overload / NodeProto.overload
MIN_IR_VERSION = 10
ATTRIBUTES = ("kernel_size", "stride", "activation", "layout")
_DTYPES = {1: "float32", 10: "float16", 3: "int8"}  # TensorProto element types of W


def overload_name(k: int, s: int, act: str, weight_dtype: str, bias: str,
                  layout: str = LAYOUT) -> str:
    return f"k{k}s{s}_{act}_{weight_dtype}_{bias}" + ("_flat" if layout == FLAT_LAYOUT else "")


def make_function(k: int, s: int, act: str, weight_dtype: str, bias: str, layout: str,
                  opset: int):
    """The FunctionProto of one variant (``bias``: none | channel | pixel; ``layout``: one of
    ``edgeconv.kernels.pack.LAYOUTS``)."""
    from onnx import TensorProto, helper, numpy_helper

    p = k // 2
    nodes = []

    def const(name, value):
        nodes.append(helper.make_node("Constant", [], [name],
                                      value=numpy_helper.from_array(np.asarray(value), name)))
        return name

    def op(op_type, inputs, output, **attrs):
        nodes.append(helper.make_node(op_type, inputs, [output], **attrs))
        return output

    flat = layout == FLAT_LAYOUT
    w = op("Cast", ["W"], "w_f32", to=TensorProto.FLOAT)
    if weight_dtype == "int8":  # one scale per (channel, tap): (C, k*k) -> (C, 1, k*k, 1)
        axes = [2, 3] if flat else [1, 3]                       # flat: (C, k*k, 1, 1)
        sc = op("Unsqueeze", ["S", const("c_scale_axes", np.array(axes, np.int64))], "s_4d")
        w = op("Mul", [w, sc], "w_deq")
    # output grid (h, wpad) from the weights' shape: constant once W is an initializer
    hw = op("Gather", [op("Shape", ["W"], "w_shape"),
                       const("c_hw_idx", np.array([2, 3] if flat else [1, 3], np.int64))],
            "out_hw_pad")
    if s == 1 and opset >= 18:  # both want (C, k*k, h, wpad) / (k*k, C, h, wpad)
        acc = _col2im_sum(op, const, w if flat else op("Transpose", [w], "w_ckk",
                                                          perm=[0, 2, 1, 3]), hw, k)
    else:
        acc = _slices_sum(op, const, op("Transpose", [w], "w_taps",
                                        perm=[1, 0, 2, 3] if flat else [2, 0, 1, 3]), hw, k, s)
    if bias == "channel":
        b = op("Reshape", ["B", const("c_bias_shape", np.array([-1, 1, 1], np.int64))], "b_3d")
        acc = op("Add", [acc, b], "y_bias")
    elif bias == "pixel":  # (C, h, wpad): the padded grid the sum is on
        acc = op("Add", [acc, "B"], "y_bias")
    if act == "relu":
        acc = op("Relu", [acc], "y_act")
    elif act == "relu6":
        acc = op("Clip", [acc, const("c_zero", np.array(0.0, np.float32)),
                          const("c_six", np.array(6.0, np.float32))], "y_act")
    # the output width w = (W + 2p - k) // s + 1, from X's width
    if opset >= 15:
        width = op("Shape", ["X"], "x_width", start=3, end=4)
    else:
        shape = op("Shape", ["X"], "x_shape")
        width = op("Slice", [shape, const("c_three", np.array([3], np.int64)),
                             const("c_four", np.array([4], np.int64))], "x_width")
    num = op("Add", [width, const("c_wpad", np.array([2 * p - k], np.int64))], "w_num")
    div = op("Div", [num, const("c_s1", np.array([s], np.int64))], "w_div")
    w_out = op("Add", [div, const("c_one", np.array([1], np.int64))], "w_out")
    op("Slice", [acc, const("c_zero_i", np.array([0], np.int64)), w_out,
                 const("c_axis3", np.array([3], np.int64))], "Y")
    fn = helper.make_function(DOMAIN, OP_TYPE, ["X", "W", "S", "B"], ["Y"], nodes,
                              [helper.make_opsetid("", int(opset))], attributes=list(ATTRIBUTES),
                              doc_string="edgeconv.TVConv in standard ops (edgeconv.export."
                                         "onnx_function): runs where the edgeconv kernel library "
                                         "is not registered")
    fn.overload = overload_name(k, s, act, weight_dtype, bias, layout)
    return fn


def _slices_sum(op, const, wt, hw, k: int, s: int) -> str:
    """sum_t Slice(Pad(X), tap t, stride s, h x wpad) * wt[t]: (N, C, h, wpad); ``wt`` is
    (k*k, C, h, wpad)."""
    p = k // 2
    ends_base = op("Mul", [hw, const("c_stride2", np.array([s, s], np.int64))], "ends_base")
    pads = [0, 0, p, p, 0, 0, p, p + s * (WIDTH_ALIGN - 1)]  # room for wpad output columns
    xp = op("Pad", ["X", const("c_pads", np.array(pads, np.int64))], "x_pad")
    axes, steps = const("c_axes", np.array([2, 3], np.int64)), "c_stride2"
    acc = None
    for t in range(k * k):
        u, v = divmod(t, k)
        # rows u, u+s, ..., u+s*(h-1): end = h*s + u - s + 1 (likewise columns, wpad of them)
        ends = op("Add", [ends_base, const(f"c_end_{t}", np.array([u - s + 1, v - s + 1],
                                                                   np.int64))], f"ends_{t}")
        xs = op("Slice", [xp, const(f"c_start_{t}", np.array([u, v], np.int64)), ends, axes,
                          steps], f"x_tap_{t}")
        wt_t = op("Gather", [wt, const(f"c_tap_{t}", np.array(t, np.int64))], f"w_tap_{t}", axis=0)
        prod = op("Mul", [xs, wt_t], f"prod_{t}")
        acc = prod if acc is None else op("Add", [acc, prod], f"sum_{t}")
    return acc


def _col2im_sum(op, const, wk, hw, k: int) -> str:
    """Stride 1, opset >= 18: the ``col2im`` lowering on the padded grid (h, wpad): ONE Mul of
    X (right-padded to wpad columns with zeros) by the weights ``wk`` (C, k*k, h, wpad) moved to
    input coordinates (``edgeconv.ops.per_pixel.col2im_weights``: W'[t, m] = W[flip(t), m + d_t]),
    ONE Col2Im."""
    p, kk = k // 2, k * k
    wkp = op("Pad", [wk, const("c_wpads", np.array([0, 0, p, p, 0, 0, p, p], np.int64))],
             "w_ckk_pad")
    axes = const("c_axes3", np.array([1, 2, 3], np.int64))
    planes = []
    for t in range(kk):
        u, v = divmod(t, k)
        src = kk - 1 - t
        ends = op("Concat", [const(f"c_src_end_{t}", np.array([src + 1], np.int64)),
                             op("Add", [hw, const(f"c_uv_{t}", np.array([u, v], np.int64))],
                                f"uv_end_{t}")], f"ends_{t}", axis=0)
        planes.append(op("Slice", [wkp, const(f"c_start_{t}", np.array([src, u, v], np.int64)),
                                   ends, axes], f"w_col_{t}"))
    wcol = op("Concat", planes, "w_col", axis=1)                          # (C, k*k, h, wpad)
    # X right-padded with zeros to wpad columns (h = H at stride 1)
    pad_r = op("Sub", [op("Slice", [hw, const("c_one_a", np.array([1], np.int64)),
                                    const("c_two_a", np.array([2], np.int64))], "wpad_1d"),
                       op("Shape", ["X"], "x_width_c", start=3, end=4)], "pad_right")
    xpads = op("Concat", [const("c_xpads0", np.zeros(7, np.int64)), pad_r], "x_pads", axis=0)
    xr = op("Pad", ["X", xpads], "x_right")
    cols = op("Mul", [op("Unsqueeze", [xr, const("c_ax2", np.array([2], np.int64))], "x_5d"),
                      wcol], "cols_5d")                                   # (N, C, k*k, h, wpad)
    hwn = op("Mul", [op("Slice", [hw, const("c_zero_a", np.array([0], np.int64)), "c_one_a"],
                        "h_1d"), "wpad_1d"], "hw_numel")
    shape = op("Concat", [const("c_cols_shape", np.array([0, -1], np.int64)), hwn], "cols_shape",
               axis=0)
    cols = op("Reshape", [cols, shape], "cols")                           # (N, C*k*k, h*wpad)
    return op("Col2Im", [cols, hw, const("c_block", np.array([k, k], np.int64))], "y_col2im",
              pads=[p, p, p, p])


def tvconv_nodes(proto) -> list:
    return [n for n in proto.graph.node if n.domain == DOMAIN and n.op_type == OP_TYPE]


def _variant(node, inits: dict) -> tuple:
    attrs = {a.name: a for a in node.attribute}
    k, s = int(attrs["kernel_size"].i), int(attrs["stride"].i)
    act = attrs["activation"].s.decode() if "activation" in attrs else "none"
    layout = attrs["layout"].s.decode() if "layout" in attrs else LAYOUT
    if layout not in LAYOUTS:
        raise ValueError(f"edgeconv.TVConv node {node.name!r}: unknown layout {layout!r}")
    w = inits.get(node.input[1])
    if w is None:
        raise ValueError(f"edgeconv.TVConv node {node.name!r}: W is not an initializer")
    dtype = _DTYPES.get(w.data_type)
    if dtype is None:
        raise ValueError(f"edgeconv.TVConv node {node.name!r}: W element type {w.data_type}")
    bias = "none"
    if len(node.input) > 3 and node.input[3]:
        b = inits.get(node.input[3])
        bias = "channel" if b is not None and len(b.dims) == 1 else "pixel"
    return k, s, act, dtype, bias, layout


def onnx_opset(proto) -> int:
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def add_function_bodies(proto) -> int:
    """Give every ``edgeconv.TVConv`` node of ``proto`` (in place) its variant's function body;
    returns the number of nodes. Idempotent; raises the IR version to 10 where needed."""
    nodes = tvconv_nodes(proto)
    if not nodes:
        return 0
    inits = {i.name: i for i in proto.graph.initializer}
    have = {(f.domain, f.name, f.overload) for f in proto.functions}
    opset = onnx_opset(proto)
    for node in nodes:
        variant = _variant(node, inits)
        while len(node.input) < 4:  # a call names every formal input ("" = absent)
            node.input.append("")
        node.overload = overload_name(*variant)
        if (DOMAIN, OP_TYPE, node.overload) not in have:
            proto.functions.append(make_function(*variant, opset))
            have.add((DOMAIN, OP_TYPE, node.overload))
    proto.ir_version = max(int(proto.ir_version), MIN_IR_VERSION)
    return len(nodes)


def has_function_bodies(proto) -> bool:
    """Whether every ``edgeconv.TVConv`` node of ``proto`` has a model-local function body."""
    have = {(f.domain, f.name, f.overload) for f in proto.functions}
    return all((n.domain, n.op_type, n.overload) in have for n in tvconv_nodes(proto))


# --- the exporter's parity gate for a fused file: the body in stock ONNX Runtime, and the
# --- kernel where the library is built ------------------------------------------------------

BODY_LABEL = "ONNX (stock onnxruntime: standard-op function bodies)"
KERNEL_LABEL = "ONNX (onnxruntime + edgeconv kernels)"


def run_onnx(data: bytes, inputs: dict, with_kernels: bool) -> dict:
    """Run ``data`` on every input set, with the kernel library registered or without it."""
    from edgeconv.runtime.backends import ort_session

    sess = ort_session(data, threads=0, kernels="require" if with_kernels else "never")
    name = sess.get_inputs()[0].name
    return {k: sess.run(None, {name: v})[0] for k, v in inputs.items()}


def kernel_unusable_reason() -> str | None:
    """None if the built library can run this exporter's nodes, else one line why not."""
    from edgeconv import kernels

    try:
        kernels.load()
        lo, hi = kernels.op_versions()
    except kernels.KernelsMissing as exc:
        return str(exc)
    if not lo <= kernels.OP_VERSION <= hi:
        return (f"the edgeconv kernels {kernels.lib_version()} read layout versions {lo}..{hi}, "
                f"this exporter writes {kernels.OP_VERSION}")
    return None


def gate_both(data: bytes, inputs: dict, refs: dict, tol, file_name: str, guarded=None):
    """Parity of the function bodies (stock ONNX Runtime, no library) and of the kernel (where
    the library is built) against ``refs``; both must pass. Returns (summary, parity metadata);
    the summary is the kernel's where it ran, else the bodies'."""
    from edgeconv.export import parity as par

    guarded = guarded or par.guarded_run

    def gate(with_kernels: bool, label: str) -> dict:
        outs = guarded(lambda d, i: run_onnx(d, i, with_kernels), data, inputs, label)
        return par.check({k: par.compare(refs[k], outs[k]) for k in inputs}, *tol,
                         label=f"{file_name} [{label}]")

    body = gate(False, BODY_LABEL)
    why_not = kernel_unusable_reason()
    kernel = gate(True, KERNEL_LABEL) if why_not is None else None
    summary = dict(kernel if kernel is not None else body)
    summary["runtime"] = KERNEL_LABEL if kernel is not None else BODY_LABEL
    summary["function_body"] = {k: body[k] for k in ("max_abs_diff", "min_cosine")}
    summary["kernel"] = ({k: kernel[k] for k in ("max_abs_diff", "min_cosine")}
                         if kernel is not None else {"skipped": why_not})
    return summary, {"function_body": summary["function_body"], "kernel": summary["kernel"]}


def where_line(file_name: str, n_layers: int) -> str:
    return (f"{file_name}: {n_layers} TVConv layers as {DOMAIN}.{OP_TYPE} (edgeconv kernel where "
            f"loaded, standard-op body elsewhere)")


# ------------------------------------------------------ the fused form in the export loop
def fuse(model, weight_dtype: str = "float32") -> int:
    """Every folded TVConv (+ BatchNorm, activation) of ``model`` -> one edgeconv.TVConv node."""
    from edgeconv.export.fused import fuse_model

    return fuse_model(model, weight_dtype)


#: the export loop's gate of a fused ONNX file: bodies and kernel both gated
gate = gate_both


def kernels_metadata(weight_dtype: str, data: bytes | None = None) -> dict:
    """What a fused file needs at run time (checked by the device side before loading): the
    op version and the packed layouts its nodes use (``layouts``; ``layout`` is the same list
    as one comma-separated string, the key of files before layout version 2), and for the ONNX
    Runtime session's layout choice the convolution MACs per float that NCHWc reorders around
    the fused nodes would copy (``edgeconv.export.ort_layout``; from the converted model
    ``data``)."""
    from edgeconv import kernels

    try:  # the file runs without the library too (function bodies): its version is a note
        built = kernels.info()["version"]
    except kernels.KernelsMissing:
        built = None
    proto = None
    if data is not None:  # parsed once for both figures
        import onnx

        proto = onnx.load_from_string(data)
    layouts = _layouts_used(proto) if proto is not None else list(LAYOUTS)
    return {"domain": kernels.DOMAIN, "op": kernels.OP_TYPE, "op_version": kernels.OP_VERSION,
            "layout": ",".join(layouts), "layouts": layouts, "weight_dtype": weight_dtype,
            "library_version": built, "library": "edgeconv kernels (edgeconv/kernels)",
            "function_body": True, **_layout_entry(proto)}


def _layouts_used(proto) -> list[str]:
    used = {next((a.s.decode() for a in n.attribute if a.name == "layout"), LAYOUT)
            for n in tvconv_nodes(proto)}
    return [lay for lay in LAYOUTS if lay in used]


def _layout_entry(proto) -> dict:
    from edgeconv.export.ort_layout import conv_macs_per_fused_float

    ratio = conv_macs_per_fused_float(proto) if proto is not None else None
    return {} if ratio is None else {"conv_macs_per_reordered_float": round(ratio, 1)}


def report_lines(summary: dict, file_name: str, converted) -> list[str]:
    """The fused file's other run and where its layers run, one line each."""
    body, kern = summary["function_body"], summary["kernel"]
    first = (f"parity onnx   edgeconv kernel: not run ({kern['skipped']})" if "skipped" in kern
             else f"parity onnx   {BODY_LABEL}: max abs diff {body['max_abs_diff']:.2e}, "
                  f"min cosine {body['min_cosine']:.8f}")
    return [first, where_line(file_name, converted.fused_nodes)]


def kernel_available() -> bool:
    """Whether edgeconv's kernel library runs fused ONNX files here."""
    from edgeconv import kernels

    return kernels.available()
