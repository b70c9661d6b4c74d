"""The machine a figure was measured on: named in one line (the README's figures) and recorded in full
(the benchmark's JSON report)."""

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


def device_name(device: torch.device | None = None) -> str:
    """The device a figure was measured on: the GPU's name, or the CPU model and its cores."""
    if device is not None and device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()}, {os.cpu_count()} cores"


def machine_summary(device: torch.device | None = None) -> str:
    """One line naming what a figure was measured on: the device (CPU model and cores, or the GPU),
    torch and Python."""
    return f"{device_name(device)}, torch {torch.__version__}, Python {platform.python_version()}"


def machine_record(device: torch.device) -> dict:
    """What the figures of a JSON report were measured on, with the load that other jobs put on it."""
    return {
        "device": device_name(device),
        "summary": machine_summary(device),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
    }  # other jobs on a shared machine skew the figures
