"""What the training loop (trainer.py) relies on, one idea per module: resume, the non-finite guard,
the optimizer step, the run folder, loaders, validation, logs, stop signals and the input checks."""
