"""Speed of the folded TVConv formulations vs depthwise, in ONNX Runtime and LiteRT.

Not a test: run it on the machine you want figures for, e.g.

    python benchmarks/export_speed.py                 # ~10 min on 2 cores
    python benchmarks/export_speed.py --quick         # ~3 min, fewer configurations

Prints and writes ``docs/export_speed.md`` (``--out``):

1. per-op time of every folded-TVConv formulation vs a depthwise conv at the same shape,
   for every MobileNetV2 x0.5 layer shape (96x96 input), ONNX Runtime, batch 1 and 16;
2. whole-model max FPS over batch {1,2,4,8,16} x threads {1,2}: MB x0.5 TVConv (every
   formulation, low-rank variants) vs MB x1.0 / x0.5 depthwise, in ONNX Runtime and LiteRT;
3. folded vs in-graph-generator TVConv (the generator left in the exported graph);
4. ONNX Runtime session settings (graph optimisation level, spinning, execution mode).

Timing (``edgeconv.profiling.timing.measure_round_robin``): every configuration runs
warm-up runs, then timed runs for ``--min-time`` seconds; the latency figure is the MEDIAN run
(throughput = batch / median), so that a shared, noisy machine (other processes) biases every
model alike. Models of one configuration are measured interleaved (round robin), several
rounds, best round kept.

The fused-kernel section is its own benchmark: ``python benchmarks/fused_kernel.py``.
"""

from __future__ import annotations

import argparse
import copy
import io
import os
import platform
import sys
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edgeconv.profiling.timing import measure_round_robin  # noqa: E402

warnings.simplefilter("ignore")


def randomise(model, seed=0):
    from edgeconv.models.randomise import randomise as r

    return r(model, seed)


def build_models(size=96, generator=False):
    import torch

    from edgeconv.ops.folding import fold_model
    from edgeconv.models import create_model

    torch.manual_seed(0)
    out = {}
    for name, width_name in (("MB x1.0 depthwise", "mbv2_x1_0"), ("MB x0.5 depthwise", "mbv2_x0_5")):
        m = randomise(create_model(width_name, op="depthwise", input_size=size).eval())
        out[name] = fold_model(m, fuse_bn=True)
    kw = {} if generator else dict(inter_channels=8, inter_layers=1)
    tv = randomise(create_model("mbv2_x0_5", op="tvconv", input_size=size, op_kwargs=kw).eval())
    return out, tv


def to_onnx(model, path, size=96, batch=None, opset=18, constant_folding=True):
    import torch

    from edgeconv.export.onnx_export import simplify

    import onnx

    x = torch.zeros(batch or 1, 3, size, size)
    buf = io.BytesIO()
    dyn = None if batch else {"input": {0: "N"}, "embedding": {0: "N"}}
    with torch.no_grad():
        torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=opset,
                          input_names=["input"], output_names=["embedding"], dynamic_axes=dyn,
                          do_constant_folding=constant_folding)
    proto = onnx.load_from_string(buf.getvalue())
    if constant_folding:
        proto, _ = simplify(proto)
    onnx.save(proto, str(path))
    return path


def ort_session(path, threads):
    """A runner of ``path`` in a session opened as edgeconv opens every ONNX model."""
    from edgeconv.runtime.backends import ort_session as session

    sess = session(Path(path).read_bytes(), threads)
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})


def ort_settings_session(path, threads, opt="all", spinning=True, sequential=True,
                         mem_pattern=True, nchwc=True, constant_folding=True):
    """A runner in a session of this benchmark's own: the ORT settings section and the
    generator section deliberately vary session options (graph optimisation level, spinning,
    execution mode, memory pattern, NCHWc, constant folding), which
    ``edgeconv.runtime.backends.ort_session`` does not expose."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[opt]
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    so.execution_mode = (ort.ExecutionMode.ORT_SEQUENTIAL if sequential
                         else ort.ExecutionMode.ORT_PARALLEL)
    so.enable_mem_pattern = mem_pattern
    so.log_severity_level = 3
    disabled = ([] if nchwc else ["NchwcTransformer"]) + (
        [] if constant_folding else ["ConstantFolding"])
    kw = {"disabled_optimizers": disabled} if disabled else {}
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"], **kw)
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})


def tflite_runner(data, threads, batch, size):
    from edgeconv.export.tflite_export import make_interpreter

    interp = make_interpreter(data, num_threads=threads)
    inp = interp.get_input_details()[0]
    if inp["shape"][0] != batch:
        interp.resize_tensor_input(inp["index"], [batch, 3, size, size], strict=False)
        interp.allocate_tensors()
    idx = interp.get_input_details()[0]["index"]
    out = interp.get_output_details()[0]["index"]

    def run(x):
        interp.set_tensor(idx, x)
        interp.invoke()
        return interp.get_tensor(out)
    return run


# --------------------------------------------------------------------- per-op
def per_op_table(args, tmp):

    from edgeconv.models.mobilenetv2 import INVERTED_RESIDUAL_SETTING
    from edgeconv.models.common import make_divisible
    from edgeconv.ops.depthwise import DepthwiseConv
    from edgeconv.ops.tvconv import TVConv

    shapes = []
    width, hw, in_ch = 0.5, 96, make_divisible(32 * 0.5, 8)
    for t, c, n, s in INVERTED_RESIDUAL_SETTING:
        out_ch = make_divisible(c * width, 8)
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = int(round(in_ch * t))
            key = (hidden, hw, stride)
            if key not in shapes:
                shapes.append(key)
            hw = (hw + 2 - 3) // stride + 1
            in_ch = out_ch
    rows = []
    for (c, h, stride) in shapes:
        layer = randomise(TVConv(c, stride=stride, in_hw=(h, h), inter_channels=8,
                                 inter_layers=1)).eval()
        folded = layer.fold()
        dw = DepthwiseConv(c, stride=stride, in_hw=(h, h)).eval()
        paths = {}
        for form in args.formulations:
            f = copy.deepcopy(folded).set_formulation(form)
            paths[form] = _export_layer(f, c, h, tmp / f"op_{c}_{h}_{stride}_{form}.onnx")
        paths["depthwise"] = _export_layer(dw, c, h, tmp / f"op_{c}_{h}_{stride}_dw.onnx")
        row = {"shape": f"C={c} {h}x{h} s{stride}"}
        for batch in (1, 16):
            x = np.random.default_rng(0).standard_normal((batch, c, h, h)).astype(np.float32)
            runners = {k: ort_session(p, 1) for k, p in paths.items()}
            med = measure_round_robin({k: partial(f, x) for k, f in runners.items()},
                                      args.op_time, rounds=1)
            row[batch] = {k: v * 1e6 / batch for k, v in med.items()}  # us per image
        rows.append(row)
        print(f"  per-op {row['shape']}: " + ", ".join(
            f"{k} {row[1][k]:.0f}/{row[16][k]:.0f}us" for k in paths), flush=True)
    return rows


def _export_layer(module, c, h, path):
    import torch

    x = torch.zeros(1, c, h, h)
    with torch.no_grad():
        torch.onnx.export(module, (x,), str(path), dynamo=False, opset_version=18,
                          input_names=["input"], output_names=["embedding"],
                          dynamic_axes={"input": {0: "N"}, "embedding": {0: "N"}})
    return path


# --------------------------------------------------------------------- whole model
def whole_model(args, tmp):
    import torch

    from edgeconv.ops.folding import fold_model
    from edgeconv.export.lowrank import lowrank_model
    from edgeconv.export.parity import normalise, synthetic_faces

    dws, tv = build_models()
    exact = fold_model(tv, fuse_bn=True)
    models = dict(dws)
    for form in args.formulations:
        m = copy.deepcopy(exact)
        from edgeconv.export.formulations import set_formulation

        set_formulation(m, form)
        models[f"MB x0.5 TVConv {form}"] = m
    faces = torch.from_numpy(normalise(synthetic_faces(16, (96, 96), seed=3)[0]))
    with torch.no_grad():
        ref = exact(faces).numpy()
    lowrank_info = {}
    for r in args.ranks:
        low, layers = lowrank_model(copy.deepcopy(exact), r)
        with torch.no_grad():
            out = low(faces).numpy()
        cos = (ref * out).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(out, axis=1)
        lowrank_info[r] = {"min_cos": float(cos.min()), "mean_cos": float(cos.mean()),
                           "max_weight_err": max(layer["rel_weight_error"] for layer in layers)}
        models[f"MB x0.5 TVConv lowrank r{r}"] = low
    paths = {}
    for name, m in models.items():
        paths[name] = to_onnx(m, tmp / (name.replace(" ", "_") + ".onnx"))
    print(f"  exported {len(paths)} ONNX models", flush=True)
    ort_res = {}
    for threads in args.threads:
        for batch in args.batches:
            x = np.random.default_rng(batch).standard_normal((batch, 3, 96, 96)).astype(np.float32)
            runners = {k: ort_session(p, threads) for k, p in paths.items()}
            med = measure_round_robin({k: partial(f, x) for k, f in runners.items()},
                                      args.min_time, rounds=args.rounds)
            for k, v in med.items():
                ort_res.setdefault(k, {})[(batch, threads)] = batch / v
            print(f"  ORT b{batch} t{threads}: " + ", ".join(
                f"{k.replace('MB ', '')} {batch / v:.0f}" for k, v in med.items()), flush=True)
    tfl_res = {}
    if args.litert:
        tfl_res = litert_part(args, models, paths)
    return ort_res, tfl_res, lowrank_info, paths


def litert_part(args, models, onnx_paths):
    import hashlib

    from edgeconv.export.tflite_export import export_tflite

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    datas = {}
    for name in args.litert_models:
        if name not in models:
            continue
        # keyed by the model's content (its ONNX export), so a changed model is reconverted
        key = hashlib.sha256(Path(onnx_paths[name]).read_bytes()).hexdigest()[:16]
        f = cache / (name.replace(" ", "_") + f"_{key}.tflite")
        if not f.exists():
            t0 = time.perf_counter()
            f.write_bytes(export_tflite(models[name], (96, 96), None))
            print(f"  converted {name} to TFLite in {time.perf_counter() - t0:.0f}s", flush=True)
        datas[name] = f.read_bytes()
    # fp16 weight storage (--fp16): float16 constants + DEQUANTIZE, the TF converter's layout
    from edgeconv.export.tflite_export import to_fp16_weights

    for name in [n for n in datas if "TVConv" in n and "lowrank" not in n]:
        datas[f"{name} fp16 weights"] = to_fp16_weights(datas[name])[0]
    # a batch-1 conversion resized to batch 3 must still compute every image: check the
    # output against the eager model before timing (a pinned op computes one image only)
    import torch

    from edgeconv.export.parity import compare

    x3 = np.random.default_rng(3).standard_normal((3, 3, 96, 96)).astype(np.float32)
    invalid = {}
    for name in list(datas):
        with torch.no_grad():
            ref = models[name.replace(" fp16 weights", "")](torch.from_numpy(x3)).numpy()
        tol = 1e-2 if "fp16" in name else 1e-4
        try:
            c = compare(ref, tflite_runner(datas[name], 1, 3, 96)(x3))
            ok = c["max_abs_diff"] <= tol * max(1.0, c.get("ref_max_abs", 1.0))
        except Exception as exc:  # noqa: BLE001 - the interpreter refuses to resize
            c, ok = {"error": str(exc).splitlines()[0][:120]}, False
        if not ok:
            invalid[name] = c
            del datas[name]
            print(f"  LiteRT {name}: WRONG at batch 3 after resize ({c}); not timed", flush=True)
    res = {}
    for threads in args.threads:
        for batch in args.batches:
            x = np.random.default_rng(batch).standard_normal((batch, 3, 96, 96)).astype(np.float32)
            runners = {k: tflite_runner(d, threads, batch, 96) for k, d in datas.items()}
            med = measure_round_robin({k: partial(f, x) for k, f in runners.items()},
                                      args.min_time, rounds=args.rounds)
            for k, v in med.items():
                res.setdefault(k, {})[(batch, threads)] = batch / v
            print(f"  LiteRT b{batch} t{threads}: " + ", ".join(
                f"{k.replace('MB ', '')} {batch / v:.0f}" for k, v in med.items()), flush=True)
    args.litert_invalid = invalid
    return res


def generator_part(args, tmp):
    """Folded (ONNX default formulation) vs generator left in the graph (paper generator 64x3)."""
    from edgeconv.ops.folding import fold_model
    from edgeconv.export.formulations import default_formulation, set_formulation

    form = default_formulation("onnx")
    _, tv = build_models(generator=True)
    folded = fold_model(tv, fuse_bn=True)
    set_formulation(folded, form)
    # the generator's input (the affinity maps) is constant: torch.onnx, onnxsim AND
    # ONNX Runtime's ConstantFolding would all fold it away; keep it in the graph
    p_gen = to_onnx(tv, tmp / "gen.onnx", constant_folding=False)
    p_fold = to_onnx(folded, tmp / "fold.onnx")
    res = {}
    for batch in (1, 16):
        x = np.random.default_rng(0).standard_normal((batch, 3, 96, 96)).astype(np.float32)
        # own sessions: the in-graph generator needs ORT's ConstantFolding off (a session
        # option), and the folded model runs in the same kind of session for the comparison
        runners = {"in-graph generator": ort_settings_session(p_gen, 2, constant_folding=False),
                   f"folded ({form})": ort_settings_session(p_fold, 2)}
        med = measure_round_robin({k: partial(f, x) for k, f in runners.items()},
                                  args.min_time, rounds=1)
        res[batch] = {k: batch / v for k, v in med.items()}
        print(f"  generator b{batch}: {res[batch]}", flush=True)
    return res


def ort_settings_part(args, paths):
    from edgeconv.export.formulations import default_formulation

    name = f"MB x0.5 TVConv {default_formulation('onnx')}"
    path = paths[name]
    configs = {
        "default (all opt, spinning, sequential)": dict(),
        "opt level basic": dict(opt="basic"),
        "opt level disable": dict(opt="disable"),
        "no spinning": dict(spinning=False),
        "parallel execution mode": dict(sequential=False),
        "no memory pattern": dict(mem_pattern=False),
        "NchwcTransformer disabled": dict(nchwc=False),
    }
    res = {}
    for batch in (1, 16):
        x = np.random.default_rng(0).standard_normal((batch, 3, 96, 96)).astype(np.float32)
        runners = {k: ort_settings_session(path, 2, **kw) for k, kw in configs.items()}
        med = measure_round_robin({k: partial(f, x) for k, f in runners.items()},
                                  args.min_time, rounds=1)
        res[batch] = {k: batch / v for k, v in med.items()}
    # what ORT fuses: op histogram of the optimised graph
    import onnx
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opt_path = str(path) + ".opt.onnx"
    so.optimized_model_filepath = opt_path
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    hist = {}
    for n in onnx.load(opt_path).graph.node:
        hist[n.op_type] = hist.get(n.op_type, 0) + 1
    before = {}
    for n in onnx.load(str(path)).graph.node:
        before[n.op_type] = before.get(n.op_type, 0) + 1
    return res, before, hist, name


def kernel_rates_part(args):
    """Best-case ONNX Runtime rates of the kernels an exact formulation is made of.

    Small tensors (82,944 elements, 330 KB: L2-resident) so the rates are upper bounds;
    each graph is timed against an Identity graph of the same input (session overhead).
    Returns {kernel: {threads: elements per second}} and the per-image element counts of
    the MobileNetV2 x0.5 TVConv layers (stride 1, strided).
    """
    from onnx import TensorProto, helper, numpy_helper

    c, hw = 16, 24
    n_cols = c * 9 * hw * hw
    rng = np.random.default_rng(0)

    def graph(nodes, inits, shape):
        g = helper.make_graph(nodes, "k", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
        m.ir_version = 9
        return m.SerializeToString()

    w9 = rng.standard_normal((1, c, 9, hw * hw)).astype(np.float32)
    cases = {
        "Identity (overhead)": (graph([helper.make_node("Identity", ["x"], ["y"])], {}, [1, c, 1, hw * hw]),
                                (1, c, 1, hw * hw), 0),
        "Mul, broadcast x over the 9 taps": (
            graph([helper.make_node("Mul", ["x", "w"], ["y"])], {"w": w9}, [1, c, 1, hw * hw]),
            (1, c, 1, hw * hw), n_cols),
        "Col2Im 3x3 (per column element)": (
            graph([helper.make_node("Col2Im", ["x", "i", "b"], ["y"], pads=[1, 1, 1, 1])],
                  {"i": np.array([hw, hw], np.int64), "b": np.array([3, 3], np.int64)},
                  [1, c * 9, hw * hw]), (1, c * 9, hw * hw), n_cols),
        "Add (same shape)": (
            graph([helper.make_node("Add", ["x", "w"], ["y"])], {"w": w9}, [1, c, 9, hw * hw]),
            (1, c, 9, hw * hw), n_cols),
        "ReduceSum over the 9 taps (per input element)": (
            graph([helper.make_node("ReduceSum", ["x", "a"], ["y"], keepdims=0)],
                  {"a": np.array([2], np.int64)}, [1, c, 9, hw * hw]), (1, c, 9, hw * hw), n_cols),
        "Sum of 9 inputs (per input element)": (
            graph([helper.make_node("Split", ["x"], [f"s{i}" for i in range(9)], axis=2,
                                    num_outputs=9),
                   helper.make_node("Sum", [f"s{i}" for i in range(9)], ["y"])], {},
                  [1, c, 9, hw * hw]), (1, c, 9, hw * hw), n_cols),
    }
    from edgeconv.runtime.backends import ort_session as session

    rates = {}
    for threads in args.threads:
        base = None
        for name, (data, shape, n) in cases.items():
            sess = session(data, threads)
            x = rng.standard_normal(shape).astype(np.float32)
            med = measure_round_robin({name: partial(sess.run, None, {"x": x})},
                                      args.min_time, rounds=2)[name]
            if base is None:
                base = med
                continue
            rates.setdefault(name, {})[threads] = n / max(med - base, 1e-9)
    print("  kernel rates (G elements/s): " + ", ".join(
        f"{k}: " + "/".join(f"{v / 1e9:.2f}" for v in r.values()) for k, r in rates.items()),
        flush=True)
    return rates, _tv_elements()


def _tv_elements():
    from edgeconv.ops.folding import fold_model
    from edgeconv.models import create_model
    from edgeconv.ops.tvconv import FoldedTVConv

    model = fold_model(create_model("mbv2_x0_5", op="tvconv", input_size=96, op_kwargs=dict(
        inter_channels=4, inter_layers=1)).eval(), fuse_bn=True)
    s1 = s2 = 0
    for m in model.modules():
        if isinstance(m, FoldedTVConv):
            n = m.channels * m.out_hw[0] * m.out_hw[1]
            s1, s2 = (s1 + n, s2) if m.stride == 1 else (s1, s2 + n)
    return {"stride1": s1, "strided": s2}


# --------------------------------------------------------------------- report
def fmt_table(res, batches, threads, baseline):
    cols = [(b, t) for t in threads for b in batches]
    head = "| model | " + " | ".join(f"b{b} t{t}" for b, t in cols) + " | max FPS | vs MB x1.0 dw |"
    lines = [head, "|" + "---|" * (len(cols) + 3)]
    base = max(res[baseline].values()) if baseline in res else None
    for name, r in res.items():
        mx = max(r.values())
        ratio = f"{mx / base:.2f}x" if base else "-"
        lines.append(f"| {name} | " + " | ".join(f"{r.get(c, float('nan')):.0f}" for c in cols)
                     + f" | **{mx:.0f}** | {ratio} |")
    return "\n".join(lines)


def kernel_rates_md(rates, elems, ort_res, base) -> list[str]:
    """The kernel-rate table and the best-case bound for the col2im model it implies."""
    threads = sorted(next(iter(rates.values())).keys())
    md = ["## ONNX Runtime kernel rates, best case (82,944 elements, in L2; G elements/s)", "",
          "| kernel | " + " | ".join(f"{t} thread{'s' if t > 1 else ''}" for t in threads) + " |",
          "|---|" + "---|" * len(threads)]
    for k, r in rates.items():
        md.append(f"| {k} | " + " | ".join(f"{r[t] / 1e9:.2f}" for t in threads) + " |")
    n9 = 9 * elems["stride1"]
    best = {k: max(r.values()) for k, r in rates.items()}
    mul = "Mul, broadcast x over the 9 taps"
    c2i = "Col2Im 3x3 (per column element)"
    floor_ms = n9 / best[mul] * 1e3 + n9 / best[c2i] * 1e3
    # any exact standard-op form: the per-position weights can only be applied by an
    # elementwise Mul (9 products per output value), and the 9 products must be summed
    n_all = 9 * (elems["stride1"] + elems["strided"])
    summing = max(v for k, v in best.items() if k != mul)
    any_ms = n_all / best[mul] * 1e3 + n_all / summing * 1e3
    budget_ms = 1e3 / max(ort_res[base].values())
    dw05 = "MB x0.5 depthwise"
    rest_ms = 1e3 / max(ort_res[dw05].values()) if dw05 in ort_res else float("nan")
    md += ["", f"MobileNetV2 x0.5 at 96x96 has {elems['stride1']:,} stride-1 and "
           f"{elems['strided']:,} strided TVConv output values per image. The `col2im` form "
           f"makes {n9:,} column values per image (Mul) and sums them (Col2Im): at the best "
           f"rates above that alone is **{floor_ms:.2f} ms per image**, before the strided "
           f"layers and the rest of the network ({rest_ms:.2f} ms per image for the whole MB "
           f"x0.5 depthwise model), against a budget of **{budget_ms:.2f} ms per image** (MB "
           f"x1.0 depthwise max FPS in this run).", "",
           f"Any exact standard-op form (not just `col2im`) applies the per-position weights "
           f"with an elementwise Mul, {n_all:,} products per image, and sums them. At the "
           f"fastest Mul rate and the fastest summing kernel above (the Split of the Sum case "
           f"is included in its time, so that rate is pessimistic for Sum), every pass in L2, "
           f"that is {any_ms:.2f} ms per image; with the rest of the network "
           f"({rest_ms:.2f} ms, taken as the whole MB x0.5 depthwise model, so its 17 "
           f"depthwise convs are counted too: a slight over-estimate) the best case is "
           f"{1e3 / (any_ms + rest_ms):.0f} FPS = **{(budget_ms / (any_ms + rest_ms)):.2f}x** "
           f"MB x1.0 depthwise, with every pass in L2 (the real intermediates, 9 x "
           f"{(elems['stride1'] + elems['strided']) * 4 / 1e6:.1f} MB per image, are not).", ""]
    return md


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "docs" / "export_speed.md"))
    ap.add_argument("--quick", action="store_true", help="batches 1,16 only, shorter timing")
    ap.add_argument("--min-time", type=float, default=0.4, help="seconds per timed window")
    ap.add_argument("--op-time", type=float, default=0.15)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-litert", dest="litert", action="store_false")
    ap.add_argument("--no-per-op", dest="per_op", action="store_false")
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "edgeconv_speed_cache"),
                    help="TFLite conversions are cached here (they take minutes)")
    ap.add_argument("--only", choices=("all", "fused"), default="all",
                    help="fused: the fused-kernel section is its own benchmark, "
                         "`python benchmarks/fused_kernel.py` (this says so and exits)")
    ap.add_argument("--no-fused", dest="fused", action="store_false",
                    help="no closing hint about the fused-kernel benchmark")
    args = ap.parse_args(argv)
    from edgeconv.export.formulations import (DEFAULT_FORMULATION, EXACT_FORMULATIONS,
                                              default_formulation)

    args.formulations = list(EXACT_FORMULATIONS)
    args.ranks = [1, 2, 3]
    args.batches = [1, 16] if args.quick else [1, 2, 4, 8, 16]
    args.threads = [1, 2]
    if args.quick:
        args.min_time, args.rounds = 0.25, 1
    # LiteRT: the exact forms a dynamic-batch TFLite file can carry (onehot / onehot_tap
    # reshape over the batch axis, col2im has no TFLite op), plus low rank
    args.litert_models = ["MB x1.0 depthwise", "MB x0.5 depthwise",
                          f"MB x0.5 TVConv {DEFAULT_FORMULATION}", "MB x0.5 TVConv slices",
                          "MB x0.5 TVConv lowrank r1", "MB x0.5 TVConv lowrank r2"]
    import onnxruntime as ort
    import torch

    if args.only == "fused":
        print(f"the fused-kernel section is its own benchmark: run `python "
              f"benchmarks/fused_kernel.py --out {args.out}`", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="edgeconv_speed_"))
    load = os.getloadavg()
    print(f"load average at start: {load}", flush=True)
    per_op = per_op_table(args, tmp) if args.per_op else []
    ort_res, tfl_res, low, paths = whole_model(args, tmp)
    settings, before, after, sname = ort_settings_part(args, paths)
    gen = generator_part(args, tmp)
    rates, elems = kernel_rates_part(args)
    load_end = os.getloadavg()
    total = time.perf_counter() - t_start

    base = "MB x1.0 depthwise"
    md = ["# Export speed: folded TVConv formulations vs depthwise", "",
          f"Generated by `python benchmarks/export_speed.py` in {total / 60:.1f} min on "
          f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or ''} "
          f"onnxruntime {ort.__version__}, torch {torch.__version__}. Load average at start "
          f"{load[0]:.1f}, at end {load_end[0]:.1f} (the build machine is SHARED: other "
          f"processes ran during the measurement; every figure is the median run, models of "
          f"one configuration interleaved, so ratios are more reliable than absolute FPS).", "",
          "Models: MobileNetV2 face models (96x96, random weights, BatchNorm stats and "
          "affinity maps randomised), BatchNorm fused, dynamic batch, opset 18, onnxsim. "
          f"Exported default formulation: `{default_formulation('onnx')}` in ONNX, "
          f"`{DEFAULT_FORMULATION}` in TFLite (no Col2Im there).", ""]
    md += ["## Whole model, ONNX Runtime (FPS = batch / median latency)", "",
           fmt_table(ort_res, args.batches, args.threads, base), ""]
    if tfl_res:
        md += ["## Whole model, LiteRT (ai-edge-litert interpreter, XNNPACK)", "",
               "Each file is converted at batch 1 and resized by the interpreter (the exporter's "
               "dynamic batch); its batch-3 output is checked against the eager model first.", "",
               fmt_table(tfl_res, args.batches, args.threads, base), ""]
        for name, c in getattr(args, "litert_invalid", {}).items():
            md += [f"Not timed: **{name}** gives wrong outputs at batch 3 after the resize "
                   f"(max abs diff {c.get('max_abs_diff', c.get('error'))}): its graph pins the "
                   f"batch size (a fixed-batch conversion, `--batch N`, would be needed).", ""]
    md += ["## Low-rank folding: accuracy cost (randomised affinity maps, 16 synthetic faces)",
           "", "| rank | min cosine vs exact | mean cosine | max per-layer rel. weight error |",
           "|---|---|---|---|"]
    for r, v in low.items():
        md.append(f"| {r} | {v['min_cos']:.5f} | {v['mean_cos']:.5f} | {v['max_weight_err']:.3f} |")
    md += ["", "## Folded vs in-graph generator (paper generator 64 x 3 layers), ORT 2 threads",
           "", "| batch | " + " | ".join(next(iter(gen.values())).keys()) + " | speedup |",
           "|---|---|---|---|"]
    for b, r in gen.items():
        vals = list(r.values())
        md.append(f"| {b} | " + " | ".join(f"{v:.0f}" for v in vals) + f" | {vals[1] / vals[0]:.1f}x |")
    md += ["", f"## ONNX Runtime session settings ({sname}, 2 threads, FPS)", "",
           "| setting | batch 1 | batch 16 |", "|---|---|---|"]
    for k in settings[1]:
        md.append(f"| {k} | {settings[1][k]:.0f} | {settings[16][k]:.0f} |")
    md += ["", f"Op histogram before ORT optimisation: `{before}`", "",
           f"after ORT_ENABLE_ALL (optimized_model_filepath): `{after}`", ""]
    md += kernel_rates_md(rates, elems, ort_res, base)
    if per_op:
        keys = list(per_op[0][1].keys())
        md += ["## Per-op time, MobileNetV2 x0.5 layer shapes (ORT, 1 thread, us per image, "
               "batch 1 / batch 16)", "", "| shape | " + " | ".join(keys) + " |",
               "|---|" + "---|" * len(keys)]
        for row in per_op:
            md.append(f"| {row['shape']} | " + " | ".join(
                f"{row[1][k]:.0f} / {row[16][k]:.0f}" for k in keys) + " |")
        md.append("")
    text = "\n".join(md) + "\n"
    marker = "<!-- analysis -->"
    out = Path(args.out)
    if out.exists() and marker in out.read_text():
        text += "\n" + marker + out.read_text().split(marker, 1)[1]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"wrote {out} in {total:.0f}s")
    from edgeconv import kernels

    if args.fused and kernels.available():
        print(f"fused-kernel section: run `python benchmarks/fused_kernel.py --out {out}` "
              "(it rewrites its section of that file in place)")
    elif args.fused:
        print("fused-kernel section: the edgeconv kernels are not built "
              "(benchmarks/fused_kernel.py needs them)")


if __name__ == "__main__":
    sys.exit(main())
