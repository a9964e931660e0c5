"""Inference: loading trained workdirs and serving opacities, without the trainer."""
