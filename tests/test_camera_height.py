"""Metric depth from the camera's height (deploy/metric/camera_height.py, predict.py --camera_height,
evaluate_depth.py --scaling camera_height): hand-made ground planes with exact answers (height, pitch,
roll, cars and mislabelled pixels on the road, no road), the smoothing of a video's scales, the whole
path through real files, and bad input as one line, exit 2.

The whole-path tests use an analytic network in place of a trained one: a level camera 1.65 m above a
flat road with a car ahead, its depth divided by ``TRUE_SCALE`` (a monocular model's unknown factor),
labelled road / car / sky. A trained model takes minutes (docs/metric_depth.md measures one); the
analytic network gives exact answers: every metric depth equals the scene's, every ratio is 1.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import evaluate_depth
import predict
import utils
from checkpoints import model_folder
from datasets.cityscapes import CLASS_NAMES, NUM_CLASSES
from datasets.ground_truth import save_ground_truth
from deploy import depth_graph, export, writers
from deploy.metric import camera_height as ch
from evaluation import camera_height_scaling
from evaluation import depth as evaluation_depth
from utils.colormap import MAGMA
from utils.files import save_json

HEIGHT, WIDTH = 96, 320  # the depth maps of the hand-made planes
K = np.array(
    [[0.58 * WIDTH, 0, 0.5 * WIDTH], [0, 1.92 * HEIGHT, 0.5 * HEIGHT], [0, 0, 1.0]]
)  # KITTI's, normalised
CAMERA_HEIGHT = 1.65
TRUE_SCALE = 7.3  # metres per unit of the relative depth maps
FAR = 80.0  # metres: the road beyond is left out, as a horizon's pixels would be
EXACT = 1e-9  # float64 plane fits of exact points: rounding only
ROAD, CAR, SKY = (CLASS_NAMES.index(name) for name in ("road", "car", "sky"))


# ---------------------------------------------------------------------------------------------
# hand-made planes
# ---------------------------------------------------------------------------------------------
def up_normal(pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """The road's unit normal (pointing up) in camera axes for a camera pitched down by ``pitch`` and with
    its right side ``roll`` degrees low (ScaleEstimate's definitions: asin(-n_z), asin(-n_x))."""
    nx, nz = -math.sin(math.radians(roll)), -math.sin(math.radians(pitch))
    return np.array([nx, -math.sqrt(1 - nx * nx - nz * nz), nz])


def rays(height: int = HEIGHT, width: int = WIDTH, k: np.ndarray = K) -> np.ndarray:
    """Each pixel's ray (H, W, 3) with z = 1."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    return np.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], np.ones_like(u)], -1)


def road_depth(
    normal: np.ndarray, height: float = CAMERA_HEIGHT, size=(HEIGHT, WIDTH), k: np.ndarray = K
) -> tuple[np.ndarray, np.ndarray]:
    """Metric depth (H, W) of the plane {n . X + height = 0} along each ray, and where it is road (< FAR)."""
    towards = rays(*size, k) @ normal  # < 0: the ray goes down to the road
    safe = np.where(towards < 0, towards, -1.0)
    depth = np.where(towards < 0, -height / safe, np.inf)
    road = depth < FAR
    return np.where(road, depth, FAR), road


def test_a_level_camera_gets_its_exact_scale_plane_and_confidence():
    depth, road = road_depth(up_normal())
    estimate = ch.estimate_scale(depth / TRUE_SCALE, K, road, CAMERA_HEIGHT)
    assert estimate.scale == pytest.approx(TRUE_SCALE, rel=EXACT)
    assert estimate.distance == pytest.approx(CAMERA_HEIGHT / TRUE_SCALE, rel=EXACT)
    np.testing.assert_allclose(estimate.normal, [0, -1, 0], atol=EXACT)
    assert estimate.inlier_share == 1.0 and estimate.pixels_used == estimate.inliers == road.sum()
    assert estimate.pitch_degrees == pytest.approx(0, abs=1e-6) and estimate.roll_degrees == pytest.approx(
        0, abs=1e-6
    )
    record = estimate.as_dict()
    assert json.loads(json.dumps(record))["scale"] == pytest.approx(TRUE_SCALE, rel=EXACT)
    assert record["ground"] == "road" and record["camera_height"] == CAMERA_HEIGHT


@pytest.mark.parametrize(
    "pitch, roll, height",
    [
        (3.0, 0.0, 1.65),
        (-2.0, 0.0, 1.2),
        (0.0, 4.0, 1.65),
        (0.0, -6.0, 2.4),
        (5.0, 2.5, 1.4),
        (12.0, -8.0, 0.9),
    ],
)
def test_tilted_and_rolled_cameras_get_exact_scales_and_their_pitch_and_roll(pitch, roll, height):
    normal = up_normal(pitch, roll)
    depth, road = road_depth(normal, height)
    estimate = ch.estimate_scale(depth / TRUE_SCALE, K, road, height)
    assert estimate.scale == pytest.approx(TRUE_SCALE, rel=EXACT)
    np.testing.assert_allclose(estimate.normal, normal, atol=EXACT)
    assert estimate.pitch_degrees == pytest.approx(pitch, abs=1e-6)
    assert estimate.roll_degrees == pytest.approx(roll, abs=1e-6)
    assert estimate.inlier_share == 1.0


def car_box(
    depth: np.ndarray,
    distance: float = 10.0,
    bottom: float = 0.3,
    top: float = 1.5,
    half_width: float = 0.9,
    height: float = CAMERA_HEIGHT,
) -> np.ndarray:
    """Pixels of a car's rear face (a level camera) ``distance`` ahead, ``bottom`` to ``top`` metres above
    the road: every point of it is at least ``bottom`` off the road's plane. Returns the face's mask; writes
    its depth."""
    r = rays()
    face = (
        (np.abs(r[..., 0] * distance) <= half_width)
        & (r[..., 1] * distance >= height - top)
        & (r[..., 1] * distance <= height - bottom)
    )
    depth[face] = distance
    return face


def test_a_car_labelled_road_and_mislabelled_pixels_are_left_out_exactly():
    depth, road = road_depth(up_normal())
    face = car_box(depth)
    ground = road | face  # the car's pixels labelled road too
    rng = np.random.default_rng(0)
    # mislabelled or badly predicted pixels: depth off by 30 % to 200 %, each at least 0.3 camera heights off
    # the plane (a point moved along its ray by f lies |f - 1| camera heights off it): beyond INLIER_TOLERANCE
    wrong = road & ~face & (rng.random(road.shape) < 0.2)
    depth[wrong] *= rng.uniform(1.3, 3.0, wrong.sum())
    assert ch.INLIER_TOLERANCE < 0.3
    estimate = ch.estimate_scale(depth / TRUE_SCALE, K, ground, CAMERA_HEIGHT)
    assert estimate.scale == pytest.approx(TRUE_SCALE, rel=EXACT)
    assert estimate.pixels_used == ground.sum()
    assert estimate.inliers == (ground & ~face & ~wrong).sum()
    assert face.sum() > 500 and wrong.sum() > 1000


def test_a_car_filling_most_of_the_road_pixels_is_refused():
    depth, road = road_depth(up_normal())
    face = car_box(depth, distance=7.0, half_width=20.0, bottom=0.2)
    road_left = road & ~face
    keep = road_left & (np.random.default_rng(1).random(road.shape) < 0.3)  # most of the road hidden
    ground = face | keep
    assert keep.sum() < face.sum()
    with pytest.raises(ch.GroundNotVisible, match="lie on one plane"):
        ch.estimate_scale(depth / TRUE_SCALE, K, ground, CAMERA_HEIGHT)


@pytest.mark.parametrize("pitch, roll", [(0.0, 0.0), (3.0, 0.0), (-2.0, 4.0), (12.0, -8.0)])
def test_a_known_pitch_and_roll_fix_the_plane_and_only_its_distance_is_fitted(pitch, roll):
    np.testing.assert_allclose(ch.road_normal(pitch, roll), up_normal(pitch, roll), atol=EXACT)
    depth, road = road_depth(up_normal(pitch, roll))
    rng = np.random.default_rng(2)
    wrong = road & (rng.random(road.shape) < 0.3)  # 30 % of the road 30 % to 200 % off: outliers
    depth[wrong] *= rng.uniform(1.3, 3.0, wrong.sum())
    settings = ch.GroundSettings(CAMERA_HEIGHT, orientation=(pitch, roll))
    logits = np.eye(NUM_CLASSES)[np.where(road, ROAD, SKY)].transpose(2, 0, 1)
    estimate = settings.estimate(TRUE_SCALE / depth, logits, K)
    assert estimate.scale == pytest.approx(TRUE_SCALE, rel=EXACT) and estimate.orientation == "given"
    assert estimate.inliers == (road & ~wrong).sum() and estimate.pixels_used == road.sum()
    assert estimate.pitch_degrees == pytest.approx(pitch, abs=1e-9)
    assert estimate.roll_degrees == pytest.approx(roll, abs=1e-9)


def test_with_a_known_orientation_the_distance_is_the_mean_height_of_the_road_points():
    # a road whose depth grows 0.1 % per metre too fast (as a partly trained model's far road errs): every
    # point within INLIER_TOLERANCE of the level plane, so the fitted distance is the mean of the points'
    # heights h (1 + a z) / TRUE_SCALE and the scale TRUE_SCALE / mean(1 + a z), computed here by hand
    depth, road = road_depth(up_normal())
    bend = 1e-3
    assert bend * FAR < ch.INLIER_TOLERANCE
    bent = np.where(road, depth * (1 + bend * depth), depth) / TRUE_SCALE
    estimate = ch.estimate_scale(bent, K, road, CAMERA_HEIGHT, normal=ch.road_normal(0.0))
    assert estimate.inliers == road.sum()
    assert estimate.scale == pytest.approx(TRUE_SCALE / np.mean(1 + bend * depth[road]), rel=EXACT)
    fitted = ch.estimate_scale(bent, K, road, CAMERA_HEIGHT)  # the bend tilts a fitted plane instead
    assert fitted.orientation == "fitted" and fitted.pitch_degrees < 0  # the far road sinks: "looks up"


def test_no_road_too_little_road_a_wall_and_a_ceiling_are_refused_with_the_reason():
    depth, road = road_depth(up_normal())
    with pytest.raises(ch.GroundNotVisible, match="^0 road pixels with a depth, fewer than the 200"):
        ch.estimate_scale(depth, K, np.zeros_like(road), CAMERA_HEIGHT)
    few = np.zeros_like(road)
    few[np.nonzero(road)[0][:199], np.nonzero(road)[1][:199]] = True
    with pytest.raises(ch.GroundNotVisible, match="199 road pixels"):
        ch.estimate_scale(depth, K, few, CAMERA_HEIGHT)
    # a wall 5 m to the left, labelled road: a vertical plane, 90 degrees from level
    wall_normal = np.array([1.0, 0.0, 0.0])
    wall, on_wall = road_depth(wall_normal, 5.0)
    with pytest.raises(ch.GroundNotVisible, match="no plane below the camera within 30 degrees"):
        ch.estimate_scale(wall, K, on_wall, CAMERA_HEIGHT)
    # a ceiling 2 m above the camera: the camera is below it
    ceiling, on_ceiling = road_depth(np.array([0.0, 1.0, 0.0]), 2.0)
    assert on_ceiling.sum() > ch.MIN_GROUND_PIXELS
    with pytest.raises(ch.GroundNotVisible, match="no plane below the camera"):
        ch.estimate_scale(ceiling, K, on_ceiling, CAMERA_HEIGHT)


@pytest.mark.parametrize("height", [0, -1.65, float("nan"), float("inf"), "tall"])
def test_a_camera_height_that_is_not_a_positive_number_is_refused(height):
    depth, road = road_depth(up_normal())
    with pytest.raises(utils.InputError, match="positive height in metres|must be a height in metres"):
        ch.estimate_scale(depth, K, road, height)


def test_ground_masks_from_labels_logits_and_the_lowest_band():
    labels = np.array([[0, 1, 9], [13, 0, 10]])
    np.testing.assert_array_equal(ch.ground_mask_from_labels(labels), [[1, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(
        ch.ground_mask_from_labels(labels, ("road", "sidewalk", "terrain")), [[1, 1, 1], [0, 1, 0]]
    )
    logits = np.eye(NUM_CLASSES)[labels].transpose(2, 0, 1)
    np.testing.assert_array_equal(ch.ground_mask_from_logits(logits), ch.ground_mask_from_labels(labels))
    band = ch.lowest_band_mask(10, 8)  # the bottom 2 rows, columns 2..5
    assert band.sum() == 8 and band[8:, 2:6].all()
    # the band of a level camera on a flat road is road: the fallback's scale is exact there
    depth, _ = road_depth(up_normal())
    settings = ch.GroundSettings(CAMERA_HEIGHT, "lowest_band")
    assert settings.estimate(TRUE_SCALE / depth, None, K).scale == pytest.approx(TRUE_SCALE, rel=EXACT)
    with pytest.raises(utils.InputError, match="no segmentation head: give --ground_from lowest_band"):
        ch.GroundSettings(CAMERA_HEIGHT).estimate(TRUE_SCALE / depth, None, K)


def test_a_videos_scales_are_a_running_median_that_bridges_frames_without_road():
    scales = [None, None, 2.0, 4.0, 3.0, None, None, None, None, 10.0]
    out = list(ch.smoothed(((i, s) for i, s in enumerate(scales)), window=3))
    assert [item for item, _ in out] == list(range(10))
    assert [s.scale for _, s in out] == [None, 2.0, 3.0, 3.0, 3.5, 3.0, 3.0, 3.0, 10.0, 10.0]
    assert [s.estimates_in_window for _, s in out] == [0, 1, 2, 3, 2, 1, 0, 0, 1, 1]
    assert [s.scale for _, s in ch.smoothed(((i, s) for i, s in enumerate(scales)), window=1)] == [
        None,
        None,
        2.0,
        4.0,
        3.0,
        3.0,
        3.0,
        3.0,
        3.0,
        10.0,
    ]
    smoother = ch.ScaleSmoother(5)  # results come window // 2 frames late
    assert smoother.push("a", 1.0) == [] and smoother.push("b", 2.0) == []
    assert [item for item, _ in smoother.push("c", 3.0)] == ["a"]


# ---------------------------------------------------------------------------------------------
# the whole path: an analytic network through predict.py and evaluate_depth.py
# ---------------------------------------------------------------------------------------------
MODEL_H, MODEL_W = 48, 160  # the analytic network's size; its frames are twice that
FRAME_H, FRAME_W = 2 * MODEL_H, 2 * MODEL_W
FRAME_K = np.array([[0.58 * FRAME_W, 0, 0.5 * FRAME_W], [0, 1.92 * FRAME_H, 0.5 * FRAME_H], [0, 0, 1.0]])
MODEL_K = np.diag([0.5, 0.5, 1.0]) @ FRAME_K
MIN_DEPTH, MAX_DEPTH = 0.1, 100.0  # the graph's disparity range (relative units)
CAR_AHEAD = 15.0  # metres
BLACK = 0.01  # a frame darker than this on average shows no road to the analytic network


def analytic_scene() -> tuple[np.ndarray, np.ndarray]:
    """Metric depth (0: sky) and train ids at the network's size: road to FAR, a car CAR_AHEAD metres ahead
    (above the lowest band), sky."""
    depth, road = road_depth(up_normal(), size=(MODEL_H, MODEL_W), k=MODEL_K)
    y = rays(MODEL_H, MODEL_W, MODEL_K) * CAR_AHEAD
    car = (np.abs(y[..., 0]) <= 0.9) & (y[..., 1] >= CAMERA_HEIGHT - 1.5) & (y[..., 1] <= CAMERA_HEIGHT)
    depth = np.where(car, CAR_AHEAD, np.where(road, depth, 0.0))
    labels = np.where(car, CAR, np.where(road, ROAD, SKY))
    return depth, labels


class AnalyticEncoder(nn.Module):
    """Passes the images on: the decoder decides from their brightness whether road is visible."""

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return [images]


class AnalyticDecoder(nn.Module):
    """The scene's relative disparity (as the sigmoid a depth decoder outputs) and its segmentation logits; a
    black frame is all sky."""

    def __init__(self) -> None:
        super().__init__()
        self.semantics, self.scales = True, (0,)
        depth, labels = analytic_scene()
        relative = np.where(depth > 0, depth / TRUE_SCALE, MAX_DEPTH)
        sigmoid = (1 / relative - 1 / MAX_DEPTH) / (1 / MIN_DEPTH - 1 / MAX_DEPTH)
        self.register_buffer("sigmoid", torch.tensor(sigmoid, dtype=torch.float32)[None, None])
        logits = np.eye(NUM_CLASSES, dtype=np.float32)[labels].transpose(2, 0, 1)
        self.register_buffer("logits", torch.from_numpy(logits)[None])
        self.register_buffer(
            "sky", torch.from_numpy(np.eye(NUM_CLASSES, dtype=np.float32)[SKY])[None, :, None, None]
        )

    def forward(self, features: list[torch.Tensor]) -> dict:
        images = features[0]
        lit = (images.mean(dim=(1, 2, 3)) > BLACK).float()[:, None, None, None]
        logits = lit * self.logits + (1 - lit) * self.sky
        return {("disp", 0): self.sigmoid.expand(images.shape[0], -1, -1, -1), ("seg_logits", 0): logits}


def analytic_graph() -> depth_graph.DepthGraph:
    return depth_graph.DepthGraph(
        AnalyticEncoder(), AnalyticDecoder(), MIN_DEPTH, MAX_DEPTH, segmentation=True
    ).eval()


def write_frames(folder, count: int, black=()) -> list[str]:
    """``count`` textured PNG frames (FRAME_W x FRAME_H); those in ``black`` are black."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        rgb = (
            np.zeros((FRAME_H, FRAME_W, 3), np.uint8)
            if i in black
            else rng.integers(40, 220, (FRAME_H, FRAME_W, 3), dtype=np.uint8)
        )
        paths.append(os.path.join(folder, f"{i:010d}.png"))
        Image.fromarray(rgb).save(paths[-1])
    return paths


def write_intrinsics(path, **extra) -> None:
    save_json(
        {
            "fx": FRAME_K[0, 0],
            "fy": FRAME_K[1, 1],
            "cx": FRAME_K[0, 2],
            "cy": FRAME_K[1, 2],
            "width": FRAME_W,
            "height": FRAME_H,
            **extra,
        },
        str(path),
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> str:
    """The analytic network as a torch.export file, written by the project's exporter with its metadata."""
    graph = analytic_graph()
    values = {
        "fsre_export_version": depth_graph.METADATA_VERSION,
        "input_name": depth_graph.INPUT_NAME,
        "input_type": "float",
        "height": MODEL_H,
        "width": MODEL_W,
        "dynamic_size": False,
        "outputs": graph.output_names,
        "min_depth": MIN_DEPTH,
        "max_depth": MAX_DEPTH,
    }
    path = str(tmp_path_factory.mktemp("analytic") / "analytic.pt2")
    return export.export_program(
        graph,
        path,
        torch.rand(1, 3, MODEL_H, MODEL_W),
        {key: json.dumps(value) for key, value in values.items()},
    )


def run(main, argv, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = utils.run_cli(main, argv)
    return code, capsys.readouterr().err


def one_line(code: int, err: str) -> str:
    """Exit code 2 and exactly one ``error:`` line, the last, no traceback; return the message."""
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert (
        code == utils.EXIT_ERROR and "Traceback" not in err and len(errors) == 1 and errors[0] == lines[-1]
    ), err
    return errors[0][len("error: ") :]


@pytest.mark.parametrize("orientation", [[], ["--camera_roll", "0"]], ids=["fitted", "given"])
def test_predict_writes_metric_depth_and_the_scale_of_each_image(exported, tmp_path, capsys, orientation):
    frames = write_frames(tmp_path / "frames", 2)
    write_intrinsics(tmp_path / "frames" / "intrinsics.json")
    out = tmp_path / "out"
    code, err = run(
        predict.main,
        [
            "--exported",
            exported,
            "--image_path",
            str(tmp_path / "frames"),
            "--output_dir",
            str(out),
            "--camera_height",
            str(CAMERA_HEIGHT),
            *orientation,
        ],
        capsys,
    )
    assert code == 0, err
    depth, labels = analytic_scene()
    for path in frames:
        stem = out / os.path.splitext(os.path.basename(path))[0]
        metres = np.load(f"{stem}_depth.npy")
        assert metres.shape == (MODEL_H, MODEL_W)
        seen = depth > 0  # road and car: metres exactly (float32 disparities)
        np.testing.assert_allclose(metres[seen], depth[seen], rtol=1e-5)
        record = json.loads(open(f"{stem}_scale.json").read())
        assert record["scale"] == pytest.approx(TRUE_SCALE, rel=1e-5)
        assert record["inlier_share"] == 1.0 and record["pixels_used"] == (labels == ROAD).sum()
        assert record["camera_height_m"] == CAMERA_HEIGHT and record["depth_units"] == "metres"
        given = {"pitch_degrees": 0.0, "roll_degrees": 0.0}
        assert record["ground_orientation"] == (given if orientation else "fitted")
        assert record["orientation"] == ("given" if orientation else "fitted")
        assert record["intrinsics"].endswith("intrinsics.json") and record["image"] == path
        assert os.path.isfile(f"{stem}_disp.png") and os.path.isfile(f"{stem}_seg.png")


def test_an_image_without_road_gets_no_metric_depth_and_one_closing_line(exported, tmp_path, capsys):
    frames = write_frames(tmp_path / "frames", 3, black={1})
    write_intrinsics(tmp_path / "cam.json")
    out = tmp_path / "out"
    code, err = run(
        predict.main,
        [
            "--exported",
            exported,
            "--image_path",
            *frames,
            "--output_dir",
            str(out),
            "--camera_height",
            "1.65",
            "--intrinsics",
            str(tmp_path / "cam.json"),
        ],
        capsys,
    )
    message = one_line(code, err)
    assert (
        message.startswith("1 input(s) got no metric scale")
        and frames[1] in message
        and "0 road pixels" in message
    )
    written = {
        f"{i:010d}{suffix}"
        for i in range(3)
        for suffix in ("_disp.npy", "_disp.png", "_seg.png", "_scale.json")
    }
    assert set(os.listdir(out)) == written | {"0000000000_depth.npy", "0000000002_depth.npy"}
    record = json.loads(open(out / "0000000001_scale.json").read())
    assert record["scale"] is None and "0 road pixels" in record["reason"]


@pytest.mark.needs("av")
def test_a_depth_video_in_metres_bridges_frames_without_road(exported, tmp_path, capsys):
    write_frames(tmp_path / "drive", 6, black={2, 3})
    write_intrinsics(tmp_path / "intrinsics.json")  # the folder above the frames
    out = tmp_path / "out"
    code, err = run(
        predict.main,
        [
            "--exported",
            exported,
            "--image_path",
            str(tmp_path / "drive"),
            "--video",
            "--output_dir",
            str(out),
            "--camera_height",
            "1.65",
            "--save_npy",
            "--scale_window",
            "3",
            "--panels",
            "input",
            "depth",
        ],
        capsys,
    )
    assert code == 0, err
    summary = json.loads(open(out / "drive_scale.json").read())
    assert summary["frames"] == 6 and summary["frames_with_estimate"] == 4 and summary["window"] == 3
    assert summary["median_estimate"] == pytest.approx(TRUE_SCALE, rel=1e-5)
    per_frame = summary["per_frame"]
    assert [f["estimate"] is None for f in per_frame] == [False, False, True, True, False, False]
    assert [f["estimates_in_window"] for f in per_frame] == [2, 2, 1, 1, 2, 2]
    assert all(f["scale"] == pytest.approx(TRUE_SCALE, rel=1e-5) for f in per_frame)
    depth, _ = analytic_scene()
    metres = np.load(
        out / "drive_frames" / "0000000003_depth.npy"
    )  # a frame without road: its neighbours' scale
    np.testing.assert_allclose(metres[depth > 0], depth[depth > 0], rtol=1e-5)
    from datasets.video_files import read_frames

    pictures = [rgb for _, rgb in read_frames(str(out / "drive_depth.mp4"))]
    bar = writers.colour_bar(FRAME_H, 1.0)
    assert len(pictures) == 6 and pictures[0].shape == (
        FRAME_H,
        2 * FRAME_W + bar.shape[1] + bar.shape[1] % 2,
        3,
    )


def test_the_colour_bar_runs_from_the_nearest_depth_at_the_top_to_far_at_the_bottom():
    bar = writers.colour_bar(200, 0.5)  # inverse metres: 2 m at the top
    strip = bar[:, 1]
    top, bottom = round(writers.BAR_MARGIN * 200), 199 - round(writers.BAR_MARGIN * 200)
    np.testing.assert_array_equal(strip[top], MAGMA[-1])
    np.testing.assert_array_equal(strip[bottom], MAGMA[0])
    assert (bar[:, bar.shape[1] // 2 :] == writers.BAR_TEXT).any()  # labels are drawn
    assert (writers.colour_bar(200, None)[:, :, 0] == writers.BAR_TEXT).any()


def analytic_split(tmp_path, black=()) -> tuple[str, str]:
    """A --dataset folders sequence of frames with intrinsics.json (camera_height 1.65) and a test split with
    the scene's exact depth as ground truth; returns (data_path, split folder)."""
    data = tmp_path / "data"
    frames = write_frames(data / "drive", 5, black=black)
    write_intrinsics(data / "drive" / "intrinsics.json", camera_height=CAMERA_HEIGHT)
    split = tmp_path / "split"
    os.makedirs(split)
    (split / "test_files.txt").write_text("".join(f"drive {i} l\n" for i in range(1, len(frames) - 1)))
    depth, _ = analytic_scene()
    save_ground_truth([depth.astype(np.float32)] * (len(frames) - 2), str(split / "gt_depths.npz"))
    return str(data), str(split)


@pytest.fixture
def analytic_model_folder(monkeypatch, tmp_path):
    """evaluate_depth.py's model loader gives the analytic network (what a model folder would load)."""
    spec = model_folder.ModelSpec(
        str(tmp_path),
        "fsre",
        18,
        MODEL_H,
        MODEL_W,
        (0,),
        True,
        NUM_CLASSES,
        (),
        1,
        1,
        MIN_DEPTH,
        MAX_DEPTH,
        False,
        None,
    )
    graph = analytic_graph()
    monkeypatch.setattr(
        evaluation_depth.model_folder,
        "load_depth_model",
        lambda folder, device="cpu": (graph.encoder, graph.decoder, spec),
    )
    return str(tmp_path)


@pytest.mark.parametrize("orientation", [[], ["--camera_pitch", "0"]], ids=["fitted", "given"])
def test_evaluate_depth_scales_by_the_camera_height_and_reports_the_ratios(
    analytic_model_folder, tmp_path, capsys, orientation
):
    data, split = analytic_split(tmp_path, black={2})
    out = tmp_path / "metrics.json"
    code, err = run(
        evaluate_depth.main,
        [
            "--data_path",
            data,
            "--eval_split",
            split,
            "--dataset",
            "folders",
            "--load_weights_folder",
            analytic_model_folder,
            "--num_workers",
            "0",
            "--scaling",
            "camera_height",
            "--output_json",
            str(out),
            *orientation,
        ],
        capsys,
    )
    assert code == 0, err
    result = json.loads(out.read_text())
    report = result["camera_height_scaling"]
    assert (
        result["scaling"] == "camera_height" and result["median_scaling"] is False and result["frames"] == 3
    )
    assert report["frames_estimated"] == 2 and report["frames_refused"] == 1  # frame 2 is black: no road
    assert report["ground_orientation"] == ("given" if orientation else "fitted")
    assert report["ratio_to_gt_ground_median"]["median"] == pytest.approx(1, abs=1e-5)
    assert report["fallback_scale"] == pytest.approx(TRUE_SCALE, rel=1e-5)
    assert report["ratio_to_gt_median"]["median"] == pytest.approx(1, abs=1e-5)
    assert report["scale_error"]["median"] < 1e-5 and report["camera_height_m"] == [CAMERA_HEIGHT]
    assert result["metrics"]["abs_rel"] < 1e-5 and result["metrics"]["a1"] == 1.0
    assert [frame["scale"] is None for frame in report["per_frame"]] == [False, True, False]
    assert report["per_frame"][0]["ratio_to_gt_median"] == pytest.approx(1, abs=1e-5)
    assert report["per_frame"][0]["gt_median_scale"] == pytest.approx(TRUE_SCALE, rel=1e-5)
    assert "test frame 1: no camera-height scale (0 road pixels" in err


def test_the_report_separates_the_estimates_error_from_the_models_road_against_the_rest():
    # ground truth 10 m everywhere; the model puts its road (bottom 3 of 8 rows) at 5 units and the rest at
    # 2.5: the ground truth's median scale is 4 over the image (40 of 64 pixels at 2.5) but 2 on the road, so
    # an exact estimate from the road (scale 2) is half the image's median scale and equal to the road's
    gt = np.full((8, 8), 10.0)
    road = np.zeros((8, 8), dtype=bool)
    road[5:] = True
    disp = np.where(road, 1 / 5.0, 1 / 2.5).astype(np.float32)
    exact = ch.ScaleEstimate(2.0, CAMERA_HEIGHT, (0.0, -1.0, 0.0), CAMERA_HEIGHT / 2, 1.0, 24, 24, "road")
    _, report = camera_height_scaling.evaluate_camera_height_scaling(
        np.stack([disp, disp]), [gt, gt], False, [exact, ch.ScaleRefusal("no road")], [road, road]
    )
    first, second = report["per_frame"]
    assert first["gt_median_scale"] == pytest.approx(4.0) and first["ratio_to_gt_median"] == pytest.approx(
        0.5
    )
    assert first["gt_ground_median_scale"] == pytest.approx(2.0)
    assert first["ratio_to_gt_ground_median"] == pytest.approx(1.0)
    assert "ratio_to_gt_ground_median" not in second  # no estimate, nothing to compare
    assert report["ratio_to_gt_ground_median"] == {"median": pytest.approx(1.0), "std": 0.0}
    summary = camera_height_scaling.camera_height_summary(report).splitlines()
    assert "med: 0.500" in summary[0] and summary[1].endswith("ground pixels alone | med: 1.000 | std: 0.000")


def test_evaluate_depth_prints_the_ratio_line_beside_the_table(analytic_model_folder, tmp_path, capfd):
    data, split = analytic_split(tmp_path)
    code = utils.run_cli(
        evaluate_depth.main,
        [
            "--data_path",
            data,
            "--eval_split",
            split,
            "--dataset",
            "folders",
            "--load_weights_folder",
            analytic_model_folder,
            "--num_workers",
            "0",
            "--scaling",
            "camera_height",
            "--camera_height",
            "1.65",
        ],
    )
    out = capfd.readouterr().out
    assert code == 0
    assert (
        "abs_rel" in out
        and "camera-height scale / ground-truth median scale | med: 1.000 | std: 0.000" in out
    )
    assert "frames estimated: 3 of 3" in out


# ---------------------------------------------------------------------------------------------
# bad input: one line, exit 2
# ---------------------------------------------------------------------------------------------
REFUSED_NUMBER = {
    "0": "must be a positive height in metres (the camera above the road), got 0",
    "-1.65": "must be a positive height in metres (the camera above the road), got -1.65",
    "nan": "must be a positive height in metres (the camera above the road), got nan",
}


@pytest.mark.parametrize("height", sorted(REFUSED_NUMBER))
def test_a_camera_height_of_zero_or_below_is_an_option_error(exported, tmp_path, capsys, height):
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        utils.run_cli(
            predict.main, ["--exported", exported, "--image_path", str(tmp_path), "--camera_height", height]
        )
    assert stopped.value.code == utils.EXIT_ERROR
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.endswith(f"error: argument --camera_height: {REFUSED_NUMBER[height]}"), last
    with pytest.raises(SystemExit) as stopped:
        utils.run_cli(evaluate_depth.main, ["--scaling", "camera_height", "--camera_height", height])
    assert stopped.value.code == utils.EXIT_ERROR
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.endswith(f"error: argument --camera_height: {REFUSED_NUMBER[height]}"), last


@pytest.mark.parametrize("option", ["--camera_pitch", "--camera_roll"])
@pytest.mark.parametrize("angle", ["31", "-45", "nan", "level"])
def test_a_pitch_or_roll_that_no_road_camera_has_is_an_option_error(
    exported, tmp_path, capsys, option, angle
):
    expected = {
        "31": "must be between -30 and 30 degrees, got 31",
        "-45": "must be between -30 and 30 degrees, got -45",
        "nan": "must be between -30 and 30 degrees, got nan",
        "level": "expected a number of degrees, got 'level'",
    }[angle]
    for main, argv in (
        (predict.main, ["--exported", exported, "--image_path", str(tmp_path), "--camera_height", "1.65"]),
        (evaluate_depth.main, ["--scaling", "camera_height", "--camera_height", "1.65"]),
    ):
        capsys.readouterr()
        with pytest.raises(SystemExit) as stopped:
            utils.run_cli(main, [*argv, option, angle])
        assert stopped.value.code == utils.EXIT_ERROR
        last = capsys.readouterr().err.splitlines()[-1]
        assert last.endswith(f"error: argument {option}: {expected}"), last


def test_missing_intrinsics_are_one_line_naming_the_input_before_any_output(exported, tmp_path, capsys):
    frames = write_frames(tmp_path / "frames", 1)
    out = tmp_path / "out"
    message = one_line(
        *run(
            predict.main,
            [
                "--exported",
                exported,
                "--image_path",
                frames[0],
                "--output_dir",
                str(out),
                "--camera_height",
                "1.65",
            ],
            capsys,
        )
    )
    assert message.startswith(
        f"--camera_height needs the camera's intrinsics for {frames[0]}: give --intrinsics"
    )
    assert not out.exists()
    message = one_line(
        *run(
            predict.main,
            [
                "--exported",
                exported,
                "--image_path",
                frames[0],
                "--camera_height",
                "1.65",
                "--intrinsics",
                str(tmp_path / "none.json"),
            ],
            capsys,
        )
    )
    assert message == f"--intrinsics {tmp_path / 'none.json'}: no such file"
    save_json(
        {"fx": 100.0, "fy": 100.0, "cx": 320.0, "cy": 96.0, "width": 640, "height": 192},
        str(tmp_path / "other.json"),
    )
    argv = [
        "--exported",
        exported,
        "--image_path",
        frames[0],
        "--camera_height",
        "1.65",
        "--intrinsics",
        str(tmp_path / "other.json"),
    ]
    message = one_line(*run(predict.main, argv, capsys))
    assert message.startswith(
        f"{tmp_path / 'other.json'}: intrinsics for 640x192 frames, but the frames of {frames[0]} are 320x96"
    )


def test_a_sequence_without_camera_height_and_bad_heights_in_intrinsics_are_one_line(
    analytic_model_folder, tmp_path, capsys
):
    data, split = analytic_split(tmp_path)
    intrinsics = os.path.join(data, "drive", "intrinsics.json")
    argv = [
        "--data_path",
        data,
        "--eval_split",
        split,
        "--dataset",
        "folders",
        "--load_weights_folder",
        analytic_model_folder,
        "--num_workers",
        "0",
        "--scaling",
        "camera_height",
    ]
    write_intrinsics(intrinsics)
    message = one_line(*run(evaluate_depth.main, argv, capsys))
    assert message.startswith(
        f"{intrinsics}: no camera_height (metres above the road) for --scaling camera_height"
    )
    write_intrinsics(intrinsics, camera_height=-1)
    message = one_line(*run(evaluate_depth.main, argv, capsys))
    assert message == (
        f"{intrinsics}: camera_height must be a positive height in metres (the camera above the road), got -1"
    )


def test_evaluate_depth_refuses_what_camera_height_scaling_cannot_do(tmp_path, capsys):
    for extra, expected in [
        (
            [],
            "--scaling camera_height needs --camera_height METRES (KITTI's camera is 1.65 m above the road)",
        ),
        (
            ["--camera_height", "1.65", "--ext_disp_to_eval", "d.npy"],
            "give --load_weights_folder instead of --ext_disp_to_eval",
        ),
        (["--camera_height", "1.65", "--eval_stereo"], "replaces median scaling"),
        (["--camera_height", "1.65", "--eval_split", "benchmark"], "it needs ground truth"),
    ]:
        message = one_line(*run(evaluate_depth.main, ["--scaling", "camera_height", *extra], capsys))
        assert expected in message, message
    message = one_line(*run(evaluate_depth.main, ["--camera_height", "1.65"], capsys))
    assert message == "--camera_height is for --scaling camera_height (the default scaling is median)"


def test_a_model_without_a_segmentation_head_needs_the_lowest_band(tmp_path, capsys):
    graph = depth_graph.DepthGraph(
        AnalyticEncoder(), AnalyticDecoder(), MIN_DEPTH, MAX_DEPTH
    )  # disparity only
    values = {
        "fsre_export_version": 1,
        "input_name": "image",
        "input_type": "float",
        "height": MODEL_H,
        "width": MODEL_W,
        "outputs": graph.output_names,
    }
    path = export.export_program(
        graph,
        str(tmp_path / "depth_only.pt2"),
        torch.rand(1, 3, MODEL_H, MODEL_W),
        {key: json.dumps(value) for key, value in values.items()},
    )
    assert not (analytic_scene()[1] == CAR)[ch.lowest_band_mask(MODEL_H, MODEL_W)].any()
    frames = write_frames(tmp_path / "frames", 1)
    write_intrinsics(tmp_path / "frames" / "intrinsics.json")
    argv = [
        "--exported",
        path,
        "--image_path",
        frames[0],
        "--output_dir",
        str(tmp_path / "out"),
        "--camera_height",
        "1.65",
    ]
    message = one_line(*run(predict.main, argv, capsys))
    assert message.startswith(
        "--camera_height finds the road with the model's segmentation head, and this model has "
        "none: give --ground_from lowest_band"
    )
    code, err = run(predict.main, argv + ["--ground_from", "lowest_band"], capsys)
    assert code == 0, err
    record = json.loads(open(tmp_path / "out" / "0000000000_scale.json").read())
    assert record["ground"] == "lowest band" and record["scale"] == pytest.approx(TRUE_SCALE, rel=1e-5)


def test_the_rendered_synthetic_street_gives_its_camera_height_from_its_road_labels():
    """The synthetic scenes (what docs/metric_depth.md measures on): exact depth and the renderer's labels,
    parked cars and sidewalks included, give the scale exactly; a 5 % error on every depth gives a 5 % one."""
    from datasets.cityscapes import LABEL_TO_TRAIN
    from datasets.synthetic import scenes

    camera = scenes.Camera(310, 94)
    drive = scenes.build_drive("metric", 6, seed=4)
    _, depth, label_ids = scenes.render(camera, drive.poses[3], drive.world, supersample=1)
    road = ch.ground_mask_from_labels(LABEL_TO_TRAIN[label_ids]) & (depth > 0)  # the far road has no depth
    assert road.sum() > 2000 and (label_ids == scenes.CAR).any()  # parked cars in view
    relative = np.where(depth > 0, depth, 1.0) / TRUE_SCALE
    estimate = ch.estimate_scale(relative, camera.K, road, scenes.CAMERA_HEIGHT)
    assert estimate.scale == pytest.approx(TRUE_SCALE, rel=EXACT) and estimate.inlier_share == 1.0
    assert estimate.pitch_degrees == pytest.approx(0, abs=1e-6)
    assert estimate.roll_degrees == pytest.approx(0, abs=1e-6)
    assert ch.estimate_scale(relative * 1.05, camera.K, road, scenes.CAMERA_HEIGHT).scale == pytest.approx(
        TRUE_SCALE / 1.05, rel=EXACT
    )


@pytest.mark.needs("av")
def test_import_video_writes_the_camera_height_into_the_intrinsics(tmp_path, capsys):
    from datasets.camera import read_camera
    from datasets.video_files import VideoWriter
    from tools import import_video

    video = str(tmp_path / "drive.mp4")
    with VideoWriter(video, 10.0) as writer:
        for _ in range(3):
            writer.write(np.full((FRAME_H, FRAME_W, 3), 128, np.uint8))
    intrinsics = ["--fx", "185.6", "--fy", "184.3", "--cx", "160", "--cy", "48"]
    argv = [
        video,
        "--out",
        str(tmp_path / "data"),
        *intrinsics,
        "--camera_height",
        "1.2",
        "--width",
        str(MODEL_W),
    ]
    code, err = run(import_video.main, argv, capsys)
    assert code == 0, err
    camera = read_camera(str(tmp_path / "data" / "drive" / "intrinsics.json"))
    assert camera.camera_height == 1.2 and camera.fx == pytest.approx(185.6 / 2)  # resized; the height is not
    for argv, message in [
        (
            ["--camera_height", "-1", *intrinsics],
            "argument --camera_height: must be a positive height in metres (the camera above the road), "
            "got -1",
        ),
        (  # the range every command checks (datasets.camera.CAMERA_HEIGHT_RANGE)
            ["--camera_height", "1650", *intrinsics],
            "argument --camera_height: must be metres, got 1650: that looks like millimetres (1.65 m?)",
        ),
        (["--camera_height", "1.2"], "--camera_height goes into intrinsics.json: give the intrinsics too"),
    ]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as stopped:
            utils.run_cli(import_video.main, [video, "--out", str(tmp_path / "other"), *argv])
        assert stopped.value.code == utils.EXIT_ERROR
        assert message in capsys.readouterr().err.splitlines()[-1]
    assert not (tmp_path / "other").exists()


def test_the_saturated_near_end_of_the_depth_range_is_left_out():
    """A model whose depth range starts too far (the stereo demo's --min_depth 2) clamps the near road at
    min_depth: a fronto-parallel strip that bends the plane; its pixels are left out."""
    depth, road = road_depth(up_normal())
    relative = depth / TRUE_SCALE
    min_depth = float(np.percentile(relative[road], 30))  # the nearest 30 % of the road is clamped
    clamped = np.maximum(relative, min_depth)
    settings = ch.GroundSettings(CAMERA_HEIGHT, "segmentation")
    logits = np.eye(NUM_CLASSES)[np.where(road, ROAD, SKY)].transpose(2, 0, 1)
    biased = settings.estimate(1 / clamped, logits, K)
    assert abs(biased.scale / TRUE_SCALE - 1) > 0.01
    estimate = settings.estimate(1 / clamped, logits, K, depth_range=(min_depth, MAX_DEPTH))
    assert estimate.scale == pytest.approx(TRUE_SCALE, rel=EXACT)
    # the margin: sigmoids above SATURATED_SIGMOID, i.e. depths below min_depth / (that share of the range)
    saturated = ch.saturated(1 / clamped, min_depth, MAX_DEPTH)
    assert estimate.pixels_used == (road & ~saturated).sum() < (relative[road] >= min_depth).sum()
