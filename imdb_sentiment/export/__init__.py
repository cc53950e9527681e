"""Export to other runtimes (ONNX, int8), each checked for parity with PyTorch."""
