"""``--formulation fused`` for TFLite: each TVConv as ONE ``STABLEHLO_COMPOSITE`` op.

Each ``FoldedTVConv`` (its BatchNorm already absorbed by the fold walker) and the ReLU/ReLU6
that follows it in its ``nn.Sequential`` become a :class:`LiteRTFusedTVConv`, which converts
(litert-torch 0.10, ``StableHLOCompositeBuilder``) to one ``STABLEHLO_COMPOSITE`` op named
``edgeconv.tvconv`` with attributes ``kernel_size``, ``stride``, ``activation``, ``layout``
(``h_w_kk_c``) and ``kernel_version`` (1), and four inputs, all NHWC::

    0  X        float32 (N, H, W, C)
    1  W        packed (h, w, k*k, C) float32 | float16 | int8 constant, border taps zero
    2  scales   (k*k, C) float32 (ones for float weights)
    3  bias     float32 (C,) or (h, w, C) (zeros when the layer has none)
    -> Y        float32 (N, h, w, C)

    y[n,i,j,c] = act(sum_{u,v} pad(x)[n, i*s+u, j*s+v, c] * W[i,j,u*k+v,c]*scales[u*k+v,c] + b)

The composite's decomposition subgraph is that formula in standard ops that LiteRT's builtin
(non-XNNPACK) kernels run fast, since a stock interpreter does not delegate the bodies of
composites: per tap t, one DEPTHWISE_CONV_2D of X with a constant one-hot k x k kernel (the
padded, strided input plane of the tap: no Pad, no Slice of the input, any batch size), times
the tap's weight plane W[:, :, t, :] (a Slice of W), summed with Adds; the bias Add carries the
fused Relu/Relu6. ``scales[t]`` multiply the tap's input plane (1/(k*k) of the weights'
size), not the weights, so float32 W gets no per-call pass beyond its Slices; float16/int8 W
is cast to float32 in the body (one pass over the weights per call: the price of the smaller
file without the delegate). A stock LiteRT interpreter with nothing of edgeconv loaded runs
the file exactly; with the edgeconv LiteRT delegate (``edgeconv.runtime.litert_delegate``) each
composite runs as one native kernel.

The model keeps its NCHW interface: the layer permutes NCHW -> NHWC in front of the composite
and back after it, and the converter (which runs NHWC internally) cancels these permutes
against its own layout transposes, so only the model's input/output transposes remain.
"""

from __future__ import annotations

import os

import numpy as np

import torch
from torch import nn

from edgeconv.export.tflite_export import _op_name, batch_free_bodies, composite_ops  # noqa: F401
from edgeconv.kernels import pack
from edgeconv.ops.tvconv import FoldedTVConv

#: the composite's name and attributes (the contract with the delegate)
COMPOSITE_NAME = "edgeconv.tvconv"  # edgeconv.runtime.litert_delegate.COMPOSITE_NAME
LAYOUT = pack.NHWC_LAYOUT
KERNEL_VERSION = 1
WEIGHT_DTYPES = pack.WEIGHT_DTYPES
_TORCH_DTYPE = {"float32": torch.float32, "float16": torch.float16, "int8": torch.int8}


#: one-hot depthwise kernels (C, 1, k, k) per (channels, k, tap), as numpy: a fresh tensor is
#: made from it per call (a tensor kept across torch.export traces would be a stale fake)
_ONE_HOT: dict[tuple[int, int, int], np.ndarray] = {}


def _one_hot(channels: int, kernel_size: int, tap: int) -> torch.Tensor:
    key = (channels, kernel_size, tap)
    if key not in _ONE_HOT:
        kern = np.zeros((channels, 1, kernel_size * kernel_size), np.float32)
        kern[:, :, tap] = 1.0
        _ONE_HOT[key] = kern.reshape(channels, 1, kernel_size, kernel_size)
    return torch.from_numpy(_ONE_HOT[key])


def decomposition(x: torch.Tensor, w: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor,
                  kernel_size: int, stride: int, out_hw, activation: str) -> torch.Tensor:
    """The composite's function in standard ops, NHWC (also the eager forward).

    Per tap: a depthwise conv with a one-hot kernel gives the padded, strided input plane
    (LiteRT: DEPTHWISE_CONV_2D, batch-free, no input copies), times the weight plane, summed.
    Measured against Pad + Slice/StridedSlice forms in docs/litert_delegate.md.
    """
    k, s, p = kernel_size, stride, kernel_size // 2
    c = int(x.shape[-1])
    wd = w if w.dtype == x.dtype else w.to(x.dtype)               # float16/int8: cast per call
    sc = scales.to(x.dtype)
    xc = x.permute(0, 3, 1, 2)  # the converter cancels these permutes against its own
    acc = None
    for t in range(k * k):
        tap = nn.functional.conv2d(xc, _one_hot(c, k, t).to(x.dtype), stride=s, padding=p,
                                   groups=c).permute(0, 2, 3, 1)
        # scales on the (small) input plane, never on the weights: no pass over W for them
        term = (tap * sc[t]) * wd[:, :, t, :]
        acc = term if acc is None else acc + term
    y = acc + bias.to(x.dtype)
    if activation == "relu":
        y = torch.relu(y)
    elif activation == "relu6":
        y = torch.clamp(y, 0.0, 6.0)
    return y


class LiteRTFusedTVConv(nn.Module):
    """A folded TVConv (+ fused BatchNorm) + activation as one ``edgeconv.tvconv`` composite."""

    def __init__(self, folded: FoldedTVConv, activation: str = "none",
                 weight_dtype: str = "float32"):
        super().__init__()
        from edgeconv.export.fused import take_fused_geometry

        take_fused_geometry(self, folded, activation, weight_dtype)
        h, w = self.out_hw
        kk, c = self.kernel_size ** 2, self.channels
        weight = folded.weight.detach().double().numpy()[0]  # (C, k*k, h, w)
        packed, scales = pack.pack_weights_nhwc(weight, self.in_hw, self.stride, weight_dtype)
        if scales is None:
            scales = torch.ones(kk, c, dtype=torch.float32).numpy()
        bias = folded.bias.detach().double().numpy()[0] if folded.bias is not None else None
        bias = pack.pack_bias_nhwc(bias, c, h, w) if bias is not None else None
        self.register_buffer("packed", torch.from_numpy(packed.copy()))
        self.register_buffer("scales", torch.from_numpy(scales.astype("float32")))
        self.register_buffer("packed_bias", torch.from_numpy(bias.copy()) if bias is not None
                             else torch.zeros(c, dtype=torch.float32))

    def extra_repr(self) -> str:
        return (f"{self.channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"in_hw={self.in_hw}, activation={self.activation}, weights={self.weight_dtype}")

    check_input = FoldedTVConv.check_input

    @property
    def attributes(self) -> dict:
        return {"kernel_size": int(self.kernel_size), "stride": int(self.stride),
                "activation": self.activation, "layout": LAYOUT,
                "kernel_version": KERNEL_VERSION}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        from litert_torch.backend.composite import StableHLOCompositeBuilder

        builder = StableHLOCompositeBuilder(COMPOSITE_NAME, attr=self.attributes)
        xh = x.permute(0, 2, 3, 1)
        xh, w, scales, bias = builder.mark_inputs(xh, self.packed, self.scales, self.packed_bias)
        y = decomposition(xh, w, scales, bias, self.kernel_size, self.stride, self.out_hw,
                          self.activation)
        y = builder.mark_outputs(y)
        return y.permute(0, 3, 1, 2)

    @property
    def weight_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.packed, self.scales,
                                                           self.packed_bias))


def fuse_model_litert(model: nn.Module, weight_dtype: str = "float32") -> int:
    """Replace (in place) every FoldedTVConv [+ ReLU/ReLU6 after it in a Sequential] by a
    LiteRTFusedTVConv (the one fusing walker, edgeconv.export.fused.fuse_model); returns how
    many. Idempotent (fused layers are left alone)."""
    from edgeconv.export.fused import fuse_model

    return fuse_model(model, weight_dtype, LiteRTFusedTVConv)


def kernels_metadata(weight_dtype: str, data: bytes | None = None) -> dict:
    """The ``kernels`` entry of a fused TFLite file's metadata (``data``, the converted file,
    adds nothing here: the delegate has no layout choice to make)."""
    meta = {"runtime": "litert", "op": COMPOSITE_NAME, "layout": LAYOUT,
            "kernel_version": KERNEL_VERSION, "weight_dtype": weight_dtype}
    try:
        from edgeconv.runtime import litert_delegate

        info = litert_delegate.info()
        if info.get("version"):
            meta["delegate_version"] = info["version"]
    except Exception:  # noqa: BLE001 - the file is portable: the delegate is optional
        pass
    return meta


def run_both(data: bytes, inputs: dict) -> dict:
    """Run a fused TFLite file on ``inputs`` with the delegate (when the library is available
    and passes its self-test) and without it (the decomposition): {"delegate": outs or None,
    "portable": outs}."""
    from edgeconv.export import tflite_export as tfl
    from edgeconv.runtime import litert_delegate as ld

    out = {"delegate": None, "portable": None}
    delegate = ld.load_delegate(threads=1)
    if delegate is not None:
        interp = ld.make_interpreter(data, num_threads=1, delegates=[delegate])
        out["delegate"] = {k: tfl.run_tflite(interp, v) for k, v in inputs.items()}
    interp = ld.make_interpreter(data, num_threads=1, delegates=[])
    out["portable"] = {k: tfl.run_tflite(interp, v) for k, v in inputs.items()}
    return out


PORTABLE_LABEL = "TFLite (LiteRT interpreter, portable body)"
DELEGATE_LABEL = "TFLite (LiteRT + edgeconv delegate)"


def gate_both(data: bytes, inputs: dict, refs: dict, tol: tuple, name: str) -> tuple[dict, dict]:
    """The parity gate of a fused TFLite file: run it with the delegate (when available) and
    without it, each against ``refs`` (the float64 reference); both must pass.

    Returns (summary of the portable run with a ``delegate`` entry, metadata ``parity``
    fields for both runs). Raises ParityError on the first failure.
    """
    from edgeconv.export import parity as par
    from edgeconv.export.parity import guarded_run as _guarded
    from edgeconv.runtime import litert_delegate as ld

    both = _guarded(run_both, data, inputs, "the LiteRT interpreter")
    runs = {}
    for key, label in (("delegate", DELEGATE_LABEL), ("portable", PORTABLE_LABEL)):
        outs = both[key]
        if outs is None:
            continue
        results = {k: par.compare(refs[k], outs[k]) for k in inputs}
        runs[key] = par.check(results, *tol, label=f"{name} [{label}]")
        runs[key]["runtime"] = label
    summary = dict(runs["portable"])
    why = None if "delegate" in runs else (
        "delegate library not built" if ld.delegate_path() is None
        else "delegate dropped (failed its self-test)" if os.environ.get(ld.ENV_SELFTEST) != "0"
        else f"disabled ({ld.ENV_SELFTEST}=0)")
    summary["delegate"] = runs.get("delegate") or {"skipped": why}
    meta = {}
    for key in ("portable", "delegate"):
        if key in runs:
            r = runs[key]
            meta[key] = {"runtime": r["runtime"], "max_abs_diff": r["max_abs_diff"],
                         "min_cosine": r["min_cosine"], "passed": r["passed"]}
        else:
            meta[key] = {"skipped": why}
    return summary, meta


# ------------------------------------------------------ the fused form in the export loop
def fuse(model: nn.Module, weight_dtype: str = "float32") -> int:
    """Every folded TVConv (+ BatchNorm, activation) of ``model`` -> one composite."""
    return fuse_model_litert(model, weight_dtype)


#: the export loop's gate of a fused TFLite file: with the delegate and without, both gated
gate = gate_both


def report_lines(summary: dict, file_name: str, converted) -> list[str]:
    """The delegate's run, one line."""
    d = summary["delegate"]
    return [f"parity tflite {DELEGATE_LABEL}: " + (
        f"max abs diff {d['max_abs_diff']:.2e}, min cosine {d['min_cosine']:.8f}"
        if "skipped" not in d else f"not run ({d['skipped']})")]


def kernel_available() -> bool:
    """Whether the edgeconv LiteRT delegate is built here (it runs the composites)."""
    from edgeconv.runtime import litert_delegate as ld

    return ld.delegate_path() is not None
