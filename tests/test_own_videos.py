"""Your own videos: image-sequence folders (--dataset folders), video import, splits and the data check,
depth videos, on real files: a synthetic 30 fps drive -> sequences at 10 fps -> pseudo-labels -> splits ->
a short training run -> a depth video; and every bad input as one line, exit 2, nothing half-written."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import helpers
import numpy as np
import pytest
import torch
from helpers import one_line_error
from PIL import Image

import evaluate_depth
import options
import predict
import utils
from conftest import PROJECT_DIR, require
from datasets import DATASETS, sequence_checks, video_import
from datasets.cityscapes import save_label_png
from datasets.folders import FoldersDataset, find_sequences, read_sequence
from datasets.mono_dataset import STEREO_BASELINE, read_split
from tools import import_video, make_pseudo_labels, prepare_sequences
from trainer import Trainer
from training.input_checks import check_split
from utils.files import temporary_path

WIDTH, HEIGHT = 208, 64  # frames of the synthetic videos (KITTI's aspect ratio, even sides)
FRAMES = 7  # per drive at 10 fps: 19 at 30 fps
VIDEO_FRAMES = 3 * (FRAMES - 1) + 1


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def write_frames(folder, count: int, size=(48, 16), seed: int = 0, names=None) -> list[np.ndarray]:
    """``count`` random PNG frames in ``folder``; returns their pixels."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    frames = []
    for i in range(count):
        rgb = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(rgb).save(os.path.join(folder, names[i] if names else f"{i:010d}.png"))
        frames.append(rgb)
    return frames


def write_json(path, data) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f)


def all_files(folder) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(root, f), folder) for root, _, files in os.walk(folder) for f in files
    )


class HalvesLabeller(torch.nn.Module):
    """A labelling model of known output: sky above the middle row, road below."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        b, _, h, w = images.shape
        logits = images.new_zeros(b, 19, h, w)
        logits[:, 10, : h // 2] = 1.0  # train id 10: sky
        logits[:, 0, h // 2 :] = 1.0  # train id 0: road
        return logits


# ---------------------------------------------------------------------------------------------
# the dataset (no video needed)
# ---------------------------------------------------------------------------------------------
def test_each_sequence_gets_its_own_intrinsics_normalised_by_its_size(tmp_path):
    write_frames(tmp_path / "small", 3, (48, 16))
    write_frames(tmp_path / "large" / "clip", 3, (96, 48))
    write_json(
        tmp_path / "intrinsics.json", {"fx": 30, "fy": 20, "cx": 24, "cy": 8}
    )  # for all: the small one
    write_json(
        tmp_path / "large" / "clip" / "intrinsics.json", {"K": [[60, 0, 50, 0], [0, 55, 22, 0], [0, 0, 1, 0]]}
    )
    dataset = FoldersDataset(str(tmp_path), ["small 1 l", "large/clip 1 l"], 32, 96, [0, -1, 1], 2)
    small, large = dataset[0][("K", 0)], dataset[1][("K", 0)]
    assert small[0, 0] == pytest.approx(30 / 48 * 96) and small[1, 1] == pytest.approx(20 / 16 * 32)
    assert small[0, 2] == pytest.approx(24 / 48 * 96) and small[1, 2] == pytest.approx(8 / 16 * 32)
    assert large[0, 0] == pytest.approx(60 / 96 * 96) and large[1, 1] == pytest.approx(55 / 48 * 32)
    assert large[0, 2] == pytest.approx(50 / 96 * 96) and large[1, 2] == pytest.approx(22 / 48 * 32)
    assert dataset[1][("K", 1)][0, 0] == pytest.approx(60 / 96 * 48)  # the base class scales per scale
    assert find_sequences(str(tmp_path)) == ["large/clip", "small"]


def test_frames_are_taken_in_natural_name_order(tmp_path):
    frames = write_frames(tmp_path / "seq", 3, names=["frame1.png", "frame10.png", "frame2.png"])
    write_json(tmp_path / "intrinsics.json", {"fx": 30, "fy": 30, "cx": 24, "cy": 8})
    dataset = FoldersDataset(str(tmp_path), ["seq 1 l"], 16, 48, [0, -1, 1], 1)
    assert dataset.get_image_path("seq", 2, "l").endswith("frame10.png")
    item = dataset[0]
    for frame_id, expected in ((-1, frames[0]), (0, frames[2]), (1, frames[1])):  # frame1, frame2, frame10
        assert torch.equal(
            item[("color", frame_id, 0)], torch.from_numpy(expected).permute(2, 0, 1).float() / 255
        )


def test_stereo_translation_is_kittis_per_metre_of_baseline(tmp_path):
    write_frames(tmp_path / "seq", 3)
    write_frames(tmp_path / "seq" / "right", 3, seed=1)
    write_json(
        tmp_path / "seq" / "intrinsics.json",
        {
            "fx": 30,
            "fy": 30,
            "cx": 24,
            "cy": 8,
            "width": 48,
            "height": 16,
            "stereo": {"folder": "right", "baseline": 0.27},
        },
    )
    assert find_sequences(str(tmp_path)) == ["seq"]  # the second camera is not a sequence of its own
    dataset = FoldersDataset(str(tmp_path), ["seq 1 l", "seq 1 r"], 16, 48, [0, -1, 1, "s"], 1, is_train=True)
    unaugmented = FoldersDataset(str(tmp_path), ["seq 1 l", "seq 1 r"], 16, 48, [0, -1, 1, "s"], 1)
    for index, side_sign in ((0, -1), (1, 1)):
        plain = unaugmented[index][("color", 0, 0)]
        for seed in range(8):
            item = dataset[(index, seed)]
            flipped = not torch.equal(item[("color", 0, 0)], plain)  # (colour jitter only touches color_aug)
            # 0.27 m is half of KITTI's 0.54 m: half of Monodepth2's 0.1, its sign flipped with the image
            expected = side_sign * (-1 if flipped else 1) * STEREO_BASELINE / 2
            assert float(item["stereo_T"][0, 3]) == pytest.approx(expected)
    assert dataset.frame_path(dataset.entries[0], "s").endswith(os.path.join("right", "0000000001.png"))


def test_labels_and_seeded_augmentation_work_unchanged(tmp_path):
    write_frames(tmp_path / "seq", 4)
    write_json(tmp_path / "intrinsics.json", {"fx": 30, "fy": 30, "cx": 24, "cy": 8})
    ids = np.full((16, 48), 7, dtype=np.uint8)  # road
    ids[:5] = 23  # sky
    save_label_png(
        str(tmp_path / "segmentation" / "seq" / "0000000002.png"), ids
    )  # where make_pseudo_labels writes
    dataset = DATASETS["folders"](
        str(tmp_path), ["seq 2 l"], 16, 48, [0, -1, 1], 1, is_train=True, load_labels=True
    )
    item = dataset[(0, 3)]
    seg = item[("seg", 0, 0)][0]
    assert set(seg.unique().tolist()) == {0, 10}  # train ids of road and sky
    again = dataset[(0, 3)]
    assert all(torch.equal(item[k], again[k]) for k in item)
    fast = DATASETS["folders"](str(tmp_path), ["seq 2 l"], 16, 48, [0, -1, 1], 1, input_pipeline="fast")
    assert torch.equal(
        fast[0][("K", 0)], DATASETS["folders"](str(tmp_path), ["seq 2 l"], 16, 48, [0, -1, 1], 1)[0][("K", 0)]
    )


@pytest.mark.needs("yaml")
def test_intrinsics_files_in_every_documented_form(tmp_path):
    write_frames(tmp_path / "seq", 3)
    forms = [
        {"fx": 30, "fy": 31, "cx": 24, "cy": 8},
        {"K": [[30, 0, 24], [0, 31, 8], [0, 0, 1]]},
        [[30, 0, 24, -5], [0, 31, 8, 0], [0, 0, 1, 0]],
    ]
    for form in forms:
        write_json(tmp_path / "seq" / "intrinsics.json", form)
        camera = read_sequence(str(tmp_path), "seq").camera
        assert (camera.fx, camera.fy, camera.cx, camera.cy) == (30, 31, 24, 8)
    os.remove(tmp_path / "seq" / "intrinsics.json")
    (tmp_path / "seq" / "intrinsics.yaml").write_text("fx: 30\nfy: 31\ncx: 24\ncy: 8\n")
    assert read_sequence(str(tmp_path), "seq").camera.fy == 31


def test_bad_sequence_folders_are_one_line_errors_and_no_split_is_written(tmp_path, capsys):
    def run(data):
        code = utils.run_cli(prepare_sequences.main, ["--data_path", str(data), "--num_workers", "0"])
        assert not os.path.exists(data / "splits")
        return code

    data = tmp_path / "missing_intrinsics"
    write_frames(data / "seq", 3)
    one_line_error(capsys, run(data), str(data / "seq"), "no intrinsics")

    data = tmp_path / "other_size"
    write_frames(data / "seq", 3)
    write_json(
        data / "seq" / "intrinsics.json", {"fx": 60, "fy": 60, "cx": 48, "cy": 16, "width": 96, "height": 32}
    )
    one_line_error(capsys, run(data), str(data / "seq" / "intrinsics.json"), "96x32", "48x16")

    data = tmp_path / "outside"  # no size given, but a principal point outside the frames
    write_frames(data / "seq", 3)
    write_json(data / "seq" / "intrinsics.json", {"fx": 60, "fy": 60, "cx": 96, "cy": 32})
    one_line_error(capsys, run(data), str(data / "seq" / "intrinsics.json"), "outside")

    data = tmp_path / "short"
    write_frames(data / "long", 5)
    write_frames(data / "short", 2)
    write_json(data / "intrinsics.json", {"fx": 30, "fy": 30, "cx": 24, "cy": 8})
    one_line_error(capsys, run(data), str(data / "short"), "2 frame(s)")

    data = tmp_path / "sizes"
    write_frames(data / "seq", 3)
    write_frames(data / "seq", 1, (50, 16), names=["0000000009.png"])
    write_json(data / "intrinsics.json", {"fx": 30, "fy": 30, "cx": 24, "cy": 8})
    one_line_error(capsys, run(data), str(data / "seq" / "0000000009.png"), "50x16", "48x16")


def test_split_lines_beyond_a_sequence_are_named_by_file_and_line(tmp_path):
    write_frames(tmp_path / "seq", 3)
    write_json(tmp_path / "intrinsics.json", {"fx": 30, "fy": 30, "cx": 24, "cy": 8})
    split = tmp_path / "train_files.txt"
    split.write_text("seq 1 l\nseq 2 l\n")
    dataset = FoldersDataset(str(tmp_path), read_split(str(split)), 16, 48, [0, -1, 1], 1)
    with pytest.raises(
        utils.InputError, match=r"train_files.txt:2: 'seq 2 l' needs frames 1\.\.3 .*seq has frames 0\.\.2"
    ):
        check_split(dataset, str(split))
    with pytest.raises(
        utils.InputError, match=r"split line 2 .*needs frames 1\.\.3"
    ):  # no input check: on loading
        dataset[1]
    stereo = FoldersDataset(str(tmp_path), ["seq 1 l"], 16, 48, [0, -1, 1, "s"], 1)
    with pytest.raises(utils.InputError, match="needs the second camera"):
        stereo[0]
    open(tmp_path / "seq" / ".incomplete", "w").close()
    with pytest.raises(utils.InputError, match="did not finish"):
        FoldersDataset(str(tmp_path), ["seq 1 l"], 16, 48, [0, -1, 1], 1)


def test_splits_hold_out_whole_sequences_and_the_report_measures_motion(tmp_path, capsys):
    intrinsics = {"fx": 30, "fy": 30, "cx": 24, "cy": 8}
    for name in ("a", "b", "c"):
        write_frames(tmp_path / name, 6, seed=ord(name))
    still = write_frames(tmp_path / "still", 1, seed=9)[
        0
    ]  # a camera standing still for 5 frames, then moving
    for i in range(1, 6):
        Image.fromarray(still if i < 5 else 255 - still).save(tmp_path / "still" / f"{i:010d}.png")
    write_json(tmp_path / "intrinsics.json", intrinsics)
    code = prepare_sequences.main(
        [
            "--data_path",
            str(tmp_path),
            "--val_sequences",
            "b",
            "--test_sequences",
            "c",
            "--drop_static",
            "--num_workers",
            "0",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    read = lambda name: (tmp_path / "splits" / name).read_text().splitlines()  # noqa: E731
    assert read("train_files.txt") == [
        "a 1 l",
        "a 2 l",
        "a 3 l",
        "a 4 l",
    ]  # still: every frame near-static to one source
    assert read("val_files.txt") == ["b 1 l", "b 2 l", "b 3 l", "b 4 l"]
    assert read("test_files.txt") == [f"c {i} l" for i in range(6)]
    report = json.loads((tmp_path / "splits" / "report.json").read_text())["sequences"]
    assert report["still"]["static_share"] == pytest.approx(4 / 5) and report["still"]["dropped_static"] == 4
    assert report["still"]["jumps"] == 1 and report["a"]["K_normalised"]["fx"] == pytest.approx(30 / 48)
    assert "still: 80% of its frames are near-static" in out and "very large jump" in out
    with pytest.raises(utils.InputError, match="exists with other lines"):  # never replaced silently
        prepare_sequences.main(["--data_path", str(tmp_path), "--num_workers", "0"])


def test_the_report_warns_when_neighbouring_frames_differ_as_much_as_unrelated_views(tmp_path, capsys):
    # frames at the check's own width: a grey sinusoid of period P moving d px per frame. The difference of
    # neighbours is proportional to sin(pi d / P), a 1 px shifted copy's to sin(pi / P): ratio 1.96 at d = 2,
    # 0.50 at d = 0.5 (P = 16), either side of sequence_checks.UNRELATED_VIEW_RATIO
    width, period = sequence_checks.STATIC_WIDTH, 16
    x = np.arange(width)
    for name, speed in (("fast", 2.0), ("slow", 0.5)):
        (tmp_path / name).mkdir()
        for i in range(6):
            row = 128 + 100 * np.sin(2 * np.pi * (x + i * speed) / period)
            Image.fromarray(np.repeat(np.round(row)[None], 16, 0).astype(np.uint8)).save(
                tmp_path / name / f"{i:010d}.png"
            )
    write_json(tmp_path / "intrinsics.json", {"fx": 40, "fy": 40, "cx": 32, "cy": 8})
    assert prepare_sequences.main(["--data_path", str(tmp_path), "--num_workers", "0"]) == 0
    report = json.loads((tmp_path / "splits" / "report.json").read_text())["sequences"]
    for name, ratio in (("fast", 1.96), ("slow", 0.50)):
        measured = report[name]["median_motion"] / report[name]["shifted_difference"]
        assert measured == pytest.approx(ratio, rel=0.05)  # uint8 rounding of the frames
    unrelated = [[w for w in report[name]["warnings"] if "unrelated views" in w] for name in ("fast", "slow")]
    assert (
        len(unrelated[0]) == 1
        and "higher --fps" in unrelated[0][0]
        and "--photometric_warmup" in unrelated[0][0]
        and unrelated[1] == []
    )
    assert "as much as unrelated views" in capsys.readouterr().out


def test_frames_are_kept_by_time_at_the_target_rate():
    from datasets.video_files import RateSampler, frame_rate_tolerance

    def kept(fps, count):
        sampler = RateSampler(10, frame_rate_tolerance(fps))
        return [i for i in range(count) if sampler.keep(i / fps)]

    assert kept(30, 19) == [0, 3, 6, 9, 12, 15, 18]
    assert kept(30000 / 1001, 10) == [0, 3, 6, 9]  # NTSC 29.97
    assert kept(25, 11) == [0, 2, 5, 7, 10]  # 10 per second, the nearest frames
    assert kept(5, 4) == [0, 1, 2, 3]  # a slower source keeps every frame


# ---------------------------------------------------------------------------------------------
# the whole path on a generated video
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Two synthetic stereo drives as lossless 30 fps videos (bit-exact frames), with intrinsics and ground
    truth."""
    require("av")
    from datasets.synthetic.video import generate_videos

    out = str(tmp_path_factory.mktemp("videos"))
    generate_videos(
        out, num_drives=2, frames=FRAMES, width=WIDTH, height=HEIGHT, stereo=True, lossless=True, workers=1
    )
    return out


def decoded(path):
    from datasets.video_files import read_frames

    return [rgb for _, rgb in read_frames(path)]


@pytest.mark.slow
@pytest.mark.needs("av")
def test_a_video_becomes_a_trained_model_and_a_depth_video(videos, tmp_path, capsys):
    data, video = str(tmp_path / "data"), os.path.join(videos, "drive_01.mp4")
    lefts = [os.path.join(videos, f"drive_0{k}.mp4") for k in (1, 2)]
    rights = [os.path.join(videos, f"drive_0{k}_right.mp4") for k in (1, 2)]
    # 1. video -> sequences at 10 fps: every third frame of the 30 fps video, bit for bit
    assert (
        import_video.main(
            [
                *lefts,
                "--right_videos",
                *rights,
                "--baseline",
                "0.54",
                "--out",
                data,
                "--intrinsics",
                os.path.join(videos, "intrinsics.json"),
                "--ext",
                "png",
            ]
        )
        == 0
    )
    assert "drive_01: 7 frames 208x64 at 10 fps (video: 30 fps)" in capsys.readouterr().out
    source = decoded(video)
    assert len(source) == VIDEO_FRAMES
    sequence = read_sequence(data, "drive_01")
    assert len(sequence.frames) == len(sequence.right) == FRAMES
    for j, path in enumerate(sequence.frames):
        assert np.array_equal(np.asarray(Image.open(path)), source[3 * j])
    assert not np.array_equal(source[1], source[0])  # the frames in between differ: the stride is real
    camera = json.load(open(os.path.join(videos, "intrinsics.json")))
    assert sequence.camera.fx == pytest.approx(camera["fx"]) and sequence.camera.baseline == 0.54
    # 2. pseudo-labels from a labelling model exported with torch.export (TorchScript's successor), in the
    #    layout the loader reads
    labeller = str(tmp_path / "halves.pt2")
    auto = torch.export.Dim.AUTO  # any batch size and frame size
    torch.export.save(
        torch.export.export(
            HalvesLabeller(), (torch.rand(2, 3, 64, 208),), dynamic_shapes=({0: auto, 2: auto, 3: auto},)
        ),
        labeller,
    )
    assert (
        make_pseudo_labels.main(
            [
                "--image_dirs",
                data,
                "--data_path",
                data,
                "--model",
                labeller,
                "--num_workers",
                "0",
                "--num_overlays",
                "0",
            ]
        )
        == 0
    )
    labels = [f for f in all_files(os.path.join(data, "segmentation")) if f.endswith(".png")]
    assert len(labels) == 2 * 2 * FRAMES and os.path.join("drive_01", "right", "0000000006.png") in labels
    # 3. splits: frames 1..5 have both neighbours, cameras in turn; drive_02 is the test sequence (ground
    # truth)
    assert (
        prepare_sequences.main(["--data_path", data, "--test_sequences", "drive_02", "--num_workers", "0"])
        == 0
    )
    assert open(os.path.join(data, "splits", "train_files.txt")).read().split("\n")[:-1] == [
        "drive_01 1 r",
        "drive_01 2 l",
        "drive_01 3 r",
        "drive_01 4 l",
        "drive_01 5 r",
    ]
    assert len(open(os.path.join(data, "splits", "test_files.txt")).readlines()) == FRAMES
    # 4. a short training run that reads the labels (the semantic loss: the cheapest configuration with
    # labels)
    opts = options.parse_args(
        helpers.train_args(
            (data, os.path.join(data, "splits")),
            tmp_path / "runs",
            *("--dataset", "folders", "--config", "semantics", "--max_steps", "2", "--num_epochs", "1"),
            *("--log_frequency", "100"),
        )
    )
    trainer = Trainer(opts)
    trainer.train()
    assert trainer.step == 2
    # ... evaluated against the generator's dense depth of the held-out drive (Monodepth2's protocol)
    metrics_file = str(tmp_path / "metrics.json")
    assert (
        evaluate_depth.main(
            [
                "--dataset",
                "folders",
                "--data_path",
                data,
                "--eval_split",
                os.path.join(data, "splits"),
                "--gt_depths",
                os.path.join(videos, "drive_02_depth.npz"),
                "--load_weights_folder",
                trainer.last_model_folder,
                "--num_workers",
                "0",
                "--output_json",
                metrics_file,
            ]
        )
        == 0
    )
    result = json.load(open(metrics_file))
    assert result["frames"] == FRAMES and 0 < result["metrics"]["abs_rel"] < 1
    # 5. a depth video of the 30 fps video at 10 fps, side by side with the input and the segmentation overlay
    out = str(tmp_path / "predicted")
    assert (
        predict.main(
            [
                "--load_weights_folder",
                trainer.last_model_folder,
                "--image_path",
                video,
                "--output_dir",
                out,
                "--panels",
                "input",
                "depth",
                "seg",
                "--fps",
                "10",
                "--batch_size",
                "4",
            ]
        )
        == 0
    )
    written = decoded(os.path.join(out, "drive_01_depth.mp4"))
    assert len(written) == FRAMES and written[0].shape == (HEIGHT, 3 * WIDTH, 3)
    # the input panel shows video frame 3k (H.264 4:2:0: closest, not equal)
    for k, picture in enumerate(written):
        distances = [np.abs(picture[:, :WIDTH].astype(int) - frame).mean() for frame in source]
        assert int(np.argmin(distances)) == 3 * k
    # ... and of the imported frames' folder, with the arrays
    assert (
        predict.main(
            [
                "--load_weights_folder",
                trainer.last_model_folder,
                "--image_path",
                sequence.folder,
                "--video",
                "--output_dir",
                out,
                "--save_npy",
            ]
        )
        == 0
    )
    written = decoded(os.path.join(out, "drive_01_depth.mp4"))
    assert len(written) == FRAMES and written[0].shape == (HEIGHT, WIDTH, 3)
    assert (
        len([f for f in os.listdir(os.path.join(out, "drive_01_frames")) if f.endswith("_disp.npy")])
        == FRAMES
    )


@pytest.mark.slow
@pytest.mark.needs("av")
def test_an_interrupted_import_resumes_and_a_finished_one_is_skipped(videos, tmp_path, monkeypatch, capsys):
    data, video = str(tmp_path / "data"), os.path.join(videos, "drive_02.mp4")
    argv = [video, "--out", data, "--fov", "90", "--width", "104", "--crop", "0", "0", "208", "60"]
    real_writer = video_import.frame_writer

    def dying_writer(opts, plan):
        write = real_writer(opts, plan)

        def once(rgb, path):
            if len(os.listdir(plan.folder)) > 3:  # .incomplete + 3 frames: the process is killed
                raise KeyboardInterrupt
            write(rgb, path)

        return once

    monkeypatch.setattr(video_import, "frame_writer", dying_writer)
    with pytest.raises(KeyboardInterrupt):
        import_video.main(argv)
    folder = os.path.join(data, "drive_02")
    assert sorted(os.listdir(folder)) == [".incomplete", "0000000000.jpg", "0000000001.jpg", "0000000002.jpg"]
    with pytest.raises(utils.InputError, match="did not finish"):
        read_sequence(data, "drive_02")
    before = {
        f: os.stat(os.path.join(folder, f)).st_mtime_ns for f in os.listdir(folder) if f.endswith(".jpg")
    }
    # a writer killed by SIGKILL mid-frame leaves its temporary (atomic_write's cleanup never ran)
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    half = temporary_path(os.path.join(folder, "0000000003.jpg"), pid=dead.pid)
    with open(half, "wb") as f:
        f.write(b"\xff\xd8 half a JPEG")
    marker = os.path.join(folder, ".incomplete")  # as the killed writer left it: never in the files' record
    with open(marker) as f:
        settings = f.read()
    os.remove(marker)
    with open(marker, "w") as f:
        f.write(settings)
    monkeypatch.setattr(video_import, "frame_writer", real_writer)
    assert import_video.main(argv) == 0
    assert not os.path.exists(half)
    sequence = read_sequence(data, "drive_02")
    assert len(sequence.frames) == FRAMES and (sequence.width, sequence.height) == (104, 30)
    assert all(
        os.stat(os.path.join(folder, f)).st_mtime_ns == t for f, t in before.items()
    )  # kept, not rewritten
    # --fov 90 on 208 px: fx = 104 px; the crop keeps cx, moves nothing; the resize halves everything
    assert (
        sequence.camera.guessed
        and sequence.camera.fx == pytest.approx(52)
        and sequence.camera.cy == pytest.approx(16)
    )
    capsys.readouterr()
    assert import_video.main(argv) == 0
    assert "already imported" in capsys.readouterr().err
    with pytest.raises(utils.InputError, match="already imported with other settings"):
        import_video.main(argv[:-5])  # without the crop


@pytest.mark.slow
@pytest.mark.needs("av")
def test_bad_videos_are_one_line_errors_and_leave_nothing(videos, tmp_path, capsys):
    from datasets.video_files import VideoWriter

    out = tmp_path / "data"
    video = os.path.join(videos, "drive_01.mp4")

    def run(*argv):
        code = utils.run_cli(import_video.main, [*argv, "--out", str(out)])
        assert not os.path.exists(out) or os.listdir(out) == []
        return code

    other = tmp_path / "other_size.json"
    write_json(other, {"fx": 240, "fy": 240, "cx": 208, "cy": 64, "width": 416, "height": 128})
    one_line_error(capsys, run(video, "--intrinsics", str(other)), str(other), "416x128")
    one_line_error(capsys, run(video, "--intrinsics", str(tmp_path / "none.json")), "none.json")

    rng = np.random.default_rng(0)
    whole = tmp_path / "clip.mkv"  # Matroska: a truncated copy still opens and decodes part of the frames
    with VideoWriter(str(whole), 30) as writer:
        for _ in range(60):
            writer.write(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8))
    data = whole.read_bytes()
    truncated = tmp_path / "truncated.mkv"
    truncated.write_bytes(data[: len(data) // 2])
    one_line_error(capsys, run(str(truncated), "--fov", "90"), str(truncated), "truncated")
    cut_mp4 = tmp_path / "cut.mp4"  # MP4: its index is at the end
    cut_mp4.write_bytes(open(video, "rb").read()[:50_000])
    one_line_error(capsys, run(str(cut_mp4), "--fov", "90"), str(cut_mp4), "cannot decode")
    not_video = tmp_path / "notes.mov"
    not_video.write_text("not a video")
    one_line_error(capsys, run(str(not_video), "--fov", "90"), str(not_video))
    # as a real command: the exit code and the one line
    result = subprocess.run(
        [sys.executable, "-m", "tools.import_video", str(truncated), "--fov", "90", "--out", str(out)],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith(f"error: {truncated}")
    assert "Traceback" not in result.stderr and not os.path.exists(out / "truncated")


def test_synthetic_videos_have_even_sides(tmp_path, monkeypatch):
    # H.264 pads odd sides, so the intrinsics written beside the videos must describe even frames
    from datasets.synthetic.video import generate_videos
    from tools import synthetic_video

    with pytest.raises(ValueError, match="H.264 frames have even sides"):
        generate_videos(str(tmp_path), num_drives=1, frames=2, width=248, height=75)
    assert not os.path.exists(tmp_path / "intrinsics.json")
    seen = {}
    monkeypatch.setattr(
        synthetic_video,
        "generate_videos",
        lambda out, drives, frames, width, height, *a, **k: seen.update(size=(width, height)) or [],
    )
    assert synthetic_video.main(["--out", str(tmp_path / "v"), "--scale", "0.2"]) == 0
    assert seen["size"] == (248, 76)  # 1242x375 x 0.2 = 248.4x75, rounded to even sides
