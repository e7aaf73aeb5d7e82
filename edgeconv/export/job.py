"""What the ONE export loop (``edgeconv.export.pipeline``) works on: the options of a run,
the subject a kind of model hands it, and what a format's conversion gives back.

A kind of model (face embedder / segmenter: ``edgeconv.export.exporter``; UNIT translator:
``edgeconv.export.translator``; LIS generator: ``edgeconv.export.generator``) loads its
checkpoint, computes its float64 reference outputs and its metadata, and describes the rest
as a :class:`Subject`. Each format (the table in ``edgeconv.export.formats``) has one module
whose ``convert(subject, net, options, formulation, weight_dtype)`` returns a
:class:`Converted` and whose ``run(data, inputs)`` runs a file for the parity gate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np


@dataclass
class ExportOptions:
    """One export run's options, validated against the format table before anything loads."""

    formats: list[str]
    output_dir: Path
    batch: int | None = None            # None: dynamic batch
    opset: int | None = None
    simplify: str | None = None
    fp16: bool = False                  # TFLite: float16 weights
    weight_dtype: str | None = None     # storage of fused TVConv layers' weights
    formulation: str | None = None      # the user's --formulation (None: each format's default)
    force: bool = False
    echo: Callable[..., Any] = print

    def takes(self, fmt_name: str, option: str) -> bool:
        """Whether format ``fmt_name`` takes ``option`` (its table entry's options)."""
        from edgeconv.export.formats import EXPORT_FORMATS

        return option in EXPORT_FORMATS[fmt_name].options

    def fp16_for(self, fmt_name: str) -> bool:
        return bool(self.fp16) and self.takes(fmt_name, "fp16")

    def opset_for(self, fmt_name: str) -> int | None:
        from edgeconv.export.formats import DEFAULT_OPSET

        return int(self.opset or DEFAULT_OPSET) if self.takes(fmt_name, "opset") else None

    def weight_dtype_for(self, fmt_name: str) -> str:
        """Fused layers' weight storage in ``fmt_name``: --weight-dtype, else float16 where the
        format's --fp16 is given, else the default (edgeconv.kernels.pack.DEFAULT_WEIGHT_DTYPE)."""
        from edgeconv.kernels.pack import DEFAULT_WEIGHT_DTYPE

        if self.weight_dtype:
            return self.weight_dtype
        return "float16" if self.fp16_for(fmt_name) else DEFAULT_WEIGHT_DTYPE


@dataclass
class Subject:
    """What one kind of model hands the export loop."""

    kind: str                                   # embedder, segmenter, translator, generator
    net: Any                                    # the network every format converts (eval)
    inputs: dict[str, np.ndarray]               # parity inputs, name -> batch
    refs: dict[str, np.ndarray]                 # their float64 reference outputs
    meta: dict                                  # metadata common to every file
    report: dict                                # the run's report (files/parity filled in)
    stem: str                                   # file name stem
    ckpt_sha: str
    input_size: tuple = ()                      # spatial (H, W); () for a vector input
    channels: int = 3                           # input channels (or the vector's length)
    output_name: str = "embedding"
    reference: str = "eager float64 network"    # what the parity gate compares against
    floor: float = 0.0                          # float32's own distance from the reference
    inputs_note: str = ""                       # appended to each parity line
    summary_extra: dict = field(default_factory=dict)   # added to each parity summary
    #: (format name, options) -> (network to convert, formulation or None): a model whose
    #: TVConv layers have graph formulations chooses here (embedder / segmenter)
    stage: Callable[[str, ExportOptions], tuple[Any, str | None]] | None = None
    #: (network, dynamic batch) -> the form litert-torch can lower (transposed convs, ...)
    tflite_net: Callable[[Any, bool], Any] | None = None
    #: a TFLite file of this kind always has a fixed batch (its graph bakes it in)
    tflite_fixed_batch: bool = False
    #: parity inputs at a batch the subject's inputs do not have (fixed-batch TFLite files)
    inputs_at: Callable[[int], dict[str, np.ndarray]] | None = None
    #: float64 reference outputs of one input batch (for ``inputs_at`` batches)
    reference_of: Callable[[np.ndarray], np.ndarray] | None = None
    #: hint added when a dynamic-batch TFLite file fails its gate
    dynamic_batch_hint: str | None = None


@dataclass
class Converted:
    """One format's conversion of a subject, in memory, not yet gated or written."""

    artifact: Any                       # what stage_file embeds the metadata in
    data: bytes                         # the bytes the parity gate runs
    meta: dict = field(default_factory=dict)    # format-specific metadata
    name_suffix: str = ""               # between the stem and the format's suffix
    inputs: dict | None = None          # parity inputs where not the subject's
    fused_nodes: int = 0                # fused TVConv layers in the file
    dynamic_batch: bool = False         # the file is resized at run time
