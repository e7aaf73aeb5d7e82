"""Face generator with learned input spaces (A. B. Jung, "Learning to Avoid Errors in GANs by
Manipulating Input Spaces", 2018; issue #27): torch side.

``lis``: TPReLU, weight-normalised layers, the LIS module, the similarity constraint and the
early-stop sampling; ``models``: G, D and the reverser R (64x64 and 80x80, width-scalable);
``train``: ``edgeconv gan-train`` (run folder, atomic checkpoints, exact resume, grids);
``metrics``: improved precision/recall, FID, artifact rate (numpy, torch-free);
``export``: G (LIS modules included) -> parity-gated ONNX / TFLite, metadata kind
``"generator"``. The device side is ``edgeconv.runtime.generator``.
"""
