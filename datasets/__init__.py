"""Datasets in KITTI's layouts, with Monodepth2's item keys."""
from .cityscapes import CLASS_NAMES, LABEL_TO_TRAIN, NUM_CLASSES, colourise
from .kitti_dataset import DATASETS, KITTIBenchmarkTestDataset, KITTIDepthDataset, KITTIOdomDataset, KITTIRAWDataset
from .mono_dataset import KITTI_K, MonoDataset, SplitEntry, parse_split_line, read_split

__all__ = [
    "CLASS_NAMES", "DATASETS", "KITTIBenchmarkTestDataset", "KITTIDepthDataset", "KITTIOdomDataset", "KITTIRAWDataset", "KITTI_K",
    "LABEL_TO_TRAIN", "MonoDataset", "NUM_CLASSES", "SplitEntry", "colourise", "parse_split_line", "read_split",
]
