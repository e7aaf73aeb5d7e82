"""Check every ``edgeconv.TVConv`` node of an ONNX file before a runtime sees it (torch-free).

The kernel checks tensors against attributes when it runs; a file whose attributes disagree
with its weights (a kernel size the packed weights do not have, a stride of 2^32 + 1, scales
or a bias of the wrong size) is refused here instead, when the file is opened, in one line.
Reads the serialized model with the package's own protobuf reader (no onnx package).
"""

from __future__ import annotations

from edgeconv.errors import EdgeconvError
from edgeconv.kernels.pack import FLAT_LAYOUT as _FLAT
from edgeconv.kernels.pack import LAYOUT as _ROWS
from edgeconv.protobuf import fields, int64, repeated_ints

_KERNEL_SIZES, _STRIDES = (3, 5), (1, 2)


class FusedNodeError(EdgeconvError):
    """A fused node whose attributes disagree with its tensors."""


def _node(msg: bytes) -> dict:
    node = {"inputs": [], "attrs": {}, "op": "", "domain": "", "name": ""}
    for num, wt, v in fields(msg):
        if num == 1 and wt == 2:
            node["inputs"].append(bytes(v).decode("utf-8", "replace"))
        elif num == 3 and wt == 2:
            node["name"] = bytes(v).decode("utf-8", "replace")
        elif num == 4 and wt == 2:
            node["op"] = bytes(v).decode("utf-8", "replace")
        elif num == 7 and wt == 2:
            node["domain"] = bytes(v).decode("utf-8", "replace")
        elif num == 5 and wt == 2:
            name, val = "", None
            for n2, w2, v2 in fields(v):
                if n2 == 1 and w2 == 2:
                    name = bytes(v2).decode("utf-8", "replace")
                elif n2 == 3 and w2 == 0:
                    val = int64(v2)
                elif n2 == 4 and w2 == 2:
                    val = bytes(v2).decode("utf-8", "replace")
            node["attrs"][name] = val
    return node


def _initializer_dims(msg: bytes) -> tuple[str, list[int]]:
    name = ""
    for num, wt, v in fields(msg):
        if num == 8 and wt == 2:
            name = bytes(v).decode("utf-8", "replace")
    return name, repeated_ints(1, msg)


def check_fused_nodes(data: bytes, where: str, domain: str = "edgeconv",
                      op: str = "TVConv") -> int:
    """Raise :class:`FusedNodeError` (one line naming ``where`` and the node) for the first
    fused node whose attributes and constant tensors disagree; returns how many were checked."""
    graph = None
    try:
        for num, wt, v in fields(data):
            if num == 7 and wt == 2:
                graph = v
        if graph is None:
            return 0
        nodes, inits = [], {}
        for num, wt, v in fields(graph):
            if num == 1 and wt == 2:
                nd = _node(v)
                if nd["domain"] == domain and nd["op"] == op:
                    nodes.append(nd)
            elif num == 5 and wt == 2:
                name, dims = _initializer_dims(v)
                inits[name] = dims
    except ValueError:
        raise FusedNodeError(f"{where}: not a readable ONNX model (malformed protobuf)") \
            from None
    for nd in nodes:
        label = f"{where}: {domain}.{op} node {nd['name'] or '(unnamed)'}"
        k, s = nd["attrs"].get("kernel_size"), nd["attrs"].get("stride")
        if k not in _KERNEL_SIZES or s not in _STRIDES:
            raise FusedNodeError(f"{label}: kernel_size {k!r} / stride {s!r} not supported "
                                 f"(kernel_size 3 or 5, stride 1 or 2)")
        layout = nd["attrs"].get("layout", _ROWS)
        if layout not in (_ROWS, _FLAT) or (layout == _FLAT and s != 1):
            raise FusedNodeError(f"{label}: weight layout {layout!r} not supported ({_ROWS!r}, "
                                 f"or {_FLAT!r} at stride 1)")
        ins = nd["inputs"] + [""] * (4 - len(nd["inputs"]))
        w = inits.get(ins[1])
        if w is None:
            continue  # weights computed in the graph: the kernel checks them when it runs
        if layout == _FLAT:
            if len(w) != 4 or w[1] != k * k or min(w) < 1 or w[2] * w[3] < 8:
                raise FusedNodeError(f"{label}: weights of shape {w} do not fit kernel_size {k}"
                                     f" (expected (C, k*k, h, w) with h*w >= 8, layout {_FLAT})")
            c, h, wpad = w[0], w[2], w[3]
        else:
            if len(w) != 4 or w[2] != k * k or w[3] % 8 or min(w) < 1:
                raise FusedNodeError(f"{label}: weights of shape {w} do not fit kernel_size {k} "
                                     "(expected (C, h, k*k, round_up(w, 8)))")
            c, h, wpad = w[0], w[1], w[3]
        sc = inits.get(ins[2]) if ins[2] else None
        if sc is not None and _numel(sc) != c * k * k:
            raise FusedNodeError(f"{label}: scales of shape {sc} do not hold C*k*k = {c * k * k}"
                                 " values")
        b = inits.get(ins[3]) if ins[3] else None
        if b is not None and _numel(b) not in (c, c * h * wpad):
            raise FusedNodeError(f"{label}: bias of shape {b} holds neither C = {c} nor "
                                 f"C*h*{'w' if layout == _FLAT else 'round_up(w, 8)'} = "
                                 f"{c * h * wpad} values")
    return len(nodes)


def _numel(dims) -> int:
    n = 1
    for d in dims:
        n *= d
    return n
