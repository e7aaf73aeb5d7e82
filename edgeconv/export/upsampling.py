"""Transposed convolutions in forms litert-torch lowers (the UNIT translator's and the LIS
generator's TFLite files): exact rewrites of ``nn.ConvTranspose2d``."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from edgeconv.errors import EdgeconvError


class CroppedConvTranspose(nn.Module):
    """``ConvTranspose2d`` (padding p, output_padding op <= p) as the unpadded transposed conv
    (full output, length (H-1)s + k) cropped to ``[p, L - p + op)``: exact, and a form
    litert-torch lowers (it refuses ``output_padding``). TFLite's TRANSPOSE_CONV bakes the
    output shape, batch included, into the file: fixed-batch files only."""

    def __init__(self, ct: nn.ConvTranspose2d):
        super().__init__()
        self.inner = nn.ConvTranspose2d(ct.in_channels, ct.out_channels, ct.kernel_size,
                                        stride=ct.stride, padding=0, groups=ct.groups,
                                        bias=ct.bias is not None, dilation=ct.dilation)
        self.inner.load_state_dict(ct.state_dict())
        self.pad, self.out_pad = tuple(ct.padding), tuple(ct.output_padding)

    def forward(self, x):
        y = self.inner(x)
        (ph, pw), (oh, ow) = self.pad, self.out_pad
        return y[:, :, ph:y.shape[2] - ph + oh, pw:y.shape[3] - pw + ow]


class ZeroInsertConv(nn.Module):
    """``ConvTranspose2d`` as zero insertion + an ordinary conv with the flipped kernel: exact,
    batch-agnostic (nearest 2x upsampling times a constant 0/1 mask, a pad, CONV_2D), for
    dynamic-batch TFLite files. Costs s^2 times the transposed conv's MACs (the conv also
    multiplies the inserted zeros)."""

    def __init__(self, ct: nn.ConvTranspose2d, in_hw):
        super().__init__()
        if ct.groups != 1 or tuple(ct.dilation) != (1, 1):
            raise EdgeconvError("zero-insert form: grouped or dilated transposed conv")
        (kh, kw), (sh, sw) = ct.kernel_size, ct.stride
        (ph, pw), (oh, ow) = ct.padding, ct.output_padding
        self.conv = nn.Conv2d(ct.in_channels, ct.out_channels, (kh, kw),
                              bias=ct.bias is not None)
        with torch.no_grad():
            self.conv.weight.copy_(ct.weight.flip(2, 3).transpose(0, 1))
            if ct.bias is not None:
                self.conv.bias.copy_(ct.bias)
        h, w = in_hw
        mask = torch.zeros(1, 1, h * sh, w * sw)
        mask[..., ::sh, ::sw] = 1.0
        self.register_buffer("mask", mask)
        self.scale = (sh, sw)
        # zero-inserted length is (H-1)s + 1; the mask form is H*s (s-1 trailing zeros)
        top, left = kh - 1 - ph, kw - 1 - pw
        bottom, right = kh - 1 - ph + oh - (sh - 1), kw - 1 - pw + ow - (sw - 1)
        if min(top, left, bottom, right) < 0:
            raise EdgeconvError("zero-insert form: padding larger than the kernel")
        self.padding = (left, right, top, bottom)

    def forward(self, x):
        up = F.interpolate(x, scale_factor=self.scale, mode="nearest") * self.mask
        return self.conv(F.pad(up, self.padding))


def tflite_form(net: nn.Module, example: torch.Tensor, dynamic_batch: bool,
                crop_padding: bool = False) -> nn.Module:
    """A copy of ``net`` (run on ``example`` to learn each transposed conv's input size) whose
    transposed convs litert-torch can lower: :class:`ZeroInsertConv` for dynamic-batch files,
    else TRANSPOSE_CONV (:class:`CroppedConvTranspose` where there is output padding, or any
    padding with ``crop_padding``)."""
    net = copy.deepcopy(net).eval()
    shapes = {}
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.__setitem__(m, i[0].shape[2:]))
             for m in net.modules() if isinstance(m, nn.ConvTranspose2d)]
    with torch.no_grad():
        net(example)
    for h in hooks:
        h.remove()
    for module in list(net.modules()):
        for key, child in list(module._modules.items()):
            if not isinstance(child, nn.ConvTranspose2d):
                continue
            if dynamic_batch:
                module._modules[key] = ZeroInsertConv(child, tuple(shapes[child]))
            elif any(child.output_padding) or (crop_padding and any(child.padding)):
                module._modules[key] = CroppedConvTranspose(child)
    return net.eval()
