"""The three KITTI layouts: raw data, odometry sequences and the depth benchmark."""

from __future__ import annotations

import os

import numpy as np
import skimage.transform
from PIL import Image

from . import kitti_utils
from .kitti_utils import CAMERA_OF_SIDE, generate_depth_map
from .mono_dataset import MonoDataset, SplitEntry, open_image

CALIBRATION_FILES = ("calib_cam_to_cam.txt", "calib_velo_to_cam.txt")  # read by generate_depth_map

DEPTH_PNG_SCALE = 256.0  # KITTI depth-benchmark PNGs store depth x 256 as uint16


class KITTIRAWDataset(MonoDataset):
    """KITTI raw: ``<date>/<drive>/image_0{2,3}/data/<frame:010d>.<ext>``, Velodyne ground truth."""

    def get_image_path(self, folder: str, frame_index: int, side: str | None) -> str:
        filename = f"{frame_index:010d}{self.img_ext}"
        return os.path.join(self.data_path, folder, f"image_0{CAMERA_OF_SIDE[side]}", "data", filename)

    def velodyne_path(self, folder: str, frame_index: int) -> str:
        return kitti_utils.velodyne_path(self.data_path, folder, frame_index)

    def check_depth(self) -> bool:
        if not self.entries:
            return False
        entry = self.entries[0]
        return os.path.isfile(self.velodyne_path(entry.folder, entry.frame_index))

    def required_files(self, index: int) -> list[str]:
        files = super().required_files(index)
        if self.load_depth:
            entry = self.entries[index]
            calib_dir = os.path.join(self.data_path, entry.folder.split("/")[0])
            files += [self.velodyne_path(entry.folder, entry.frame_index)] + [
                os.path.join(calib_dir, name) for name in CALIBRATION_FILES
            ]
        return files

    def get_depth(self, folder: str, frame_index: int, side: str | None, do_flip: bool) -> np.ndarray:
        calib_dir = os.path.join(self.data_path, folder.split("/")[0])
        depth = generate_depth_map(calib_dir, self.velodyne_path(folder, frame_index), CAMERA_OF_SIDE[side])
        depth = skimage.transform.resize(
            depth,
            self.full_res_shape[::-1],
            order=0,
            preserve_range=True,
            mode="constant",
            anti_aliasing=False,
        )
        return np.fliplr(depth) if do_flip else depth


class KITTIOdomDataset(MonoDataset):
    """KITTI odometry: ``sequences/<seq:02d>/image_{2,3}/<frame:06d>.<ext>`` (no ground-truth depth)."""

    def entry_problem(self, entry: SplitEntry) -> str | None:
        if not entry.folder.isdigit():
            return (
                f"names folder {entry.folder!r}: the odometry layout (--dataset kitti_odom) "
                "needs a sequence number"
            )
        return super().entry_problem(entry)

    def get_image_path(self, folder: str, frame_index: int, side: str | None) -> str:
        filename = f"{frame_index:06d}{self.img_ext}"
        return os.path.join(
            self.data_path, "sequences", f"{int(folder):02d}", f"image_{CAMERA_OF_SIDE[side]}", filename
        )


class KITTIDepthDataset(KITTIRAWDataset):
    """KITTI raw frames with the depth benchmark's annotated maps as ground truth."""

    def depth_path(self, folder: str, frame_index: int, side: str | None) -> str:
        return os.path.join(
            self.data_path,
            folder,
            "proj_depth",
            "groundtruth",
            f"image_0{CAMERA_OF_SIDE[side]}",
            f"{frame_index:010d}.png",
        )

    def check_depth(self) -> bool:
        if not self.entries:
            return False
        entry = self.entries[0]
        return os.path.isfile(self.depth_path(entry.folder, entry.frame_index, entry.side or "l"))

    def required_files(self, index: int) -> list[str]:
        files = MonoDataset.required_files(self, index)
        if self.load_depth:
            entry = self.entries[index]
            files.append(self.depth_path(entry.folder, entry.frame_index, entry.side or "l"))
        return files

    def get_depth(self, folder: str, frame_index: int, side: str | None, do_flip: bool) -> np.ndarray:
        depth = open_image(self.depth_path(folder, frame_index, side)).resize(
            self.full_res_shape, Image.Resampling.NEAREST
        )
        depth = np.array(depth).astype(np.float32) / DEPTH_PNG_SCALE
        return np.fliplr(depth) if do_flip else depth


DATASETS = {"kitti": KITTIRAWDataset, "kitti_odom": KITTIOdomDataset, "kitti_depth": KITTIDepthDataset}


class KITTIBenchmarkTestDataset(MonoDataset):
    """The depth benchmark's test images: ``<data_path>/image/<index:010d>.png`` (lines ``image <index>``)."""

    NEEDS_SIDE = False

    def get_image_path(self, folder: str, frame_index: int, side: str | None) -> str:
        return os.path.join(self.data_path, folder, f"{frame_index:010d}{self.img_ext}")
