"""Checkpoint files: model folders (``weights_N``, the authors' layout) and training-state checkpoints."""
