"""DeepLabV3+ with a MobileNetV2 backbone for optic disc / cup segmentation (TVConv paper 4.2).

``create_model("deeplabv3p_mbv2", op=OP, input_size=256, aspp="plain" | "ir" | "ir_<op>",
width=1.0)`` (or :func:`create_segmenter`):

* backbone: MobileNetV2 (the face models' :class:`InvertedResidual` blocks and settings) with
  the ImageNet stem (stride 2) and output stride 16: the last stride-2 stage (160 channels)
  runs at stride 1 with its depthwise convolutions dilated by 2, as in DeepLabV3+; the
  backbone always uses the depthwise op (the paper changes only ASPP). Low-level features:
  the 24-channel stage (stride 4); high-level: the 320-channel stage (stride 16).
* ASPP: a 1x1 branch, three 3x3 branches and image pooling, 256 channels each, concatenated
  -> 1x1 -> 256. ``aspp="plain"``: the three 3x3 branches are dilated convolutions (6, 12,
  18). ``aspp="ir_<op>"`` (``ir_depthwise``, ``ir_tvconv``, any registered op): each becomes
  an inverted-residual block 320 -> 1920 (x6) -> 3x3 ``build_op(op)`` at the ASPP's size
  (h = w = input/16: 16 at 256) -> 256, dilation ignored as in the public release, then ReLU.
  The model's ``op`` is the ASPP op (``ir_<op>`` must name the same one; ``ir`` takes it
  from ``op``); its ``op_kwargs`` go to it.
* decoder: low-level 1x1 -> 48, the ASPP output upsampled x4 (bilinear), concatenated, two
  3x3 conv-BN-ReLU of 256, a 1x1 to 2 logits [cup, disc], upsampled x4 to the input size.
* ``width`` multiplies every channel count (backbone as MobileNetV2's, ASPP / decoder
  widths rounded to multiples of 8) so that CPU runs and tests can be small.

Every conv is followed by its BatchNorm inside an ``nn.Sequential``, so the exporter's fold
walker folds TVConv and fuses every BatchNorm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeconv.errors import EdgeconvError
from edgeconv.models.common import conv_bn, make_divisible, op_setup
from edgeconv.models.mobilenetv2 import INVERTED_RESIDUAL_SETTING, InvertedResidual
from edgeconv.models.registry import create_model, register_model
from edgeconv.ops import check_op, op_spec
from edgeconv.segmentation import CLASSES

ASPP_CHOICES = ("plain", "ir", "ir_<op>")
OUTPUT_STRIDE = 16
ASPP_RATES = (6, 12, 18)
MEAN = [0.5, 0.5, 0.5]
STD = [0.5, 0.5, 0.5]


def parse_aspp(aspp: str, op: str) -> str | None:
    """``plain`` -> None; ``ir`` -> ``op``; ``ir_<x>`` -> x (must equal ``op``)."""
    if aspp == "plain":
        return None
    if aspp == "ir":
        return op
    if isinstance(aspp, str) and aspp.startswith("ir_"):
        ir_op = check_op(aspp[3:])
        if ir_op != op:
            raise EdgeconvError(f"aspp={aspp} builds its blocks with op '{ir_op}', but the "
                                f"model was asked for op '{op}': give op='{ir_op}'")
        return ir_op
    raise EdgeconvError(f"aspp must be plain, ir or ir_<op>, got {aspp!r}")


def _dilate(block: InvertedResidual, dilation: int) -> None:
    """Dilate the 3x3 depthwise conv of a backbone block (keeps its output size)."""
    for m in block.conv:
        if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3):
            m.dilation, m.padding = (dilation, dilation), (dilation, dilation)


class MobileNetV2Features(nn.Module):
    """MobileNetV2 backbone at output stride 16: returns (low-level stride 4, high stride 16)."""

    def __init__(self, width: float, input_size):
        super().__init__()
        in_ch = make_divisible(32 * width, 8)
        h, w = input_size
        hw = ((h + 1) // 2, (w + 1) // 2)
        low: list[nn.Module] = conv_bn(3, in_ch, 3, stride=2)
        high: list[nn.Module] = []
        stride, dilation = 2, 1
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            out_ch = make_divisible(c * width, 8)
            if s == 2 and stride == OUTPUT_STRIDE:
                s, dilation = 1, 2 * dilation
            elif s == 2:
                stride *= 2
            for i in range(n):
                block = InvertedResidual(in_ch, out_ch, s if i == 0 else 1, t, "depthwise", hw, {})
                if dilation > 1:
                    _dilate(block, dilation)
                (low if c <= 24 else high).append(block)
                hw = block.out_hw
                in_ch = out_ch
            if c == 24:
                self.low_channels, self.low_hw = in_ch, hw
        self.low = nn.Sequential(*low)
        self.high = nn.Sequential(*high)
        self.out_channels, self.out_hw = in_ch, hw

    def forward(self, x):
        low = self.low(x)
        return low, self.high(low)


class ImagePool(nn.Module):
    """Global average pool -> 1x1 conv-BN-ReLU -> broadcast back to the feature size."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch),
                                  nn.ReLU(inplace=True))

    def forward(self, x):
        y = self.conv(self.pool(x))  # nearest from 1x1: an exact broadcast that (unlike
        # expand) a batch-1 TFLite file can resize to other batches
        return F.interpolate(y, size=x.shape[-2:], mode="nearest")


class ASPP(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, in_hw, ir_op: str | None, op_kwargs: dict):
        super().__init__()
        self.branches = nn.ModuleList([nn.Sequential(*conv_bn(in_ch, out_ch, 1, act=nn.ReLU))])
        for rate in ASPP_RATES:
            if ir_op is None:
                self.branches.append(nn.Sequential(
                    nn.Conv2d(in_ch, out_ch, 3, padding=rate, dilation=rate, bias=False),
                    nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)))
            else:  # the release: 320 -> 1920 -> 3x3 op -> 256, dilation ignored
                self.branches.append(nn.Sequential(
                    InvertedResidual(in_ch, out_ch, 1, 6, ir_op, in_hw, op_kwargs),
                    nn.ReLU(inplace=True)))
        self.pool = ImagePool(in_ch, out_ch)
        self.project = nn.Sequential(*conv_bn(5 * out_ch, out_ch, 1, act=nn.ReLU),
                                     nn.Dropout(0.5))

    def forward(self, x):
        outs = [b(x) for b in self.branches] + [self.pool(x)]
        return self.project(torch.cat(outs, 1))


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ (MobileNetV2, OS 16) -> (N, 2, H, W) logits of [cup, disc]."""

    task = "segmentation"

    def __init__(self, width: float, op: str, input_size, aspp: str, op_kwargs: dict):
        super().__init__()
        ir_op = parse_aspp(aspp, op)
        self.input_size = tuple(int(v) for v in input_size)
        self.width = width
        self.size_bound = ir_op is not None and op_spec(ir_op).size_bound
        self.backbone = MobileNetV2Features(width, self.input_size)
        ch = make_divisible(256 * width, 8)
        low_ch = make_divisible(48 * width, 8)
        if ir_op is not None:
            op_kwargs, aux = op_setup(ir_op, op_kwargs, self.backbone.out_hw)
            if aux is not None:
                raise EdgeconvError(f"op '{ir_op}' needs a model-level module; the segmentation "
                                    "model's ASPP cannot host it")
        self.aspp = ASPP(self.backbone.out_channels, ch, self.backbone.out_hw, ir_op, op_kwargs)
        self.low_proj = nn.Sequential(*conv_bn(self.backbone.low_channels, low_ch, 1,
                                               act=nn.ReLU))
        self.decoder = nn.Sequential(
            *conv_bn(ch + low_ch, ch, 3, act=nn.ReLU), nn.Dropout(0.5),
            *conv_bn(ch, ch, 3, act=nn.ReLU), nn.Dropout(0.1),
            nn.Conv2d(ch, len(CLASSES), 1))

    def forward(self, x):
        if self.size_bound and tuple(x.shape[-2:]) != self.input_size:
            from edgeconv.ops.tvconv import InputSizeError

            raise InputSizeError(
                f"deeplabv3p_mbv2 was built for {self.input_size[0]}x{self.input_size[1]} "
                f"inputs, got {x.shape[-2]}x{x.shape[-1]}")
        low, high = self.backbone(x)
        y = self.aspp(high)
        low = self.low_proj(low)
        y = F.interpolate(y, size=low.shape[-2:], mode="bilinear", align_corners=False)
        y = self.decoder(torch.cat([y, low], 1))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def task_metadata(self) -> dict:
        """What an exported file says about this model's output (edgeconv.metadata)."""
        return {"kind": "segmenter", "task": "segmentation", "classes": list(CLASSES),
                "output": "logits", "output_name": "logits", "aspp": self.config.get("aspp"),
                "mean": MEAN, "std": STD,
                "postprocess": {"activation": "sigmoid", "threshold": 0.5,
                                "largest_component": True, "fill_holes": True,
                                "disc_includes_cup": True}}


@register_model
def deeplabv3p_mbv2(op: str = "depthwise", input_size=(256, 256), embedding_dim: int = 512,
                    op_kwargs: dict | None = None, aspp: str = "plain", width: float = 1.0):
    """DeepLabV3+ / MobileNetV2 (``embedding_dim`` is ignored: the output is 2 masks)."""
    if not (isinstance(width, (int, float)) and 0 < float(width) <= 2):
        raise EdgeconvError(f"width must be in (0, 2], got {width!r}")
    h, w = input_size
    if h % OUTPUT_STRIDE or w % OUTPUT_STRIDE:
        raise EdgeconvError(f"deeplabv3p_mbv2 needs an input size divisible by "
                            f"{OUTPUT_STRIDE}, got {h}x{w}")
    return DeepLabV3Plus(float(width), op, input_size, aspp, dict(op_kwargs or {}))


def create_segmenter(aspp: str = "plain", width: float = 1.0, input_size=256,
                     op_kwargs: dict | None = None):
    """``deeplabv3p_mbv2`` with the op implied by ``aspp`` (``ir_tvconv`` -> op tvconv)."""
    op = aspp[3:] if aspp.startswith("ir_") else "depthwise"
    model = create_model("deeplabv3p_mbv2", op=op, input_size=input_size,
                         op_kwargs=op_kwargs, aspp=aspp, width=float(width))
    return model
