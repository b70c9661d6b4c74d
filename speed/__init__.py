"""The opt-in speed path (all off by default): fast input pipeline, device-side augmentation, autocast,
compile.

A reader of the method can skip this package: with the default options nothing here runs.

- ``acceleration.py``: what the trainer calls (``Acceleration``): autocast, channels_last, compile,
  and the fast pipeline's device side.
- ``device_inputs.py``: the scales and the colour jitter of a fast batch, made on the device.
- ``reference.py``: the straightforward DSSIM and SGT cosines that the fused ``layers`` forms equal
  (for tests and ``tools/benchmark.py --baseline``).

The workers' side of ``--input_pipeline fast`` (uint8 frames decoded by TorchCodec) is
``datasets/fast_frames.py``, and the colour jitter itself (its draw and both arithmetics)
``datasets/jitter.py``: this package uses the datasets, never the other way round.
"""
