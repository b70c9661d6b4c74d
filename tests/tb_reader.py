"""Reads TensorBoard event files back (TFRecord framing, CRCs checked) with tensorboardX's protos."""

from __future__ import annotations

import glob
import io
import os
import struct

import numpy as np
from PIL import Image
from tensorboardX.crc32c import crc32c
from tensorboardX.proto import event_pb2


def _masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_events(path: str) -> list:
    """Every Event of one file, checking each record's length and data CRCs."""
    events = []
    with open(path, "rb") as f:
        while True:
            header = f.read(8)
            if not header:
                break
            (length,) = struct.unpack("<Q", header)
            (length_crc,) = struct.unpack("<I", f.read(4))
            assert length_crc == _masked_crc(header), f"{path}: corrupt record length"
            data = f.read(length)
            (data_crc,) = struct.unpack("<I", f.read(4))
            assert data_crc == _masked_crc(data), f"{path}: corrupt record"
            events.append(event_pb2.Event.FromString(data))
    return events


def read_run(folder: str) -> tuple[dict, dict]:
    """(scalars {tag: [(step, value)]}, images {tag: [(step, HxWxC array)]}) of every event file in a
    folder."""
    scalars: dict = {}
    images: dict = {}
    for path in sorted(glob.glob(os.path.join(folder, "events.out.tfevents.*"))):
        for event in read_events(path):
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
                elif value.HasField("image"):
                    array = np.asarray(Image.open(io.BytesIO(value.image.encoded_image_string)))
                    images.setdefault(value.tag, []).append((event.step, array))
    return scalars, images
