"""The machine a figure was measured on, named in one line (benchmarks and the README's figures)."""

from __future__ import annotations

import os
import platform

import torch


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux), for figures that depend on the machine."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_summary(device: torch.device | None = None) -> str:
    """One line naming what a figure was measured on: the device (CPU model and cores, or the GPU),
    torch and Python."""
    if device is not None and device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{cpu_model()}, {os.cpu_count()} cores"
    return f"{name}, torch {torch.__version__}, Python {platform.python_version()}"
