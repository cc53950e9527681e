"""Classification metrics, softmax, calibration and confidence intervals (numpy, no torch)."""
