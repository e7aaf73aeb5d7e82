"""How much does the bench harness add to what it measures?

Builds a tiny ONNX model (Conv 3x3 3->16 + ReLU + GlobalAveragePool on
[N, 3, 32, 32]), then, in this one process, alternates

* the harness: ``edgeconv.profiling.bench.measure_config`` (fresh session,
  first inference, warm-up, per-call timed runs) -> its reported mean latency,
* a bare loop: an ``onnxruntime.InferenceSession`` with the same options, warmed
  up, then N calls of ``session.run`` between two ``perf_counter`` reads,

for several rounds and reports harness mean / bare mean per round (median
over rounds). The acceptance goal is a ratio within 5% of 1.0. Writes
``docs/bench_overhead.md`` (atomically) and prints the table.

    python benchmarks/bench_overhead.py [--rounds 7] [--secs 1.0] [--out docs/bench_overhead.md]

Needs the ``onnx`` package (edgeconv[export]) to build the model; never imports torch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgeconv.fileio import atomic_write_text  # noqa: E402
from edgeconv.profiling import bench as BN  # noqa: E402
from edgeconv.profiling import sysinfo  # noqa: E402
from edgeconv.runtime import backends as B  # noqa: E402


def build_model(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((16, 3, 3, 3)).astype(np.float32), "W")
    b = numpy_helper.from_array(np.zeros(16, np.float32), "B")
    nodes = [helper.make_node("Conv", ["input", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["embedding"])]
    graph = helper.make_graph(
        nodes, "overhead", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                          ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 16])], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def bare_session(path: Path, threads: int, spinning: bool):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    flag = "1" if spinning else "0"
    so.add_session_config_entry("session.intra_op.allow_spinning", flag)
    so.add_session_config_entry("session.inter_op.allow_spinning", flag)
    return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])


def bare_mean_ms(sess, x, secs: float) -> float:
    """Mean ms of ``session.run`` over a block of about ``secs`` (one timer pair)."""
    name = sess.get_inputs()[0].name
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min(0.02, secs / 5):  # size the block
        sess.run(None, {name: x})
        n += 1
    n = max(20, int(n * secs / min(0.02, secs / 5)))
    t0 = time.perf_counter()
    for _ in range(n):
        sess.run(None, {name: x})
    return (time.perf_counter() - t0) / n * 1000.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=40, help="paired blocks per batch size")
    ap.add_argument("--secs", type=float, default=0.2, help="timed seconds per block")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench_overhead.md"))
    args = ap.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]

    # Short paired blocks, alternating which goes first: load from other processes
    # changes over seconds, so each pair sees about the same machine.
    settings = BN.BenchSettings(warmup_runs=10, warmup_secs=0.05, min_runs=20,
                                min_secs=args.secs, memory_batch=0)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        path = build_model(Path(d) / "overhead.onnx")
        for batch in batches:
            x = B.random_input((batch, 3, 32, 32), np.float32, seed=settings.seed)
            sess = bare_session(path, args.threads, settings.ort_allow_spinning)
            bare_mean_ms(sess, x, 0.3)  # warm-up
            harness, bare, ratios = [], [], []
            for i in range(args.rounds):
                pair = {}
                for which in (("harness", "bare") if i % 2 == 0 else ("bare", "harness")):
                    if which == "bare":
                        pair["bare"] = bare_mean_ms(sess, x, args.secs)
                        continue
                    r = BN.measure_config(path, "onnxruntime", args.threads, batch, settings)
                    if r["status"] != "ok":
                        print(f"harness failed: {r['failure']}", file=sys.stderr)
                        return 1
                    pair["harness"] = r["latency_ms"]["mean"]
                harness.append(pair["harness"])
                bare.append(pair["bare"])
                ratios.append(pair["harness"] / pair["bare"])
            rows.append({"batch": batch, "harness_ms": statistics.median(harness),
                         "bare_ms": statistics.median(bare),
                         "ratio": statistics.median(ratios),
                         "ratio_of_min": min(harness) / min(bare),
                         "q1": statistics.quantiles(ratios, n=4)[0],
                         "q3": statistics.quantiles(ratios, n=4)[2]})

    system = sysinfo.system_info()
    libs = system["libraries"]
    worst = max(abs(r["ratio"] - 1.0) for r in rows)
    verdict = "PASS" if worst <= 0.05 else "FAIL"
    lines = [
        "# Bench harness overhead",
        "",
        "Written by `python benchmarks/bench_overhead.py` (do not edit by hand).",
        "",
        "Question: does `edgeconv bench` report the latency a bare `session.run` loop sees? "
        "A tiny ONNX model (Conv 3x3 3->16 + ReLU + GlobalAveragePool, input [N,3,32,32]) is "
        "measured alternately by the harness (`measure_config`: fresh session, first "
        "inference, warm-up, per-call `perf_counter` timing; its mean latency) and by a bare "
        "loop of `session.run` with identical session options in the same process (total time "
        f"/ calls). {args.rounds} back-to-back pairs of {args.secs:g} s blocks per batch size, "
        "alternating which goes first, so that load from other processes hits both sides of "
        "a pair alike; the ratio is the median of the per-pair ratios (IQR shown), and the "
        "ratio of the fastest blocks is given as a second estimate (noisy under load). A tiny "
        "model is the worst case: any fixed per-call cost is largest relative to the run time.",
        "",
        f"Machine: {system.get('cpu_model')}, {system['cores']['physical']} physical / "
        f"{system['cores']['logical']} logical cores; onnxruntime {libs.get('onnxruntime')}, "
        f"numpy {libs.get('numpy')}, Python {libs.get('python')}; {args.threads} thread(s), "
        f"spinning {'on' if settings.ort_allow_spinning else 'off'}.",
        "",
        f"Load average when written: {', '.join(f'{v:.2f}' for v in os.getloadavg())} "
        "(1, 5, 15 min).",
        "",
        "| batch | harness mean (ms, median) | bare loop mean (ms, median) | ratio (median of "
        "pairs) | ratio IQR | ratio of fastest blocks |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['batch']} | {r['harness_ms']:.4f} | {r['bare_ms']:.4f} | "
                     f"{r['ratio']:.3f} | {r['q1']:.3f} - {r['q3']:.3f} | "
                     f"{r['ratio_of_min']:.3f} |")
    lines += ["", f"Goal: ratio within 5% of 1.0. Result: **{verdict}** (largest deviation of "
              f"the median ratio: {worst * 100:.1f}%).", ""]
    text = "\n".join(lines)
    atomic_write_text(args.out, text)
    print(text)
    print(f"wrote {args.out}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
