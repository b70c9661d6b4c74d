"""KITTI calibration and Velodyne helpers: ground-truth depth from LiDAR points (Monodepth2's)."""
from __future__ import annotations

import os

import numpy as np

# KITTI's rectified colour cameras: image_02 is the left, image_03 the right one.
CAMERA_OF_SIDE = {"l": 2, "r": 3}


def read_calib_file(path: str) -> dict[str, np.ndarray]:
    """Read a KITTI calibration file ("key: numbers" lines) into float arrays; other lines are skipped."""
    data = {}
    with open(path) as f:
        for line in f:
            if ":" not in line:
                continue
            key, value = line.split(":", 1)
            try:
                data[key] = np.array([float(x) for x in value.split()])
            except ValueError:
                pass  # non-numeric entries such as calib_time
    return data


def load_velodyne_points(path: str) -> np.ndarray:
    """Velodyne scan (N, 4): x, y, z in the Velodyne frame with the reflectance replaced by 1."""
    points = np.fromfile(path, dtype=np.float32).reshape(-1, 4)
    points[:, 3] = 1.0
    return points


def generate_depth_map(calib_dir: str, velo_path: str, cam: int = 2, vel_depth: bool = False) -> np.ndarray:
    """Sparse depth (H, W) in camera ``cam`` from a Velodyne scan (Monodepth2's export protocol).

    Points are projected with the rectified projection of the camera; pixel = round(projection) - 1.
    The depth stored is the projective depth (about the camera z), or with ``vel_depth`` the point's
    forward Velodyne coordinate x, as export_gt_depth uses. Where two points land on one pixel the
    nearer stays.
    """
    cam2cam = read_calib_file(os.path.join(calib_dir, "calib_cam_to_cam.txt"))
    velo2cam = read_calib_file(os.path.join(calib_dir, "calib_velo_to_cam.txt"))
    velo2cam = np.hstack((velo2cam["R"].reshape(3, 3), velo2cam["T"][..., np.newaxis]))
    velo2cam = np.vstack((velo2cam, np.array([0, 0, 0, 1.0])))

    im_shape = cam2cam["S_rect_02"][::-1].astype(np.int32)  # (height, width)
    R_cam2rect = np.eye(4)
    R_cam2rect[:3, :3] = cam2cam["R_rect_00"].reshape(3, 3)
    P_rect = cam2cam["P_rect_0" + str(cam)].reshape(3, 4)
    P_velo2im = np.dot(np.dot(P_rect, R_cam2rect), velo2cam)

    velo = load_velodyne_points(velo_path)
    velo = velo[velo[:, 0] >= 0, :]  # points in front of the sensor

    velo_pts_im = np.dot(P_velo2im, velo.T).T
    velo_pts_im[:, :2] = velo_pts_im[:, :2] / velo_pts_im[:, 2][..., np.newaxis]
    if vel_depth:
        velo_pts_im[:, 2] = velo[:, 0]

    velo_pts_im[:, 0] = np.round(velo_pts_im[:, 0]) - 1
    velo_pts_im[:, 1] = np.round(velo_pts_im[:, 1]) - 1
    inside = (velo_pts_im[:, 0] >= 0) & (velo_pts_im[:, 1] >= 0)
    inside &= (velo_pts_im[:, 0] < im_shape[1]) & (velo_pts_im[:, 1] < im_shape[0])
    velo_pts_im = velo_pts_im[inside, :]

    height, width = int(im_shape[0]), int(im_shape[1])
    pixel = velo_pts_im[:, 1].astype(np.int64) * width + velo_pts_im[:, 0].astype(np.int64)
    depth = np.full(height * width, np.inf)
    np.minimum.at(depth, pixel, velo_pts_im[:, 2])  # the nearest point of each pixel
    depth[~np.isfinite(depth) | (depth < 0)] = 0
    return depth.reshape(height, width)
