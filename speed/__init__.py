"""The opt-in speed path (all off by default): the trainer enters it only when a speed option is given.

``acceleration.py`` (what the trainer builds: autocast, channels_last, compile, the fast pipeline's
device side), ``device_inputs.py`` (scales and colour jitter made on the device), ``reference.py``
(the straightforward DSSIM and SGT cosines that the fused ``layers`` forms equal). The workers' side is
``datasets/fast_frames.py``: this package uses the datasets, never the other way round. ``benchmark.py``
measures both paths side by side (the library of ``tools/benchmark.py``); nothing in training imports it.
"""
