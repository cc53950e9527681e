"""The single inference path: texts in, calibrated probabilities out, on PyTorch or ONNX Runtime."""
