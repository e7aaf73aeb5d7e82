"""``edgeconv gan-export GAN.ckpt``: the generator (z -> image, LIS modules included; with
``--reverse`` R-separate's ``G(R(G(z)))``) -> parity-gated ONNX / TFLite files.

The translator exporter's order of work (``edgeconv.export.translator``) with the common
pieces of ``edgeconv.export``: options checked against the format table, the checkpoint read
with ``weights_only``, each format converted in memory, run in its runtime (ONNX Runtime,
the LiteRT interpreter) on N(0, 1) noise and on 3x-scaled noise (the tails), compared with the
float64 eager network, and only when every file passes are the files and sidecars written
atomically, with the metadata embedded (``stage_file`` / ``write_staged``).

Interface of the file (metadata ``kind: "generator"``): input ``input`` (N, z_dim) float32
drawn from N(0, 1); output ``image`` (N, 3, H, W) in ``output_range`` [0, 1] (sigmoid), i.e.
pixel = ``y * 255``. Weight normalisation and TPReLU's clamp are folded into plain weights
(:func:`deployable`). TFLite files have a FIXED batch (``--batch N``, 1 when the ONNX file is
dynamic): G's FC -> 5x5x512 reshape becomes a RESHAPE whose shape, batch included, is baked
into the file (the interpreter cannot resize it; measured: XNNPACK fails to prepare), and the
transposed convs become TRANSPOSE_CONV, as in the translator's fixed-batch files.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgeconv.errors import EdgeconvError
from edgeconv.gan.lis import TPReLU, WNConv2d, WNConvTranspose2d, WNLinear
from edgeconv.metadata import file_sha256, header

OUTPUT_NAME = "image"
KIND = "generator"


class FixedTPReLU(nn.Module):
    """A trained TPReLU with its slope clamped once: ``PReLU(x - b) + b`` as plain ops."""

    def __init__(self, t: TPReLU):
        super().__init__()
        self.register_buffer("slope", t.weight.detach().clamp(0, 1).clone())
        self.register_buffer("b", t.threshold.detach().clone())

    def forward(self, x):
        shape = (1, -1) + (1,) * (x.dim() - 2)
        b, a = self.b.view(shape), self.slope.view(shape)
        y = x - b
        return F.relu(y) - a * F.relu(-y) + b


def deployable(net: nn.Module) -> nn.Module:
    """A copy of ``net`` with every weight-normalised layer a plain layer (weights computed
    once) and every TPReLU a constant-slope form; exact up to float rounding."""
    net = copy.deepcopy(net).eval()
    for module in list(net.modules()):
        for key, child in list(module._modules.items()):
            if isinstance(child, (WNLinear, WNConv2d, WNConvTranspose2d)):
                module._modules[key] = child.plain()
            elif isinstance(child, TPReLU):
                module._modules[key] = FixedTPReLU(child)
            elif isinstance(child, nn.Dropout2d):
                module._modules[key] = nn.Identity()
    return net.eval()


def tflite_form(net: nn.Module, z_dim: int, dynamic_batch: bool) -> nn.Module:
    """The TFLite forms of the transposed convs (edgeconv.export.upsampling), for a z input;
    padded ones cropped (TRANSPOSE_CONV files have a fixed batch anyway)."""
    from edgeconv.export.upsampling import tflite_form as form

    return form(net, torch.zeros(1, z_dim), dynamic_batch, crop_padding=True)


def generator_net(checkpoint, reverse: bool = False):
    """(the inference network, checkpoint dict): G, or G(R(G(z))) with ``reverse``."""
    from edgeconv.gan.models import ReversedGenerator
    from edgeconv.gan.train import gan_from_checkpoint, load_gan_checkpoint

    ckpt = load_gan_checkpoint(checkpoint)
    gan = gan_from_checkpoint(ckpt, checkpoint)
    if reverse:
        if gan.R is None:
            raise EdgeconvError(f"{checkpoint}: no reverser in this GAN (train it with "
                                "--reverser-epochs) for --reverse")
        return ReversedGenerator(gan.G, gan.R).eval(), ckpt
    return gan.G.eval(), ckpt


def parity_inputs(z_dim: int, batch_n, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for n in ([batch_n] if batch_n else [1, 3]):
        out[f"z_b{n}"] = rng.standard_normal((n, z_dim)).astype(np.float32)
        out[f"z3x_b{n}"] = (3 * rng.standard_normal((n, z_dim))).astype(np.float32)
    return out


def _eager64(net, x):
    with torch.no_grad():
        return copy.deepcopy(net).double()(torch.from_numpy(x).double()).numpy()


def count_generator_macs(net: nn.Module, z_dim: int) -> int | None:
    """MACs of one z -> image pass (the project's convention), None without fvcore."""
    try:
        from edgeconv.profiling.macs import count_macs

        macs, _ = count_macs(deployable(net), input_size=(), channels=z_dim)
        return int(macs)
    except EdgeconvError:
        return None


def generator_metadata(net, ckpt, reverse: bool, ckpt_sha: str) -> dict:
    from edgeconv.profiling.counts import values_of

    g = ckpt["gan_config"]
    size = int(g["size"])
    return {
        **header(KIND), "model": "lis_gan", "op": None,
        "z_dim": int(g["z_dim"]), "z_distribution": "normal(0, 1)",
        "lis_modules": int(g["lis_modules"]), "reverser": bool(reverse),
        "image_size": [size, size],
        "layout": "NCHW", "color": "RGB", "output_channels": 3,
        "output_range": [0.0, 1.0],
        "input_name": "input", "output_name": OUTPUT_NAME,
        "macs": count_generator_macs(net, int(g["z_dim"])),
        "params_inference": int(values_of(deployable(net))),
        "gan_config": g, "epochs_trained": int(ckpt.get("epoch", 0)),
        "checkpoint": {"edgeconv_version": ckpt.get("edgeconv_version"),
                       "format_version": ckpt.get("format_version"), "sha256": ckpt_sha},
    }


def export_generator(checkpoint, formats=None, output_dir=".", opset=None, batch="dynamic",
                     reverse: bool = False, simplify: str | None = None,
                     name: str | None = None, seed: int = 0, echo=print,
                     force: bool = False) -> dict:
    """Export the generator of a GAN checkpoint; returns a report. Raises EdgeconvError with
    nothing written when any file fails its parity gate."""
    from edgeconv.export.job import Subject
    from edgeconv.export.pipeline import make_options, run_export

    opts = make_options(formats, output_dir, batch=batch, opset=opset, simplify=simplify,
                        force=force, echo=echo)
    t0 = time.perf_counter()
    net, ckpt = generator_net(checkpoint, reverse)
    z_dim = int(ckpt["gan_config"]["z_dim"])
    ckpt_sha = file_sha256(checkpoint)
    inputs = parity_inputs(z_dim, opts.batch, seed)
    refs = {k: _eager64(net, v) for k, v in inputs.items()}
    meta0 = generator_metadata(net, ckpt, reverse, ckpt_sha)
    stem = name or f"{Path(checkpoint).stem}_generator{'_rsep' if reverse else ''}"
    report = {"checkpoint": str(checkpoint), "kind": KIND, "image_size": meta0["image_size"],
              "lis_modules": meta0["lis_modules"], "reverser": reverse,
              "batch": opts.batch or "dynamic", "files": [], "parity": {},
              "macs": meta0["macs"], "params": meta0["params_inference"]}

    def tflite_net(export_net, dynamic_batch: bool):  # fixed batch (the module docstring)
        return tflite_form(export_net, z_dim, False), {"upsampling": "transpose_conv"}

    subject = Subject(kind=KIND, net=deployable(net), inputs=inputs, refs=refs, meta=meta0,
                      report=report, stem=stem, ckpt_sha=ckpt_sha, input_size=(),
                      channels=z_dim, output_name=OUTPUT_NAME, tflite_net=tflite_net,
                      tflite_fixed_batch=True,
                      inputs_at=lambda n: parity_inputs(z_dim, n, seed),
                      reference_of=lambda x: _eager64(net, x))
    return run_export(subject, opts, t0)
