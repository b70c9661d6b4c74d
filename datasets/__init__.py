"""Datasets in KITTI's layouts and folders of your own image sequences, with Monodepth2's item keys."""

from .cityscapes import CLASS_NAMES, LABEL_TO_TRAIN, NUM_CLASSES, colourise
from .folders import FoldersDataset
from .kitti_dataset import DATASETS as KITTI_DATASETS
from .kitti_dataset import KITTIBenchmarkTestDataset, KITTIDepthDataset, KITTIOdomDataset, KITTIRAWDataset
from .mono_dataset import KITTI_K, MonoDataset, SplitEntry, parse_split_line, read_split

# --dataset choices (options.py, make_pseudo_labels): KITTI's three layouts and your own sequences
DATASETS = {**KITTI_DATASETS, "folders": FoldersDataset}

__all__ = [
    "CLASS_NAMES",
    "DATASETS",
    "FoldersDataset",
    "KITTIBenchmarkTestDataset",
    "KITTIDepthDataset",
    "KITTIOdomDataset",
    "KITTIRAWDataset",
    "KITTI_K",
    "LABEL_TO_TRAIN",
    "MonoDataset",
    "NUM_CLASSES",
    "SplitEntry",
    "colourise",
    "parse_split_line",
    "read_split",
]
