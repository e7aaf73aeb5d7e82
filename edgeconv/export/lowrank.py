"""Low-rank folding (an explicit, approximate export option: ``--lowrank RANK_OR_TOL``).

Each folded TVConv holds per-pixel weights W[c] of shape (k*k, h*w) per channel. Its SVD
``W[c] = sum_r s_r u_r v_r^T`` gives ``out[c] = sum_r v_r(i, j) * dwconv(x[c], s_r u_r)``:
r ordinary depthwise convs (fast kernels in every runtime) each times a (1, C, h, w)
spatial map, summed. Rank k*k is exact; lower ranks trade accuracy for speed.

``RANK_OR_TOL``: an integer r (the same rank in every layer), or a float in (0, 1): per
layer, the smallest rank whose relative Frobenius error ``||W - W_r|| / ||W||`` is within
that budget. The exporter reports per-layer ranks and errors and the end-to-end embedding
cosine against the exact folded model.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from edgeconv.ops.tvconv import FoldedTVConv


class LowRankTVConv(nn.Module):
    """sum_r maps[r] * depthwise_conv(x, kernels[r]) (+ bias)."""

    def __init__(self, kernels: torch.Tensor, maps: torch.Tensor, bias: torch.Tensor | None,
                 kernel_size: int, stride: int, in_hw, rel_error: float = 0.0):
        super().__init__()
        # kernels: (r, C, 1, k, k); maps: (r, 1, C, h, w)
        self.rank = int(kernels.shape[0])
        self.kernel_size, self.stride = kernel_size, stride
        self.in_hw = tuple(in_hw)
        self.out_hw = tuple(maps.shape[-2:])
        self.channels = int(kernels.shape[1])
        self.rel_error = float(rel_error)
        self.register_buffer("kernels", kernels.contiguous())
        self.register_buffer("maps", maps.contiguous())
        self.register_buffer("bias", bias)

    def extra_repr(self) -> str:
        return (f"{self.channels}, rank={self.rank}, stride={self.stride}, out_hw={self.out_hw}, "
                f"rel_error={self.rel_error:.3g}")

    check_input = FoldedTVConv.check_input

    def forward(self, x):
        self.check_input(x)
        p = self.kernel_size // 2
        out = None
        for r in range(self.rank):
            term = F.conv2d(x, self.kernels[r], stride=self.stride, padding=p,
                            groups=self.channels) * self.maps[r]
            out = term if out is None else out + term
        if self.bias is not None:
            out = out + self.bias
        return out

    def dense_weight(self) -> torch.Tensor:
        """The (1, C, k*k, h, w) weights this layer applies (for checks)."""
        kk = self.kernel_size ** 2
        k = self.kernels.view(self.rank, self.channels, kk)
        m = self.maps.view(self.rank, self.channels, -1)
        w = torch.einsum("rct,rcp->ctp", k, m)
        return w.view(1, self.channels, kk, *self.out_hw)


@torch.no_grad()
def decompose(layer: FoldedTVConv, rank_or_tol) -> LowRankTVConv:
    w = layer.weight.double()[0]  # (C, kk, h, w)
    c, kk, h, wd = w.shape
    mat = w.reshape(c, kk, h * wd)
    u, s, vt = torch.linalg.svd(mat, full_matrices=False)  # (C,kk,kk) (C,kk) (C,kk,hw)
    total = (s ** 2).sum()
    tail = torch.flip(torch.cumsum(torch.flip(s ** 2, [1]), 1), [1]).sum(0)  # tail[r]: sum_{i>=r}
    # errs[r] = relative error of a rank-r approximation (squared tail from index r)
    n_sv = s.shape[1]  # min(k*k, h*w): tiny maps have fewer singular values
    errs = [float(torch.sqrt(tail[r] / total)) if r < n_sv else 0.0 for r in range(kk)] + [0.0]
    if isinstance(rank_or_tol, int):
        r = min(max(1, rank_or_tol), n_sv)
    else:
        r = next(i for i in range(1, n_sv + 1) if errs[i] <= rank_or_tol or i == n_sv)
    kernels = (u[:, :, :r] * s[:, None, :r]).permute(2, 0, 1)  # (r, C, kk)
    maps = vt[:, :r, :].permute(1, 0, 2)                         # (r, C, hw)
    dtype = layer.weight.dtype
    kernels = kernels.reshape(r, c, 1, layer.kernel_size, layer.kernel_size).to(dtype)
    maps = maps.reshape(r, 1, c, h, wd).to(dtype)
    return LowRankTVConv(kernels, maps, layer.bias, layer.kernel_size, layer.stride,
                         layer.in_hw, rel_error=errs[r])


def lowrank_model(model: nn.Module, rank_or_tol) -> tuple[nn.Module, list[dict]]:
    """Replace every FoldedTVConv of ``model`` (in place) by its low-rank form."""
    report: list[dict] = []

    def walk(module, prefix=""):
        for name, child in list(module.named_children()):
            full = f"{prefix}.{name}" if prefix else name
            if isinstance(child, FoldedTVConv):
                low = decompose(child, rank_or_tol)
                setattr(module, name, low)
                report.append({"layer": full, "channels": low.channels, "out_hw": list(low.out_hw),
                               "stride": low.stride, "rank": low.rank,
                               "rel_weight_error": round(low.rel_error, 6)})
            else:
                walk(child, full)

    walk(model)
    return model.eval(), report
