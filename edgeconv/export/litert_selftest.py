"""Generate the LiteRT delegate's self-test files (deterministic; needs torch + litert-torch).

    python -m edgeconv.export.litert_selftest [-o edgeconv/kernels/data]

writes ``tvconv_selftest.tflite`` (two ``edgeconv.tvconv`` composites, C=8 on a 7x6 input:
stride 1 + ReLU6 + per-pixel bias, then stride 2, no activation, per-channel bias),
``tvconv_selftest_input.npy`` (1, 8, 7, 6) and ``tvconv_selftest_output.npy`` (1, 8, 4, 3), the
output computed in numpy float64 from the packed weights
(``edgeconv.runtime.litert_delegate.reference``). The composites' decomposition bodies add
``POISON``: a stock interpreter gets a wrong answer, so a matching output proves that the
delegate loaded AND claimed every composite (``edgeconv.runtime.litert_delegate``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

SEED = 20240611
CHANNELS, IN_HW = 8, (7, 6)
POISON = 1000.0
LAYERS = ({"stride": 1, "activation": "relu6", "per_pixel_bias": True},
          {"stride": 2, "activation": "none", "per_pixel_bias": False})


def _build():
    import torch

    from edgeconv.export.litert_fused import LiteRTFusedTVConv, decomposition
    from edgeconv.kernels.pack import out_hw
    from edgeconv.ops.tvconv import FoldedTVConv

    class Poisoned(LiteRTFusedTVConv):
        def forward(self, x):
            from litert_torch.backend.composite import StableHLOCompositeBuilder

            b = StableHLOCompositeBuilder("edgeconv.tvconv", attr=self.attributes)
            xh, w, sc, bias = b.mark_inputs(x.permute(0, 2, 3, 1), self.packed, self.scales,
                                            self.packed_bias)
            y = decomposition(xh, w, sc, bias, self.kernel_size, self.stride, self.out_hw,
                              self.activation) + POISON
            return b.mark_outputs(y).permute(0, 3, 1, 2)

    rng = np.random.default_rng(SEED)
    layers, hw = [], IN_HW
    for spec in LAYERS:
        oh = out_hw(hw, 3, spec["stride"])
        weight = rng.standard_normal((1, CHANNELS, 9, *oh)).astype(np.float32) * 0.5
        bias = rng.standard_normal((1, CHANNELS) + (oh if spec["per_pixel_bias"] else (1, 1)))
        folded = FoldedTVConv(torch.from_numpy(weight), torch.from_numpy(bias.astype(np.float32)),
                              3, spec["stride"], hw)
        layers.append(Poisoned(folded, spec["activation"], "float32"))
        hw = oh
    model = torch.nn.Sequential(*layers).eval()
    x = rng.standard_normal((1, CHANNELS, *IN_HW)).astype(np.float32)
    return model, x


def generate(out_dir: Path) -> list[Path]:
    import litert_torch
    import torch

    from edgeconv.export.litert_fused import batch_free_bodies
    from edgeconv.runtime import litert_delegate as ld

    model, x = _build()
    with torch.no_grad():
        data = bytes(litert_torch.convert(model, (torch.from_numpy(x),)).model_content())
    data, _ = batch_free_bodies(data)
    y = x.transpose(0, 2, 3, 1).astype(np.float64)
    for layer in model:
        y = ld.reference(y, layer.packed.numpy(), layer.scales.numpy(), layer.packed_bias.numpy(),
                         layer.kernel_size, layer.stride, layer.activation)
    y = np.ascontiguousarray(y.transpose(0, 3, 1, 2))
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / ld.SELFTEST_MODEL.name, out_dir / ld.SELFTEST_INPUT.name,
             out_dir / ld.SELFTEST_OUTPUT.name]
    paths[0].write_bytes(data)
    np.save(paths[1], x)
    np.save(paths[2], y)
    return paths


def main(argv=None) -> int:
    from edgeconv.runtime.litert_delegate import DATA_DIR

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output-dir", type=Path, default=DATA_DIR)
    args = ap.parse_args(argv)
    for p in generate(args.output_dir):
        print(f"wrote {p} ({p.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
