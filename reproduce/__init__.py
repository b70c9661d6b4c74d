"""Reproducing the paper: its tables as data and runs (tools/reproduce.py), its figures (tools/figures.py)."""
