"""No silent wrong metres (issue 30): every input's outputs written when one input gets no scale, one
validator of camera and frame for metres, camera heights and tilts that cameras have, options refused where
they cannot act, a given orientation's own plausibility check, the camera-height evaluation's own metrics
file, loader workers that fit the machine, the smallest image side, and error messages that name the option
at fault.

The analytic network and its scene come from tests/test_camera_height.py (exact depth, road labels)."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
import test_camera_height as tch
from PIL import Image

import evaluate_depth
import options
import predict
import utils
from datasets.camera import CAMERA_HEIGHT_RANGE, parse_camera
from deploy.metric import camera_height as ch
from evaluation import depth as evaluation_depth
from tools import benchmark, export_model
from utils.files import save_json

exported = tch.exported  # the analytic network as a torch.export file (module-scoped fixture)
analytic_model_folder = tch.analytic_model_folder  # evaluate_depth.py's loader gives the analytic network
run, one_line = tch.run, tch.one_line


def predict_argv(exported_file: str, inputs: list[str], out, *extra: str) -> list[str]:
    return ["--exported", exported_file, "--image_path", *inputs, "--output_dir", str(out), *extra]


def option_error(main, argv, capsys) -> str:
    """The last stderr line of an argparse usage error (exit code 2)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        utils.run_cli(main, argv)
    assert stopped.value.code == utils.EXIT_ERROR
    return capsys.readouterr().err.strip().splitlines()[-1]


# ---------------------------------------------------------------------------------------------
# 4: a video without road does not cost the other inputs their outputs
# ---------------------------------------------------------------------------------------------
@pytest.mark.needs("av")
def test_a_video_without_road_keeps_every_inputs_outputs_and_is_named_at_the_end(exported, tmp_path, capsys):
    from datasets.video_files import VideoWriter

    frames = tch.write_frames(tmp_path / "images", 2)
    video = str(tmp_path / "images" / "night.mp4")
    with VideoWriter(video, 10.0, lossless=True) as writer:
        for _ in range(3):
            writer.write(np.zeros((tch.FRAME_H, tch.FRAME_W, 3), np.uint8))
    tch.write_intrinsics(tmp_path / "images" / "intrinsics.json")
    out = tmp_path / "out"
    message = one_line(
        *run(predict.main, predict_argv(exported, [*frames, video], out, "--camera_height", "1.65"), capsys)
    )
    assert message.startswith("1 input(s) got no metric scale") and video in message
    assert "no frame shows enough road" in message
    for i in range(2):  # the images: every output, in metres
        for suffix in ("_disp.npy", "_depth.npy", "_disp.png", "_seg.png", "_scale.json"):
            assert (out / f"{i:010d}{suffix}").is_file()
    assert (out / "night_depth.mp4").is_file()  # the video: written, in relative colours
    summary = json.loads((out / "night_scale.json").read_text())
    assert summary["frames"] == 3 and summary["median_estimate"] is None and "road" in summary["reason"]


# ---------------------------------------------------------------------------------------------
# 5: one validator of camera and frame; metres need the frame size the intrinsics are for
# ---------------------------------------------------------------------------------------------
def intrinsics(**values) -> dict:
    base = {
        "fx": tch.FRAME_K[0, 0],
        "fy": tch.FRAME_K[1, 1],
        "cx": tch.FRAME_K[0, 2],
        "cy": tch.FRAME_K[1, 2],
    }
    return {**base, **values}


def test_metres_from_intrinsics_without_their_frame_size_are_refused_before_any_output(
    exported, tmp_path, capsys
):
    frames = tch.write_frames(tmp_path / "frames", 1)
    save_json(intrinsics(), str(tmp_path / "frames" / "intrinsics.json"))  # no width, height
    out = tmp_path / "out"
    message = one_line(
        *run(predict.main, predict_argv(exported, frames, out, "--camera_height", "1.65"), capsys)
    )
    assert message.startswith(f"{tmp_path / 'frames' / 'intrinsics.json'}: metres need the frame size")
    assert 'add "width" and "height"' in message and not out.exists()


def test_frames_of_two_sizes_under_one_intrinsics_file_are_refused(exported, tmp_path, capsys):
    tch.write_frames(tmp_path / "frames", 1)
    larger = str(tmp_path / "frames" / "larger.png")
    Image.new("RGB", (tch.FRAME_W * 3 // 2, tch.FRAME_H * 3 // 2), (90, 90, 90)).save(larger)
    for camera in (intrinsics(), intrinsics(width=tch.FRAME_W, height=tch.FRAME_H)):
        save_json(camera, str(tmp_path / "frames" / "intrinsics.json"))
        out = tmp_path / "out"
        message = one_line(
            *run(
                predict.main,
                predict_argv(exported, [str(tmp_path / "frames")], out, "--camera_height", "1.65"),
                capsys,
            )
        )
        assert message.startswith(str(tmp_path / "frames" / "intrinsics.json")), message
        assert not out.exists()  # refused before any work


def test_a_focal_length_no_road_camera_has_for_the_frames_is_refused(exported, tmp_path, capsys):
    frames = tch.write_frames(tmp_path / "frames", 1)
    camera = intrinsics(fx=2000.0, fy=2000.0, width=tch.FRAME_W, height=tch.FRAME_H)  # 10 x the width
    save_json(camera, str(tmp_path / "frames" / "intrinsics.json"))
    message = one_line(
        *run(
            predict.main, predict_argv(exported, frames, tmp_path / "out", "--camera_height", "1.65"), capsys
        )
    )
    assert "fx 2000 px for 320 px wide frames" in message and "degree field of view" in message


def test_intrinsics_with_both_k_and_fx_or_a_skewed_k_are_refused():
    k = [[100.0, 0.0, 50.0], [0.0, 100.0, 30.0], [0.0, 0.0, 1.0]]
    with pytest.raises(utils.InputError, match="holds both K and fx: give the intrinsics once"):
        parse_camera({"K": k, "fx": 90.0}, "cam.json")
    skewed = [[100.0, 2.0, 50.0], [0.0, 100.0, 30.0], [0.0, 0.0, 1.0]]
    with pytest.raises(utils.InputError, match=r"cam.json: K has a skew of 2 \(K\[0\]\[1\]\)"):
        parse_camera({"K": skewed}, "cam.json")
    assert parse_camera({"K": k}, "cam.json").fx == 100.0  # the usual K still reads


# ---------------------------------------------------------------------------------------------
# 6: camera heights that cameras have
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "height, expected",
    [
        ("1650", "must be metres, got 1650: that looks like millimetres (1.65 m?)"),
        ("1e308", "must lie between 0.1 and 10 metres (cameras above a road), got 1e+308"),
        ("1e-300", "must lie between 0.1 and 10 metres (cameras above a road), got 1e-300"),
        ("inf", "must be a positive height in metres (the camera above the road), got inf"),
    ],
)
def test_camera_heights_outside_what_cameras_have_are_option_errors(
    exported, tmp_path, capsys, height, expected
):
    for main, argv in (
        (predict.main, ["--exported", exported, "--image_path", str(tmp_path)]),
        (evaluate_depth.main, ["--scaling", "camera_height"]),
    ):
        last = option_error(main, [*argv, "--camera_height", height], capsys)
        assert f"error: argument --camera_height: {expected}" in last, last
    with pytest.raises(utils.InputError, match="camera_height must"):  # an intrinsics file's, too
        parse_camera(intrinsics(camera_height=float(height)), "cam.json")


def test_no_camera_height_outside_the_range_gives_a_scale():
    assert CAMERA_HEIGHT_RANGE == (0.1, 10.0)
    depth, road = tch.road_depth(tch.up_normal())
    for height in (1e308, 1e-300, 1650.0):
        with pytest.raises(utils.InputError, match="the camera height must"):
            ch.estimate_scale(depth / tch.TRUE_SCALE, tch.K, road, height)
    estimate = ch.estimate_scale(depth / tch.TRUE_SCALE, tch.K, road, CAMERA_HEIGHT_RANGE[1])
    assert estimate.scale == pytest.approx(tch.TRUE_SCALE * CAMERA_HEIGHT_RANGE[1] / tch.CAMERA_HEIGHT)


# ---------------------------------------------------------------------------------------------
# 8: pitch and roll checked together
# ---------------------------------------------------------------------------------------------
def test_a_pitch_and_roll_that_tilt_the_camera_too_far_together_are_refused_as_options(
    exported, tmp_path, capsys
):
    frames = tch.write_frames(tmp_path / "frames", 1)
    tch.write_intrinsics(tmp_path / "frames" / "intrinsics.json")
    out = tmp_path / "out"
    tilt = ["--camera_pitch", "25", "--camera_roll", "25"]
    message = one_line(
        *run(predict.main, predict_argv(exported, frames, out, "--camera_height", "1.65", *tilt), capsys)
    )
    assert message == (
        "--camera_pitch 25 and --camera_roll 25 tilt the camera 36.7 degrees from level together (at most "
        "30, as for either alone): no road camera's mount"
    )
    assert not out.exists()
    message = one_line(
        *run(evaluate_depth.main, ["--scaling", "camera_height", "--camera_height", "1.65", *tilt], capsys)
    )
    assert message.startswith("--camera_pitch 25 and --camera_roll 25 tilt the camera 36.7 degrees")
    assert ch.combined_tilt_degrees(20, 20) < ch.MAX_TILT_DEGREES  # 28.5: allowed


# ---------------------------------------------------------------------------------------------
# 10: options that cannot act are refused
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "extra",
    [
        ["--camera_pitch", "5"],
        ["--camera_roll", "-2"],
        ["--ground_classes", "road", "sidewalk"],
        ["--ground_from", "lowest_band"],
        ["--scale_window", "5"],
        ["--intrinsics", "missing.json"],
    ],
    ids=lambda extra: extra[0],
)
def test_options_that_need_camera_height_are_refused_without_it(exported, tmp_path, capsys, extra):
    frames = tch.write_frames(tmp_path / "frames", 1)
    out = tmp_path / "out"
    message = one_line(*run(predict.main, predict_argv(exported, frames, out, *extra), capsys))
    assert message == (
        f"{extra[0]} acts only with --camera_height (the camera-height scale): give it, or drop {extra[0]}"
    )
    assert not out.exists()


@pytest.mark.parametrize("extra", [["--camera_pitch", "5"], ["--ground_from", "lowest_band"]])
def test_evaluate_depth_refuses_ground_options_under_median_scaling(capsys, extra):
    message = one_line(*run(evaluate_depth.main, extra, capsys))
    assert message == (
        f"{extra[0]} acts only with --scaling camera_height (the camera-height scale): give it, or drop "
        f"{extra[0]}"
    )


def test_ground_classes_with_the_lowest_band_and_a_folder_as_intrinsics_are_refused(
    exported, tmp_path, capsys
):
    frames = tch.write_frames(tmp_path / "frames", 1)
    tch.write_intrinsics(tmp_path / "frames" / "intrinsics.json")
    metric = ["--camera_height", "1.65"]
    both = ["--ground_from", "lowest_band", "--ground_classes", "road", "sidewalk"]
    message = one_line(
        *run(predict.main, predict_argv(exported, frames, tmp_path / "out", *metric, *both), capsys)
    )
    assert message.startswith("--ground_classes picks segmentation classes, and --ground_from lowest_band")
    folder = str(tmp_path / "frames")
    argv = predict_argv(exported, frames, tmp_path / "out", *metric, "--intrinsics", folder)
    message = one_line(*run(predict.main, argv, capsys))
    assert message.startswith(f"--intrinsics {folder} is a folder: give the intrinsics file in it")


def test_an_even_scale_window_is_an_option_error_and_the_window_used_is_recorded(exported, tmp_path, capsys):
    last = option_error(
        predict.main, ["--exported", exported, "--image_path", str(tmp_path), "--scale_window", "2"], capsys
    )
    assert last.endswith(
        "error: argument --scale_window: must be an odd number of frames (a window centred on each frame: "
        "2 would take 3), got 2"
    )
    with pytest.raises(utils.InputError, match="odd number of frames"):
        ch.ScaleSmoother(2)


# ---------------------------------------------------------------------------------------------
# 12: a given orientation's fit has a plausibility check of its own
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pitch", [10.0, 25.0])  # level, a flat picture's lowest band is mostly off-plane
def test_a_blank_or_noisy_picture_gets_no_scale_from_a_given_orientation(pitch):
    band = ch.lowest_band_mask(tch.HEIGHT, tch.WIDTH)
    normal = ch.road_normal(pitch)
    rng = np.random.default_rng(0)
    flat = np.full((tch.HEIGHT, tch.WIDTH), 5.0)  # a blank grey picture's prediction: one depth
    noisy = flat * (1 + 0.1 * rng.standard_normal(flat.shape))  # noise around one depth
    for depth in (flat, noisy):
        points = ch.back_project(depth, tch.K, band)
        _, inliers = ch.fit_ground_distance(points, normal)
        assert inliers.mean() >= ch.MIN_INLIER_SHARE  # what the inlier share alone let through
        with pytest.raises(ch.GroundNotVisible, match="do not follow the plane of the given pitch and roll"):
            ch.estimate_scale(depth, tch.K, band, tch.CAMERA_HEIGHT, "lowest band", normal=normal)
    road, _ = tch.road_depth(tch.up_normal(pitch))  # the road itself, also with a fifth of it 30-200 % off
    road = np.where(np.isfinite(road), road, tch.FAR) / tch.TRUE_SCALE
    off = rng.random(road.shape) < 0.2
    for depth in (road, np.where(off, road * rng.uniform(1.3, 3.0, road.shape), road)):
        estimate = ch.estimate_scale(depth, tch.K, band, tch.CAMERA_HEIGHT, "lowest band", normal=normal)
        assert estimate.scale == pytest.approx(tch.TRUE_SCALE, rel=1e-6)


# ---------------------------------------------------------------------------------------------
# 13, 14: the camera-height evaluation's own metrics file; loader workers that fit the machine
# ---------------------------------------------------------------------------------------------
def test_the_camera_height_evaluation_keeps_the_median_scaled_metrics_file(
    analytic_model_folder, tmp_path, capsys, monkeypatch
):
    data, split = tch.analytic_split(tmp_path)
    workers = []
    loader = evaluation_depth.DataLoader

    def counting_loader(*args, num_workers: int = 0, **kwargs):
        workers.append(num_workers)
        return loader(*args, num_workers=0, **kwargs)  # the test's own: no processes

    monkeypatch.setattr(evaluation_depth, "DataLoader", counting_loader)
    monkeypatch.setattr(options, "available_cpus", lambda: 2, raising=False)
    argv = ["--data_path", data, "--eval_split", split, "--dataset", "folders"]
    argv += ["--load_weights_folder", analytic_model_folder]
    code, err = run(evaluate_depth.main, argv, capsys)
    assert code == 0, err
    median_file = os.path.join(analytic_model_folder, "metrics_split.json")
    median_record = open(median_file).read()
    code, err = run(evaluate_depth.main, [*argv, "--scaling", "camera_height"], capsys)
    assert code == 0, err
    assert open(median_file).read() == median_record  # the first protocol's record is kept
    record = json.loads(open(os.path.join(analytic_model_folder, "metrics_split_camera_height.json")).read())
    assert record["scaling"] == "camera_height" and json.loads(median_record)["median_scaling"] is True
    assert workers == [2, 2]  # the default, 4, capped by the 2 CPUs this process may use
    assert evaluation_depth.default_workers(None) == 2 and evaluation_depth.default_workers(3) == 3


# ---------------------------------------------------------------------------------------------
# 7, 11: the smallest image side, and messages that name the option at fault
# ---------------------------------------------------------------------------------------------
def test_image_sides_below_what_the_networks_take_are_option_errors(capsys):
    expected = "must be at least 64: the decoders pad the deepest feature (1/32 of the image) by reflection"
    for argv in (["--height", "32"], ["--width", "32"]):
        last = option_error(options.parse_args, [*argv, "--weights_init", "scratch"], capsys)
        assert f"argument {argv[0]}: {expected}" in last, last
        last = option_error(benchmark.cli, ["--make_data", "unused", *argv], capsys)
        assert f"argument {argv[0]}: {expected}" in last, last
    with pytest.raises(utils.InputError, match=re.escape(f"height {expected}")):  # tools.export_model's check
        options.check_image_size(32, 64)
    options.check_image_size(64, 64)
    assert export_model.options is options


def test_benchmark_refuses_an_encoder_named_twice(tmp_path, capsys):
    last = option_error(
        benchmark.cli, ["--data_path", str(tmp_path / "none"), "--encoders", "resnet18", "resnet18"], capsys
    )
    assert last.endswith("error: --encoders lists resnet18 more than once: name each encoder once"), last
    last = option_error(
        benchmark.cli, ["--make_data", str(tmp_path / "made"), "--encoders", "resnet7"], capsys
    )
    assert "error: --encoders: unknown encoder 'resnet7'" in last, last


@pytest.mark.needs("timm")
def test_timm_errors_name_the_option_and_the_pretrained_tag_at_fault(capsys):
    last = option_error(options.parse_args, ["--pose_encoder", "timm:no_such_net"], capsys)
    assert "error: --pose_encoder timm:no_such_net: timm " in last, last
    last = option_error(options.parse_args, ["--encoder", "timm:convnext_atto.no_such_tag"], capsys)
    assert "has no pretrained tag 'no_such_tag' for convnext_atto (its tags: " in last, last


# ---------------------------------------------------------------------------------------------
# a frame without a scale is a typed value: GroundSettings.frame_scale (evaluation and prediction)
# ---------------------------------------------------------------------------------------------
def test_a_frame_without_road_gets_a_scale_refusal_with_the_reason_and_a_frame_with_road_its_estimate():
    depth, road = tch.road_depth(tch.up_normal())
    settings = ch.GroundSettings(tch.CAMERA_HEIGHT)
    one_hot = np.eye(tch.NUM_CLASSES)
    disp = tch.TRUE_SCALE / depth  # the scale that turns 1 / disp into metres: TRUE_SCALE
    found = settings.frame_scale(disp, one_hot[np.where(road, tch.ROAD, tch.SKY)].transpose(2, 0, 1), tch.K)
    assert isinstance(found, ch.ScaleEstimate)
    assert found.scale == pytest.approx(tch.TRUE_SCALE, rel=tch.EXACT)
    sky = one_hot[np.full(road.shape, tch.SKY)].transpose(2, 0, 1)
    with pytest.raises(ch.GroundNotVisible) as raised:
        settings.estimate(disp, sky, tch.K)
    refused = settings.frame_scale(disp, sky, tch.K)
    assert refused == ch.ScaleRefusal(str(raised.value))
    assert refused.reason.startswith("0 road pixels with a depth, fewer than the 200")
    assert refused.as_dict() == {"scale": None, "reason": refused.reason}
