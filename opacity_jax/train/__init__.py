"""The training loop, tasks and checkpoints."""
