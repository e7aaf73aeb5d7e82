"""One walker that turns a trained model into its inference form.

``fold_model(model)`` replaces every ``TVConv`` by a ``FoldedTVConv`` holding ``B(A)`` computed
once. With ``fuse_bn=True`` it also absorbs every BatchNorm that directly follows a conv, a
folded TVConv or a Linear inside a ``nn.Sequential`` (and the head's BatchNorm2d -> pool ->
Linear pattern) into the preceding layer's weights. Folding is refused in training mode and is
idempotent: folding a folded model changes nothing.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from edgeconv.ops.tvconv import FoldedTVConv, TVConv


def _check_eval(model: nn.Module) -> None:
    training = [name or "<model>" for name, m in model.named_modules() if m.training]
    if training:
        raise RuntimeError(f"folding is only allowed in eval mode (model.eval()); "
                           f"in training mode: {training[0]}")


def fold_tvconv(model: nn.Module) -> int:
    """Replace every TVConv in ``model`` (in place) by its folded form; returns how many."""
    count = 0
    for name, child in list(model.named_children()):
        if isinstance(child, TVConv):
            setattr(model, name, child.fold())
            count += 1
        else:
            count += fold_tvconv(child)
    return count


@torch.no_grad()
def _fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                      conv.padding, conv.dilation, conv.groups, bias=True,
                      padding_mode=conv.padding_mode)
    fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    for attr in ("in_hw", "out_hw"):
        if hasattr(conv, attr):
            setattr(fused, attr, getattr(conv, attr))
    return fused.eval()


@torch.no_grad()
def _fuse_linear_bn(linear: nn.Linear, bn: nn.BatchNorm1d) -> nn.Linear:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused = nn.Linear(linear.in_features, linear.out_features, bias=True)
    fused.weight.copy_(linear.weight * scale.view(-1, 1))
    bias = linear.bias if linear.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused.eval()


@torch.no_grad()
def _fuse_bn_pool_linear(bn: nn.BatchNorm2d, linear: nn.Linear) -> nn.Linear:
    """BN2d -> global average pool -> Linear == global average pool -> Linear'."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    fused = nn.Linear(linear.in_features, linear.out_features, bias=True)
    fused.weight.copy_(linear.weight * scale.view(1, -1))
    bias = linear.bias if linear.bias is not None else torch.zeros(linear.out_features)
    fused.bias.copy_(bias + linear.weight @ shift)
    return fused.eval()


def fuse_batchnorm(model: nn.Module) -> int:
    """Absorb foldable BatchNorms inside every nn.Sequential of ``model`` (in place)."""
    count = 0
    for module in list(model.modules()):
        if not isinstance(module, nn.Sequential):
            continue
        keys = list(module._modules.keys())
        i = 0
        while i < len(keys) - 1:
            a, b = module._modules[keys[i]], module._modules[keys[i + 1]]
            new = None
            if isinstance(b, nn.BatchNorm2d) and isinstance(a, nn.Conv2d):
                new = _fuse_conv_bn(a, b)
            elif isinstance(b, nn.BatchNorm2d) and isinstance(a, FoldedTVConv):
                new = a.fuse_bn(b)
            elif isinstance(b, nn.BatchNorm1d) and isinstance(a, nn.Linear):
                new = _fuse_linear_bn(a, b)
            if new is not None:
                module._modules[keys[i]] = new
                module._modules[keys[i + 1]] = nn.Identity()
                count += 1
            elif (isinstance(a, nn.BatchNorm2d) and i + 3 < len(keys)
                  and isinstance(b, nn.AdaptiveAvgPool2d) and tuple(_pair(b.output_size)) == (1, 1)
                  and isinstance(module._modules[keys[i + 2]], nn.Flatten)
                  and isinstance(module._modules[keys[i + 3]], nn.Linear)):
                module._modules[keys[i + 3]] = _fuse_bn_pool_linear(a, module._modules[keys[i + 3]])
                module._modules[keys[i]] = nn.Identity()
                count += 1
            i += 1
    return count


def _pair(v):
    return v if isinstance(v, (tuple, list)) else (v, v)


def fold_model(model: nn.Module, fuse_bn: bool = False, inplace: bool = False) -> nn.Module:
    """The inference form of ``model``: TVConv folded (and BatchNorm fused if asked)."""
    _check_eval(model)
    if not inplace:
        model = copy.deepcopy(model)
    fold_tvconv(model)
    if fuse_bn:
        fuse_batchnorm(model)
    return model.eval()


def is_folded(model: nn.Module) -> bool:
    return not any(isinstance(m, TVConv) for m in model.modules())
