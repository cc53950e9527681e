"""Evaluating a trained model: metrics with intervals, slices, robustness, reports and plots."""
