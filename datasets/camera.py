"""A camera's pinhole intrinsics (``intrinsics.json``): reading, checking, and following a crop and resize.

``intrinsics.json`` holds ``fx``, ``fy``, ``cx``, ``cy`` in pixels of the stored frames, or ``K`` (a
3x3 or 3x4 matrix; a bare matrix also works), and optionally ``width`` and ``height`` (the frame size
they are for: checked), ``stereo`` (``{"folder": "right", "baseline": 0.54}``, metres) and
``guessed`` (true when they come from a field of view, not a calibration) and ``camera_height``
(metres above the road: ``evaluate_depth.py --scaling camera_height``). ``.yaml``/``.yml`` files
hold the same keys (needs PyYAML). The folders dataset, video import and predict.py's metric depth
read their cameras here.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, replace

import numpy as np

from utils import DependencyError, InputError

INTRINSICS_NAMES = ("intrinsics.json", "intrinsics.yaml", "intrinsics.yml")  # looked up in this order
PYYAML_MISSING = "intrinsics in YAML need PyYAML: pip install pyyaml (or write them as intrinsics.json)"
# plausibility of intrinsics (warnings, see camera_warnings): the principal point within 10 % of the
# image centre, a horizontal field of view between about 20 and 140 degrees, square pixels within 5 %
CENTRE_TOLERANCE = 0.1
FX_RANGE = (0.18, 2.8)  # fx / W: 2 atan(1 / (2 fx/W)) from about 140 down to 20 degrees
ASPECT_TOLERANCE = 0.05
# what a pinhole camera can be at all (refused outside, see check_camera_fits): fx / W from 0.01 (a field
# of view of about 178 degrees) to 100 (about 0.6 degrees), and the same for fy / H
FOCAL_LIMITS = (0.01, 100.0)
# Camera heights above the road that cameras have, in metres: from 0.1 (a small robot's, a phone on the
# ground) to 10 (a lorry's roof, a camera on a pole). Below, the road fills no view a depth model was
# trained on; above, it is a survey, not a road camera. A value in millimetres (1650) lies far above.
CAMERA_HEIGHT_RANGE = (0.1, 10.0)
MILLIMETRES_PER_METRE = 1000.0


@dataclass(frozen=True)
class Camera:
    """A sequence's pinhole intrinsics in pixels of its frames, and its optional second camera."""

    fx: float
    fy: float
    cx: float
    cy: float
    source: str  # the file they come from
    width: int | None = None  # the frame size they are for, when the file says
    height: int | None = None
    stereo_folder: str | None = None  # second camera's frames, relative to the sequence folder
    baseline: float | None = None  # metres between the two cameras
    guessed: bool = False  # from a field of view, not a calibration
    camera_height: float | None = None  # metres above the road (metric depth: docs/metric_depth.md)

    def normalised(self, width: int, height: int) -> np.ndarray:
        """4x4 intrinsics normalised by the frame size (Monodepth2's convention for KITTI_K)."""
        return np.array(
            [
                [self.fx / width, 0, self.cx / width, 0],
                [0, self.fy / height, self.cy / height, 0],
                [0, 0, 1, 0],
                [0, 0, 0, 1],
            ],
            dtype=np.float32,
        )

    def as_dict(self) -> dict:
        """The JSON form that ``read_camera`` reads back."""
        data = {"fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy}
        if self.width is not None:
            data.update(width=self.width, height=self.height)
        if self.stereo_folder is not None:
            data["stereo"] = {"folder": self.stereo_folder, "baseline": self.baseline}
        if self.guessed:
            data["guessed"] = True
        if self.camera_height is not None:
            data["camera_height"] = self.camera_height
        return data


def camera_height_error(value: float) -> str | None:
    """Why ``value`` is no camera's height above the road in metres (CAMERA_HEIGHT_RANGE), or None."""
    low, high = CAMERA_HEIGHT_RANGE
    if not math.isfinite(value) or value <= 0:
        return f"must be a positive height in metres (the camera above the road), got {value:g}"
    if value > high and low <= value / MILLIMETRES_PER_METRE <= high:
        return (
            f"must be metres, got {value:g}: that looks like millimetres "
            f"({value / MILLIMETRES_PER_METRE:g} m?); cameras stand {low:g} to {high:g} m above the road"
        )
    if not low <= value <= high:
        return f"must lie between {low:g} and {high:g} metres (cameras above a road), got {value:g}"
    return None


def _load_mapping(path: str):
    """The parsed contents of a JSON or YAML file; InputError naming it when it does not parse."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as err:
        raise InputError(
            f"{path}: not UTF-8 text (byte {err.start}): write the intrinsics as UTF-8 JSON or YAML"
        ) from None
    if path.endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}: not valid JSON ({err})") from None
    try:
        import yaml
    except ImportError as err:
        raise DependencyError(f"{path}: {PYYAML_MISSING}") from err
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise InputError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None


def _number(value, what: str, path: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{path}: {what} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise InputError(f"{path}: {what} must be finite, got {value!r}")
    return number


def parse_camera(data, path: str) -> Camera:
    """A Camera from an intrinsics file's contents (see the module's docstring); InputError naming
    ``path``."""
    if isinstance(data, list):
        data = {"K": data}
    if not isinstance(data, dict):
        raise InputError(
            f"{path}: expected fx, fy, cx, cy (pixels) or a 3x3 / 3x4 matrix K, got {type(data).__name__}"
        )
    both = [key for key in ("fx", "fy", "cx", "cy") if key in data]
    if "K" in data and both:
        raise InputError(
            f"{path}: holds both K and {', '.join(both)}: give the intrinsics once (K, or fx, fy, cx, cy)"
        )
    if "K" in data:
        try:
            K = np.asarray(data["K"], dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(f"{path}: K must be a 3x3 or 3x4 matrix of numbers") from None
        if K.shape not in ((3, 3), (3, 4)) or not np.isfinite(K).all():
            raise InputError(f"{path}: K must be a 3x3 or 3x4 matrix of finite numbers, got shape {K.shape}")
        if not np.allclose(K[2, :3], (0, 0, 1)) or K[1, 0] != 0:
            raise InputError(f"{path}: K must be [[fx, s, cx], [0, fy, cy], [0, 0, 1]], got {K.tolist()}")
        if K[0, 1] != 0:
            raise InputError(
                f"{path}: K has a skew of {K[0, 1]:g} (K[0][1]): the project's cameras have none, "
                f"and dropping it would misplace every pixel's ray; give K with 0 there"
            )
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    else:
        missing = [key for key in ("fx", "fy", "cx", "cy") if key not in data]
        if missing:
            raise InputError(
                f"{path}: missing {', '.join(missing)}: give fx, fy, cx, cy in pixels of the "
                f"stored frames, or a 3x3 / 3x4 matrix K"
            )
        fx, fy, cx, cy = (_number(data[key], key, path) for key in ("fx", "fy", "cx", "cy"))
    if fx <= 0 or fy <= 0:
        raise InputError(f"{path}: focal lengths must be positive, got fx {fx}, fy {fy}")
    width = height = None
    if "width" in data or "height" in data:
        width, height = (_number(data.get(key), key, path) for key in ("width", "height"))
        if width <= 0 or height <= 0 or width != int(width) or height != int(height):
            raise InputError(
                f"{path}: width and height must be positive whole numbers of pixels, got {width}, {height}"
            )
        width, height = int(width), int(height)
    stereo_folder = baseline = None
    if data.get("stereo") is not None:
        stereo = data["stereo"]
        if not isinstance(stereo, dict) or "folder" not in stereo or "baseline" not in stereo:
            raise InputError(f'{path}: stereo must be {{"folder": ..., "baseline": metres}}, got {stereo!r}')
        stereo_folder = str(stereo["folder"])
        if os.path.isabs(stereo_folder) or os.pardir in stereo_folder.replace("\\", "/").split("/"):
            raise InputError(
                f"{path}: the stereo folder must lie inside the sequence folder, got {stereo_folder!r}"
            )
        if os.path.normpath(stereo_folder) == os.curdir:
            raise InputError(
                f"{path}: the stereo folder {stereo_folder!r} is the sequence folder itself: "
                f'the second camera\'s frames go in a subfolder (e.g. "right")'
            )
        baseline = _number(stereo["baseline"], "the stereo baseline", path)
        if baseline <= 0:
            raise InputError(f"{path}: the stereo baseline must be positive (metres), got {baseline}")
    camera_height = None
    if data.get("camera_height") is not None:
        camera_height = _number(data["camera_height"], "camera_height", path)
        problem = camera_height_error(camera_height)
        if problem:
            raise InputError(f"{path}: camera_height {problem}")
    return Camera(
        float(fx),
        float(fy),
        float(cx),
        float(cy),
        path,
        width,
        height,
        stereo_folder,
        baseline,
        bool(data.get("guessed", False)),
        camera_height,
    )


def read_camera(path: str) -> Camera:
    """The Camera of an intrinsics file."""
    return parse_camera(_load_mapping(path), path)


def check_camera_fits(
    camera: Camera, width: int, height: int, folder: str, metric: bool = False
) -> list[str]:
    """The one check of a camera against its frames (every command that uses intrinsics): they must be for
    the frames' size (the size they name, a principal point inside the frame, a focal length some camera
    has); ``metric`` (depth in metres from them) also needs the size named in the file and a field of view
    within FX_RANGE's, since the scale is proportional to fx. Returns the warnings of ``camera_warnings``."""
    if metric and camera.width is None:
        raise InputError(
            f"{camera.source}: metres need the frame size these intrinsics are for: add "
            f'"width" and "height" (pixels; the frames of {folder} are {width}x{height}), '
            f"since the scale is proportional to fx and intrinsics of another size give other metres"
        )
    if camera.width is not None and (camera.width, camera.height) != (width, height):
        raise InputError(
            f"{camera.source}: intrinsics for {camera.width}x{camera.height} frames, but the frames of "
            f"{folder} are {width}x{height} (width x height): give them in pixels of the stored frames"
        )
    low, high = FOCAL_LIMITS
    if not (low <= camera.fx / width <= high and low <= camera.fy / height <= high):
        raise InputError(
            f"{camera.source}: focal lengths fx {camera.fx:g}, fy {camera.fy:g} px are no "
            f"camera's for the {width}x{height} frames of {folder} (fx / width and fy / height must lie in "
            f"{low:g}..{high:g}): give them in pixels of these frames"
        )
    if not (0 < camera.cx < width and 0 < camera.cy < height):
        raise InputError(
            f"{camera.source}: the principal point ({camera.cx:g}, {camera.cy:g}) lies outside the "
            f"{width}x{height} frames of {folder}: intrinsics for another frame size?"
        )
    if metric and not FX_RANGE[0] <= camera.fx / width <= FX_RANGE[1]:
        fov = math.degrees(2 * math.atan(width / (2 * camera.fx)))
        raise InputError(
            f"{camera.source}: fx {camera.fx:g} px for {width} px wide frames ({folder}) is a {fov:.0f} "
            f"degree field of view, no road camera's (fx / width must lie in "
            f"{FX_RANGE[0]:g}..{FX_RANGE[1]:g}): "
            f"metres would be off by as much as fx is; give fx in pixels of these frames"
        )
    return camera_warnings(camera, width, height)


def camera_warnings(camera: Camera, width: int, height: int) -> list[str]:
    """Why intrinsics look implausible for frames of a size (empty when they look fine)."""
    problems = []
    if camera.guessed:
        problems.append(
            "intrinsics guessed from a field of view, not calibrated: depth and pose will be off "
            "by the guess's error"
        )
    if abs(camera.cx / width - 0.5) > CENTRE_TOLERANCE or abs(camera.cy / height - 0.5) > CENTRE_TOLERANCE:
        problems.append(
            f"principal point ({camera.cx:g}, {camera.cy:g}) is far from the image centre "
            f"({width / 2:g}, {height / 2:g}): intrinsics for another size, or of a cropped video?"
        )
    if not FX_RANGE[0] <= camera.fx / width <= FX_RANGE[1]:
        fov = math.degrees(2 * math.atan(width / (2 * camera.fx)))
        problems.append(
            f"fx {camera.fx:g} px for {width} px wide frames is a {fov:.0f} degree horizontal field "
            f"of view: are the intrinsics in pixels of these frames?"
        )
    if abs(camera.fx / camera.fy - 1) > ASPECT_TOLERANCE:
        problems.append(
            f"fx {camera.fx:g} and fy {camera.fy:g} differ by more than {ASPECT_TOLERANCE:.0%}: "
            f"non-square pixels, or frames resized without the intrinsics?"
        )
    return problems


# -- crop and resize ----------------------------------------------------------------------------
def field_of_view_camera(fov_degrees: float, width: int, height: int, source: str) -> Camera:
    """A guessed camera from a horizontal field of view: centred principal point, square pixels."""
    fx = width / 2 / math.tan(math.radians(fov_degrees) / 2)
    return Camera(fx, fx, width / 2, height / 2, source, width, height, guessed=True)


def resized_size(crop: tuple[int, int, int, int], width: int | None, height: int | None) -> tuple[int, int]:
    """(width, height) of a crop resized: as asked, the other side following the crop's aspect ratio, or the
    crop's."""
    crop_w, crop_h = crop[2], crop[3]
    if width and height:
        return width, height
    if width:
        return width, max(1, round(crop_h * width / crop_w))
    if height:
        return max(1, round(crop_w * height / crop_h)), height
    return crop_w, crop_h


def cropped_and_resized(camera: Camera, crop: tuple[int, int, int, int], width: int, height: int) -> Camera:
    """The intrinsics of frames cropped to ``crop`` (x, y, w, h) and resized to width x height: the crop
    moves the principal point, the resize scales everything."""
    x, y, crop_w, crop_h = crop
    sx, sy = width / crop_w, height / crop_h
    return replace(
        camera,
        fx=camera.fx * sx,
        fy=camera.fy * sy,
        cx=(camera.cx - x) * sx,
        cy=(camera.cy - y) * sy,
        width=width,
        height=height,
    )
