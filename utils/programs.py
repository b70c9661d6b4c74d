"""Model files that run as code, loaded one way: a torch.export program (``.pt2``) or a TorchScript file,
with torch's own noise about them quieted (never a pickle: callers check what a file is first)."""

from __future__ import annotations

import logging
import warnings

import torch
import torch.export.passes


def load_program_file(
    path: str, kind: str, device: torch.device | str = "cpu", extra_files: dict[str, str] | None = None
) -> torch.nn.Module:
    """A torch.export program (``kind`` "export") or TorchScript file as a module on ``device``, filling
    ``extra_files`` (name -> "") from the file: predict.py's and pseudo-labelling's one loader."""
    if kind == "export":
        export_logger = logging.getLogger("torch.export")  # logs a traceback of a file it cannot read, raises
        level = export_logger.level
        export_logger.setLevel(logging.ERROR)
        try:
            program = torch.export.load(path, extra_files=extra_files)
        finally:
            export_logger.setLevel(level)
        if torch.device(device).type != "cpu":
            program = torch.export.passes.move_to_device_pass(program, device)
        return program.module()  # the mode it was exported in (an exported module has no eval())
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*is deprecated", category=FutureWarning
        )  # TorchScript, torch >= 2.10
        return torch.jit.load(path, map_location=device, _extra_files=extra_files).eval()
