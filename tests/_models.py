"""Tiny model files for the bench/backends tests (no fixtures here: plain helpers).

* ONNX models are built with ``onnx.helper`` (Conv+Relu+GlobalAveragePool+Flatten
  on [N,3,16,16]) with a symbolic or fixed batch, in milliseconds.
* The .tflite model comes from a litert-torch conversion of an equivalent tiny
  torch module, run in a subprocess (so the test process never imports
  litert-torch) and cached on disk across sessions, keyed by the conversion
  script and the torch/litert-torch versions.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
C_OUT = 8


def conv_weights(seed: int = 0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((C_OUT, 3, 3, 3)).astype(np.float32) * 0.5
    b = rng.standard_normal(C_OUT).astype(np.float32) * 0.1
    return w, b


def reference_forward(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """numpy Conv3x3(pad 1)+ReLU+global mean: what every tiny model computes."""
    w, b = conv_weights(seed)
    n, _, h, wd = x.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, C_OUT, h, wd))
    for i in range(3):
        for j in range(3):
            out += np.einsum("nchw,oc->nohw", xp[:, :, i:i + h, j:j + wd], w[:, :, i, j])
    out += b[None, :, None, None]
    return np.maximum(out, 0).mean(axis=(2, 3)).astype(np.float32)


def make_onnx(path, batch="N", spatial=(16, 16), reshape_to=None, two_inputs=False,
              seed: int = 0) -> Path:
    """Write a tiny ONNX model; ``batch`` is a symbol (str) or a fixed int.

    ``spatial=("H", "W")`` makes the spatial dims symbolic; ``reshape_to`` ends the
    graph with a Reshape to that constant shape (a batch baked into the graph).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w, b = conv_weights(seed)
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")]
    nodes = [helper.make_node("Conv", ["input", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["g"])]
    if reshape_to is not None:
        inits.append(numpy_helper.from_array(np.asarray(reshape_to, np.int64), "shape"))
        nodes.append(helper.make_node("Reshape", ["g", "shape"], ["embedding"]))
    else:
        nodes.append(helper.make_node("Flatten", ["g"], ["embedding"]))
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, *spatial])]
    if two_inputs:
        inputs.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, [batch, 1]))
    graph = helper.make_graph(
        nodes, "tiny", inputs,
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [batch, C_OUT])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path


_CONVERT = r'''
import sys
import numpy as np
import torch
import litert_torch

out, seed, c_out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(seed)
w = rng.standard_normal((c_out, 3, 3, 3)).astype(np.float32) * 0.5
b = rng.standard_normal(c_out).astype(np.float32) * 0.1


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, c_out, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.from_numpy(w))
            self.conv.bias.copy_(torch.from_numpy(b))

    def forward(self, x):
        return torch.relu(self.conv(x)).mean(dim=(2, 3))


edge = litert_torch.convert(Tiny().eval(), (torch.zeros(1, 3, 16, 16),))
edge.export(out)
print("converted", out)
'''


def tflite_unavailable_reason() -> str | None:
    for mod in ("torch", "litert_torch", "ai_edge_litert"):
        if importlib.util.find_spec(mod) is None:
            return f"{mod} is not installed"
    return None


def _versions_key() -> str:
    parts = [_CONVERT]
    for dist in ("torch", "litert-torch"):
        try:
            parts.append(metadata.version(dist))
        except metadata.PackageNotFoundError:
            parts.append("-")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def tiny_tflite(seed: int = 0) -> Path:
    """Path of the cached tiny .tflite model (converted on first use, ~10-30 s).

    Raises RuntimeError with the converter's last lines when conversion fails.
    """
    cache = Path(os.environ.get("EDGECONV_TEST_CACHE",
                                Path(tempfile.gettempdir()) / "edgeconv-test-cache"))
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"tiny-{_versions_key()}-s{seed}.tflite"
    if path.exists() and path.stat().st_size > 8 and path.read_bytes()[4:8] == b"TFL3":
        return path
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.tflite")
    proc = subprocess.run([sys.executable, "-c", _CONVERT, str(tmp), str(seed), str(C_OUT)],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 or not tmp.exists():
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise RuntimeError(f"litert-torch conversion failed: {tail}")
    os.replace(tmp, path)
    return path


# Installed as sitecustomize in a child's PYTHONPATH: any attempt to import torch
# fails AND is recorded in $EDGECONV_TORCH_ATTEMPTS, so a caught ImportError still shows.
BLOCK_TORCH_SITECUSTOMIZE = r'''
import os, sys

class _BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch.") or name.startswith("litert_torch"):
            log = os.environ.get("EDGECONV_TORCH_ATTEMPTS")
            if log:
                with open(log, "a") as fh:
                    fh.write(f"{os.getpid()} {name}\n")
            raise ImportError(f"torch is blocked in this test ({name})")
        return None

sys.meta_path.insert(0, _BlockTorch())
'''


def cli_env(extra: dict | None = None, pythonpath_first: str | None = None) -> dict:
    env = dict(os.environ)
    paths = [str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if pythonpath_first:
        paths.insert(0, pythonpath_first)
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(extra or {})
    return env


def bench_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "edgeconv.cli", "bench", *map(str, args)]
