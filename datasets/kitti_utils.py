"""KITTI calibration and Velodyne helpers: ground-truth depth from LiDAR points (Monodepth2's)."""

from __future__ import annotations

import os

import numpy as np

from utils import InputError, MissingFileError

# KITTI's rectified colour cameras: image_02 is the left, image_03 the right one.
CAMERA_OF_SIDE = {"l": 2, "r": 3}
VELODYNE_RECORD_BYTES = 16  # float32 x, y, z, reflectance
VELODYNE_EXT = ".bin"  # Velodyne scan files
OXTS_VALUES = 30  # numbers in one OXTS packet


def read_calib_file(path: str) -> dict[str, np.ndarray]:
    """Read a KITTI calibration file ("key: numbers" lines) into float arrays; other lines are skipped."""
    data = {}
    if not os.path.isfile(path):
        raise MissingFileError(f"{path}: calibration file not found")
    with open(path, errors="replace") as f:
        for line in f:
            if ":" not in line:
                continue
            key, value = line.split(":", 1)
            try:
                data[key] = np.array([float(x) for x in value.split()])
            except ValueError:
                pass  # non-numeric entries such as calib_time
    return data


def calibration_matrix(
    calib: dict[str, np.ndarray], key: str, shape: tuple[int, ...], path: str
) -> np.ndarray:
    """Entry ``key`` of a calibration file read by ``read_calib_file``, reshaped; InputError naming the file
    if absent or misshapen."""
    if key not in calib:
        raise InputError(f"{path}: calibration entry {key!r} is missing")
    if calib[key].size != int(np.prod(shape)):
        raise InputError(
            f"{path}: calibration entry {key!r} holds {calib[key].size} numbers, "
            f"expected {int(np.prod(shape))}"
        )
    return calib[key].reshape(shape)


def velodyne_path(data_path: str, folder: str, frame_index: int) -> str:
    """The Velodyne scan of a KITTI raw frame."""
    return os.path.join(data_path, folder, "velodyne_points", "data", f"{frame_index:010d}{VELODYNE_EXT}")


def check_velodyne_file(path: str) -> None:
    """A Velodyne scan is a non-empty sequence of float32 (x, y, z, reflectance) records; InputError naming it
    otherwise."""
    if not os.path.isfile(path):
        raise MissingFileError(f"{path}: Velodyne scan not found")
    size = os.path.getsize(path)
    if size == 0 or size % VELODYNE_RECORD_BYTES:
        raise InputError(
            f"{path}: a Velodyne scan holds records of {VELODYNE_RECORD_BYTES} bytes (4 float32), this "
            f"file has {size} bytes ({'empty' if size == 0 else 'truncated or not a scan'})"
        )


def load_velodyne_points(path: str) -> np.ndarray:
    """Velodyne scan (N, 4): x, y, z in the Velodyne frame with the reflectance replaced by 1."""
    check_velodyne_file(path)
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
    cam_file = os.path.join(calib_dir, "calib_cam_to_cam.txt")
    cam2cam = read_calib_file(cam_file)
    velo2cam = rigid_transform(os.path.join(calib_dir, "calib_velo_to_cam.txt"))

    # the rectified frames' (height, width)
    im_shape = calibration_matrix(cam2cam, "S_rect_02", (2,), cam_file)[::-1].astype(np.int32)
    R_cam2rect = np.eye(4)
    R_cam2rect[:3, :3] = calibration_matrix(cam2cam, "R_rect_00", (3, 3), cam_file)
    P_rect = calibration_matrix(cam2cam, "P_rect_0" + str(cam), (3, 4), cam_file)
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


EARTH_RADIUS = 6378137.0  # metres, the KITTI devkit's


def read_oxts_packet(path: str) -> np.ndarray:
    """One OXTS packet (30,): lat, lon, alt, roll, pitch, yaw, velocities, accelerations, status."""
    with open(path) as f:
        values = f.read().split()
    if len(values) != OXTS_VALUES:
        raise InputError(f"{path}: an OXTS packet has {OXTS_VALUES} numbers, found {len(values)}")
    try:
        return np.array([float(v) for v in values])
    except ValueError:
        raise InputError(f"{path}: an OXTS packet holds numbers only") from None


def oxts_poses(packets: np.ndarray) -> np.ndarray:
    """IMU-to-world poses (N, 4, 4) relative to the first packet (the KITTI devkit's convertOxtsToPose).

    Positions come from a Mercator projection whose scale is fixed by the first latitude;
    orientation is Rz(yaw) Ry(pitch) Rx(roll).
    """
    packets = np.asarray(packets, dtype=np.float64)
    scale = np.cos(np.deg2rad(packets[0, 0]))
    lat, lon, alt, roll, pitch, yaw = (packets[:, i] for i in range(6))
    poses = np.tile(np.eye(4), (len(packets), 1, 1))
    poses[:, 0, 3] = scale * np.deg2rad(lon) * EARTH_RADIUS
    poses[:, 1, 3] = scale * EARTH_RADIUS * np.log(np.tan(np.deg2rad(90 + lat) / 2))
    poses[:, 2, 3] = alt
    c, s = np.cos, np.sin
    zero, one = np.zeros_like(roll), np.ones_like(roll)
    rx = np.stack(
        [
            np.stack([one, zero, zero], -1),
            np.stack([zero, c(roll), -s(roll)], -1),
            np.stack([zero, s(roll), c(roll)], -1),
        ],
        -2,
    )
    ry = np.stack(
        [
            np.stack([c(pitch), zero, s(pitch)], -1),
            np.stack([zero, one, zero], -1),
            np.stack([-s(pitch), zero, c(pitch)], -1),
        ],
        -2,
    )
    rz = np.stack(
        [
            np.stack([c(yaw), -s(yaw), zero], -1),
            np.stack([s(yaw), c(yaw), zero], -1),
            np.stack([zero, zero, one], -1),
        ],
        -2,
    )
    poses[:, :3, :3] = rz @ ry @ rx
    return np.linalg.inv(poses[0]) @ poses


def rigid_transform(calib_file: str) -> np.ndarray:
    """4x4 transform of a calibration file holding R (3x3) and T (3,), e.g. calib_velo_to_cam.txt."""
    calib = read_calib_file(calib_file)
    transform = np.eye(4)
    transform[:3, :3] = calibration_matrix(calib, "R", (3, 3), calib_file)
    transform[:3, 3] = calibration_matrix(calib, "T", (3,), calib_file)
    return transform


def camera_poses_from_oxts(calib_dir: str, packets: np.ndarray) -> np.ndarray:
    """Camera-to-world poses (N, 4, 4) of the rectified camera 0, relative to the first IMU pose."""
    velo_from_imu = rigid_transform(os.path.join(calib_dir, "calib_imu_to_velo.txt"))
    cam_from_velo = rigid_transform(os.path.join(calib_dir, "calib_velo_to_cam.txt"))
    return oxts_poses(packets) @ np.linalg.inv(velo_from_imu) @ np.linalg.inv(cam_from_velo)
