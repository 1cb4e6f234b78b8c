"""Measurements, each thin over torch (and torchmetrics where it has the metric), all batched on the device."""
