"""What the training loop (trainer.py) relies on: exact resume, stop signals and the checks of its inputs."""
