"""``edgeconv bench`` and ``kernels``: the device side (torch-free)."""

from __future__ import annotations

import os
import sys

import click

from edgeconv import options as _opts
from edgeconv.commands.common import EXIT_USER_ERROR, click_csv_ints
from edgeconv.errors import EdgeconvError


@click.command()
@click.argument("models", nargs=-1, required=True)
@click.option("--backend", "backends", default="onnxruntime,tflite", show_default=True,
              help="Backend(s), comma separated; each runs the files of its format "
                   "(.onnx -> onnxruntime, .tflite -> tflite).")
@click.option("--threads", callback=_opts.click_threads_list, default="1,2,4", show_default=True,
              help="Thread counts, comma separated.")
@click.option("--batch", "batches", callback=click_csv_ints, default="1,2,4,8,16",
              show_default=True, help="Batch sizes, comma separated.")
@click.option("--warmup-runs", default=3, show_default=True, type=click.IntRange(0),
              help="Minimum warm-up runs (after the first inference).")
@click.option("--warmup-secs", default=0.5, show_default=True, type=float,
              callback=_opts.click_seconds,
              help="Minimum warm-up seconds.")
@click.option("--min-runs", default=20, show_default=True, type=click.IntRange(1),
              help="Minimum timed runs.")
@click.option("--min-secs", default=1.0, show_default=True, type=float,
              callback=_opts.click_seconds,
              help="Minimum timed seconds.")
@click.option("--memory-batch", default=8, show_default=True, type=click.IntRange(0),
              help="Batch of the peak-memory measurement (fresh child process); 0 skips it.")
@click.option("--spinning", type=click.Choice(["on", "off"]), default="on", show_default=True,
              help="ONNX Runtime session.intra_op.allow_spinning for the sweep "
                   "(both are measured once per ONNX model regardless).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the random input.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write JSON here.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Write CSV here.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Write the throughput plot FILE.png (and FILE_accuracy.png when two or more "
                   "models carry a verification accuracy and MACs); needs edgeconv[plot].")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Progress bar on stderr.")
def bench(models, backends, threads, batches, warmup_runs, warmup_secs, min_runs, min_secs,
          memory_batch, spinning, seed, json_path, csv_path, plot_path, progress):
    """Throughput, latency and peak memory of ONNX / TFLite MODEL files (torch-free).

    Sweeps backend x threads x batch; reports the best configuration per model.
    Ctrl-C writes the results gathered so far (partial) and exits 130.
    """
    from edgeconv.profiling.bench import bench_command

    code = bench_command(list(models), backends=backends, threads=threads, batches=batches,
                         warmup_runs=warmup_runs, warmup_secs=warmup_secs, min_runs=min_runs,
                         min_secs=min_secs, memory_batch=memory_batch, spinning=spinning,
                         json_path=json_path, csv_path=csv_path, plot_path=plot_path,
                         seed=seed, progress=progress)
    if code:
        sys.exit(code)


@click.command()
@click.option("--path", "path_only", is_flag=True,
              help="Print only the library path (for SessionOptions.register_custom_ops_library "
                   "in your own ONNX Runtime code).")
@click.option("--delegate-path", "delegate_only", is_flag=True,
              help="Print only the LiteRT delegate's path (for ai_edge_litert.interpreter."
                   "load_delegate in your own LiteRT code).")
@click.option("--json", "as_json", is_flag=True, help="Print the build information as JSON.")
def kernels(path_only, delegate_only, as_json):
    """Build of the fused TVConv kernel library: path, SIMD path, ORT headers.

    TVConv models exported to ONNX (by default) hold its ONNX Runtime custom op edgeconv.TVConv,
    each node with a standard-op function body that runs where the library is not loaded;
    edgeconv loads it by itself, --path is for your own ONNX Runtime code. TFLite files hold
    edgeconv.tvconv composites that the LiteRT delegate runs (--delegate-path for your own
    LiteRT code). Exit 2 with one line when the library is not built or cannot be loaded.
    """
    from edgeconv import kernels as K
    from edgeconv.runtime import litert_delegate as LD

    if sum(map(bool, (path_only, delegate_only, as_json))) > 1:
        raise click.UsageError("--path, --delegate-path and --json are exclusive")
    lib_env = os.environ.get("EDGECONV_KERNELS_LIB")
    if lib_env and not os.path.isfile(lib_env):  # not "not built": the variable is wrong
        raise EdgeconvError(f"EDGECONV_KERNELS_LIB={lib_env}: no such file (point it at a "
                            "built libedgeconv_kernels.so, or unset it)")
    if delegate_only:
        try:
            click.echo(str(LD.delegate_path(required=True)))
        except K.KernelsMissing as exc:
            click.echo(f"edgeconv kernels: {exc}", err=True)
            sys.exit(EXIT_USER_ERROR)
        return
    if path_only:
        path = K.library_path()
        K.load()  # a file that cannot be loaded is not a path to hand to ONNX Runtime
        click.echo(str(path))
        return
    if as_json:
        import json

        click.echo(json.dumps(dict(K.info(), onnxruntime_version=_ort_version(),
                                   litert_delegate=LD.info(selftest=True)), indent=2))
        return
    try:
        info = K.info()
    except K.KernelsMissing as exc:
        msg = str(exc)  # "the edgeconv kernels are not built (...)" / "... at PATH cannot ..."
        for prefix in ("the edgeconv kernels are ", "the edgeconv kernels at "):
            if msg.startswith(prefix):
                msg = msg[len(prefix):]
                break
        click.echo(f"edgeconv kernels: {msg}", err=True)
        sys.exit(EXIT_USER_ERROR)
    forced = os.environ.get("EDGECONV_KERNEL_ISA")
    if forced and (info["isa"] == "unavailable" or info["isa"] not in info["available_isas"]):
        raise EdgeconvError(f"EDGECONV_KERNEL_ISA={forced}: not available on this machine "
                            f"(available: {', '.join(info['available_isas'])})")
    api = info["ort_api_version"]
    ort_version = _ort_version()
    ort_note = ""
    try:
        major, minor = (int(v) for v in str(ort_version).split(".")[:2])
        if (major, minor) < (1, api):
            ort_note = f" (older than the headers: this library needs onnxruntime >= 1.{api})"
    except ValueError:
        pass
    rows = [
        ("library", info["library"]),
        ("version", info["version"]),
        ("op", f"{info['domain']}.{info['op']} (writes version {info['op_version']}, reads "
               f"{info['op_versions'][0]}..{info['op_versions'][1]})"),
        ("weight layout", ", ".join(info["layouts"])),
        ("simd", f"{info['isa']}" + (f" (EDGECONV_KERNEL_ISA={forced})" if forced else "")
         + f"; available: {', '.join(info['available_isas'])}"),
        ("ort headers", f"ORT_API_VERSION {api} (runs on onnxruntime >= 1.{api})"),
        ("onnxruntime", f"{ort_version or 'not installed'}{ort_note}"),
    ]
    d = LD.info(selftest=True)
    rows.append(("delegate", (f"LiteRT {d['library']} (version {d['version']}, isa {d['isa']}, "
                                     f"self-test {d['selftest']})") if d["available"]
                 else f"not built ({d['library']} missing): fused TFLite files run their "
                      "portable body"))
    for key, value in rows:
        click.echo(f"{key + ':':<15}{value}")


def _ort_version() -> str | None:
    """Version of the installed onnxruntime, without importing it."""
    from importlib import metadata

    try:
        return metadata.version("onnxruntime")
    except metadata.PackageNotFoundError:
        return None


COMMANDS = (bench, kernels)
