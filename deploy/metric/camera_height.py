"""Metric scale of a monocular depth map from the camera's height above the road.

The road pixels (the segmentation head's, or ``lowest_band_mask``) back-projected with the intrinsics lie on
a plane whose distance from the camera is the camera height in the depth map's units: ``scale =
camera_height / distance``. ``estimate_scale`` fits it (RANSAC, then total least squares; only the distance,
``fit_ground_distance``, where pitch and roll are given) or raises ``GroundNotVisible`` with the reason;
``GroundSettings.frame_scale`` returns a ``ScaleRefusal`` instead; ``ScaleSmoother`` smooths a video's
scales. docs/metric_depth.md gives the whole account and the measurements."""

from __future__ import annotations

import argparse
import math
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch

import layers
import utils
from datasets.camera import camera_height_error
from datasets.cityscapes import CLASS_NAMES

# Which classes are ground: road alone by default; sidewalks stand a kerb (10-15 cm) above the road in
# most streets, which would bias the plane, and terrain is rarely flat. Both can be added.
GROUND_CLASSES = ("road", "sidewalk", "terrain")
DEFAULT_GROUND_CLASSES = ("road",)
GROUND_SOURCES = ("segmentation", "lowest_band")  # where ground pixels come from (--ground_from)
# Refusals: fewer ground pixels than this (at the depth map's size; three parameters are fitted, and a
# few hundred pixels of road is a strip a few pixels high at 96x320), fewer than half of them on the plane,
# a plane tilted more than 30 degrees from the camera's vertical (a dashcam's pitch and roll are a few
# degrees; a phone held by hand maybe 20).
MIN_GROUND_PIXELS = 200
MIN_INLIER_SHARE = 0.5
MAX_TILT_DEGREES = 30.0
# Inliers: off the plane by less than 10 % of its distance (a 10 % depth error on the road; a car's
# side rises a camera height and more above it).
INLIER_TOLERANCE = 0.1
# RANSAC: with half the pixels on the plane a three-point sample is all-inlier with probability 1/8;
# 200 samples all miss with probability (7/8)^200 < 1e-11. Scoring uses at most 4000 points (a
# fixed-seed subsample); the share of inliers is then counted over every ground pixel.
RANSAC_ITERATIONS = 200
RANSAC_SEED = 0
MAX_SCORED_POINTS = 4000
REFIT_ROUNDS = 2  # least-squares refits over the inliers, each with the inliers of the previous plane
DEGENERATE_SAMPLE = 1e-9  # |cross product| below this share of the sides' product: collinear sample
# Pixels whose disparity sits in the top 5 % of the model's range (its sigmoid above 0.95) are left out: a
# depth at the range's near end only says "nearer than min_depth" (e.g. the near road of the stereo demo's
# --min_depth 2, which saturates there).
SATURATED_SIGMOID = 0.95
# The fallback ground: the bottom fifth of the rows, the middle half of the columns.
LOWEST_BAND_ROWS = 0.2
LOWEST_BAND_COLUMNS = 0.5
# A given orientation fixes the plane, so the inlier count alone cannot tell a road from a picture at one
# depth (a blank or noisy picture's flat prediction: 55-90 % of the lowest band lies within 10 % of some
# height). On a road, a pixel's depth is the plane's along its ray (distance / (-normal . ray)), so the log
# of the ground pixels' depths against the log of 1 / (-normal . ray) rises with a slope near 1 (measured
# on hand-made planes pitched 0-25 degrees: 1.0 exact, 0.8-1.1 with a fifth of the pixels 30-200 % off;
# a flat prediction: 0, with 5-15 % noise around one depth: within 0.05 of 0). Refused below half of it.
MIN_DEPTH_SLOPE = 0.5
# Videos: the running median's window (frames; 15 frames are 1.5 s at KITTI's 10 fps), odd: centred on
# each frame.
DEFAULT_SMOOTHING_WINDOW = 15
UP = np.array([0.0, -1.0, 0.0])  # the camera's up direction (camera axes: x right, y down, z forward)


class GroundNotVisible(utils.InputError):
    """The road is not visible enough to fit the ground plane: the message says why."""


@dataclass(frozen=True)
class ScaleEstimate:
    """A fitted ground plane and the scale it gives: metric depth = ``scale`` x the depth map's values.

    The plane is {X : normal . X + distance = 0} in camera coordinates (x right, y down, z forward)
    and the depth map's units, ``normal`` a unit vector pointing up from the road (towards the
    camera), so ``distance`` > 0 is the camera's height above it in those units.
    """

    scale: float
    camera_height: float  # metres, as given
    normal: tuple[float, float, float]
    distance: float
    inlier_share: float  # of the ground pixels used, within INLIER_TOLERANCE of the plane
    pixels_used: int  # ground pixels with a valid depth
    inliers: int
    ground: str  # where the ground pixels came from: the classes, or "lowest band"
    orientation: str = "fitted"  # the plane's orientation: "fitted" to the ground, or "given" (pitch, roll)

    @property
    def pitch_degrees(self) -> float:
        """How far the camera looks down towards the road (negative: up)."""
        return math.degrees(math.asin(float(np.clip(-self.normal[2], -1.0, 1.0))))

    @property
    def roll_degrees(self) -> float:
        """How far the camera's right side is lower than its left (negative: higher)."""
        return math.degrees(math.asin(float(np.clip(-self.normal[0], -1.0, 1.0))))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the fields and the camera's pitch and roll above the road."""
        data = asdict(self)
        data["normal"] = list(self.normal)
        data.update(pitch_degrees=self.pitch_degrees, roll_degrees=self.roll_degrees)
        return data


@dataclass(frozen=True)
class ScaleRefusal:
    """Why a frame has no scale from its ground (``GroundNotVisible``'s one line), as a value: where the
    other frames go on without it (a video, a test split)."""

    reason: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, in the place of a ScaleEstimate's: no scale, and why."""
        return {"scale": None, "reason": self.reason}


def check_camera_height(value: float, what: str = "--camera_height") -> float:
    """A camera height in metres must be one that cameras have (CAMERA_HEIGHT_RANGE; InputError naming
    ``what``)."""
    try:
        height = float(value)
    except (TypeError, ValueError):
        raise utils.InputError(f"{what} must be a height in metres, got {value!r}") from None
    problem = camera_height_error(height)
    if problem:
        raise utils.InputError(f"{what} {problem}")
    return height


def camera_height_option(value: str) -> float:
    """argparse type of every command's --camera_height: metres within CAMERA_HEIGHT_RANGE."""
    try:
        height = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a height in metres, got {value!r}") from None
    problem = camera_height_error(height)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return height


def class_ids(names: Sequence[str]) -> tuple[int, ...]:
    """Train ids (datasets.cityscapes order) of ground class names."""
    return tuple(CLASS_NAMES.index(name) for name in names)


def ground_mask_from_labels(
    train_ids: np.ndarray, classes: Sequence[str] = DEFAULT_GROUND_CLASSES
) -> np.ndarray:
    """Pixels (H, W) whose train id is one of the ground ``classes``."""
    return np.isin(np.asarray(train_ids), class_ids(classes))


def ground_mask_from_logits(
    seg_logits: np.ndarray, classes: Sequence[str] = DEFAULT_GROUND_CLASSES
) -> np.ndarray:
    """Pixels (H, W) whose most likely class (logits (C, H, W)) is a ground class."""
    return ground_mask_from_labels(np.asarray(seg_logits).argmax(0), classes)


def lowest_band_mask(
    height: int, width: int, rows: float = LOWEST_BAND_ROWS, columns: float = LOWEST_BAND_COLUMNS
) -> np.ndarray:
    """The fallback ground (H, W): the bottom ``rows`` share of the image, its middle ``columns`` share."""
    mask = np.zeros((height, width), dtype=bool)
    top = height - max(1, round(rows * height))
    side = round((1 - columns) / 2 * width)
    mask[top:, side : width - side] = True
    return mask


def intrinsics_matrix(
    fx: float, fy: float, cx: float, cy: float, width: int, height: int, new_width: int, new_height: int
) -> np.ndarray:
    """3x3 intrinsics of a ``width`` x ``height`` frame resized to ``new_width`` x ``new_height``."""
    sx, sy = new_width / width, new_height / height
    return np.array([[fx * sx, 0.0, cx * sx], [0.0, fy * sy, cy * sy], [0.0, 0.0, 1.0]])


def back_project(depth: np.ndarray, K: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Camera-frame points (N, 3), float64, of the masked pixels of a depth map (H, W) with intrinsics K
    (3x3 or 4x4, pixels of the depth map): layers.backproject_depth's geometry."""
    height, width = depth.shape
    inv_K = torch.eye(4, dtype=torch.float64)
    inv_K[:3, :3] = torch.linalg.inv(torch.as_tensor(np.asarray(K, dtype=np.float64)[:3, :3]))
    depth_t = torch.as_tensor(np.asarray(depth, dtype=np.float64)).reshape(1, 1, height, width)
    points = layers.backproject_depth(depth_t, inv_K[None])[0, :3].T.numpy()
    return points[np.asarray(mask, dtype=bool).reshape(-1)]


def _oriented(normals: np.ndarray, distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Planes (n, d) with n pointing up (n . UP >= 0): flips both where needed."""
    sign = np.where(normals @ UP < 0, -1.0, 1.0)
    return normals * sign[..., None], distances * sign


def plane_through(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Total least squares: the plane (unit normal pointing up, distance) closest to points (N, 3)."""
    centroid = points.mean(0)
    normal = np.linalg.svd(points - centroid, full_matrices=False)[2][-1]
    normal, distance = _oriented(normal[None], np.array([-normal @ centroid]))
    return normal[0], float(distance[0])


def tilt_degrees(normal: np.ndarray) -> np.ndarray:
    """Angle of unit normals (..., 3) pointing up from the camera's vertical (-y)."""
    return np.degrees(np.arccos(np.clip(normal @ UP, -1.0, 1.0)))


def ransac_plane(
    points: np.ndarray,
    tolerance: float = INLIER_TOLERANCE,
    max_tilt_degrees: float = MAX_TILT_DEGREES,
    iterations: int = RANSAC_ITERATIONS,
    seed: int = RANSAC_SEED,
    max_scored: int = MAX_SCORED_POINTS,
) -> tuple[np.ndarray, float] | None:
    """Among three-point planes below the camera tilted at most ``max_tilt_degrees``, the one (up normal,
    distance) with the most points within ``tolerance`` x distance of it; None when no sample gives one."""
    rng = np.random.default_rng(seed)
    scored = (
        points if len(points) <= max_scored else points[rng.choice(len(points), max_scored, replace=False)]
    )
    a, b, c = (points[i] for i in rng.integers(0, len(points), (3, iterations)))
    u, v = b - a, c - a
    cross = np.cross(u, v)
    size = np.linalg.norm(cross, axis=1)
    valid = size > DEGENERATE_SAMPLE * np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1)
    normals = cross[valid] / size[valid, None]
    normals, distances = _oriented(normals, -np.einsum("ij,ij->i", normals, a[valid]))
    # a plane the camera stands above: on the side its up normal points to, roughly level
    plausible = (distances > 0) & (tilt_degrees(normals) <= max_tilt_degrees)
    normals, distances = normals[plausible], distances[plausible]
    if len(distances) == 0:
        return None
    counts = (np.abs(scored @ normals.T + distances) < tolerance * distances).sum(0)
    best = int(np.argmax(counts))
    return normals[best], float(distances[best])


def fit_ground_plane(
    points: np.ndarray,
    tolerance: float = INLIER_TOLERANCE,
    max_tilt_degrees: float = MAX_TILT_DEGREES,
    seed: int = RANSAC_SEED,
) -> tuple[np.ndarray, float, np.ndarray]:
    """Robust plane of points (N, 3): RANSAC, then least-squares refits over the inliers.
    Returns (unit normal pointing up, distance of the camera from it, inlier mask (N,))."""
    found = ransac_plane(points, tolerance, max_tilt_degrees, seed=seed)
    if found is None:
        raise GroundNotVisible(
            f"the ground pixels span no plane below the camera within {max_tilt_degrees:g} degrees of level"
        )
    normal, distance = found
    inliers = np.abs(points @ normal + distance) < tolerance * distance
    for _ in range(REFIT_ROUNDS):
        if inliers.sum() < 3:
            break
        normal, distance = plane_through(points[inliers])
        inliers = np.abs(points @ normal + distance) < tolerance * abs(distance)
    return normal, distance, inliers


def road_normal(pitch_degrees: float, roll_degrees: float = 0.0) -> np.ndarray:
    """The road's unit normal (pointing up) for a camera pitched down by ``pitch_degrees`` with its right
    side ``roll_degrees`` low: the inverse of ScaleEstimate's pitch_degrees and roll_degrees."""
    nx, nz = -math.sin(math.radians(roll_degrees)), -math.sin(math.radians(pitch_degrees))
    return np.array([nx, -math.sqrt(1.0 - nx * nx - nz * nz), nz])


def fit_ground_distance(
    points: np.ndarray,
    normal: np.ndarray,
    tolerance: float = INLIER_TOLERANCE,
    iterations: int = RANSAC_ITERATIONS,
    seed: int = RANSAC_SEED,
    max_scored: int = MAX_SCORED_POINTS,
) -> tuple[float, np.ndarray]:
    """The camera's distance from a ground plane of known orientation (unit ``normal`` pointing up) through
    points (N, 3), robustly: among the heights below the camera of a fixed-seed sample of the points, the one
    with the most points within ``tolerance`` x it, then the mean over its inliers. Returns (distance, inlier
    mask (N,))."""
    heights = -(points @ normal)  # each point's distance below the camera along the normal
    rng = np.random.default_rng(seed)
    scored = (
        heights
        if len(heights) <= max_scored
        else heights[rng.choice(len(heights), max_scored, replace=False)]
    )
    candidates = heights[rng.integers(0, len(heights), iterations)]
    candidates = candidates[candidates > 0]
    if len(candidates) == 0:
        raise GroundNotVisible("the ground pixels lie above the camera for the given pitch and roll")
    counts = (np.abs(scored[:, None] - candidates[None]) < tolerance * candidates).sum(0)
    distance = float(candidates[int(np.argmax(counts))])
    inliers = np.abs(heights - distance) < tolerance * distance
    for _ in range(REFIT_ROUNDS):
        distance = float(heights[inliers].mean())  # the least-squares distance for a fixed normal
        inliers = np.abs(heights - distance) < tolerance * distance
    return distance, inliers


def depth_slope(points: np.ndarray, normal: np.ndarray) -> float:
    """How the depths of points (N, 3) follow a plane of unit ``normal`` (pointing up): the least-squares
    slope of their log depth against the log of the plane's depth along their rays, 1 / (-normal . ray) up to
    the plane's distance (1 on the plane, 0 for points at one depth or rays that all meet it at one); points
    whose rays miss the plane are left out."""
    below = -(points @ normal) > 0  # rays that meet the plane at all
    depth = points[below, 2]
    plane = -np.log(-(points[below] @ normal) / depth)  # the ray scaled to depth 1
    spread = plane - plane.mean()
    variance = float(spread @ spread)
    if not variance > 0:
        return 0.0
    return float(spread @ (np.log(depth) - np.log(depth).mean()) / variance)


def estimate_scale(
    depth: np.ndarray,
    K: np.ndarray,
    ground: np.ndarray,
    camera_height: float,
    ground_name: str = "road",
    min_pixels: int = MIN_GROUND_PIXELS,
    min_inlier_share: float = MIN_INLIER_SHARE,
    max_tilt_degrees: float = MAX_TILT_DEGREES,
    tolerance: float = INLIER_TOLERANCE,
    seed: int = RANSAC_SEED,
    normal: np.ndarray | None = None,
) -> ScaleEstimate:
    """Metric scale of a depth map (H, W) from its ground pixels (mask (H, W)), intrinsics K in pixels of the
    depth map and the camera's height in metres (``normal``: the road's known orientation, else fitted);
    GroundNotVisible (with the reason) when the ground does not allow it."""
    camera_height = check_camera_height(camera_height, "the camera height")
    depth = np.asarray(depth, dtype=np.float64)
    ground = np.asarray(ground, dtype=bool)
    if ground.shape != depth.shape:
        raise utils.InputError(f"ground mask of shape {ground.shape} for a depth map of shape {depth.shape}")
    usable = ground & np.isfinite(depth) & (depth > 0)
    count = int(usable.sum())
    if count < min_pixels:
        raise GroundNotVisible(
            f"{count} {ground_name} pixels with a depth, fewer than the {min_pixels} needed to fit "
            f"the ground plane"
        )
    points = back_project(depth, K, usable)
    fitted = normal is None
    if fitted:
        normal, distance, inliers = fit_ground_plane(points, tolerance, max_tilt_degrees, seed)
    else:
        distance, inliers = fit_ground_distance(points, normal, tolerance, seed=seed)
    share = float(inliers.mean())
    if share < min_inlier_share:
        raise GroundNotVisible(
            f"only {share:.0%} of {count} {ground_name} pixels lie on one plane (at least "
            f"{min_inlier_share:.0%} needed)"
        )
    if distance <= 0:
        raise GroundNotVisible(f"the fitted {ground_name} plane passes above the camera")
    if not fitted:  # the orientation given: the ground's depths must follow the plane, not stand at one
        slope = depth_slope(points, normal)
        if slope < MIN_DEPTH_SLOPE:
            raise GroundNotVisible(
                f"the depths of the {ground_name} pixels do not follow the plane of the given pitch and "
                f"roll (slope {slope:.2f} of their log depth against the plane's, at least "
                f"{MIN_DEPTH_SLOPE:g} needed; a road gives 1): a picture at one depth, not a road"
            )
    tilt = float(tilt_degrees(normal))
    if fitted and tilt > max_tilt_degrees:
        raise GroundNotVisible(
            f"the fitted {ground_name} plane is tilted {tilt:.0f} degrees from the camera's "
            f"vertical (at most {max_tilt_degrees:g}): not a road below the camera"
        )
    scale = camera_height / distance
    if not (math.isfinite(scale) and scale > 0):
        raise GroundNotVisible(f"the {ground_name} plane gives no finite scale (distance {distance:g})")
    return ScaleEstimate(
        scale,
        camera_height,
        tuple(float(x) for x in normal),
        distance,
        share,
        count,
        int(inliers.sum()),
        ground_name,
        "fitted" if fitted else "given",
    )


def saturated(disp: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """Pixels whose scaled disparity (in [1/max_depth, 1/min_depth]) comes from a sigmoid above
    SATURATED_SIGMOID: at the near end of the model's depth range."""
    low, high = 1.0 / max_depth, 1.0 / min_depth
    return np.asarray(disp) > low + SATURATED_SIGMOID * (high - low)


@dataclass(frozen=True)
class GroundSettings:
    """How ground pixels are chosen and the camera height: what predict.py and evaluate_depth.py share."""

    camera_height: float
    source: str = GROUND_SOURCES[0]
    classes: tuple[str, ...] = DEFAULT_GROUND_CLASSES
    # the camera's known (pitch, roll) in degrees; None: the orientation is fitted with the distance
    orientation: tuple[float, float] | None = None

    def describe_orientation(self) -> str | dict[str, float]:
        """For the JSON records: "fitted", or the pitch and roll given."""
        if self.orientation is None:
            return "fitted"
        return {"pitch_degrees": self.orientation[0], "roll_degrees": self.orientation[1]}

    @property
    def name(self) -> str:
        return "lowest band" if self.source == "lowest_band" else "+".join(self.classes)

    def mask(self, seg_logits: np.ndarray | None, height: int, width: int) -> np.ndarray:
        """Ground pixels (height, width) of a prediction (``seg_logits`` (C, H, W), None without a head)."""
        if self.source == "lowest_band":
            return lowest_band_mask(height, width)
        if seg_logits is None:
            raise utils.InputError(
                "the model has no segmentation head: give --ground_from lowest_band to take the "
                "bottom of the image as road, or use a model with one"
            )
        return ground_mask_from_logits(seg_logits, self.classes)

    def ground(
        self, disp: np.ndarray, seg_logits: np.ndarray | None, depth_range: tuple[float, float] | None = None
    ) -> np.ndarray:
        """The ground pixels (H, W) an estimate uses: the mask, less the saturated near end of ``depth_range``
        (the model's (min_depth, max_depth))."""
        ground = self.mask(seg_logits, *np.shape(disp))
        if depth_range is not None:
            ground = ground & ~saturated(disp, *depth_range)
        return ground

    def estimate(
        self,
        disp: np.ndarray,
        seg_logits: np.ndarray | None,
        K: np.ndarray,
        camera_height: float | None = None,
        depth_range: tuple[float, float] | None = None,
        ground: np.ndarray | None = None,
    ) -> ScaleEstimate:
        """The scale that turns 1 / ``disp`` (H, W) into metres (raises GroundNotVisible); ``depth_range``:
        the model's (min_depth, max_depth), whose saturated near end is left out; ``ground``: the mask of
        ``self.ground`` when the caller has it already."""
        disp = np.asarray(disp, dtype=np.float64)
        if ground is None:
            ground = self.ground(disp, seg_logits, depth_range)
        normal = None if self.orientation is None else road_normal(*self.orientation)
        return estimate_scale(
            1.0 / disp, K, ground, camera_height or self.camera_height, self.name, normal=normal
        )

    def frame_scale(
        self, disp: np.ndarray, seg_logits: np.ndarray | None, K: np.ndarray, **options: Any
    ) -> ScaleEstimate | ScaleRefusal:
        """``estimate``'s scale of one frame of many (``options``: its others, by name), or the ScaleRefusal
        that says why the frame has none."""
        try:
            return self.estimate(disp, seg_logits, K, **options)
        except GroundNotVisible as err:
            return ScaleRefusal(str(err))


def add_ground_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """--ground_from, --ground_classes, --camera_pitch and --camera_roll (the camera height option is each
    command's own). Their defaults are None so that ``check_dependent_options`` can tell what was given."""
    parser.add_argument(
        "--ground_from",
        default=None,
        choices=GROUND_SOURCES,
        help="ground pixels for the camera-height scale: the model's segmentation (road; the default), or, "
        "for models without a segmentation head, the bottom fifth of the image's middle half "
        "(assumes the road is there: no bonnet, no car right ahead)",
    )
    parser.add_argument(
        "--ground_classes",
        nargs="+",
        default=None,
        choices=GROUND_CLASSES,
        help=f"segmentation classes taken as ground (default: {' '.join(DEFAULT_GROUND_CLASSES)}; "
        f"sidewalks usually stand a kerb above the road)",
    )
    for name, what in (("pitch", "looks down at the road"), ("roll", "has its right side low")):
        parser.add_argument(
            f"--camera_{name}",
            type=tilt_angle,
            default=None,
            metavar="DEGREES",
            help=f"the camera's known {name} above the road (how far it {what}; negative: the other "
            f"way), for a fixed mount: the ground plane's orientation is then taken from --camera_pitch "
            f"and --camera_roll (the one not given: 0; together within {MAX_TILT_DEGREES:g} degrees of "
            f"level) and only its distance is fitted; default: the orientation is fitted to the road too",
        )


def tilt_angle(value: str) -> float:
    """argparse type of --camera_pitch and --camera_roll: finite degrees within MAX_TILT_DEGREES of level."""
    try:
        angle = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of degrees, got {value!r}") from None
    if not math.isfinite(angle) or abs(angle) > MAX_TILT_DEGREES:
        raise argparse.ArgumentTypeError(
            f"must be between -{MAX_TILT_DEGREES:g} and {MAX_TILT_DEGREES:g} degrees, got {value}"
        )
    return angle


def combined_tilt_degrees(pitch_degrees: float, roll_degrees: float) -> float:
    """How far a camera with this pitch and roll tilts from level: the angle of ``road_normal`` from up."""
    nx, nz = math.sin(math.radians(roll_degrees)), math.sin(math.radians(pitch_degrees))
    return math.degrees(math.asin(min(1.0, math.sqrt(nx * nx + nz * nz))))


# Options that act only with another (declared once; each command refuses them where they cannot act):
# option -> what it needs. "metric": the camera-height scale is on (predict.py --camera_height,
# evaluate_depth.py --scaling camera_height); "segmentation": ground from the segmentation (--ground_from
# segmentation, the default).
OPTION_NEEDS = {
    "camera_pitch": ("metric",),
    "camera_roll": ("metric",),
    "ground_from": ("metric",),
    "ground_classes": ("metric", "segmentation"),
    "intrinsics": ("metric",),
    "scale_window": ("metric",),
}


def check_dependent_options(opts: argparse.Namespace, metric_on: bool, metric_option: str) -> None:
    """Refuse (InputError, one line) an option of OPTION_NEEDS given where what it needs is off
    (``metric_on``: the camera-height scale is on, ``metric_option`` what turns it on), and a pitch and roll
    that together tilt the camera beyond MAX_TILT_DEGREES. Options a command lacks are skipped."""
    given = [name for name in OPTION_NEEDS if getattr(opts, name, None) is not None]
    for name in given:
        if "metric" in OPTION_NEEDS[name] and not metric_on:
            raise utils.InputError(
                f"--{name} acts only with {metric_option} (the camera-height scale): give it, or "
                f"drop --{name}"
            )
        if "segmentation" in OPTION_NEEDS[name] and opts.ground_from == "lowest_band":
            raise utils.InputError(
                f"--{name} picks segmentation classes, and --ground_from lowest_band takes no segmentation: "
                f"drop one of them"
            )
    pitch, roll = getattr(opts, "camera_pitch", None), getattr(opts, "camera_roll", None)
    if pitch is not None and roll is not None:
        tilt = combined_tilt_degrees(pitch, roll)
        if tilt > MAX_TILT_DEGREES:
            raise utils.InputError(
                f"--camera_pitch {pitch:g} and --camera_roll {roll:g} tilt the camera {tilt:.1f} degrees "
                f"from level together (at most {MAX_TILT_DEGREES:g}, as for either alone): no road "
                f"camera's mount"
            )


def ground_settings(opts: argparse.Namespace, camera_height: float) -> GroundSettings:
    """GroundSettings from add_ground_options' options (the defaults where not given)."""
    known = opts.camera_pitch is not None or opts.camera_roll is not None
    orientation = (opts.camera_pitch or 0.0, opts.camera_roll or 0.0) if known else None
    return GroundSettings(
        camera_height,
        opts.ground_from or GROUND_SOURCES[0],
        tuple(opts.ground_classes or DEFAULT_GROUND_CLASSES),
        orientation,
    )


@dataclass
class SmoothedScale:
    """A frame's smoothed scale (None before any estimate), how many estimates its window held (0: kept)."""

    scale: float | None
    estimates_in_window: int


class ScaleSmoother:
    """Per-frame scales of a video smoothed by the median over a centred window of ``window`` frames.

    ``push(item, scale)`` takes each frame in order (``scale`` None where the frame has no estimate) and
    returns the frames whose smoothed scale is now known (``window // 2`` frames later), ``flush()``
    the rest at the end. Frames without an estimate in their window keep the previous frame's scale;
    frames before the first estimate that their window reaches get None.
    """

    def __init__(self, window: int = DEFAULT_SMOOTHING_WINDOW) -> None:
        if window < 1 or window % 2 == 0:
            raise utils.InputError(
                f"the smoothing window must be an odd number of frames (centred on each), got {window}"
            )
        self.half = window // 2
        self.scales: list[float | None] = []  # every frame's (a float each: an hour at 30 fps is 108000)
        self.pending: deque[Any] = deque()
        self.first = 0  # index of the oldest pending frame
        self.last: float | None = None

    def _resolve(self) -> tuple[Any, SmoothedScale]:
        i = self.first
        window = [s for s in self.scales[max(0, i - self.half) : i + self.half + 1] if s is not None]
        if window:
            self.last = float(np.median(window))
        self.first += 1
        return self.pending.popleft(), SmoothedScale(self.last, len(window))

    def push(self, item: Any, scale: float | None) -> list[tuple[Any, SmoothedScale]]:
        """Add the next frame; return the frames now resolved, in order."""
        self.scales.append(scale)
        self.pending.append(item)
        ready = []
        while self.pending and len(self.scales) - 1 >= self.first + self.half:
            ready.append(self._resolve())
        return ready

    def flush(self) -> list[tuple[Any, SmoothedScale]]:
        """The remaining frames, at the end of the video."""
        return [self._resolve() for _ in range(len(self.pending))]


def smoothing_window(value: str) -> int:
    """argparse type of --scale_window: an odd number of frames (the window is centred on each frame)."""
    try:
        window = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of frames, got {value!r}") from None
    if window < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 frame, got {value}")
    if window % 2 == 0:
        raise argparse.ArgumentTypeError(
            f"must be an odd number of frames (a window centred on each frame: {window} would take "
            f"{window + 1}), got {value}"
        )
    return window


def smoothed(
    items: Iterator[tuple[Any, float | None]], window: int = DEFAULT_SMOOTHING_WINDOW
) -> Iterator[tuple[Any, SmoothedScale]]:
    """``ScaleSmoother`` over a stream of (item, scale or None)."""
    smoother = ScaleSmoother(window)
    for item, scale in items:
        yield from smoother.push(item, scale)
    yield from smoother.flush()
