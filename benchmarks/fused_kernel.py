"""The fused TVConv kernel (``--formulation fused``) against depthwise, in ONNX Runtime.

The fused section of ``docs/export_speed.md`` (``benchmarks/export_speed.py`` writes the
rest); run it with

    python benchmarks/fused_kernel.py                       # ~10 min on 2 cores
    python benchmarks/fused_kernel.py --quick               # batches 1 and 16 only

One run, every comparison interleaved (models of one configuration round robin, several
rounds, best median kept), written between the ``<!-- fused:begin/end -->`` markers of
``docs/export_speed.md`` plus ``docs/fused_speed.png``:

1. per op, every MobileNetV2 x0.5 layer shape (96x96 input; stride 1 and 2), batch 1/4/16,
   threads 1/2: the fused node (float32 / float16 / int8 weights) vs ORT's depthwise Conv
   (+ReLU6) node of the same shape, both as one-node graphs. ORT runs its depthwise conv in
   the blocked NCHWc layout and wraps a lone node in two reorders; the ``dw kernel`` column is
   the Conv kernel alone (ORT's profiler), the fair per-op reference;
2. whole model max FPS over batch {1,2,4,8,16} x threads {1,2}: MB x0.5 TVConv fused (each
   weight dtype) vs col2im vs MB x1.0 and MB x0.5 depthwise; the same for ShuffleNetV2 x1.0;
3. net peak memory at batch 8 (fresh child process, the bench harness's measurement);
4. ORT's profile of the fused models: where the time goes (TVConv, Conv, reorders, rest).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edgeconv.profiling.timing import measure_round_robin  # noqa: E402

BEGIN, END = "<!-- fused:begin -->", "<!-- fused:end -->"
DTYPES = ("float32", "float16", "int8")
#: the TVConv weight generator of the checkpoints (folded away by the export)
SMALL_GENERATOR = dict(inter_channels=8, inter_layers=1)


# ----------------------------------------------------------------------------- helpers
def make_session(path_or_bytes, threads, disabled=None, profiling=False):
    """An ORT session as edgeconv opens it (``edgeconv.runtime.backends.ort_session``: the
    library registered for fused models, with its session kwargs).

    ``disabled`` (exactly those ORT optimizers off, e.g. ``()``: ORT's defaults, NCHWc on) and
    ``profiling`` (ORT's profiler) change one session option on top of edgeconv's own: this
    benchmark deliberately measures that option (the NCHWc row) or needs the profiler, so it
    opens that session itself, from the package's options (``ort_session_options``).
    """
    from edgeconv.runtime.backends import ort_session, ort_session_options

    src = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    if disabled is None and not profiling:
        return ort_session(src, threads)
    import onnxruntime as ort

    so, kw, _ = ort_session_options(src, threads)
    if profiling:
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tempfile.gettempdir(), "edgeconv_fused_prof")
    if disabled is not None:
        kw = {"disabled_optimizers": list(disabled)} if disabled else {}
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"], **kw)


def session(path_or_bytes, threads, disabled=None):
    sess = make_session(path_or_bytes, threads, disabled)
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})


def round_robin(runners: dict, x, min_time, rounds):
    """name -> median seconds per run of ``runners[name](x)``, best of ``rounds`` rounds
    (``edgeconv.profiling.timing.measure_round_robin``)."""
    return measure_round_robin({k: partial(fn, x) for k, fn in runners.items()}, min_time,
                               rounds=rounds)


def rotating_rounds(runners: dict, x, window: float, rounds: int, warmup: int = 2) -> dict:
    """name -> seconds per run: the MEDIAN over ``rounds`` of each round's median run.

    ``edgeconv.profiling.timing.measure_round_robin``: the models are called in turn, each for
    ``window`` seconds of timed calls a round, the rotation starting at another model every
    round, so a transient change of the machine (the build machine's second core is shared:
    it came and went for seconds at a time in these runs) lands on different models in
    different rounds, and the median over rounds drops it, where a best-of would keep the
    lucky model's spike.
    """
    stats: dict = {}
    measure_round_robin({k: partial(fn, x) for k, fn in runners.items()}, window,
                        rounds=rounds, warmup=warmup, stats=stats)
    return {k: float(statistics.median(v["round_medians"])) for k, v in stats.items()}


def profile(path_or_bytes, x, threads, runs=20, disabled=None, warmup=3):
    """ORT's kernel time per run by op type (ms), warm-up runs left out."""
    sess = make_session(path_or_bytes, threads, disabled, profiling=True)
    name = sess.get_inputs()[0].name
    for _ in range(warmup + runs):
        sess.run(None, {name: x})
    f = sess.end_profiling()
    with open(f) as fh:
        events = json.load(fh)
    os.remove(f)
    seen: dict = collections.Counter()
    by_op: dict = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            seen[e["name"]] += 1
            if seen[e["name"]] > warmup:
                by_op[e["args"].get("op_name", "?")] += e["dur"]
    return {k: v / runs / 1e3 for k, v in by_op.items()}


def mbv2_shapes(width=0.5, size=96):
    """Unique (channels, input size, stride) of the depthwise/TVConv layers of MBv2 x``width``."""
    from edgeconv.models.common import make_divisible
    from edgeconv.models.mobilenetv2 import INVERTED_RESIDUAL_SETTING

    shapes, hw, in_ch = [], size, make_divisible(32 * width, 8)
    for t, c, n, s in INVERTED_RESIDUAL_SETTING:
        out_ch = make_divisible(c * width, 8)
        for i in range(n):
            stride = s if i == 0 else 1
            key = (int(round(in_ch * t)), hw, stride)
            if key not in shapes:
                shapes.append(key)
            hw = (hw + 2 - 3) // stride + 1
            in_ch = out_ch
    return shapes


def dw_node(c, hw, stride, seed=0):
    """ORT's depthwise Conv + ReLU6 (Clip) as a one-node graph (ORT fuses the Clip)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.standard_normal((c, 1, 3, 3)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal(c).astype(np.float32), "B"),
             numpy_helper.from_array(np.array(0, np.float32), "lo"),
             numpy_helper.from_array(np.array(6, np.float32), "hi")]
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], group=c, kernel_shape=[3, 3],
                              strides=[stride, stride], pads=[1, 1, 1, 1]),
             helper.make_node("Clip", ["c", "lo", "hi"], ["y"])]
    g = helper.make_graph(nodes, "dw", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["N", c, hw, hw])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()


# ----------------------------------------------------------------------------- per op
def per_op(args):
    from edgeconv.export.fused_node import node_model

    rows = []
    for c, hw, stride in mbv2_shapes():
        graphs = {f"fused {d}": node_model(c, (hw, hw), 3, stride, dtype=d,
                                           bias="channel", act="relu6")[0]
                  for d in DTYPES}
        graphs["dw (ORT node)"] = dw_node(c, hw, stride)
        row = {"shape": f"C={c} {hw}x{hw} s{stride}", "stride": stride, "t": {}}
        for threads in args.threads:
            for batch in (1, 4, 16):
                x = np.random.default_rng(0).standard_normal((batch, c, hw, hw)).astype(np.float32)
                runners = {k: session(g, threads) for k, g in graphs.items()}
                med = round_robin(runners, x, args.op_time, args.rounds)
                us = {k: v * 1e6 for k, v in med.items()}
                prof = profile(graphs["dw (ORT node)"], x, threads, runs=10)
                us["dw kernel"] = prof.get("Conv", float("nan")) * 1e3
                row["t"][(batch, threads)] = us
        rows.append(row)
        t1 = row["t"][(16, args.threads[0])]
        print(f"  per-op {row['shape']} b16: fused f32 {t1['fused float32']:.0f} us, "
              f"dw kernel {t1['dw kernel']:.0f} us, dw node {t1['dw (ORT node)']:.0f} us",
              flush=True)
    return rows


# ----------------------------------------------------------------------------- models
def export_models(tmp: Path, family: str):
    """Real exports (edgeconv export) of randomised checkpoints; name -> path."""
    from edgeconv.export.exporter import export_checkpoint
    from edgeconv.train.checkpoint import random_checkpoint

    quiet = dict(echo=lambda *a: None)
    paths = {}
    if family == "mbv2":
        dws = [("MB x1.0 depthwise", "mbv2_x1_0"), ("MB x0.5 depthwise", "mbv2_x0_5")]
        tv_name, tv_label = "mbv2_x0_5", "MB x0.5 TVConv"
    else:
        dws = [("SF x1.0 depthwise", "sfv2_x1_0")]
        tv_name, tv_label = "sfv2_x1_0", "SF x1.0 TVConv"
    for label, name in dws:
        ck = random_checkpoint(tmp / f"{name}_dw.ckpt", name, "depthwise", 96, seed=1)
        rep = export_checkpoint(ck, formats="onnx", output_dir=tmp, **quiet)
        paths[label] = Path(rep["files"][0]["path"])
    ck = random_checkpoint(tmp / f"{tv_name}_tv.ckpt", tv_name, "tvconv", 96, seed=2,
                           op_kwargs=SMALL_GENERATOR)
    rep = export_checkpoint(ck, formats="onnx", output_dir=tmp, formulation="col2im", **quiet)
    paths[f"{tv_label} col2im"] = Path(rep["files"][0]["path"])
    for d in DTYPES:
        rep = export_checkpoint(ck, formats="onnx", output_dir=tmp, formulation="fused",
                                weight_dtype=d, **quiet)
        paths[f"{tv_label} fused {d}"] = Path(rep["files"][0]["path"])
        print(f"  exported {tv_label} fused {d}: parity max abs diff "
              f"{rep['parity']['onnx']['max_abs_diff']:.1e}, cosine "
              f"{rep['parity']['onnx']['min_cosine']:.7f}", flush=True)
    return paths


def whole_model(args, paths, extra_disabled=None):
    """name -> {(batch, threads): FPS}; ``extra_disabled``: name -> (base name, optimizers)."""
    res = {k: {} for k in paths}
    variants = dict(extra_disabled or {})
    for k in variants:
        res[k] = {}
    for threads in args.threads:
        runners = {k: session(p, threads) for k, p in paths.items()}
        for k, (base, disabled) in variants.items():
            runners[k] = session(paths[base], threads, disabled)
        for batch in args.batches:
            x = np.random.default_rng(0).standard_normal((batch, 3, 96, 96)).astype(np.float32)
            med = rotating_rounds(runners, x, args.window, args.whole_rounds)
            for k, v in med.items():
                res[k][(batch, threads)] = batch / v
            print(f"  whole b{batch} t{threads}: " + ", ".join(
                f"{k} {res[k][(batch, threads)]:.0f}" for k in runners), flush=True)
    return res


def memory(paths, names, batch=8):
    from edgeconv.profiling import memory as mem

    base = mem.run_child("onnxruntime", None, threads=1, batch=batch)
    out = {}
    for k in names:
        out[k] = mem.measure(str(paths[k]), "onnxruntime", 1, batch, baseline=base)
        print(f"  memory {k}: net peak {out[k]['net_peak_rss_mb']:.0f} MiB", flush=True)
    return out


# ----------------------------------------------------------------------------- report
def fps_table(res, batches, threads, base):
    cols = [(b, t) for t in threads for b in batches]
    lines = ["| model | " + " | ".join(f"b{b} t{t}" for b, t in cols) + f" | max FPS | vs {base} |",
             "|" + "---|" * (len(cols) + 3)]
    top = max(res[base].values())
    for k, r in res.items():
        m = max(r.values())
        lines.append(f"| {k} | " + " | ".join(f"{r[c]:.0f}" for c in cols)
                     + f" | {m:.0f} | **{m / top:.2f}x** |")
    return "\n".join(lines)


def ratio_table(res, batches, threads, base):
    cols = [(b, t) for t in threads for b in batches]
    lines = ["| model | " + " | ".join(f"b{b} t{t}" for b, t in cols) + " |",
             "|" + "---|" * (len(cols) + 1)]
    for k, r in res.items():
        if k == base:
            continue
        lines.append(f"| {k} | " + " | ".join(f"{r[c] / res[base][c]:.2f}" for c in cols) + " |")
    return "\n".join(lines)


def profile_md(prof: dict, label: str) -> list[str]:
    total = sum(prof.values())
    groups = collections.OrderedDict([("TVConv (fused kernel)", ["TVConv"]),
                                      ("Conv, FusedConv (1x1, stem, ShuffleNet's)",
                                       ["Conv", "FusedConv"]),
                                      ("ReorderInput/Output", ["ReorderInput", "ReorderOutput"])])
    md = [f"| {label} | ms per run | share |", "|---|---|---|"]
    seen = set()
    for g, ops in groups.items():
        v = sum(prof.get(o, 0.0) for o in ops)
        seen.update(ops)
        md.append(f"| {g} | {v:.2f} | {100 * v / total:.0f}% |")
    rest = {k: v for k, v in prof.items() if k not in seen}
    v = sum(rest.values())
    top = ", ".join(f"{k} {x:.2f}" for k, x in sorted(rest.items(), key=lambda kv: -kv[1])[:4])
    md.append(f"| rest ({top}) | {v:.2f} | {100 * v / total:.0f}% |")
    md.append(f"| total | {total:.2f} | |")
    return md


def plot(res_mb, res_sf, threads, batches, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, res, title in ((axes[0], res_mb, "MobileNetV2"), (axes[1], res_sf, "ShuffleNetV2 x1.0")):
        for k, r in res.items():
            t = max(threads)
            style = "--" if "depthwise" in k else ("-" if "fused" in k else ":")
            ax.plot(batches, [r[(b, t)] for b in batches], style, marker="o", label=k)
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches)
        ax.set_xticklabels([str(b) for b in batches])
        ax.set_xlabel("batch")
        ax.set_ylabel(f"images / s (ONNX Runtime, {max(threads)} threads)")
        ax.set_title(f"{title}, 96x96: fused TVConv kernel vs depthwise")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run(args, out_md: Path) -> str:
    import onnxruntime as ort

    from edgeconv import kernels

    info = kernels.info()
    args.window = getattr(args, "window", 0.2)
    args.whole_rounds = getattr(args, "whole_rounds", 8)
    t0 = time.perf_counter()
    load0 = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="edgeconv_fused_"))
    print(f"fused kernel benchmark: {info['library']} isa {info['isa']}, load {load0}", flush=True)
    mb = export_models(tmp, "mbv2")
    sf = export_models(tmp, "sfv2")
    ops = per_op(args) if args.per_op else []
    nchwc_on = {"MB x0.5 TVConv fused float32, ORT defaults (NCHWc on)": (
        "MB x0.5 TVConv fused float32", ())}
    res_mb = whole_model(args, mb, nchwc_on)
    res_sf = whole_model(args, sf)
    mem_names = ["MB x1.0 depthwise", "MB x0.5 depthwise", "MB x0.5 TVConv col2im"] + [
        f"MB x0.5 TVConv fused {d}" for d in DTYPES]
    mem = memory(mb, mem_names)
    profs = {}
    for b in (4, 16):
        x = np.random.default_rng(0).standard_normal((b, 3, 96, 96)).astype(np.float32)
        profs[("MB x0.5 TVConv fused float32", b)] = profile(mb["MB x0.5 TVConv fused float32"], x, 1)
        profs[("MB x0.5 TVConv fused float32, ORT defaults (NCHWc on)", b)] = profile(
            mb["MB x0.5 TVConv fused float32"], x, 1, disabled=())
        profs[("MB x0.5 TVConv fused int8", b)] = profile(mb["MB x0.5 TVConv fused int8"], x, 1)
        profs[("MB x0.5 depthwise", b)] = profile(mb["MB x0.5 depthwise"], x, 1)
        profs[("SF x1.0 TVConv fused float32", b)] = profile(sf["SF x1.0 TVConv fused float32"], x, 1)
    load1 = os.getloadavg()
    minutes = (time.perf_counter() - t0) / 60
    png = plot(res_mb, res_sf, args.threads, args.batches, out_md.parent / "fused_speed.png")

    base = "MB x1.0 depthwise"
    md = [BEGIN, "## Fused TVConv kernel (`--formulation fused`), ONNX Runtime", "",
          f"Generated by `python benchmarks/fused_kernel.py` in {minutes:.1f} min; "
          f"onnxruntime {ort.__version__}, edgeconv kernels {info['version']} "
          f"(built against ORT_API_VERSION {info['ort_api_version']} headers), SIMD path "
          f"**{info['isa']}** (available: {', '.join(info['available_isas'])}). Load average "
          f"{load0[0]:.1f} at start, {load1[0]:.1f} at end (2-core shared build machine: ratios "
          f"from this one interleaved run are the figures to compare, not absolute FPS).", "",
          "Models: real `edgeconv export` files of randomised checkpoints (BatchNorm stats and "
          "affinity maps random), 96x96, dynamic batch, parity-gated. Fused: every TVConv with "
          "its BatchNorm and ReLU6 is one `edgeconv.TVConv` node (stride 1 and 2). Fused models "
          "run as edgeconv runs them (`edgeconv bench`, the embedder): ORT's NCHWc transformer "
          "off (`edgeconv.kernels.session_kwargs()`); the `ORT defaults` row keeps it on.", "",
          f"### Whole model, MobileNetV2 (FPS = batch / latency: the median over "
          f"{args.whole_rounds} rounds, model order rotating, of each {args.window:.1f} s "
          f"window's median run)", "",
          fps_table(res_mb, args.batches, args.threads, base), "",
          "Same configuration, same moment (each cell: FPS / FPS of MB x1.0 depthwise at that "
          "batch and thread count; less exposed to a noisy neighbour than the max-FPS ratio):", "",
          ratio_table(res_mb, args.batches, args.threads, base), "",
          "### Whole model, ShuffleNetV2 x1.0", "",
          fps_table(res_sf, args.batches, args.threads, "SF x1.0 depthwise"), ""]
    if png:
        md += [f"![fused kernel vs depthwise]({png.name})", ""]
    md += ["### Net peak memory, batch 8 (ORT, 1 thread, fresh child process, MiB)", "",
           "| model | net peak RSS | net USS | vs MB x1.0 dw (peak) |", "|---|---|---|---|"]
    bpk = mem[base]["net_peak_rss_mb"]
    for k, v in mem.items():
        md.append(f"| {k} | {v['net_peak_rss_mb']:.0f} | {v['net_uss_mb']:.0f} | "
                  f"**{v['net_peak_rss_mb'] / bpk:.2f}x** |")
    md += ["", "### Where the time goes (ORT profiler, 1 thread, kernel time per run)", ""]
    for (name, b), prof in profs.items():
        md += [f"{name}, batch {b}:", ""] + profile_md(prof, "op") + [""]
    if ops:
        for threads in args.threads:
            md += [f"### Per op, MobileNetV2 x0.5 layer shapes ({threads} thread(s), us per "
                   "call; batch 1 / 4 / 16)", "",
                   "`dw kernel` = ORT's NCHWc depthwise Conv kernel alone (profiler); `dw (ORT "
                   "node)` = the one-node graph's run, two layout reorders included.", "",
                   "| shape | " + " | ".join(k for k in ops[0]["t"][(1, threads)]) +
                   " | fused f32 / dw kernel, b16 |", "|---|" + "---|" * (len(ops[0]["t"][(1, threads)]) + 1)]
            for row in ops:
                keys = list(row["t"][(1, threads)])
                cells = [" / ".join(f"{row['t'][(b, threads)][k]:.0f}" for b in (1, 4, 16)) for k in keys]
                r16 = row["t"][(16, threads)]
                md.append(f"| {row['shape']} | " + " | ".join(cells) +
                          f" | **{r16['fused float32'] / r16['dw kernel']:.2f}x** |")
            md.append("")
    md.append(END)
    section = "\n".join(md) + "\n"
    text = out_md.read_text() if out_md.exists() else "# Export speed\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1].lstrip("\n")
    else:
        marker = "<!-- analysis -->"
        if marker in text:
            head, rest = text.split(marker, 1)
            text = head + section + "\n" + marker + rest
        else:
            text = text.rstrip("\n") + "\n\n" + section
    out_md.write_text(text)
    print(section)
    raw = {"whole_mbv2": {k: {f"b{b}t{t}": v for (b, t), v in r.items()} for k, r in res_mb.items()},
           "whole_sfv2": {k: {f"b{b}t{t}": v for (b, t), v in r.items()} for k, r in res_sf.items()},
           "memory": mem, "profile": {f"{k[0]} b{k[1]}": v for k, v in profs.items()},
           "per_op": [{"shape": r["shape"], **{f"b{b}t{t}": v for (b, t), v in r["t"].items()}}
                      for r in ops], "load": [load0, load1], "kernels": info}
    (out_md.parent / "fused_speed.json").write_text(json.dumps(raw, indent=1, default=str) + "\n")
    return section


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "docs" / "export_speed.md"),
                    help="markdown file whose fused section is rewritten in place")
    ap.add_argument("--quick", action="store_true", help="batches 1,16 only, shorter timing")
    ap.add_argument("--op-time", type=float, default=0.15, help="seconds per per-op window")
    ap.add_argument("--rounds", type=int, default=2, help="per-op rounds (best kept)")
    ap.add_argument("--window", type=float, default=0.2,
                    help="whole model: seconds of timed calls per model and round")
    ap.add_argument("--whole-rounds", type=int, default=8,
                    help="whole model: rounds (median kept)")
    ap.add_argument("--no-per-op", dest="per_op", action="store_false")
    args = ap.parse_args(argv)
    args.batches = [1, 16] if args.quick else [1, 2, 4, 8, 16]
    args.threads = [1, 2]
    if args.quick:
        args.rounds = 1
    from edgeconv import kernels

    if not kernels.available():
        print("the edgeconv kernels are not built: `python -m edgeconv.kernels.build`",
              file=sys.stderr)
        return 2
    run(args, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
