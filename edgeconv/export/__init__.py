"""Export side (torch): folding, ONNX and TFLite writers, parity gate, metadata."""
