"""Synthetic driving scenes in KITTI raw's exact layout, with exact ground truth.

``generate`` (``python -m tools.synthetic_kitti --out DIR``) ray-casts a static street seen from a car driving
about 1 m per frame and writes what KITTI raw holds and this project reads: calibration, a rectified stereo
pair, Velodyne scans, OXTS packets, dense depth, Cityscapes-id labels, splits and ``gt_depths.npz``. The
camera has the normalised intrinsics training assumes for KITTI; everything is a deterministic function of
``--seed``. docs/data.md, "Synthetic scenes and the demo", lists the files and the geometry."""

from __future__ import annotations

import logging
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from datasets.cityscapes import save_label_png
from datasets.ground_truth import export  # the project's own ground-truth export
from datasets.kitti_dataset import DEPTH_PNG_SCALE
from datasets.kitti_utils import EARTH_RADIUS  # the devkit's, as the OXTS reader uses
from utils import InputError
from utils.files import atomic_write

logger = logging.getLogger(__name__)

# --- the rig (KITTI's) --------------------------------------------------------------------------
KITTI_WIDTH, KITTI_HEIGHT = 1242, 375
FX_NORM, FY_NORM = 0.58, 1.92  # Monodepth2's normalised focal lengths, used for every KITTI frame
STEREO_BASELINE = 0.54  # metres between image_02 and image_03
CAMERA_HEIGHT = 1.65  # metres above the road
# Velodyne -> camera (axes: x forward, y left, z up -> x right, y down, z forward) and its offset,
# and IMU -> Velodyne, rounded from KITTI's 2011_09_26 calibration.
VELO_TO_CAM_R = np.array([[0, -1, 0], [0, 0, -1], [1, 0, 0]], dtype=np.float64)
VELO_TO_CAM_T = np.array([0.0, -0.08, -0.27])
IMU_TO_VELO_T = np.array([-0.81, 0.32, -0.80])
VELODYNE_ELEVATIONS = np.linspace(2.0, -24.9, 64)  # degrees, HDL-64E
VELODYNE_RANGE = 80.0  # metres: farther returns are dropped
# --- the world ----------------------------------------------------------------------------------
ROAD_HALF_WIDTH = 5.5  # two lanes and two parking strips
SIDEWALK_OUTER = 9.0
FACADE_SETBACK = 9.5
LANE_MARK_HALF_WIDTH = 0.08
LANE_DASH, LANE_PERIOD = 3.0, 9.0
WEAVE_AMPLITUDE, WEAVE_PERIOD = 1.2, 70.0  # the path's gentle S-turns (max yaw about 6 degrees)
FRAME_RATE = 10.0  # Hz, KITTI's
DATE = "2000_01_01"  # the recording day of every synthetic drive
LAT0, LON0 = 49.0, 8.4  # Karlsruhe: where the first OXTS packet is
FRONT_RANGE, BACK_RANGE = 90.0, 40.0  # metres of world kept around a frame for ray casting
NO_DEPTH = 0.0  # depth written where a ray meets no surface (sky) or one beyond MAX_GT_DEPTH
MAX_GT_DEPTH = 200.0  # metres: the far road near the horizon gets no ground truth

# Cityscapes label ids
ROAD, SIDEWALK, BUILDING, POLE, SIGN, VEGETATION, TERRAIN, SKY, CAR = 7, 8, 11, 17, 20, 21, 22, 23, 26
# surface patterns
PLAIN, FACADE, CAR_BODY, FOLIAGE = 0, 1, 2, 3
# textures: lowest frequency (cycles per metre) of each surface's fractal noise, and sizes (metres)
TEXTURE_PERSISTENCE = 0.7  # each octave 0.7 times the one below: detail at fine scales too
TEXTURE_GAIN = 4.7  # value noise (std about 0.11 around 0.5) -> [-1, 1], std about 0.5
ROAD_TEXTURE_FREQUENCY = 0.25
PATCH_FREQUENCY = 0.15
GRAIN_FREQUENCY = 2.0
GRASS_FREQUENCY = 0.5
SURFACE_TEXTURE_FREQUENCY = 0.6
FOLIAGE_FREQUENCY = 1.5
SLAB_SIZE = 0.6


@dataclass
class World:
    """Axis-aligned boxes on a flat ground (camera axes: x right, y down, z forward; road at y =
    CAMERA_HEIGHT)."""

    lo: np.ndarray  # (B, 3)
    hi: np.ndarray  # (B, 3)
    colour: np.ndarray  # (B, 3) in [0, 1]
    label: np.ndarray  # (B,) Cityscapes label ids
    pattern: np.ndarray  # (B,) surface pattern
    seed: int = 0

    def near(self, z: float) -> "World":
        """The boxes within the ray-casting range of a camera at depth coordinate ``z``."""
        keep = (self.hi[:, 2] > z - BACK_RANGE) & (self.lo[:, 2] < z + FRONT_RANGE)
        return World(
            self.lo[keep], self.hi[keep], self.colour[keep], self.label[keep], self.pattern[keep], self.seed
        )


@dataclass
class Drive:
    """One drive: its world and the camera-2 poses (4x4 camera -> world) of its frames."""

    name: str
    world: World
    poses: np.ndarray  # (N, 4, 4)


def build_world(rng: np.random.Generator, length: float, seed: int) -> World:
    """Facades, parked cars, poles with signs, hedges and trees along both sides of a straight street."""
    boxes: list[tuple] = []
    ground = CAMERA_HEIGHT

    def add(lo, hi, colour, label, pattern=PLAIN):
        boxes.append((lo, hi, colour, label, pattern))

    for side in (-1, 1):
        z = -BACK_RANGE
        while z < length + FRONT_RANGE:  # facades, sometimes a gap with a hedge or a tree
            size = rng.uniform(8, 22)
            if rng.random() < 0.2:
                add(
                    (side * FACADE_SETBACK - 0.6, ground - 1.2, z),
                    (side * FACADE_SETBACK + 0.6, ground, z + size),
                    np.array([0.20, 0.45, 0.15]) * rng.uniform(0.7, 1.2),
                    VEGETATION,
                    FOLIAGE,
                )
            else:
                setback = FACADE_SETBACK + rng.uniform(0, 3)
                height = rng.uniform(6, 16)
                x0, x1 = sorted((side * setback, side * (setback + 10)))
                add(
                    (x0, ground - height, z),
                    (x1, ground, z + size),
                    rng.uniform(0.35, 0.85, 3) * np.array([1.0, 0.92, 0.85]),
                    BUILDING,
                    FACADE,
                )
            z += size + (rng.uniform(1, 4) if rng.random() < 0.3 else 0)
        z = -BACK_RANGE
        while z < length + FRONT_RANGE:  # parked cars: a body and a cabin
            z += rng.uniform(1.5, 9)
            if rng.random() < 0.6:
                x = side * rng.uniform(4.3, 4.7)
                colour = rng.uniform(0.05, 0.95, 3)
                add((x - 0.9, ground - 1.0, z), (x + 0.9, ground - 0.25, z + 4.2), colour, CAR, CAR_BODY)
                add(
                    (x - 0.8, ground - 1.5, z + 1.0),
                    (x + 0.8, ground - 1.0, z + 3.0),
                    colour * 0.5,
                    CAR,
                    CAR_BODY,
                )
                z += 4.2
        z = -BACK_RANGE + rng.uniform(0, 20)
        while z < length + FRONT_RANGE:  # poles with signs, trees
            x = side * rng.uniform(6.0, 6.6)
            if rng.random() < 0.5:
                add(
                    (x - 0.08, ground - 5.0, z - 0.08),
                    (x + 0.08, ground, z + 0.08),
                    np.array([0.55, 0.55, 0.58]),
                    POLE,
                )
                if rng.random() < 0.6:
                    add(
                        (x - side * 0.1 - 0.35, ground - 3.2, z - 0.12),
                        (x - side * 0.1 + 0.35, ground - 2.5, z - 0.08),
                        np.array([0.9, 0.8, 0.1]) if rng.random() < 0.5 else np.array([0.1, 0.3, 0.8]),
                        SIGN,
                    )
            else:
                add(
                    (x - 0.15, ground - 2.5, z - 0.15),
                    (x + 0.15, ground, z + 0.15),
                    np.array([0.35, 0.25, 0.15]),
                    VEGETATION,
                    FOLIAGE,
                )
                r = rng.uniform(1.2, 2.0)
                add(
                    (x - r, ground - 2.5 - 2 * r, z - r),
                    (x + r, ground - 2.5, z + r),
                    np.array([0.15, 0.40, 0.10]) * rng.uniform(0.8, 1.3),
                    VEGETATION,
                    FOLIAGE,
                )
            z += rng.uniform(12, 30)
    lo, hi, colour, label, pattern = zip(*boxes)
    return World(
        np.array(lo, float),
        np.array(hi, float),
        np.array(colour, float),
        np.array(label, np.uint8),
        np.array(pattern, np.int64),
        seed,
    )


def build_drive(name: str, num_frames: int, seed: int, metres_per_frame: float = 1.0) -> Drive:
    """A world and a path through it: about ``metres_per_frame`` per frame, weaving gently within the road."""
    rng = np.random.default_rng(seed)
    speeds = metres_per_frame * (
        1.0 + 0.15 * np.sin(np.arange(num_frames) * 2 * math.pi / rng.uniform(40, 80) + rng.uniform(0, 6))
    )
    z = np.concatenate([[0.0], np.cumsum(speeds[:-1])])
    phase = rng.uniform(0, 2 * math.pi)
    x = WEAVE_AMPLITUDE * np.sin(2 * math.pi * z / WEAVE_PERIOD + phase)
    yaw = np.arctan(
        WEAVE_AMPLITUDE * 2 * math.pi / WEAVE_PERIOD * np.cos(2 * math.pi * z / WEAVE_PERIOD + phase)
    )
    poses = np.tile(np.eye(4), (num_frames, 1, 1))
    poses[:, :3, :3] = rotation_y(yaw)
    poses[:, 0, 3], poses[:, 2, 3] = x, z
    world = build_world(rng, float(z[-1]) + 1, seed)
    return Drive(name, world, poses)


def rotation_y(angle: np.ndarray) -> np.ndarray:
    """Rotations (..., 3, 3) about the camera's y axis (down): positive turns right."""
    c, s = np.cos(angle), np.sin(angle)
    zero, one = np.zeros_like(c), np.ones_like(c)
    return np.stack(
        [np.stack([c, zero, s], -1), np.stack([zero, one, zero], -1), np.stack([-s, zero, c], -1)], -2
    )


# --- ray casting ----------------------------------------------------------------------------------
def hit_axis(origin: np.ndarray, dirs: np.ndarray, what: np.ndarray, world: World) -> np.ndarray:
    """Axis of the normal of each hit surface: the axis whose slab a ray entered last (1 for the ground)."""
    axis = np.ones(len(what), dtype=np.int64)
    boxes = what >= 0
    b = what[boxes]
    d = np.where(np.abs(dirs[boxes]) < 1e-9, 1e-9, dirs[boxes])
    entry = np.minimum((world.lo[b] - origin) / d, (world.hi[b] - origin) / d)
    axis[boxes] = entry.argmax(-1)
    return axis


def cast_grid(
    origin: np.ndarray, dirs: np.ndarray, world: World, footprints: Sequence[tuple | None]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest hits of a grid of rays (h, w, 3) from ``origin``, testing box b only on the rays of
    ``footprints[b]``.

    A footprint is (row0, row1, col0, col1), a conservative rectangle of the grid, or None (missed).
    Returns flat (t, what, axis): the ray parameter, what was hit (box index, -1 ground, -2 nothing)
    and the axis of the surface normal.
    """
    down = dirs[..., 1] > 1e-9
    t_best = np.where(down, (CAMERA_HEIGHT - origin[1]) / np.where(down, dirs[..., 1], 1), np.inf)
    what = np.where(np.isfinite(t_best), -1, -2)
    inv = 1.0 / np.where(np.abs(dirs) < 1e-9, 1e-9, dirs)
    inv_axes = [
        np.ascontiguousarray(inv[..., k]) for k in range(3)
    ]  # per axis: elementwise min/max beat a reduction
    for b, rect in enumerate(footprints):
        if rect is None:
            continue
        r0, r1, c0, c1 = rect
        lo, hi = world.lo[b] - origin, world.hi[b] - origin
        t_in = t_out = None
        for k in range(3):  # the slab of each axis: entered at the nearer plane, left at the farther
            near, far = lo[k] * inv_axes[k][r0:r1, c0:c1], hi[k] * inv_axes[k][r0:r1, c0:c1]
            enter, leave = np.minimum(near, far), np.maximum(near, far)
            t_in = enter if t_in is None else np.maximum(t_in, enter)
            t_out = leave if t_out is None else np.minimum(t_out, leave)
        hit = (t_out >= t_in) & (t_in > 1e-4) & (t_in < t_best[r0:r1, c0:c1])
        t_best[r0:r1, c0:c1][hit] = t_in[hit]
        what[r0:r1, c0:c1][hit] = b
    dirs, t_best, what = dirs.reshape(-1, 3), t_best.reshape(-1), what.reshape(-1)
    return t_best, what, hit_axis(origin, dirs, what, world)


def box_corners(world: World) -> np.ndarray:
    """The 8 corners (B, 8, 3) of every box."""
    pick = np.stack(np.meshgrid([0, 1], [0, 1], [0, 1], indexing="ij"), -1).reshape(-1, 3).astype(bool)
    return np.where(pick[None], world.hi[:, None], world.lo[:, None])


def camera_footprints(
    pose: np.ndarray, K: np.ndarray, supersample: int, shape: tuple[int, int], world: World
) -> list[tuple | None]:
    """Each box's rectangle of a camera's ray grid: its corners' image bounding box plus a pixel."""
    h, w = shape
    cam = (box_corners(world) - pose[:3, 3]) @ pose[:3, :3]  # corners in camera axes
    rects: list[tuple | None] = []
    for corners in cam:
        z = corners[:, 2]
        if (z <= 0).all():
            rects.append(None)
            continue
        if (z <= 1e-2).any():  # straddles the camera plane: every ray
            rects.append((0, h, 0, w))
            continue
        u = K[0, 0] * corners[:, 0] / z + K[0, 2]
        v = K[1, 1] * corners[:, 1] / z + K[1, 2]
        c0, c1 = (
            int(np.floor((u.min() + 0.5) * supersample)) - 1,
            int(np.ceil((u.max() + 0.5) * supersample)) + 1,
        )
        r0, r1 = (
            int(np.floor((v.min() + 0.5) * supersample)) - 1,
            int(np.ceil((v.max() + 0.5) * supersample)) + 1,
        )
        r0, r1, c0, c1 = max(r0, 0), min(r1, h), max(c0, 0), min(c1, w)
        rects.append((r0, r1, c0, c1) if r0 < r1 and c0 < c1 else None)
    return rects


def velodyne_footprints(
    velo_to_world: np.ndarray, azimuths: np.ndarray, num_rows: int, world: World
) -> list[tuple | None]:
    """Each box's columns of the scan (all rows): the azimuths between its corners'."""
    velo = (box_corners(world) - velo_to_world[:3, 3]) @ velo_to_world[:3, :3]  # corners in Velodyne axes
    step = azimuths[1] - azimuths[0]
    rects: list[tuple | None] = []
    for corners in velo:
        centre = corners.mean(0)
        if np.hypot(centre[0], centre[1]) > VELODYNE_RANGE + 30:
            rects.append(None)
            continue
        middle = math.atan2(centre[1], centre[0])
        rel = np.angle(np.exp(1j * (np.arctan2(corners[:, 1], corners[:, 0]) - middle)))
        lo, hi = middle + rel.min(), middle + rel.max()
        inside = (corners[:, :2].min(0) <= 0).all() and (corners[:, :2].max(0) >= 0).all()
        if inside or hi - lo > math.pi or lo < azimuths[0] or hi > azimuths[-1]:
            rects.append((0, num_rows, 0, len(azimuths)))  # around the sensor or across the seam
            continue
        c0 = max(int(np.floor((lo - azimuths[0]) / step)) - 1, 0)
        c1 = min(int(np.ceil((hi - azimuths[0]) / step)) + 2, len(azimuths))
        rects.append((0, num_rows, c0, c1))
    return rects


def _hash(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic pseudo-random values in [0, 1) of integer lattice points."""
    mask = 0xFFFFFFFF
    h = (ix.astype(np.int64) * 374761393 + iy.astype(np.int64) * 668265263 + seed * 1442695041) & mask
    h = ((h ^ (h >> 13)) * 1274126177) & mask
    return ((h ^ (h >> 16)) & mask).astype(np.float64) / 2.0**32


def value_noise(
    u: np.ndarray, v: np.ndarray, seed: int, octaves: int = 3, persistence: float = 0.5
) -> np.ndarray:
    """Smooth noise in about [0, 1] of surface coordinates (metres x frequency), a few octaves, each
    ``persistence`` times as strong as the one below."""
    total, amplitude, norm = 0.0, 1.0, 0.0
    for octave in range(octaves):
        iu, iv = np.floor(u), np.floor(v)
        fu, fv = u - iu, v - iv
        fu, fv = fu * fu * (3 - 2 * fu), fv * fv * (3 - 2 * fv)
        s = seed + 101 * octave
        a, b = _hash(iu, iv, s), _hash(iu + 1, iv, s)
        c, d = _hash(iu, iv + 1, s), _hash(iu + 1, iv + 1, s)
        total = total + amplitude * ((a * (1 - fu) + b * fu) * (1 - fv) + (c * (1 - fu) + d * fu) * fv)
        norm += amplitude
        u, v, amplitude = u * 2.03, v * 2.03, amplitude * persistence
    return total / norm


def texture(u: np.ndarray, v: np.ndarray, seed: int, frequency: float, octaves: int = 5) -> np.ndarray:
    """Fractal noise in [-1, 1] (standard deviation about 0.5) of surface coordinates in metres, from
    ``frequency`` cycles per metre up: detail at every scale, as real surfaces have."""
    return np.clip(
        (value_noise(u * frequency, v * frequency, seed, octaves, TEXTURE_PERSISTENCE) - 0.5) * TEXTURE_GAIN,
        -1,
        1,
    )


def cells(u: np.ndarray, v: np.ndarray, size_u: float, size_v: float, seed: int) -> np.ndarray:
    """A value in [-1, 1) per cell of a grid (tiles, bricks, panels): constant inside a cell, random between
    cells."""
    return 2 * _hash(np.floor(u / size_u), np.floor(v / size_v), seed) - 1


def shade(
    points: np.ndarray, dirs: np.ndarray, what: np.ndarray, axis: np.ndarray, world: World
) -> tuple[np.ndarray, np.ndarray]:
    """Colour (N, 3) in [0, 1] and Cityscapes label id (N,) of hit points (world coordinates).

    Every surface carries texture at several scales (patches of metres down to a few centimetres),
    with the contrast of a real street: self-supervised training from single views needs image
    gradients wherever depth is to be learned (large uniform areas give the photometric loss nothing).
    """
    n = len(what)
    colour = np.zeros((n, 3))
    label = np.full(n, SKY, dtype=np.uint8)
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    seed = world.seed

    sky = what == -2
    elevation = -dirs[sky, 1] / np.linalg.norm(dirs[sky], axis=1)
    azimuth = np.arctan2(dirs[sky, 0], dirs[sky, 2])
    clouds = value_noise(azimuth * 8, elevation * 20, seed + 7)
    colour[sky] = (np.array([0.55, 0.70, 0.95]) - 0.3 * elevation[:, None]) * (
        1 - 0.3 * clouds[:, None]
    ) + 0.3 * clouds[:, None]

    ground = what == -1
    gx, gz = x[ground], z[ground]
    ax = np.abs(gx)
    road = ax < ROAD_HALF_WIDTH
    walk = (ax >= ROAD_HALF_WIDTH) & (ax < SIDEWALK_OUTER)
    far = ax >= SIDEWALK_OUTER
    paved = road | walk
    g_colour = np.zeros((len(gx), 3))
    # asphalt: stains and repair patches of a few metres, grain down to centimetres (each computed where it
    # shows)
    stains = np.zeros(len(gx))
    stains[paved] = texture(gx[paved], gz[paved], seed + 1, ROAD_TEXTURE_FREQUENCY)
    rx, rz = gx[road], gz[road]
    patches = np.where(texture(rx, rz, seed + 5, PATCH_FREQUENCY, 2) > 0.35, 0.7, 1.0)
    grain = texture(rx, rz, seed + 11, GRAIN_FREQUENCY, 3)
    asphalt = 0.34 * (1 + 0.6 * stains[road] + 0.35 * grain) * patches
    g_colour[road] = asphalt[:, None] * np.array([1.0, 0.98, 0.95])
    marking = road & (
        ((ax < LANE_MARK_HALF_WIDTH) & (np.mod(gz, LANE_PERIOD) < LANE_DASH))
        | (np.abs(ax - 3.5) < LANE_MARK_HALF_WIDTH)
    )
    g_colour[marking] = 0.85 + 0.1 * stains[marking, None]
    # sidewalk: paving slabs of differing shade, darker joints, wear
    wx, wz = gx[walk], gz[walk]
    slab = cells(
        wx, wz + 0.5 * SLAB_SIZE * np.floor(wx / SLAB_SIZE), SLAB_SIZE, SLAB_SIZE, seed + 6
    )  # running bond
    joints = (np.mod(wx, SLAB_SIZE) < 0.04) | (
        np.mod(wz + 0.5 * SLAB_SIZE * np.floor(wx / SLAB_SIZE), SLAB_SIZE) < 0.04
    )
    g_colour[walk] = (
        np.array([0.62, 0.58, 0.55])
        * ((1 + 0.25 * slab + 0.4 * stains[walk]) * np.where(joints, 0.6, 1.0))[:, None]
    )
    grass = texture(gx[far], gz[far], seed + 2, GRASS_FREQUENCY)
    g_colour[far] = np.array([0.35, 0.42, 0.18]) * (1 + 0.7 * grass)[:, None]
    colour[ground] = g_colour
    label[ground] = np.where(road, ROAD, np.where(walk, SIDEWALK, TERRAIN))

    boxes = what >= 0
    b = what[boxes]
    bx, by, bz, baxis = x[boxes], y[boxes], z[boxes], axis[boxes]
    # surface coordinates: the two axes across the hit face
    u = np.where(baxis == 0, bz, bx)
    v = np.where(baxis == 1, bz, by)
    offset = b * 17.0  # each box its own pattern
    grime = texture(u + offset, v, seed + 3, SURFACE_TEXTURE_FREQUENCY)
    pattern = world.pattern[b]
    height = CAMERA_HEIGHT - by
    # facades: panels and bricks of differing shade under grime; cars: dirt and reflections
    facade = pattern == FACADE
    fu, fh = u[facade] + offset[facade], height[facade]
    factor = 1 + 0.5 * grime
    factor[facade] += 0.15 * cells(fu, fh, 1.5, 1.6, seed + 8) + 0.12 * cells(
        fu + 0.25 * np.floor(fh / 0.3), fh, 0.5, 0.3, seed + 9
    )  # panels, bricks
    base = world.colour[b] * factor[:, None]
    # windows: one per 3 m x 3.2 m cell, of a size drawn per cell, some cells without (no exact repetition)
    cell = cells(u + offset, height, 3.0, 3.2, seed + 10)
    half_width = 0.35 + 0.35 * np.abs(cell)
    windows = (
        facade
        & (baxis != 1)
        & (cell > -0.6)
        & (np.abs(np.mod(u + offset, 3.0) - 1.5) < half_width)
        & (np.mod(height, 3.2) > 1.0)
        & (np.mod(height, 3.2) < 1.6 + 0.8 * np.abs(cell))
    )
    base[windows] = np.array([0.15, 0.2, 0.3]) * (1 + 0.6 * cell[windows, None] + 0.3 * grime[windows, None])
    foliage = pattern == FOLIAGE
    leaves = texture(u[foliage] + offset[foliage], v[foliage], seed + 4, FOLIAGE_FREQUENCY)
    base[foliage] = world.colour[b[foliage]] * (1 + 0.8 * leaves)[:, None]
    light = np.array([0.85, 1.05, 0.95])[baxis]  # faces facing the sides, the top and the front differ
    colour[boxes] = base * light[:, None]
    label[boxes] = world.label[b]
    return np.clip(colour, 0, 1), label


@dataclass(frozen=True)
class Camera:
    """A pinhole camera of KITTI's normalised intrinsics at a given image size."""

    width: int
    height: int

    @property
    def K(self) -> np.ndarray:
        return np.array(
            [
                [FX_NORM * self.width, 0, 0.5 * self.width],
                [0, FY_NORM * self.height, 0.5 * self.height],
                [0, 0, 1.0],
            ]
        )

    def rays(self, supersample: int = 1) -> np.ndarray:
        """Directions (H*s, W*s, 3) in camera axes with z = 1, sub-pixel samples centred on pixel
        coordinates."""
        offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
        u = (np.arange(self.width)[:, None] + offsets[None]).reshape(-1)
        v = (np.arange(self.height)[:, None] + offsets[None]).reshape(-1)
        K = self.K
        uu, vv = np.meshgrid((u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1])
        return np.stack([uu, vv, np.ones_like(uu)], -1)


def render(
    camera: Camera, pose: np.ndarray, world: World, supersample: int = 2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB (H, W, 3) uint8 (supersampled), depth (H, W) in metres along z (0 for sky), label ids (H, W)."""
    world = world.near(pose[2, 3])
    origin = pose[:3, 3]
    h, w = camera.height, camera.width
    colour_rays = camera.rays(supersample) @ pose[:3, :3].T
    t, what, axis = cast_grid(
        origin,
        colour_rays,
        world,
        camera_footprints(pose, camera.K, supersample, colour_rays.shape[:2], world),
    )
    dirs = colour_rays.reshape(-1, 3)
    points = origin + dirs * np.where(np.isfinite(t), t, 0)[:, None]
    colour, label = shade(points, dirs, what, axis, world)
    rgb = colour.reshape(h, supersample, w, supersample, 3).mean((1, 3))

    if supersample > 1:  # labels and depth of the pixel centres (with one ray per pixel, those above)
        centre_rays = camera.rays(1) @ pose[:3, :3].T
        t, what, axis = cast_grid(
            origin, centre_rays, world, camera_footprints(pose, camera.K, 1, (h, w), world)
        )
        dirs = centre_rays.reshape(-1, 3)
        points = origin + dirs * np.where(np.isfinite(t), t, 0)[:, None]
        _, label = shade(points, dirs, what, axis, world)
    depth = np.where(
        (what == -2) | (t > MAX_GT_DEPTH), NO_DEPTH, t
    )  # camera z, as the camera rays have z = 1
    return (rgb * 255 + 0.5).astype(np.uint8), depth.reshape(h, w), label.reshape(h, w)


def velodyne_scan(pose_cam: np.ndarray, world: World, azimuth_step: float) -> np.ndarray:
    """A 360-degree scan (N, 4) float32 in the Velodyne frame: x, y, z, reflectance."""
    azimuths = np.deg2rad(np.arange(-180, 180, azimuth_step))
    elevations = np.deg2rad(VELODYNE_ELEVATIONS)
    el, az = np.meshgrid(elevations, azimuths, indexing="ij")
    grid_velo = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1)
    velo_to_world = pose_cam @ velo_to_cam()
    origin = velo_to_world[:3, 3]
    world = world.near(pose_cam[2, 3])
    grid = grid_velo @ velo_to_world[:3, :3].T
    t, what, axis = cast_grid(
        origin, grid, world, velodyne_footprints(velo_to_world, azimuths, len(elevations), world)
    )
    dirs, dirs_velo = grid.reshape(-1, 3), grid_velo.reshape(-1, 3)
    keep = (what != -2) & (t < VELODYNE_RANGE)
    points = origin + dirs[keep] * t[keep, None]
    colour, _ = shade(points, dirs[keep], what[keep], axis[keep], world)
    reflectance = colour.mean(1)
    xyz = dirs_velo[keep] * t[keep, None]
    return np.concatenate([xyz, reflectance[:, None]], 1).astype(np.float32)


# --- calibration and OXTS -------------------------------------------------------------------------
def velo_to_cam() -> np.ndarray:
    """4x4 transform from Velodyne to camera coordinates (calib_velo_to_cam.txt)."""
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = VELO_TO_CAM_R, VELO_TO_CAM_T
    return T


def imu_to_velo() -> np.ndarray:
    """4x4 transform from IMU to Velodyne coordinates (calib_imu_to_velo.txt): same axes, offset."""
    T = np.eye(4)
    T[:3, 3] = IMU_TO_VELO_T
    return T


# The render world (x right, y down, z forward) in east-north-up axes: east = x, north = z, up = -y.
WORLD_TO_ENU = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]], dtype=np.float64)


def mercator_scale() -> float:
    """KITTI devkit's Mercator scale, from the first packet's latitude."""
    return math.cos(math.radians(LAT0))


def oxts_packets(poses: np.ndarray) -> np.ndarray:
    """OXTS packets (N, 30) of the IMU for camera poses: position, yaw (0 = east), velocities."""
    scale = mercator_scale()
    imu_poses = WORLD_TO_ENU @ poses @ velo_to_cam() @ imu_to_velo()  # IMU -> ENU world
    mx0 = scale * math.radians(LON0) * EARTH_RADIUS
    my0 = scale * EARTH_RADIUS * math.log(math.tan(math.radians(90 + LAT0) / 2))
    east = imu_poses[:, 0, 3] - imu_poses[0, 0, 3] + mx0
    north = imu_poses[:, 1, 3] - imu_poses[0, 1, 3] + my0
    packets = np.zeros((len(poses), 30))
    packets[:, 0] = np.degrees(2 * np.arctan(np.exp(north / (scale * EARTH_RADIUS)))) - 90  # lat
    packets[:, 1] = np.degrees(east / (scale * EARTH_RADIUS))  # lon
    packets[:, 2] = imu_poses[:, 2, 3] + 110.0  # altitude: Karlsruhe is about 110 m above sea level
    packets[:, 5] = np.arctan2(imu_poses[:, 1, 0], imu_poses[:, 0, 0])  # yaw of the IMU's x axis
    speed = (
        np.linalg.norm(np.diff(imu_poses[:, :3, 3], axis=0, append=imu_poses[-1:, :3, 3]), axis=1)
        * FRAME_RATE
    )
    packets[:, 8] = speed  # vf: forward velocity (m/s)
    packets[:, 23:25] = 0.05  # position and velocity accuracy
    packets[:, 25:30] = (4, 10, 5, 5, 6)  # navstat, numsats, posmode, velmode, orimode: a good fix
    return packets


def write_calibration(date_dir: str, camera: Camera) -> None:
    """The three calibration files of a recording day, in KITTI's text format."""
    os.makedirs(date_dir, exist_ok=True)
    K = camera.K
    fx = K[0, 0]
    lines = ["calib_time: 01-Jan-2000 00:00:00", "corner_dist: 9.950000e-02", "R_rect_00: 1 0 0 0 1 0 0 0 1"]
    for cam, tx in (("00", 0.0), ("01", -fx * STEREO_BASELINE), ("02", 0.0), ("03", -fx * STEREO_BASELINE)):
        P = np.hstack([K, [[tx], [0], [0]]])
        lines += [
            f"S_{cam}: {camera.width:.6e} {camera.height:.6e}",
            f"K_{cam}: " + _numbers(K),
            f"D_{cam}: 0 0 0 0 0",
            f"R_{cam}: 1 0 0 0 1 0 0 0 1",
            f"T_{cam}: {-STEREO_BASELINE if cam in ('01', '03') else 0.0:.6e} 0 0",
            f"S_rect_{cam}: {camera.width:.6e} {camera.height:.6e}",
            f"R_rect_{cam}: 1 0 0 0 1 0 0 0 1",
            f"P_rect_{cam}: " + _numbers(P),
        ]
    _write_text(os.path.join(date_dir, "calib_cam_to_cam.txt"), lines)
    for name, T in (("calib_velo_to_cam.txt", velo_to_cam()), ("calib_imu_to_velo.txt", imu_to_velo())):
        _write_text(
            os.path.join(date_dir, name),
            ["calib_time: 01-Jan-2000 00:00:00", "R: " + _numbers(T[:3, :3]), "T: " + _numbers(T[:3, 3])],
        )


def _numbers(array: np.ndarray) -> str:
    return " ".join(f"{v:.12e}" for v in np.asarray(array, dtype=np.float64).reshape(-1))


def _write_text(path: str, lines: Sequence[str]) -> None:
    with atomic_write(path) as tmp, open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")


def _save_image(array: np.ndarray, path: str, **kwargs) -> None:
    with atomic_write(path) as tmp:
        Image.fromarray(array).save(tmp, **kwargs)


# --- writing ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    """What to write and at which size."""

    out: str
    camera: Camera
    img_ext: str = "png"
    supersample: int = 2
    azimuth_step: float = 0.4
    jpeg_quality: int = 92
    date: str = DATE


def frame_job(args: tuple) -> None:
    """Render and write every file of one frame (run in a worker process)."""
    settings, drive, index = args
    s = settings
    folder = os.path.join(s.out, s.date, drive.name)
    pose = drive.poses[index]
    right = pose.copy()
    right[:3, 3] += pose[:3, :3] @ np.array([STEREO_BASELINE, 0, 0])
    name = f"{index:010d}"
    for cam, cam_pose in (("02", pose), ("03", right)):
        rgb, depth, label = render(s.camera, cam_pose, drive.world, s.supersample)
        image_dir = os.path.join(folder, f"image_{cam}", "data")
        depth_dir = os.path.join(folder, "proj_depth", "groundtruth", f"image_{cam}")
        label_dir = os.path.join(s.out, "segmentation", s.date, drive.name, f"image_{cam}")
        for d in (image_dir, depth_dir, label_dir):
            os.makedirs(d, exist_ok=True)
        extra = {"quality": s.jpeg_quality} if s.img_ext == "jpg" else {}
        _save_image(rgb, os.path.join(image_dir, f"{name}.{s.img_ext}"), **extra)
        encoded = np.clip(np.round(depth * DEPTH_PNG_SCALE), 0, np.iinfo(np.uint16).max).astype(np.uint16)
        _save_image(encoded, os.path.join(depth_dir, f"{name}.png"))
        save_label_png(os.path.join(label_dir, f"{name}.png"), label)
    with atomic_write(os.path.join(folder, "velodyne_points", "data", f"{name}.bin")) as tmp:
        velodyne_scan(pose, drive.world, s.azimuth_step).tofile(tmp)


def write_oxts(settings: Settings, drive: Drive) -> None:
    """oxts/data/<frame>.txt packets and the timestamps of a drive."""
    oxts_dir = os.path.join(settings.out, settings.date, drive.name, "oxts", "data")
    os.makedirs(oxts_dir, exist_ok=True)
    for i, packet in enumerate(oxts_packets(drive.poses)):
        values = [repr(float(v)) for v in packet[:25]] + [str(int(v)) for v in packet[25:]]
        _write_text(os.path.join(oxts_dir, f"{i:010d}.txt"), [" ".join(values)])
    stamps = [f"2000-01-01 00:00:{i / FRAME_RATE:012.9f}" for i in range(len(drive.poses))]
    for sub in ("oxts", "image_02", "image_03", "velodyne_points"):
        _write_text(os.path.join(settings.out, settings.date, drive.name, sub, "timestamps.txt"), stamps)


def write_splits(
    settings: Settings, drives: Sequence[Drive], num_test_drives: int, test_stride: int, val_stride: int
) -> str:
    """Training, validation and Eigen-style test lists (held-out drives); returns the split folder."""
    split_dir = os.path.join(settings.out, "splits", "synthetic")
    os.makedirs(split_dir, exist_ok=True)
    train, val, test = [], [], []
    for k, drive in enumerate(drives):
        folder = f"{settings.date}/{drive.name}"
        inner = range(1, len(drive.poses) - 1)  # frames with both temporal neighbours
        if k >= len(drives) - num_test_drives:
            test += [f"{folder} {i} l" for i in inner if i % test_stride == 0]
            continue
        for i in inner:
            (val if i % val_stride == 0 else train).append(f"{folder} {i} {'l' if i % 2 else 'r'}")
    if not val:
        logger.warning(
            "no validation frame (every --val_stride %d-th frame of a training drive, none of the %d "
            "frames): train on these scenes with --no_validation, or give a smaller --val_stride",
            val_stride,
            len(drives[0].poses),
        )
    for name, lines in (("train_files.txt", train), ("val_files.txt", val), ("test_files.txt", test)):
        _write_text(os.path.join(split_dir, name), lines)
    return split_dir


def generate(
    out: str,
    num_drives: int = 4,
    frames_per_drive: int = 100,
    scale: float = 0.25,
    seed: int = 0,
    img_ext: str = "png",
    supersample: int = 2,
    azimuth_step: float = 0.4,
    num_test_drives: int = 1,
    test_stride: int = 4,
    val_stride: int = 10,
    workers: int | None = None,
    metres_per_frame: float = 1.0,
) -> str:
    """Write a synthetic KITTI folder; return its split folder (train/val/test lists, gt_depths.npz)."""
    if not 1 <= num_test_drives < num_drives:
        raise InputError(
            f"--test_drives must be between 1 and --drives - 1 ({num_drives - 1}), got {num_test_drives}"
        )
    if frames_per_drive < 3:
        raise InputError(
            f"--frames must be at least 3 (a frame needs both neighbours), got {frames_per_drive}"
        )
    camera = Camera(max(32, round(KITTI_WIDTH * scale)), max(16, round(KITTI_HEIGHT * scale)))
    settings = Settings(out, camera, img_ext, supersample, azimuth_step)
    write_calibration(os.path.join(out, settings.date), camera)
    drives = [
        build_drive(
            f"{settings.date}_drive_{k + 1:04d}_sync", frames_per_drive, seed * 1000 + k, metres_per_frame
        )
        for k in range(num_drives)
    ]
    for drive in drives:
        write_oxts(settings, drive)
    jobs = [(settings, drive, i) for drive in drives for i in range(len(drive.poses))]
    workers = workers or os.cpu_count() or 1
    desc = f"rendering {num_drives} drives at {camera.width}x{camera.height}"
    if workers == 1:
        for job in tqdm(jobs, desc=desc, unit="frame"):
            frame_job(job)
    else:
        with ProcessPoolExecutor(workers) as pool:
            list(tqdm(pool.map(frame_job, jobs, chunksize=4), total=len(jobs), desc=desc, unit="frame"))
    split_dir = write_splits(settings, drives, num_test_drives, test_stride, val_stride)
    export(
        out,
        "eigen_benchmark",
        os.path.join(split_dir, "test_files.txt"),
        os.path.join(split_dir, "gt_depths.npz"),
    )
    return split_dir
