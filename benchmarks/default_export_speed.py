"""What users get from the DEFAULT export of a TVConv model, against depthwise (one run).

    python benchmarks/default_export_speed.py                 # full: see the docs header
    python benchmarks/default_export_speed.py --smoke         # tiny check (/tmp, < 3 min cached)

Randomised checkpoints (BatchNorm statistics and TVConv affinity maps random, ``edgeconv
init``-style) of MB x1.0 depthwise, MB x0.5 depthwise and MB x0.5 TVConv at 96x96 are exported
with the real exporter (``edgeconv.export.exporter.export_checkpoint``; cached under
``--cache``, keyed by model/op/size/format/formulation/weight dtype) and measured through
``edgeconv.runtime.backends.open_model`` (which registers the kernel library / loads the LiteRT
delegate for files that use them), every file of one backend interleaved per (batch, threads)
cell (``edgeconv.profiling.timing.measure_round_robin``):

* ONNX Runtime: depthwise x1.0 / x0.5, the TVConv default export (fused ``edgeconv.TVConv``
  nodes with function bodies, float16 weights) with the kernel library and without it
  (portable body), its ``--weight-dtype float32`` variant, and the old default
  ``--formulation col2im``;
* LiteRT: depthwise x1.0 / x0.5, TVConv ``--formulation fused`` (float16 weights, the
  default storage) and ``--weight-dtype float32`` with the delegate, the fused file without it
  (portable body: batch 1, 1 thread only) and the TFLite default ``tapconv``;
* net peak RSS at batch 8, 1 thread, each file in a fresh child (edgeconv.profiling.memory);
* per op: every distinct TVConv layer shape of MB x0.5 as a one-layer file, the fused layer
  (each weight dtype) against the runtime's depthwise conv of the same shape (LiteRT files
  NHWC in and out: the op alone, no transposes).

The hand-written reading of a run lives in --notes (docs/default_export_speed.notes.md) and is
put into the markdown after the header, so a rerun keeps it.

Writes the markdown (--out-md), the JSON (--out-json) and a PNG next to the markdown.
Imports nothing from tests/ or other benchmarks.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DTYPES = ("float32", "float16", "int8")
ONNX, TFLITE = "onnxruntime", "tflite"
BACKEND_LABEL = {ONNX: "ONNX Runtime", TFLITE: "LiteRT"}
NO_KERNEL_LIB = "/nonexistent/edgeconv-benchmark/libedgeconv_kernels.so"
DELEGATE_NA = "delegate not available"
KERNEL_NA = "kernel library not available"


# ----------------------------------------------------------------------------- setup
def config(args) -> dict:
    if args.smoke:
        return {"size": 32, "batches": (1, 4), "threads": (1,), "per_op_shapes": 2,
                "models": {"dw_big": ("mbv2_x0_2", "depthwise"),
                           "dw_small": ("mbv2_x0_1", "depthwise"),
                           "tv": ("mbv2_x0_1", "tvconv")}}
    return {"size": 96, "batches": (1, 4, 16), "threads": (1, 2), "per_op_shapes": None,
            "models": {"dw_big": ("mbv2_x1_0", "depthwise"),
                       "dw_small": ("mbv2_x0_5", "depthwise"),
                       "tv": ("mbv2_x0_5", "tvconv")}}


def pretty(model: str) -> str:
    """mbv2_x0_5 -> 'MB x0.5'."""
    fam, _, width = model.partition("_x")
    return {"mbv2": "MB", "sfv2": "SF"}.get(fam, fam) + " x" + width.replace("_", ".")


def randomise(model, seed: int = 0):
    """Random TVConv affinity maps, LayerNorm affine and BatchNorm statistics (the package's
    fixture, edgeconv.models.randomise: a default init hides mistakes)."""
    from edgeconv.models.randomise import randomise as _randomise

    return _randomise(model, seed)


def checkpoint(cache: Path, name: str, op: str, size: int, seed: int) -> Path:
    """A randomised checkpoint as `edgeconv init` writes it (cached)."""
    import torch

    from edgeconv.models import create_model
    from edgeconv.train.checkpoint import save_checkpoint

    path = cache / "checkpoints" / f"{name}_{op}_{size}_s{seed}.ckpt"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = create_model(name, op=op, input_size=size, embedding_dim=512).eval()
    randomise(model, seed)
    return save_checkpoint(path, model, metrics={"seed": seed, "trained": False})


def export(cache: Path, ckpt: Path, fmt: str, formulation: str | None,
           weight_dtype: str | None) -> tuple[Path, dict]:
    """One real export, cached: (file, {formulation, parity, seconds})."""
    from edgeconv.export.exporter import export_checkpoint

    from edgeconv.kernels.pack import DEFAULT_WEIGHT_DTYPE

    from edgeconv.kernels import OP_VERSION

    # the default storage and the packed-layout version are named in the key: a cache from
    # before a change of either is never taken for the new file
    key = (f"{ckpt.stem}_{fmt}_{formulation or 'default'}_"
           f"{weight_dtype or 'default-' + DEFAULT_WEIGHT_DTYPE}_layout{OP_VERSION}")
    out = cache / "exports" / key
    done = out / "done.json"
    if done.is_file():
        rec = json.loads(done.read_text())
        if Path(rec["path"]).is_file():
            return Path(rec["path"]), rec
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    print(f"  exporting {key} ...", flush=True)
    rep = export_checkpoint(ckpt, formats=fmt, output_dir=out, formulation=formulation,
                            weight_dtype=weight_dtype, echo=lambda *a, **k: None)
    par = rep["parity"].get(fmt, {})
    rec = {"path": rep["files"][0]["path"], "formulation": rep["formulation"].get(fmt),
           "max_abs_diff": par.get("max_abs_diff"), "min_cosine": par.get("min_cosine"),
           "seconds": round(time.perf_counter() - t0, 1)}
    done.write_text(json.dumps(rec, indent=1))
    print(f"  exported {Path(rec['path']).name} in {rec['seconds']:.0f} s", flush=True)
    return Path(rec["path"]), rec


@contextlib.contextmanager
def env(**values):
    """Set environment variables for the block (read by the kernel/delegate loaders)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update({k: str(v) for k, v in values.items()})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


PORTABLE_ENV = {ONNX: {"EDGECONV_KERNELS_LIB": NO_KERNEL_LIB},
                TFLITE: {"EDGECONV_LITERT_SELFTEST": "0"}}


def file_specs(cfg) -> list[dict]:
    """Every whole-model file measured: label, backend, model key, export options, the path
    its TVConv layers should run ("kernel" / "portable body" / None), grid limits."""
    m = cfg["models"]
    big, small, tv = (pretty(m[k][0]) for k in ("dw_big", "dw_small", "tv"))
    specs = []
    for be, fmt in ((ONNX, "onnx"), (TFLITE, "tflite")):
        specs += [dict(label=f"{big} depthwise", backend=be, model="dw_big", fmt=fmt,
                       formulation=None, dtype=None, expect=None, base=True),
                  dict(label=f"{small} depthwise", backend=be, model="dw_small", fmt=fmt,
                       formulation=None, dtype=None, expect=None)]
    specs += [
        dict(label=f"{tv} TVConv default (kernel)", backend=ONNX, model="tv", fmt="onnx",
             formulation=None, dtype=None, expect="kernel"),
        dict(label=f"{tv} TVConv default (portable body)", backend=ONNX, model="tv", fmt="onnx",
             formulation=None, dtype=None, expect="portable body", portable=True),
        dict(label=f"{tv} TVConv default, fp32 weights (kernel)", backend=ONNX, model="tv",
             fmt="onnx", formulation=None, dtype="float32", expect="kernel"),
        dict(label=f"{tv} TVConv col2im (old default)", backend=ONNX, model="tv", fmt="onnx",
             formulation="col2im", dtype=None, expect=None),
        dict(label=f"{tv} TVConv fused (delegate)", backend=TFLITE, model="tv", fmt="tflite",
             formulation="fused", dtype=None, expect="kernel"),
        dict(label=f"{tv} TVConv fused, fp32 weights (delegate)", backend=TFLITE, model="tv",
             fmt="tflite", formulation="fused", dtype="float32", expect="kernel"),
        dict(label=f"{tv} TVConv fused (portable body)", backend=TFLITE, model="tv",
             fmt="tflite", formulation="fused", dtype=None, expect="portable body",
             portable=True, only=(1, 1)),
        dict(label=f"{tv} TVConv tapconv (TFLite default)", backend=TFLITE, model="tv",
             fmt="tflite", formulation=None, dtype=None, expect=None),
    ]
    for s in specs:  # labels repeat across backends: results are keyed by backend/label
        s["key"] = f"{s['backend']}/{s['label']}"
    return specs


def availability() -> dict:
    """Whether the ONNX kernel library and the LiteRT delegate (self-tested) are usable."""
    from edgeconv import kernels
    from edgeconv.runtime import litert_delegate as ld

    out = {"kernel": kernels.available()}
    try:
        out["kernel_info"] = kernels.info() if out["kernel"] else None
    except Exception as exc:  # noqa: BLE001
        out["kernel_info"] = {"error": str(exc)[:200]}
    try:
        d = ld.info(selftest=True)
    except Exception as exc:  # noqa: BLE001
        d = {"available": False, "error": str(exc)[:200]}
    out["delegate_info"] = d
    out["delegate"] = bool(d.get("available")) and d.get("selftest") == "passed"
    return out


def not_available(spec, avail) -> str | None:
    if spec.get("expect") != "kernel":
        return None
    if spec["backend"] == ONNX and not avail["kernel"]:
        return KERNEL_NA
    if spec["backend"] == TFLITE and not avail["delegate"]:
        return DELEGATE_NA
    return None


def open_file(spec, path, threads):
    from edgeconv.profiling.bench import execution_path
    from edgeconv.runtime.backends import open_model

    with env(**(PORTABLE_ENV[spec["backend"]] if spec.get("portable") else {})):
        model = open_model(path, threads=threads, allow_spinning=SPINNING)
    return model, execution_path(model)


#: ONNX Runtime's spin-waiting worker threads off: the files of a cell are interleaved call by
#: call, and a session whose worker keeps spinning after its call takes the second core from
#: the next session's call (measured: 2-thread cells of every ORT file 1.5-3x slower than one
#: thread with spinning on). TFLite ignores the setting.
SPINNING = False


# ----------------------------------------------------------------------------- whole models
def whole_models(args, cfg, specs, paths, avail) -> dict:
    """label -> {"cells": {"b{b}_t{t}": seconds per call}, execution info}."""
    from edgeconv.profiling.timing import measure_round_robin
    from edgeconv.runtime.backends import random_input

    size = cfg["size"]
    res = {s["key"]: {"cells": {}} for s in specs}
    for s in specs:
        na = not_available(s, avail)
        if na:
            res[s["key"]]["unavailable"] = na
    for be in (ONNX, TFLITE):
        for t in cfg["threads"]:
            opened = {}
            for s in specs:
                if s["backend"] != be or "unavailable" in res[s["key"]]:
                    continue
                if s.get("only") and t != s["only"][1]:
                    continue
                if s.get("portable") and be == ONNX and t == cfg["threads"][0]:
                    print("  (expected: the portable-body row opens the file without the "
                          "kernel library, and edgeconv says so)", flush=True)
                model, path_ran = open_file(s, paths[s["key"]], t)
                r = res[s["key"]]
                r.update(execution=path_ran, uses_kernels=bool(model.uses_kernels),
                         execution_path_attr=getattr(model, "execution_path", None))
                if s.get("expect") and path_ran != s["expect"]:
                    r["warning"] = f"expected {s['expect']}, ran {path_ran}"
                opened[s["key"]] = (s, model)
            for b in cfg["batches"]:
                runners = {}
                for label, (s, model) in opened.items():
                    if s.get("only") and b != s["only"][0]:
                        continue
                    shape = model.set_batch(b, input_size=(size, size))
                    x = random_input(shape, model.input_dtype, seed=b)
                    runners[label] = (lambda m=model, x=x: m.run(x))
                sec = measure_round_robin(runners, args.min_time, args.rounds)
                for label, v in sec.items():
                    res[label]["cells"][f"b{b}_t{t}"] = v
                print(f"  {BACKEND_LABEL[be]} b{b} t{t}: " + ", ".join(
                    f"{k.split('/', 1)[1]} {b / v:.0f} FPS" for k, v in sec.items()), flush=True)
            for _, model in opened.values():
                model.close()
    return res


def memory(cfg, specs, paths, avail) -> dict:
    from edgeconv.profiling import memory as mem

    size = cfg["size"]
    base = {}
    out = {}
    for s in specs:
        na = not_available(s, avail)
        if na:
            out[s["key"]] = {"unavailable": na}
            continue
        be = s["backend"]
        try:
            if be not in base:
                base[be] = mem.run_child(be, None, threads=1, batch=8)
            with env(**(PORTABLE_ENV[be] if s.get("portable") else {})):
                out[s["key"]] = mem.measure(str(paths[s["key"]]), be, 1, 8,
                                              baseline=base[be], input_size=(size, size),
                                              runs=2 if s.get("only") else 10)
            print(f"  memory {s['label']} ({BACKEND_LABEL[be]}): net peak "
                  f"{out[s['key']]['net_peak_rss_mb']:.1f} MiB", flush=True)
        except Exception as exc:  # noqa: BLE001 - one failed child is a row, not the run
            out[s["key"]] = {"failure": str(exc)[:200]}
            print(f"  memory {s['label']}: failed ({exc})", flush=True)
    return out


# ----------------------------------------------------------------------------- per op
def tvconv_shapes(cfg) -> list[tuple[int, int, int, int]]:
    """Distinct (C, H, W, stride) of the TVConv layers of the TVConv model, in model order."""
    from edgeconv.models import create_model
    from edgeconv.ops.tvconv import TVConv

    name, op = cfg["models"]["tv"]
    model = create_model(name, op=op, input_size=cfg["size"])
    shapes = []
    for m in model.modules():
        if isinstance(m, TVConv):
            key = (int(m.channels), int(m.in_hw[0]), int(m.in_hw[1]), int(m.stride))
            if key not in shapes:
                shapes.append(key)
    if cfg["per_op_shapes"]:  # smoke: the first stride-1 and the first stride-2 shape
        pick = [next(s for s in shapes if s[3] == st) for st in (1, 2)
                if any(s[3] == st for s in shapes)]
        shapes = pick[:cfg["per_op_shapes"]]
    return shapes


def _layer(shape, kind, dtype, backend, seed):
    """A one-layer torch module: ``kind`` "kernel" (a folded TVConv + BN + ReLU6 as the fused
    export writes it) or "dw" (depthwise Conv + ReLU6)."""
    import torch
    from torch import nn

    c, h, w, s = shape
    g = torch.Generator().manual_seed(seed)
    if kind == "dw":
        conv = nn.Conv2d(c, c, 3, s, 1, groups=c, bias=True)
        with torch.no_grad():
            conv.weight.copy_(0.3 * torch.randn(conv.weight.shape, generator=g))
            conv.bias.copy_(0.1 * torch.randn(conv.bias.shape, generator=g))
        return nn.Sequential(conv, nn.ReLU6()).eval()
    from edgeconv.ops.tvconv import FoldedTVConv

    oh, ow = (h + 2 - 3) // s + 1, (w + 2 - 3) // s + 1
    weight = 0.3 * torch.randn(1, c, 9, oh, ow, generator=g)
    bias = 0.1 * torch.randn(1, c, 1, 1, generator=g)
    seq = nn.Sequential(FoldedTVConv(weight, bias, 3, s, (h, w)), nn.ReLU6()).eval()
    if backend == ONNX:
        from edgeconv.export.fused import fuse_model

        fuse_model(seq, dtype)
    else:
        from edgeconv.export.litert_fused import fuse_model_litert

        fuse_model_litert(seq, dtype)
    return seq.eval()


def _channels_last(module):
    """``module`` (NCHW) behind NHWC input and output. In a TFLite conversion these permutes
    cancel against the converter's own, so the file holds the op alone, as inside a model
    (a lone op converted from NCHW keeps two TRANSPOSEs that cost more than the op)."""
    from torch import nn

    class ChannelsLast(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

    return ChannelsLast(module).eval()


def per_op_file(cache: Path, shape, kind, dtype, backend) -> Path:
    c, h, w, s = shape
    from edgeconv.kernels import OP_VERSION

    tag = "dw" if kind == "dw" else f"fused_{dtype}"
    if backend == TFLITE:
        tag += "_nhwc"
    elif kind != "dw":
        tag += f"_layout{OP_VERSION}"  # a cached file of another packed layout is not reused
    ext = ".onnx" if backend == ONNX else ".tflite"
    path = cache / "per_op" / f"{backend}_{tag}_c{c}_{h}x{w}_s{s}{ext}"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    module = _layer(shape, kind, dtype, backend, seed=c * 1000 + h * 10 + s)
    if backend == ONNX:
        from edgeconv.export.onnx_export import export_onnx

        proto, _ = export_onnx(module, (h, w), None, 18, "none", channels=c, output_name="y")
        data = proto.SerializeToString()
    else:
        from edgeconv.export import tflite_export as tfl

        # NHWC in and out: the sample input is (1, h, w, c)
        data = tfl.export_tflite(_channels_last(module), (w, c), None, channels=h)
        if kind != "dw":
            from edgeconv.export.litert_fused import batch_free_bodies

            data, _ = batch_free_bodies(data)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    print(f"  per-op file {path.name} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return path


def tflite_ops(data: bytes) -> list[str]:
    """The builtin ops of a TFLite file's main subgraph, as stored (before any delegate)."""
    from edgeconv.export import tflite_export as tfl

    fb = tfl._schema()
    model_t = tfl._load(data)
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    ops = []
    for op in model_t.subgraphs[0].operators:
        code = model_t.operatorCodes[op.opcodeIndex]
        name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?")
        if name not in ops:
            ops.append(name)
    return ops


def per_op(args, cfg, cache, avail) -> list[dict]:
    from edgeconv.profiling.bench import execution_path
    from edgeconv.profiling.timing import measure_round_robin
    from edgeconv.runtime.backends import open_model, random_input

    rows = []
    for shape in tvconv_shapes(cfg):
        c, h, w, s = shape
        for be in (ONNX, TFLITE):
            row = {"backend": be, "shape": list(shape), "cells": {}, "execution": {}}
            ok = avail["kernel"] if be == ONNX else avail["delegate"]
            if not ok:
                row["unavailable"] = KERNEL_NA if be == ONNX else DELEGATE_NA
            files = {"dw": per_op_file(cache, shape, "dw", None, be)}
            if ok:
                for d in args.per_op_dtypes:
                    files[d] = per_op_file(cache, shape, "kernel", d, be)
            if be == TFLITE:
                row["dw_ops"] = tflite_ops(files["dw"].read_bytes())
                row["kernel_ops"] = sorted({op for d in args.per_op_dtypes if d in files
                                            for op in tflite_ops(files[d].read_bytes())})
            for t in cfg["threads"]:
                models = {k: open_model(p, threads=t, allow_spinning=SPINNING)
                          for k, p in files.items()}
                for k, m in models.items():
                    row["execution"][k] = execution_path(m)
                for b in cfg["batches"]:
                    runners = {}
                    for k, m in models.items():
                        shp = m.set_batch(b, input_size=(h, w))
                        x = random_input(shp, m.input_dtype, seed=b)
                        runners[k] = (lambda m=m, x=x: m.run(x))
                    sec = measure_round_robin(runners, args.op_time, args.rounds)
                    row["cells"][f"b{b}_t{t}"] = sec
                for m in models.values():
                    m.close()
            rows.append(row)
            cell = row["cells"][f"b{cfg['batches'][0]}_t{cfg['threads'][0]}"]
            print(f"  per-op {BACKEND_LABEL[be]} C={c} {h}x{w} s{s}: dw "
                  f"{cell['dw'] * 1e6:.0f} us" + "".join(
                      f", {d} x{cell[d] / cell['dw']:.2f}" for d in args.per_op_dtypes
                      if d in cell), flush=True)
    return rows


# ----------------------------------------------------------------------------- system
def system_header() -> dict:
    from importlib import metadata

    from edgeconv.profiling.sysinfo import cpu_model

    flags = set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass

    def ver(dist):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    return {"cpu": cpu_model().get("cpu_model"), "machine": platform.machine(),
            "avx2": "avx2" in flags, "avx512f": "avx512f" in flags,
            "cores_logical": os.cpu_count(), "cores_usable": usable,
            "python": platform.python_version(), "onnxruntime": ver("onnxruntime"),
            "ai-edge-litert": ver("ai-edge-litert"), "litert-torch": ver("litert-torch")}


# ----------------------------------------------------------------------------- report
def _fps(sec, b):
    return b / sec if sec else None


def _f(v, fmt="{:.0f}"):
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)


def summarise(cfg, specs, res) -> None:
    """Per file: FPS per cell, max FPS, ratios vs the big depthwise model (in place)."""
    bases = {be: next(s["key"] for s in specs if s.get("base") and s["backend"] == be)
             for be in (ONNX, TFLITE)}
    b0 = f"b{cfg['batches'][0]}_t{cfg['threads'][0]}"
    for s in specs:
        r = res[s["key"]]
        r["fps"] = {k: _fps(v, int(k[1:].split("_")[0])) for k, v in r["cells"].items()}
        r["max_fps"] = max(r["fps"].values()) if r["fps"] else None
    for s in specs:
        r, rb = res[s["key"]], res[bases[s["backend"]]]
        r["max_fps_ratio"] = (r["max_fps"] / rb["max_fps"]) if r["max_fps"] and rb["max_fps"] \
            else None
        r["b1_t1_ratio"] = (r["fps"][b0] / rb["fps"][b0]) if r["fps"].get(b0) and \
            rb["fps"].get(b0) else None


def markdown(args, cfg, specs, paths, exports, res, mem, ops, head) -> str:
    cells = [(b, t) for t in cfg["threads"] for b in cfg["batches"]]
    size = cfg["size"]
    b0, t0 = cfg["batches"][0], cfg["threads"][0]
    L = ["# Default export speed: TVConv vs depthwise, what users get", "",
         f"Generated by `{head['command']}`" + (" (SMOKE run: tiny models, not results)"
                                                 if args.smoke else "") + ".", ""]
    s = head["system"]
    L += ["| | |", "|---|---|",
          f"| machine | {s['cpu']} ({s['machine']}), AVX2 {'yes' if s['avx2'] else 'no'}, "
          f"AVX-512 {'yes' if s['avx512f'] else 'no'}, {s['cores_logical']} logical cores "
          f"({s['cores_usable']} usable) |",
          f"| runtimes | onnxruntime {s['onnxruntime']}, ai-edge-litert {s['ai-edge-litert']} "
          f"(litert-torch {s['litert-torch']} converts) |"]
    ki = head["avail"].get("kernel_info") or {}
    L.append("| kernel library | " + (f"{Path(ki['library']).name} {ki.get('version')}, ISA "
                                        f"{ki.get('isa')} (available: "
                                        f"{', '.join(ki.get('available_isas', []))})"
                                        if ki.get("library") else KERNEL_NA) + " |")
    di = head["avail"].get("delegate_info") or {}
    L.append("| LiteRT delegate | " + (
        f"{Path(di['library']).name} {di.get('version')}, ISA {di.get('isa')}, self-test "
        f"{di.get('selftest')}" if di.get("available") else
        f"{DELEGATE_NA} ({di.get('library')} not built)") + " |")
    la0, la1 = head["loadavg_start"], head["loadavg_end"]
    L += [f"| load average | start {la0[0]:.2f} {la0[1]:.2f} {la0[2]:.2f}, end "
          f"{la1[0]:.2f} {la1[1]:.2f} {la1[2]:.2f} (1/5/15 min) |",
          f"| wall time | {head['wall_s'] / 60:.1f} min (exports {head['export_s'] / 60:.1f} min"
          " of it; cached exports are reused) |",
          f"| timing | input {size}x{size}; per (backend, batch, threads) cell every file of the "
          f"backend interleaved call by call, ONNX Runtime's thread spinning off (interleaved "
          f"sessions' spinning workers would take the other core) "
          f"(edgeconv.profiling.timing.measure_round_robin: "
          f"min {args.min_time} s of calls per file and round, {args.rounds} rounds, median of "
          f"a round's calls, best round); FPS = batch / that median |", ""]
    if args.notes is not None and args.notes.is_file():  # the reading, kept across reruns
        L += [args.notes.read_text().rstrip(), ""]

    L += ["## Files", "",
          "| backend | file | exported as | parity max abs diff | size | TVConv layers ran on |",
          "|---|---|---|---|---|---|"]
    for sp in specs:
        e = exports[sp["key"]]
        r = res[sp["key"]]
        ran = r.get("unavailable") or r.get("execution") or "–"
        if r.get("warning"):
            ran += f" (**{r['warning']}**)"
        form = e.get("formulation")
        how = ("default (no TVConv)" if form is None else
               f"`--formulation {form}`" if sp["formulation"] else f"default ({form})") + (
            f", `--weight-dtype {sp['dtype']}`" if sp["dtype"] else "")
        L.append(f"| {BACKEND_LABEL[sp['backend']]} | {sp['label']}: `{Path(paths[sp['key']]).name}` "
                 f"| {how} | {_f(e.get('max_abs_diff'), '{:.1e}')} "
                 f"| {Path(paths[sp['key']]).stat().st_size / 1e6:.2f} MB | {ran} |")
    L.append("")

    for be in (ONNX, TFLITE):
        bkey = next(sp["key"] for sp in specs if sp.get("base") and sp["backend"] == be)
        base = bkey.split("/", 1)[1]
        L += [f"## {BACKEND_LABEL[be]}: whole model FPS", "",
              "| file | ran on | " + " | ".join(f"b{b} t{t}" for b, t in cells)
              + f" | max FPS | max FPS vs {base} | b{b0} t{t0} vs {base} |",
              "|---|---|" + "---:|" * (len(cells) + 3)]
        for sp in specs:
            if sp["backend"] != be:
                continue
            r = res[sp["key"]]
            if r.get("unavailable"):
                L.append(f"| {sp['label']} | {r['unavailable']} |" + " |" * (len(cells) + 3))
                continue
            vals = [_f(r["fps"].get(f"b{b}_t{t}")) for b, t in cells]
            L.append(f"| {sp['label']} | {r.get('execution') or '–'} | " + " | ".join(vals)
                     + f" | {_f(r['max_fps'])} | {_f(r['max_fps_ratio'], '{:.2f}x')} | "
                     f"{_f(r['b1_t1_ratio'], '{:.2f}x')} |")
        if be == TFLITE:
            L.append("")
            L.append("The portable-body row is measured at batch 1, 1 thread only (LiteRT runs "
                     "the composites' standard-op decomposition outside XNNPACK: very slow).")
        L.append("")

    if mem:
        L += ["## Memory: net peak RSS at batch 8, 1 thread", "",
              "Each file in a fresh child process (edgeconv.profiling.memory): peak RSS of the "
              "child minus that of the same child without a model. MiB.", "",
              "| backend | file | net peak RSS | vs largest depthwise (same backend) |",
              "|---|---|---:|---:|"]
        for be in (ONNX, TFLITE):
            bkey = next(sp["key"] for sp in specs if sp.get("base") and sp["backend"] == be)
            bv = (mem.get(bkey) or {}).get("net_peak_rss_mb")
            for sp in specs:
                if sp["backend"] != be:
                    continue
                m = mem.get(sp["key"]) or {}
                v = m.get("net_peak_rss_mb")
                note = m.get("unavailable") or m.get("failure")
                L.append(f"| {BACKEND_LABEL[be]} | {sp['label']} | "
                         + (note if note else _f(v, "{:.1f}")) + " | "
                         + (_f(v / bv, "{:.2f}x") if v is not None and bv else "–") + " |")
        L.append("")

    if ops is not None:
        L += ["## Per op: fused TVConv kernel time / depthwise conv time", "",
              "Every distinct TVConv layer shape (C, H, W, stride; input size) of "
              f"{pretty(cfg['models']['tv'][0])} at {size}x{size}, each as a one-layer file "
              "(ONNX: NCHW in and out; LiteRT: NHWC in and out, no transposes). ONNX Runtime: one `edgeconv.TVConv` node (BatchNorm folded, "
              "ReLU6 fused) with the kernel library vs ONNX Runtime's depthwise `Conv` + `Clip` "
              "of the same shape (a lone Conv pays ORT's NCHWc reorders, as a model's first "
              "depthwise layer would not). LiteRT: one `edgeconv.tvconv` composite with the "
              "delegate vs XNNPACK's `DEPTHWISE_CONV_2D` (a torch depthwise conv converted with "
              "litert-torch), each file the op alone (the ops stored are listed below the table). "
              "Ratio < 1: the kernel is faster. The depthwise row gives its time in µs.", ""]
        for be in (ONNX, TFLITE):
            rows = [r for r in ops if r["backend"] == be]
            if not rows:
                continue
            L += [f"### {BACKEND_LABEL[be]}", "",
                  "| layer | weights | " + " | ".join(f"b{b} t{t}" for b, t in cells) + " |",
                  "|---|---|" + "---:|" * len(cells)]
            ratios = {d: {c: [] for c in cells} for d in args.per_op_dtypes}
            for r in rows:
                c, h, w, st = r["shape"]
                lay = f"C={c} {h}x{w} s{st}"
                L.append(f"| {lay} | depthwise µs | " + " | ".join(
                    _f(r["cells"][f"b{b}_t{t}"]["dw"] * 1e6) for b, t in cells) + " |")
                if r.get("unavailable"):
                    L.append(f"| {lay} | kernel | {r['unavailable']} |" + " |" * (len(cells) - 1))
                    continue
                for d in args.per_op_dtypes:
                    vals = []
                    for b, t in cells:
                        cell = r["cells"][f"b{b}_t{t}"]
                        q = cell[d] / cell["dw"]
                        ratios[d][(b, t)].append(q)
                        vals.append(f"{q:.2f}")
                    L.append(f"| {lay} | {d} | " + " | ".join(vals) + " |")
            for d in args.per_op_dtypes:
                if all(ratios[d][c] for c in cells):
                    L.append(f"| **geomean** | {d} | " + " | ".join(
                        f"**{math.exp(np.mean(np.log(ratios[d][c]))):.2f}**" for c in cells) + " |")
                    L.append(f"| **worst** | {d} | " + " | ".join(
                        f"{max(ratios[d][c]):.2f}" for c in cells) + " |")
            if be == TFLITE and rows and rows[0].get("dw_ops"):
                L += ["", "Ops of the depthwise reference files (as stored): "
                      + ", ".join(rows[0]["dw_ops"]) + "; of the kernel files: "
                      + ", ".join(rows[0].get("kernel_ops") or ["?"]) + "."]
            L.append("")

    png = head.get("png")
    if png:
        L += [f"![max FPS per file]({Path(png).name})", ""]
    return "\n".join(L) + "\n"


def plot(cfg, specs, res, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"kernel": "#2a9d8f", "portable body": "#e76f51", "standard ops": "#8d99ae"}
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for ax, be in zip(axes, (ONNX, TFLITE)):
        sp = [s for s in specs if s["backend"] == be]
        bkey = next(s["key"] for s in sp if s.get("base"))
        base = bkey.split("/", 1)[1]
        labels, vals, cols, notes = [], [], [], []
        for s in sp:
            r = res[s["key"]]
            labels.append(s["label"])
            v = r.get("max_fps") or 0.0
            vals.append(v)
            ex = r.get("execution") or "standard ops"
            cols.append(colors.get(ex, "#8d99ae"))
            notes.append(r.get("unavailable") or (f"{v:.0f} FPS ({ex})" + (
                ", b1 t1 only" if s.get("only") else "")))
        y = np.arange(len(labels))[::-1]
        ax.barh(y, vals, color=cols)
        bmax = res[bkey].get("max_fps")
        if bmax:
            ax.axvline(bmax, color="black", ls="--", lw=1)
            ax.text(bmax, y.max() + 0.6, f" {base}: {bmax:.0f}", fontsize=8, va="bottom")
        xmax = max(vals + [bmax or 0]) or 1.0
        for yi, v, n in zip(y, vals, notes):
            ax.text(v + 0.01 * xmax, yi, n, va="center", fontsize=7.5)
        ax.set_yticks(y)
        ax.set_yticklabels(labels, fontsize=8)
        ax.set_xlim(0, xmax * 1.6)
        ax.set_ylim(y.min() - 0.6, y.max() + 1.2)
        ax.set_xlabel(f"max FPS over batch {list(cfg['batches'])} x threads "
                      f"{list(cfg['threads'])} ({cfg['size']}x{cfg['size']})")
        ax.set_title(BACKEND_LABEL[be])
    from matplotlib.patches import Patch

    fig.legend([Patch(color=c) for c in colors.values()],
               [f"TVConv on {k}" if k != "standard ops" else "standard ops" for k in colors],
               loc="lower center", ncol=3, fontsize=8)
    fig.suptitle("Default export vs depthwise: max FPS per file (dashed: largest depthwise "
                 "model)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    os.chmod(path, 0o644)


# ----------------------------------------------------------------------------- main
def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-md", type=Path, default=None,
                   help="markdown report (default docs/default_export_speed.md; smoke: /tmp)")
    p.add_argument("--out-json", type=Path, default=None,
                   help="JSON results (default: --out-md with .json)")
    p.add_argument("--out-png", type=Path, default=None,
                   help="plot (default: --out-md with .png)")
    p.add_argument("--notes", type=Path, default=None,
                   help="hand-written reading of the run, put after the header (default: "
                        "--out-md with .notes.md where it exists; never for --smoke)")
    p.add_argument("--cache", type=Path, default=Path("/tmp/edgeconv_default_export_speed_cache"),
                   help="checkpoints, exports and per-op files (reused by later runs)")
    p.add_argument("--min-time", type=float, default=None,
                   help="seconds of timed calls per file, round and cell (default 0.3; smoke 0.1)")
    p.add_argument("--op-time", type=float, default=None,
                   help="the same for the per-op files (default: --min-time)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--no-per-op", action="store_true")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--per-op-dtypes", default=",".join(DTYPES),
                   help="weight dtypes of the per-op kernel files (comma list)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true",
                   help="tiny: 32x32, batch 1/4, 1 thread, MB x0.1/x0.2, 2 per-op shapes; /tmp")
    args = p.parse_args(argv)
    args.per_op_dtypes = tuple(d.strip() for d in args.per_op_dtypes.split(",") if d.strip())
    bad = [d for d in args.per_op_dtypes if d not in DTYPES]
    if bad:
        p.error(f"--per-op-dtypes: unknown {bad} (choose from {', '.join(DTYPES)})")
    if args.min_time is None:
        args.min_time = 0.1 if args.smoke else 0.3
    if args.op_time is None:
        args.op_time = args.min_time
    if args.out_md is None:
        args.out_md = (Path("/tmp/default_export_speed_smoke.md") if args.smoke
                       else REPO / "docs" / "default_export_speed.md")
    args.out_json = args.out_json or args.out_md.with_suffix(".json")
    args.out_png = args.out_png or args.out_md.with_suffix(".png")
    if args.notes is None and not args.smoke:
        args.notes = args.out_md.with_suffix(".notes.md")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    t_start = time.perf_counter()
    load0 = os.getloadavg()
    cfg = config(args)
    cache = args.cache
    cache.mkdir(parents=True, exist_ok=True)
    command = "python " + " ".join(shlex.quote(a) for a in
                                   [os.path.relpath(__file__, REPO)] + (
                                       sys.argv[1:] if argv is None else list(argv)))
    head = {"command": command, "system": system_header(), "loadavg_start": list(load0)}
    print(f"{command}\n  load average {load0[0]:.2f}; cache {cache}", flush=True)
    avail = availability()
    head["avail"] = avail
    print(f"  kernel library: {'yes' if avail['kernel'] else 'NO'}; LiteRT delegate: "
          f"{'yes' if avail['delegate'] else DELEGATE_NA}", flush=True)

    specs = file_specs(cfg)
    t_exp = time.perf_counter()
    ckpts = {k: checkpoint(cache, name, op, cfg["size"], args.seed + i)
             for i, (k, (name, op)) in enumerate(cfg["models"].items())}
    paths, exports = {}, {}
    for s in specs:
        paths[s["key"]], exports[s["key"]] = export(cache, ckpts[s["model"]], s["fmt"],
                                                        s["formulation"], s["dtype"])
    per_op_files_s = 0.0
    if not args.no_per_op:  # convert the per-op files up front: the timing then runs unbroken
        t1 = time.perf_counter()
        for shape in tvconv_shapes(cfg):
            for be in (ONNX, TFLITE):
                per_op_file(cache, shape, "dw", None, be)
                if avail["kernel" if be == ONNX else "delegate"]:
                    for d in args.per_op_dtypes:
                        per_op_file(cache, shape, "kernel", d, be)
        per_op_files_s = time.perf_counter() - t1
    head["export_s"] = time.perf_counter() - t_exp

    print("whole models", flush=True)
    res = whole_models(args, cfg, specs, paths, avail)
    summarise(cfg, specs, res)
    mem = {}
    if not args.no_memory:
        print("memory", flush=True)
        mem = memory(cfg, specs, paths, avail)
    ops = None
    if not args.no_per_op:
        print("per op", flush=True)
        ops = per_op(args, cfg, cache, avail)

    head["loadavg_end"] = list(os.getloadavg())
    head["wall_s"] = time.perf_counter() - t_start
    head["png"] = str(args.out_png)
    for p in (args.out_md, args.out_json, args.out_png):
        p.parent.mkdir(parents=True, exist_ok=True)
    plot(cfg, specs, res, args.out_png)
    md = markdown(args, cfg, specs, paths, exports, res, mem, ops, head)
    args.out_md.write_text(md)
    result = {"header": head, "config": {k: (v if k != "models" else {kk: list(vv) for kk, vv in
                                                                        v.items()})
                                         for k, v in cfg.items()},
              "options": {"min_time": args.min_time, "op_time": args.op_time,
                          "rounds": args.rounds, "per_op_dtypes": list(args.per_op_dtypes),
                          "smoke": args.smoke},
              "files": [{**{k: v for k, v in s.items() if k != "only"},
                         "only": list(s["only"]) if s.get("only") else None,
                         "path": str(paths[s["key"]]), "export": exports[s["key"]],
                         **res[s["key"]], "memory": mem.get(s["key"])} for s in specs],
              "per_op": ops, "per_op_files_s": per_op_files_s}
    args.out_json.write_text(json.dumps(result, indent=1, default=str))
    for p in (args.out_md, args.out_json):
        os.chmod(p, 0o644)
    print(f"wrote {args.out_md}, {args.out_json}, {args.out_png} "
          f"({head['wall_s'] / 60:.1f} min)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
