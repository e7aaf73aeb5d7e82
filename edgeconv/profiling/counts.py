"""The two parameter counts edgeconv reports, defined and computed here only (torch side).

* ``params_train``: the trainable parameters of the training-form model (TVConv's affinity
  maps and weight-generating blocks included): what the optimizer updates and the checkpoint
  holds.
* ``params_inference``: the values the exported inference form holds: the folded model with
  BatchNorm fused, TVConv's generators replaced by their cached per-pixel weights (counted),
  i.e. the constants of the ONNX / TFLite graph.

Everything that shows a parameter count (``edgeconv info``, ``edgeconv profile``, the export
metadata, the quickstart's tables and summary.json, the benchmarks) uses these two names and
this module.
"""

from __future__ import annotations

from torch import nn

NAMES = {"params_train": "params, training form (M)",
         "params_inference": "params, inference form incl. cached maps (M)"}


def params_train(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def values_of(module: nn.Module) -> int:
    """Parameters plus non-BatchNorm buffers (a folded TVConv's maps are buffers)."""
    n = sum(p.numel() for p in module.parameters())
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            continue  # an unfused BatchNorm's running stats are not weights
        n += sum(b.numel() for b in m.buffers(recurse=False))
    return int(n)


def params_inference(model: nn.Module, folded: nn.Module | None = None) -> int:
    """Values of the inference form (``folded``: an already folded, BN-fused copy)."""
    if folded is None:
        from edgeconv.ops.folding import fold_model

        folded = fold_model(model.eval(), fuse_bn=True)
    return values_of(folded)


def param_counts(model: nn.Module, folded: nn.Module | None = None) -> dict:
    return {"params_train": params_train(model),
            "params_inference": params_inference(model, folded)}
