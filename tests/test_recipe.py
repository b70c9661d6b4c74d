"""The recipe grid's parts, in seconds and without training: the training diagnostics against hand-computed
values, the grid's table and verdicts, the TensorBoard scalars read back, the synthetic codecs and held
frames, and the import's handling of videos that show each picture several times (docs/own_data.md)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboardX import SummaryWriter

import layers
import options
from conftest import random_batch, require
from datasets import video_import
from datasets.synthetic import video as synthetic_video
from model import FSREModel
from reproduce import recipe_grid
from tools import import_video
from training import diagnostics

SIZE = (64, 48)  # width, height of the test videos' frames (even sides)
PICTURES = 4  # distinct pictures in the held test video
HOLD = 3  # each shown this many times (10 distinct frames a second at 30 fps)


# ---------------------------------------------------------------------------------------------
# diagnostics
# ---------------------------------------------------------------------------------------------
def test_translation_magnitude_is_the_mean_norm_over_batch_and_source_frames():
    # (B, frames predicted, 1, 3) as the pose decoder returns; norms 5 and 0 for -1, 1 and 1 for +1
    outputs = {
        ("translation", -1): torch.tensor([[[[3.0, 4.0, 0.0]]], [[[0.0, 0.0, 0.0]]]]),
        ("translation", 1): torch.tensor([[[[0.0, 0.0, 1.0]]], [[[0.0, -1.0, 0.0]]]]),
        ("axisangle", 1): torch.ones(2, 1, 1, 3),
    }
    assert diagnostics.translation_magnitude(outputs) == pytest.approx((2.5 + 1.0) / 2)
    assert diagnostics.translation_magnitude({}) is None


def test_warp_wins_is_the_share_of_pixels_where_a_warp_beats_every_unwarped_source():
    # flat pictures, so that each sample's error is one number: a copy of the target has none
    target = torch.full((3, 3, 4, 4), 0.5)
    near, far = torch.full_like(target, 0.6), torch.full_like(target, 0.9)
    # sample 0: a warp reproduces the target, the unwarped sources do not -> all 16 pixels win
    # sample 1: the warps are farther than an unwarped source -> none; sample 2: equal errors -> none
    warped_m1 = torch.stack([target[0], far[1], near[2]])
    warped_p1 = torch.stack([far[0], far[1], far[2]])
    source_m1 = torch.stack([near[0], near[1], far[2]])
    source_p1 = torch.stack([far[0], far[1], near[2]])
    inputs = {("color", 0, 0): target, ("color", -1, 0): source_m1, ("color", 1, 0): source_p1}
    outputs = {("color", -1, 0): warped_m1, ("color", 1, 0): warped_p1, ("color", 1, 1): target}
    assert diagnostics.warp_wins_share(inputs, outputs) == pytest.approx(1 / 3)
    assert diagnostics.step_scalars(inputs, outputs) == {diagnostics.WARP_WINS_TAG: pytest.approx(1 / 3)}
    assert diagnostics.step_scalars(inputs, {}) == {}  # no warp, no pose: nothing


def test_warp_wins_equals_the_share_that_the_losss_auto_mask_marks():
    torch.manual_seed(0)
    target = torch.rand(2, 3, 12, 16)
    inputs = {("color", 0, 0): target, **{("color", f, 0): torch.rand_like(target) for f in (-1, 1)}}
    outputs = {("color", f, 0): torch.rand_like(target) for f in (-1, 1)}
    warped = torch.cat([layers.reprojection_error(outputs[("color", f, 0)], target) for f in (-1, 1)], 1)
    identity = torch.cat([layers.reprojection_error(inputs[("color", f, 0)], target) for f in (-1, 1)], 1)
    _, automask = layers.min_reprojection(warped, identity, noise_std=0.0)
    share = float(automask.float().mean())
    assert 0.2 < share < 0.8  # a mixed case, not all or nothing
    assert diagnostics.warp_wins_share(inputs, outputs) == pytest.approx(share)


def test_the_grid_reads_the_diagnostics_back_from_tensorboard_files(tmp_path):
    writer = SummaryWriter(str(tmp_path))
    for step, value in ((0, 0.5), (3, 0.25), (6, 0.75)):
        writer.add_scalar(diagnostics.WARP_WINS_TAG, value, step)
    writer.add_scalar("loss", 1.5, 0)
    writer.close()
    scalars = recipe_grid.read_scalars(str(tmp_path))
    assert scalars[diagnostics.WARP_WINS_TAG] == [(0, 0.5), (3, 0.25), (6, 0.75)]
    assert scalars["loss"] == [(0, 1.5)]
    assert recipe_grid.summarise(scalars[diagnostics.WARP_WINS_TAG]) == [0.5, 0.25, 0.75]
    assert recipe_grid.summarise([(s, float(s)) for s in range(6)], parts=3) == [0.5, 2.5, 4.5]


def cell(codec: str, seed: int, absrels: list[float]) -> dict:
    return {
        "codec": codec,
        "seed": seed,
        "evaluations": [{"step": 29 * k, "abs_rel": a, "a1": 0.5} for k, a in enumerate(absrels)],
        "translation": [(0, 0.001), (3, 0.004), (6, 0.002)],
        "warp_wins": [(0, 0.5), (3, 0.4), (6, 0.6)],
    }


def test_the_table_calls_a_run_diverged_and_compares_it_with_the_lossless_run_of_its_seed():
    lossless = cell("lossless", 0, [0.5, 0.3, 0.2])
    close = cell("h264-crf23", 0, [0.5, 0.3, 0.2 * 1.15])  # exactly 15 % above: within
    far = cell("h264-crf14", 0, [0.5, 0.6, 0.46])  # 0.46 > 0.9 x 0.5: diverged
    assert recipe_grid.verdict(lossless, lossless) == "learned"
    assert recipe_grid.verdict(close, lossless) == "learned, within 15 %"
    assert recipe_grid.verdict(far, lossless) == "diverged, off lossless"
    table = recipe_grid.markdown([lossless, close, far])
    assert (
        "| h264-crf14 | 0 | 0.500 | 0.600 | 0.460 | 0.0010 / 0.0040 / 0.0020 | 0.50 / 0.40 / 0.60 |" in table
    )
    assert "1 of 3 runs diverged" in table and "1 of 2 ended within 15 % of the lossless run" in table


# ---------------------------------------------------------------------------------------------
# synthetic footage: codecs and held frames
# ---------------------------------------------------------------------------------------------
def test_codec_specs_and_the_dashcam_bitrate():
    assert synthetic_video.parse_codec("lossless").lossless
    crf14 = synthetic_video.parse_codec("h264-crf14")
    assert (crf14.encoder, crf14.crf, crf14.options(310, 94)) == ("libx264", 14, {"crf": "14"})
    h265 = synthetic_video.parse_codec("h265")
    assert (h265.encoder, h265.crf) == ("libx265", synthetic_video.H265_DEFAULT_CRF)
    dashcam = synthetic_video.parse_codec("h264-dashcam").options(310, 94)
    # 12 Mbit/s at 1920x1080 and 30 fps is 0.193 bits per pixel: 310 x 94 x 30 of them
    assert dashcam == {"b": str(round(12e6 * 310 * 94 / (1920 * 1080)))}
    for bad in ("h264", "h264-crf", "h264-crf52", "vp9", "h265-crfx"):
        with pytest.raises(ValueError, match="--codec"):
            synthetic_video.parse_codec(bad)


@pytest.mark.needs("av")
def test_held_videos_show_each_drive_frame_three_times_bit_for_bit(tmp_path):
    require("av")
    from datasets.video_files import read_frames

    video = synthetic_video.generate_videos(
        str(tmp_path), num_drives=1, frames=2, width=32, height=16, codec="lossless", hold=True, workers=1
    )[0]
    frames = [rgb for _, rgb in read_frames(video)]
    assert len(frames) == 2 * HOLD
    assert all(np.array_equal(frames[k], frames[HOLD * (k // HOLD)]) for k in range(len(frames)))
    assert not np.array_equal(frames[0], frames[HOLD])  # the drive moved about 1 m
    with np.load(tmp_path / f"drive_01{synthetic_video.DEPTH_SUFFIX}") as depths:
        assert sorted(depths.files) == ["depth_0000", "depth_0001"]  # video frame 3j is drive frame j


# ---------------------------------------------------------------------------------------------
# the import of a video that shows each picture three times
# ---------------------------------------------------------------------------------------------
def pictures() -> list[np.ndarray]:
    """PICTURES distinct smooth pictures (blocks of random colours, as far apart as video frames of a
    drive 1 m apart)."""
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (PICTURES, SIZE[1] // 8, SIZE[0] // 8, 3), dtype=np.uint8)
    return [np.kron(b, np.ones((8, 8, 1), dtype=np.uint8)) for b in blocks]


@pytest.fixture
def held_video(tmp_path) -> str:
    require("av")
    from datasets.video_files import VideoWriter

    path = str(tmp_path / "held.mp4")
    with VideoWriter(path, synthetic_video.VIDEO_FPS, crf=14) as writer:
        for picture in pictures():
            for _ in range(HOLD):
                writer.write(picture)
    return path


def imported(folder) -> list[np.ndarray]:
    names = sorted(f for f in os.listdir(folder) if f.endswith(".png"))
    return [np.asarray(Image.open(os.path.join(folder, n)).convert("RGB"), dtype=np.float32) for n in names]


def nearest_picture(frame: np.ndarray) -> int:
    return int(np.argmin([np.abs(frame - p).mean() for p in pictures()]))


@pytest.mark.needs("av")
def test_the_default_import_keeps_each_held_picture_once_in_order(held_video, tmp_path, capsys):
    out = tmp_path / "ten"
    assert import_video.main([held_video, "--out", str(out), "--fov", "90", "--ext", "png"]) == 0
    frames = imported(out / "held")
    assert [nearest_picture(f) for f in frames] == list(range(PICTURES))
    assert json.loads((out / "held" / video_import.IMPORT_RECORD).read_text())["repeated_frames"] == 0
    assert "repeat the previous one" not in capsys.readouterr().err


@pytest.mark.needs("av")
def test_an_import_above_the_distinct_rate_warns_and_drop_repeats_keeps_distinct_frames(
    held_video, tmp_path, capsys
):
    args = [held_video, "--fov", "90", "--ext", "png", "--fps", "30"]
    assert import_video.main(args + ["--out", str(tmp_path / "all")]) == 0
    err = capsys.readouterr().err
    frames = imported(tmp_path / "all" / "held")
    assert [nearest_picture(f) for f in frames] == [k // HOLD for k in range(PICTURES * HOLD)]
    record = json.loads((tmp_path / "all" / "held" / video_import.IMPORT_RECORD).read_text())
    repeats = PICTURES * (HOLD - 1)
    assert record["repeated_frames"] == repeats
    assert f"{repeats} of {PICTURES * HOLD} frames kept at --fps 30 repeat the previous one" in err
    assert "about 10 distinct frames a second" in err and "--fps 10" in err

    assert import_video.main(args + ["--out", str(tmp_path / "distinct"), "--drop_repeats"]) == 0
    frames = imported(tmp_path / "distinct" / "held")
    assert [nearest_picture(f) for f in frames] == list(range(PICTURES))
    record = json.loads((tmp_path / "distinct" / "held" / video_import.IMPORT_RECORD).read_text())
    assert record["settings"]["drop_repeats"] is True and record["frames"] == PICTURES


def test_a_repeat_is_below_half_a_grey_level_and_new_content_is_not():
    detector = video_import.RepeatDetector()
    a, b = pictures()[:2]
    noisy = a.copy()
    noisy[0] = np.minimum(noisy[0], 254) + 1  # one grey level on one row of 48: mean 1 / 48 / 255 < 0.002
    assert [detector.is_repeat(x) for x in (a, a, noisy, b, a)] == [False, True, True, False, False]
    assert detector.repeats == 2


def test_the_data_check_names_repeated_frames_and_does_not_advise_drop_static(tmp_path, capsys):
    from tools import prepare_sequences

    (tmp_path / "held").mkdir()
    frames = [p for p in pictures() for _ in range(HOLD)]  # 8 of the 12 frames repeat their predecessor
    for i, rgb in enumerate(frames):
        Image.fromarray(rgb).save(tmp_path / "held" / f"{i:010d}.png")
    (tmp_path / "intrinsics.json").write_text(json.dumps({"fx": 32, "fy": 32, "cx": 32, "cy": 24}))

    def warnings() -> list[str]:
        assert (
            prepare_sequences.main(["--data_path", str(tmp_path), "--num_workers", "0", "--overwrite"]) == 0
        )
        return json.loads((tmp_path / "splits" / "report.json").read_text())["sequences"]["held"]["warnings"]

    # identical frames alone may be a camera standing still: near-static, --drop_static advised
    assert any("near-static" in w and "--drop_static" in w for w in warnings())
    # imported from a video that repeats its pictures (import_video's record): re-import advised instead
    record = {"settings": {}, "frames": len(frames), "repeated_frames": 8}
    (tmp_path / "held" / video_import.IMPORT_RECORD).write_text(json.dumps(record))
    found = warnings()
    repeated = [w for w in found if "repeat the previous one" in w]
    assert (
        len(repeated) == 1 and repeated[0].startswith("67% of its frames") and "--drop_repeats" in repeated[0]
    )
    assert not any("--drop_static leaves them out" in w for w in found)
    assert "repeat the previous one" in capsys.readouterr().out


def test_a_finished_cell_is_read_back_and_one_of_other_settings_is_refused(tmp_path, monkeypatch):
    settings = recipe_grid.GridSettings(steps=6)
    folder = recipe_grid.codec_folder(str(tmp_path), "h264-crf14")
    os.makedirs(folder)
    prepared = {"codec": "h264-crf14", "frames": settings.frames, "scale": settings.scale, "hold": True}
    (tmp_path / "h264-crf14" / recipe_grid.PREPARED).write_text(json.dumps(prepared))
    record = {**cell("h264-crf14", 0, [0.5, 0.4]), "settings": settings.as_dict()}
    (tmp_path / "h264-crf14" / f"seed0_{recipe_grid.RECORD}").write_text(json.dumps(record))
    monkeypatch.setattr(recipe_grid, "run", lambda *a: pytest.fail("a finished cell ran a command"))
    assert recipe_grid.run_cell(str(tmp_path), "h264-crf14", 0, settings)["evaluations"][1]["abs_rel"] == 0.4
    with pytest.raises(ValueError, match="other settings"):
        recipe_grid.run_cell(str(tmp_path), "h264-crf14", 0, recipe_grid.GridSettings(steps=7))


def test_a_bad_codec_fails_before_anything_is_written(tmp_path):
    from tools import recipe_grid as command

    with pytest.raises(ValueError, match="--codec vp9"):
        command.main(["--out", str(tmp_path / "grid"), "--codecs", "lossless", "vp9"])
    assert not os.path.exists(tmp_path / "grid")


# ---------------------------------------------------------------------------------------------
# the photometric warm-up (--photometric_warmup)
# ---------------------------------------------------------------------------------------------
def warmup_opts(*args: str):
    return options.parse_args(
        ["--weights_init", "scratch", "--height", "96", "--width", "320", "--config", "baseline", *args]
    )


def test_the_warmups_plain_loss_is_the_average_without_unwarped_frames():
    torch.manual_seed(0)
    model = FSREModel(warmup_opts())
    batch = random_batch()
    with torch.no_grad():
        outputs, paper = model(batch)
        _, plain = model(batch, plain_photometric=True)
        averaged = FSREModel(warmup_opts("--avg_reprojection", "--disable_automasking"))
        averaged.load_state_dict(model.state_dict())
        _, reference = averaged(batch)
    assert plain["loss"] == pytest.approx(float(reference["loss"]), rel=1e-6)
    assert float(plain["photometric/0"]) != pytest.approx(float(paper["photometric/0"]), rel=1e-3)
    # the plain loss at scale 0 by hand: the mean of the two warped frames' errors
    target = batch[("color", 0, 0)]
    errors = [layers.reprojection_error(outputs[("color", f, 0)], target) for f in (-1, 1)]
    assert float(plain["photometric/0"]) == pytest.approx(float(torch.cat(errors, 1).mean()), rel=1e-5)


def test_the_trainer_uses_the_plain_loss_for_the_warmups_steps_then_the_papers(tiny, tmp_path, in_process):
    from helpers import RUN_STEPS, run_args

    from trainer import Trainer

    seen: list[bool] = []
    forward = Trainer.forward

    def spy(self, batch, with_outputs=True, plain_photometric=False):
        seen.append(plain_photometric)
        return forward(self, batch, with_outputs, plain_photometric)

    Trainer.forward = spy
    try:
        Trainer(options.parse_args(run_args(tiny, tmp_path / "logs", "--photometric_warmup", "2"))).train()
    finally:
        Trainer.forward = forward
    assert seen == [True, True] + [False] * (RUN_STEPS - 2)


def test_on_frames_a_metre_apart_auto_masking_rewards_wrong_warps_and_the_plain_loss_does_not():
    """The cause the warm-up answers (docs/own_data.md): three rendered frames 1 m apart, warped with one
    depth for the whole picture. What a warp lowers the loss by, as a share of what the true motion does."""
    from datasets.synthetic import scenes

    camera = scenes.Camera(320, 96)
    drive = scenes.build_drive("drive", 6, seed=0)
    rendered = [scenes.render(camera, drive.poses[i], drive.world) for i in (2, 3, 4)]
    source_m1, target, source_p1 = (
        torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255 for rgb, _, _ in rendered
    )
    depth = rendered[1][1]
    K = torch.eye(4)[None]
    K[0, :3, :3] = torch.from_numpy(camera.K).float()
    points = layers.backproject_depth(
        torch.full((1, 1, 96, 320), float(np.median(depth[depth > 0]))), K.inverse()
    )

    def warped(reverse: bool) -> list[torch.Tensor]:
        frames = []
        for source, index in ((source_m1, 2), (source_p1, 4)):
            T = np.linalg.inv(drive.poses[index]) @ drive.poses[3]  # target camera -> source camera
            T = np.linalg.inv(T) if reverse else T
            grid = layers.project_3d(points, K, torch.from_numpy(T).float()[None], 96, 320)
            frames.append(layers.warp(source, grid))
        return frames

    def errors(frames: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([layers.reprojection_error(frame, target) for frame in frames], 1)

    unwarped = errors([source_m1, source_p1])

    def masked(frames):  # the paper's: minimum over warped and unwarped frames
        return float(torch.cat([unwarped, errors(frames)], 1).min(1)[0].mean())

    def plain(frames):  # the warm-up's: the warped frames' mean
        return float(errors(frames).mean())

    shifted = [torch.roll(frame, 3, dims=-1) for frame in (source_m1, source_p1)]  # no geometry at all
    for loss, unmoved in ((masked, masked([source_m1, source_p1])), (plain, plain([source_m1, source_p1]))):
        true_gain = unmoved - loss(warped(reverse=False))
        assert true_gain > 0.1 * unmoved  # the right warp helps under both losses
        reversed_share = (unmoved - loss(warped(reverse=True))) / true_gain
        shifted_share = (unmoved - loss(shifted)) / true_gain
        if loss is masked:  # measured 0.53 and 0.57: about half the reward needs no right warp
            assert reversed_share > 0.4 and shifted_share > 0.4
        else:  # measured -0.52 and -0.36: a wrong warp costs
            assert reversed_share < 0 and shifted_share < 0
