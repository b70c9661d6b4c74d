"""Cityscapes label table: label ids (0..33) of the pseudo-label PNGs, the 19 train ids, colours."""

from __future__ import annotations

import numpy as np
from PIL import Image

from utils.files import atomic_write

IGNORE_ID = 255
NUM_LABEL_IDS = 34  # ids 0..33; the table's -1 (license plate) never occurs in a PNG

# (name, label id, train id) of the 19 classes the network predicts; every other id maps to 255.
TRAIN_CLASSES = (
    ("road", 7),
    ("sidewalk", 8),
    ("building", 11),
    ("wall", 12),
    ("fence", 13),
    ("pole", 17),
    ("traffic light", 19),
    ("traffic sign", 20),
    ("vegetation", 21),
    ("terrain", 22),
    ("sky", 23),
    ("person", 24),
    ("rider", 25),
    ("car", 26),
    ("truck", 27),
    ("bus", 28),
    ("train", 31),
    ("motorcycle", 32),
    ("bicycle", 33),
)
CLASS_NAMES = tuple(name for name, _ in TRAIN_CLASSES)
NUM_CLASSES = len(TRAIN_CLASSES)

# Colours of the train ids (Cityscapes' palette); ignored pixels are drawn black.
TRAIN_ID_COLOURS = np.array(
    [
        (128, 64, 128),
        (244, 35, 232),
        (70, 70, 70),
        (102, 102, 156),
        (190, 153, 153),
        (153, 153, 153),
        (250, 170, 30),
        (220, 220, 0),
        (107, 142, 35),
        (152, 251, 152),
        (70, 130, 180),
        (220, 20, 60),
        (255, 0, 0),
        (0, 0, 142),
        (0, 0, 70),
        (0, 60, 100),
        (0, 80, 100),
        (0, 0, 230),
        (119, 11, 32),
    ],
    dtype=np.uint8,
)


def label_id_to_train_id_table() -> np.ndarray:
    """Lookup table (256,) uint8: label id -> train id, 255 for ids without a train id."""
    table = np.full(256, IGNORE_ID, dtype=np.uint8)
    for train_id, (_, label_id) in enumerate(TRAIN_CLASSES):
        table[label_id] = train_id
    return table


LABEL_TO_TRAIN = label_id_to_train_id_table()
TRAIN_TO_LABEL = np.array([label_id for _, label_id in TRAIN_CLASSES], dtype=np.uint8)


def colourise(train_ids: np.ndarray) -> np.ndarray:
    """Train-id map (H, W) -> RGB image (H, W, 3) uint8 in the Cityscapes palette."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[:NUM_CLASSES] = TRAIN_ID_COLOURS
    return palette[np.asarray(train_ids, dtype=np.uint8)]


SEGMENTATION_ALPHA = 0.5  # weight of the palette where a segmentation is blended over its image


def segmentation_overlay(image: np.ndarray, train_ids: np.ndarray) -> np.ndarray:
    """The train-id map in the Cityscapes palette blended over an RGB image (H, W, 3) uint8."""
    blend = SEGMENTATION_ALPHA * colourise(train_ids) + (1 - SEGMENTATION_ALPHA) * np.asarray(image)
    return blend.astype(np.uint8)


def label_id_palette() -> list[int]:
    """A PNG palette (768 values) that draws each label id in its train id's colour (others black)."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for train_id, (_, label_id) in enumerate(TRAIN_CLASSES):
        palette[label_id] = TRAIN_ID_COLOURS[train_id]
    return palette.reshape(-1).tolist()


def save_label_png(path: str, label_ids: np.ndarray) -> None:
    """Write a label-id map (H, W) as a palette PNG (the authors' encoding), atomically."""
    ids = np.asarray(label_ids)
    if ids.ndim != 2 or ids.min(initial=0) < 0 or ids.max(initial=0) >= NUM_LABEL_IDS:
        raise ValueError(f"{path}: a label map must be (H, W) of Cityscapes label ids 0..{NUM_LABEL_IDS - 1}")
    image = Image.fromarray(ids.astype(np.uint8), mode="P")
    image.putpalette(label_id_palette())
    with atomic_write(path) as tmp:
        image.save(tmp, format="PNG")
