"""Processes and machines: the device and process group of a run (processes.py), the machine's name
for measured figures (machine.py)."""
