"""The opt-in speed path (all off by default): fast input pipeline, device-side augmentation, autocast, compile.

A reader of the method can skip this package: with the default options nothing here runs.
"""
