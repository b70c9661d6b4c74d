"""Monodepth2's evaluation protocol and the ground-truth files it reads, shared by the evaluation commands."""
