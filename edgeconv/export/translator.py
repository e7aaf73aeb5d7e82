"""``edgeconv export UNIT.ckpt --direction nir2rgb``: one translation direction of a trained
UNIT model (its source encoder + target generator) -> parity-gated ONNX / TFLite files.

The same order of work as the embedding exporter (``edgeconv.export.exporter``): options are
checked against the format table, the checkpoint is loaded with ``weights_only``, each format
is converted in memory and run in its runtime on random inputs and on synthetic faces of the
source domain, compared with the float64 eager network, and only when every file passes are
the files and their sidecars written atomically, with the metadata embedded.

Interface of the file (its metadata says so, ``kind: "translator"``): input ``input``, NCHW
float32, 3 channels normalised ``(x/255 - 0.5)/0.5`` (a NIR source is read as the mean of
the three channels); output ``image``, NCHW, 3 channels in [-1, 1] (tanh; a NIR target is
replicated to three), i.e. pixel = ``(y + 1) * 127.5``. The device side
(``edgeconv.runtime.translator``) needs nothing else.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgeconv.errors import EdgeconvError
from edgeconv.export import upsampling
from edgeconv.export.upsampling import CroppedConvTranspose, ZeroInsertConv  # noqa: F401
from edgeconv.metadata import TRANSLATOR_DIRECTIONS as DIRECTIONS  # (source, target)
from edgeconv.metadata import file_sha256, header

OUTPUT_NAME = "image"


class TranslatorNet(nn.Module):
    """One direction at inference: the latent mean (no sampling) through the other generator,
    with a 3-channel interface on both sides: a 1-channel (NIR) source is the mean of the
    three input channels (a NIR frame arrives replicated to RGB), a 1-channel target is
    replicated to three (what the RGB face embedder takes). This module is the reference;
    :func:`deployable` folds both adapters into the first and last convs for export."""

    def __init__(self, encoder: nn.Module, generator: nn.Module, cin: int, cout: int):
        super().__init__()
        self.encoder, self.generator = encoder, generator
        self.cin, self.cout = int(cin), int(cout)

    def forward(self, x):
        if self.cin == 1:
            x = x.mean(1, keepdim=True)
        y = self.generator(self.encoder(x))
        return y.repeat(1, 3, 1, 1) if self.cout == 1 else y


class _Folded(nn.Module):
    def __init__(self, encoder, generator):
        super().__init__()
        self.encoder, self.generator = encoder, generator

    def forward(self, x):
        return self.generator(self.encoder(x))


def deployable(net: TranslatorNet) -> nn.Module:
    """A copy of ``net`` with the channel adapters folded into its weights (exact: the first
    conv's kernel / 3 on each input channel; the last 1x1 conv's filter three times), so the
    file is convs only, and no 1-channel transpose (a RESHAPE that pins the batch in TFLite)."""
    import copy

    enc, gen = copy.deepcopy(net.encoder), copy.deepcopy(net.generator)
    with torch.no_grad():
        if net.cin == 1:
            first = next(m for m in enc.modules() if isinstance(m, nn.Conv2d))
            w = first.weight
            first.in_channels = 3
            first.weight = nn.Parameter(w.repeat(1, 3, 1, 1) / 3.0)
        if net.cout == 1:
            last = [m for m in gen.modules() if isinstance(m, nn.Conv2d)][-1]
            last.out_channels = 3
            last.weight = nn.Parameter(last.weight.repeat(3, 1, 1, 1))
            if last.bias is not None:
                last.bias = nn.Parameter(last.bias.repeat(3))
    return _Folded(enc, gen).eval()


def tflite_form(net: nn.Module, size: int, dynamic_batch: bool) -> nn.Module:
    """A copy of ``net`` whose transposed convs litert-torch can lower
    (edgeconv.export.upsampling): zero insertion for dynamic-batch files, TRANSPOSE_CONV for
    fixed-batch ones."""
    return upsampling.tflite_form(net, torch.zeros(1, 3, size, size), dynamic_batch)


def load_direction(checkpoint, direction: str):
    """(TranslatorNet in eval mode, checkpoint dict, source channels, target channels)."""
    from edgeconv.translate.train import load_translate_checkpoint, unit_from_checkpoint

    if direction not in DIRECTIONS:
        raise EdgeconvError(f"--direction must be one of {', '.join(DIRECTIONS)}, got "
                            f"{direction!r}")
    ckpt = load_translate_checkpoint(checkpoint)
    net = direction_net(unit_from_checkpoint(ckpt, checkpoint), direction, checkpoint)
    return net, ckpt, net.cin, net.cout


def direction_net(model, direction: str, name="model") -> TranslatorNet:
    """One direction of a loaded UNIT model as a :class:`TranslatorNet` (eval mode)."""
    c = model.cfg
    if direction == "nir2rgb":
        enc, gen, cin, cout = model.enc_b, model.gen_a, c.channels_b, c.channels_a
    else:
        enc, gen, cin, cout = model.enc_a, model.gen_b, c.channels_a, c.channels_b
    if {int(cin), int(cout)} - {1, 3}:
        raise EdgeconvError(f"{name}: domains of {cin} and {cout} channels; a translator "
                            "file maps 1- or 3-channel images")
    return TranslatorNet(enc, gen, cin, cout).eval()


def source_faces(direction: str, n: int, size: int, seed: int = 0) -> np.ndarray:
    """(n, 3, H, W) float32 normalised faces of the direction's source domain (NIR: the
    intensity replicated to three channels, as the generator and cameras deliver it)."""
    from edgeconv.data.synthetic import SyntheticFaces

    src = DIRECTIONS[direction][0]
    ds = SyntheticFaces(num_identities=max(2, n), images_per_identity=1, size=(size, size),
                        seed=seed, sensor=src)
    imgs = ds.render_batch(np.arange(n), np.zeros(n, dtype=np.int64)).astype(np.float32)
    x = (imgs / 127.5 - 1.0).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x)


def parity_inputs(direction: str, size: int, batch_n, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    sizes = [batch_n] if batch_n else [1, 3]
    faces = source_faces(direction, max(sizes), size, seed)
    out = {}
    for n in sizes:  # random inputs in the network's input range (tanh outputs saturate less)
        out[f"random_b{n}"] = rng.uniform(-1, 1, (n, 3, size, size)).astype(np.float32)
        out[f"faces_b{n}"] = faces[:n]
    return out


def _eager64(net, x):
    import copy

    with torch.no_grad():
        return copy.deepcopy(net).double()(torch.from_numpy(x).double()).numpy()


def translator_metadata(net, ckpt, direction, cin, cout, size, ckpt_sha) -> dict:
    from edgeconv.profiling.counts import values_of

    src, dst = DIRECTIONS[direction]
    try:
        from edgeconv.profiling.macs import count_macs

        macs, _ = count_macs(deployable(net), (size, size))
    except EdgeconvError:  # fvcore missing: MACs unknown, still exportable
        macs = None
    return {
        **header("translator"), "model": "unit", "op": None, "direction": direction,
        "domains": {"input": src, "output": dst},
        "input_size": [size, size], "layout": "NCHW",
        # the file's interface is 3 channels on both sides; a 1-channel domain (NIR) is read
        # as the mean of the input's channels / written replicated to three
        "input_channels": 3, "output_channels": 3,
        "domain_channels": {"input": cin, "output": cout},
        "color": "RGB",
        "scale": 1.0 / 255.0, "mean": [0.5] * 3, "std": [0.5] * 3,
        "output_range": [-1.0, 1.0],
        "input_name": "input", "output_name": OUTPUT_NAME,
        "macs": int(macs) if macs is not None else None,
        "params_inference": int(values_of(deployable(net))),
        "unit_config": ckpt["unit_config"],
        "epochs_trained": int(ckpt.get("epoch", 0)),
        "checkpoint": {"edgeconv_version": ckpt.get("edgeconv_version"),
                       "format_version": ckpt.get("format_version"), "sha256": ckpt_sha},
    }


def export_translator(checkpoint, direction: str, formats=None, output_dir=".", opset=None,
                      batch="dynamic", fp16: bool = False, simplify: str | None = None,
                      name: str | None = None, seed: int = 0, echo=print,
                      force: bool = False) -> dict:
    """Export one direction of a UNIT checkpoint; returns a report. Raises EdgeconvError with
    nothing written when any file fails its parity gate."""
    from edgeconv.export.job import Subject
    from edgeconv.export.pipeline import make_options, run_export

    opts = make_options(formats, output_dir, batch=batch, opset=opset, simplify=simplify,
                        fp16=fp16, force=force, echo=echo)
    t0 = time.perf_counter()
    net, ckpt, cin, cout = load_direction(checkpoint, direction)
    size = int(ckpt["config"]["size"])
    ckpt_sha = file_sha256(checkpoint)
    inputs = parity_inputs(direction, size, opts.batch, seed)
    refs = {k: _eager64(net, v) for k, v in inputs.items()}
    meta0 = translator_metadata(net, ckpt, direction, cin, cout, size, ckpt_sha)
    stem = name or f"{Path(checkpoint).stem}_{direction}"
    report = {"checkpoint": str(checkpoint), "kind": "translator", "direction": direction,
              "input_size": [size, size], "batch": opts.batch or "dynamic", "files": [],
              "parity": {}, "macs": meta0["macs"], "params": meta0["params_inference"]}

    def tflite_net(export_net, dynamic_batch: bool):
        return (tflite_form(export_net, size, dynamic_batch),
                {"upsampling": "zero_insert_conv" if dynamic_batch else "transpose_conv"})

    subject = Subject(kind="translator", net=deployable(net), inputs=inputs, refs=refs,
                      meta=meta0, report=report, stem=stem, ckpt_sha=ckpt_sha,
                      input_size=(size, size), output_name=OUTPUT_NAME, tflite_net=tflite_net)
    return run_export(subject, opts, t0)
