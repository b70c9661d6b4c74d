"""One's own sequences and videos: frame rates, intrinsics and folders no camera has are refused in one line
before anything loops on them or is written; video truncation is judged by the video stream, frame times
are kept, and a failing depth video leaves its outputs as they were."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from helpers import one_line_error, predict_error
from PIL import Image

import utils
from utils.files import OWNER_MARKER, atomic_folder


def write_sequence(folder, count: int = 4, size=(48, 16), intrinsics: dict | bytes | None = None) -> None:
    """A sequence folder of ``count`` random PNG frames and, when given, its intrinsics.json."""
    rng = np.random.default_rng(0)
    os.makedirs(folder, exist_ok=True)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(
            os.path.join(folder, f"{i:010d}.png")
        )
    if intrinsics is not None:
        data = intrinsics if isinstance(intrinsics, bytes) else json.dumps(intrinsics).encode()
        with open(os.path.join(folder, "intrinsics.json"), "wb") as f:
            f.write(data)


def reference_keep(fps: float, tolerance: float, times) -> list[bool]:
    """RateSampler's rule as a loop over ticks (what it computed before; fine for small numbers)."""
    period, tick, kept = 1 / fps, 0, []
    for time_s in times:
        if time_s < tick * period - tolerance:
            kept.append(False)
            continue
        while tick * period <= time_s + tolerance:
            tick += 1
        kept.append(True)
    return kept


VIDEO_W, VIDEO_H = 64, 48


def write_video(path, times, audio_s: float = 0.0, codec: str = "mpeg4") -> list[np.ndarray]:
    """A video whose frames (random, returned) play at ``times`` (seconds; a variable rate where they are
    uneven), with a silent audio track of ``audio_s`` seconds when positive."""
    from fractions import Fraction

    import av

    time_base = Fraction(1, 1000)
    rng = np.random.default_rng(len(times))
    frames = [rng.integers(0, 256, (VIDEO_H, VIDEO_W, 3), dtype=np.uint8) for _ in times]
    with av.open(str(path), "w") as container:
        video = container.add_stream(codec, rate=round(len(times) / max(times[-1], 1e-3)))
        video.width, video.height, video.pix_fmt = VIDEO_W, VIDEO_H, "yuv420p"
        video.codec_context.time_base = video.time_base = time_base
        audio = container.add_stream("aac", rate=16000) if audio_s > 0 else None
        for rgb, time_s in zip(frames, times):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = round(time_s * 1000), time_base
            container.mux(video.encode(frame))
        container.mux(video.encode())
        if audio is not None:
            for start in range(0, int(audio_s * 16000), 1024):
                chunk = av.AudioFrame.from_ndarray(
                    np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
                )
                chunk.sample_rate, chunk.pts = 16000, start
                container.mux(audio.encode(chunk))
            container.mux(audio.encode())
    return frames


def frame_times(path) -> list[float]:
    import av

    with av.open(str(path)) as container:
        return [round(float(frame.time), 3) for frame in container.decode(container.streams.video[0])]


@pytest.mark.parametrize(
    "intrinsics, words",
    [
        ({"fx": 1e308, "fy": 1e308, "cx": 24, "cy": 8}, ["intrinsics.json", "fx 1e+308", "0.01..100"]),
        ({"fx": 1e-3, "fy": 1e-3, "cx": 24, "cy": 8}, ["intrinsics.json", "fx 0.001", "0.01..100"]),
        (b'{"fx": 30, "fy": 30, "cx": 24, "cy": 8, "note": "\xe9t\xe9"}', ["intrinsics.json", "not UTF-8"]),
    ],
)
def test_intrinsics_no_camera_has_are_one_line_in_prepare_sequences_and_train(
    tmp_path, capsys, intrinsics, words
):
    from tools import prepare_sequences

    data = tmp_path / "data"
    write_sequence(data / "a", intrinsics=intrinsics)
    write_sequence(data / "b", intrinsics={"fx": 30, "fy": 30, "cx": 24, "cy": 8})
    one_line_error(capsys, utils.run_cli(prepare_sequences.main, ["--data_path", str(data)]), *words)
    assert not os.path.exists(data / "splits")
    # the training data loader meets the same file (train.py reads its sequences with read_sequence)
    from datasets.folders import read_sequence

    with pytest.raises(utils.InputError, match="intrinsics.json"):
        read_sequence(str(data), "a")


@pytest.mark.parametrize(
    "source_fps, fps", [(30, 10), (29.97, 10), (30, 7.3), (60, 1000), (24, 0.5), (30, 30)]
)
def test_the_rate_sampler_computes_its_next_tick_and_keeps_the_same_frames(source_fps, fps):
    from datasets.video_files import RateSampler, frame_rate_tolerance

    rng = np.random.default_rng(1)
    times = np.cumsum(rng.uniform(0.5, 1.5, 400) / source_fps)  # a variable frame rate around source_fps
    sampler = RateSampler(fps, frame_rate_tolerance(source_fps))
    assert [sampler.keep(t) for t in times] == reference_keep(fps, frame_rate_tolerance(source_fps), times)
    late = RateSampler(fps)
    assert late.keep(0.0) and late.keep(3.6e6)  # an hour-long gap: one computation, not millions of ticks
    assert late.tick == int(3.6e6 * fps) + 1 and not late.keep(3.6e6)


@pytest.mark.parametrize("command", ["predict", "import_video"])
@pytest.mark.parametrize("fps", ["1e300", "1e9", "inf", "nan", "-5"])
def test_rates_no_camera_has_are_refused_by_the_parsers(tmp_path, monkeypatch, capsys, command, fps):
    import predict
    from tools import import_video

    monkeypatch.chdir(tmp_path)
    argv = (
        ["--exported", "m.onnx", "--image_path", "v.mp4"] if command == "predict" else ["v.mp4", "--out", "o"]
    )
    with pytest.raises(SystemExit) as stopped:
        utils.run_cli(predict.main if command == "predict" else import_video.main, argv + ["--fps", fps])
    err = capsys.readouterr().err
    assert stopped.value.code == utils.EXIT_ERROR and "Traceback" not in err
    assert f"argument --fps: a frame rate must lie in (0, 1000] frames per second, got {fps}" in err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", ["splits", "segmentation"])
def test_a_sequence_named_as_a_project_folder_is_refused_not_dropped(tmp_path, capsys, name):
    from tools import prepare_sequences

    data = tmp_path / "data"
    camera = {"fx": 30, "fy": 30, "cx": 24, "cy": 8}
    write_sequence(data / "a", count=6, intrinsics=camera)
    write_sequence(data / name, count=6, intrinsics=camera)
    before = sorted(os.listdir(data / name))
    code = utils.run_cli(prepare_sequences.main, ["--data_path", str(data)])
    one_line_error(capsys, code, str(data / name), "rename the sequence")
    assert sorted(os.listdir(data / name)) == before  # no split file among its frames


def test_a_stereo_folder_that_is_the_sequence_itself_is_refused(tmp_path, capsys):
    from tools import prepare_sequences

    data = tmp_path / "data"
    for folder in (".", "./"):
        write_sequence(
            data / "a",
            count=6,
            intrinsics={"fx": 30, "fy": 30, "cx": 24, "cy": 8, "stereo": {"folder": folder, "baseline": 0.5}},
        )
        code = utils.run_cli(prepare_sequences.main, ["--data_path", str(data)])
        one_line_error(capsys, code, "intrinsics.json", f"stereo folder {folder!r}", "subfolder")


def test_a_frame_still_being_written_is_not_a_frame_of_the_sequence(tmp_path):
    from datasets.folders import read_sequence
    from utils.files import temporary_path

    write_sequence(tmp_path / "a", count=4, intrinsics={"fx": 30, "fy": 30, "cx": 24, "cy": 8})
    with open(temporary_path(str(tmp_path / "a" / "0000000004.png")), "wb") as f:
        f.write(b"\x89PNG half")  # atomic_write's temporary, of a live writer or a killed one
    assert [os.path.basename(p) for p in read_sequence(str(tmp_path), "a").frames] == [
        f"{i:010d}.png" for i in range(4)
    ]


def test_a_users_split_file_stops_prepare_sequences_before_any_split_file_changes(tmp_path, capsys):
    from tools import prepare_sequences

    data = tmp_path / "data"
    camera = {"fx": 30, "fy": 30, "cx": 24, "cy": 8}
    for name in ("a", "b", "c"):
        write_sequence(data / name, count=5, intrinsics=camera)
    argv = ["--data_path", str(data), "--num_workers", "0"]
    assert prepare_sequences.main(argv) == 0  # train a, c and val b
    splits = data / "splits"
    train = (splits / "train_files.txt").read_text()
    (splits / "val_files.txt").write_text("b 1 l\n")  # the user's own validation lines
    # --val_fraction 0 would rewrite train_files.txt and remove val_files.txt: refused before either
    code = utils.run_cli(prepare_sequences.main, [*argv, "--val_fraction", "0", "--overwrite"])
    one_line_error(capsys, code, str(splits / "val_files.txt"), "did not write it")
    assert (splits / "train_files.txt").read_text() == train and (
        splits / "val_files.txt"
    ).read_text() == "b 1 l\n"


@pytest.mark.slow
def test_prepare_sequences_takes_frame_ids_0_and_names_a_truncated_jpeg(tmp_path, capsys):
    from tools import prepare_sequences

    data = tmp_path / "data"
    camera = {"fx": 30, "fy": 30, "cx": 24, "cy": 8}
    for name in ("a", "b", "c"):
        write_sequence(data / name, count=5, intrinsics=camera)
    # --frame_ids 0 (stereo-only training, README): every frame of a training sequence is a line
    assert (
        prepare_sequences.main(
            ["--data_path", str(data), "--frame_ids", "0", "--val_sequences", "b", "--test_sequences", "c"]
        )
        == 0
    )
    lines = (data / "splits" / "train_files.txt").read_text().split()
    assert (data / "splits" / "train_files.txt").read_text().splitlines() == [f"a {i} l" for i in range(5)], (
        lines
    )
    # a JPEG cut short after its header: named, no traceback, the splits written before are kept
    shutil.rmtree(data / "c")
    jpeg = data / "c" / "0000000002.jpg"
    write_sequence(data / "c", count=5, intrinsics=camera)
    Image.open(data / "c" / "0000000002.png").save(jpeg, quality=95)
    os.remove(data / "c" / "0000000002.png")
    content = jpeg.read_bytes()
    jpeg.write_bytes(content[: len(content) // 2])
    before = (data / "splits" / "train_files.txt").read_text()
    for workers in ("0", "2"):
        code = utils.run_cli(prepare_sequences.main, ["--data_path", str(data), "--num_workers", workers])
        one_line_error(capsys, code, str(jpeg), "cannot decode")
    assert (data / "splits" / "train_files.txt").read_text() == before


@pytest.mark.needs("av")
def test_import_video_refuses_focal_lengths_no_camera_has_before_writing(tmp_path, capsys):
    from tools import import_video

    video = tmp_path / "clip.mp4"
    write_video(video, [i / 10 for i in range(5)])
    out = tmp_path / "data"
    code = utils.run_cli(
        import_video.main,
        [str(video), "--out", str(out), "--fx", "1e308", "--fy", "1e308", "--cx", "32", "--cy", "24"],
    )
    one_line_error(capsys, code, "--fx --fy --cx --cy", "fx 1e+308")
    assert not out.exists() or os.listdir(out) == []
    bad = tmp_path / "intrinsics.json"
    bad.write_bytes(b'{"fx": 40, "fy": 40, "cx": 32, "cy": 24, "by": "J\xfcrgen"}')
    code = utils.run_cli(import_video.main, [str(video), "--out", str(out), "--intrinsics", str(bad)])
    one_line_error(capsys, code, str(bad), "not UTF-8")


def predict_on_the_cpu(model_folder: str, video, output_dir) -> int:
    """predict.py's exit code for a video, on the CPU."""
    import predict

    return predict.main(
        ["--load_weights_folder", model_folder, "--device", "cpu", "--image_path", str(video)]
        + ["--output_dir", str(output_dir)]
    )


@pytest.mark.slow
@pytest.mark.parametrize("container", ["mkv", "mp4"])
@pytest.mark.needs("av")
def test_a_video_whose_audio_runs_longer_is_imported_and_predicted_whole(
    model_folders, tmp_path, capsys, container
):
    from tools import import_video

    video = tmp_path / f"clip.{container}"
    times = [i / 10 for i in range(10)]  # one second of video at 10 fps, two of audio
    write_video(video, times, audio_s=2.0)
    out = tmp_path / "data"
    assert import_video.main([str(video), "--out", str(out), "--fov", "90", "--fps", "10"]) == 0
    assert len([n for n in os.listdir(out / "clip") if n.endswith(".jpg")]) == 10
    assert predict_on_the_cpu(model_folders[0], video, tmp_path / "pred") == 0
    assert frame_times(tmp_path / "pred" / "clip_depth.mp4") == pytest.approx(times, abs=1e-3)


@pytest.mark.slow
@pytest.mark.needs("av")
def test_a_variable_frame_rate_depth_video_keeps_the_frame_times(model_folders, tmp_path):

    video = tmp_path / "vfr.mp4"
    times = [0.0, 0.1, 0.2, 0.6, 0.7, 1.2, 1.3, 2.0]  # a nominal rate says little of when these play
    write_video(video, times)
    assert predict_on_the_cpu(model_folders[0], video, tmp_path / "pred") == 0
    assert frame_times(tmp_path / "pred" / "vfr_depth.mp4") == pytest.approx(times, abs=1e-3)


@pytest.mark.slow
@pytest.mark.needs("av")
def test_predict_video_failures_leave_their_outputs_as_they_were(model_folders, tmp_path, capsys):
    from datasets.video_files import VideoWriter

    model = [
        "--load_weights_folder",
        str(tmp_path / "no_model"),
        "--device",
        "cpu",
    ]  # refusals come before it
    video = tmp_path / "clip.mp4"
    write_video(video, [i / 10 for i in range(5)])
    os.makedirs(tmp_path / "clip_depth.mp4")
    predict_error(
        capsys,
        model + ["--image_path", str(video)],
        str(tmp_path / "clip_depth.mp4"),
        "a folder is in the way",
    )
    os.rmdir(tmp_path / "clip_depth.mp4")
    # a truncated video fails once its frames are read: its arrays of this run are not left behind, and
    # those of an earlier run stay
    rng = np.random.default_rng(0)
    whole = tmp_path / "long.mkv"
    with VideoWriter(str(whole), 30) as writer:
        for _ in range(60):
            writer.write(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8))
    truncated = tmp_path / "cut.mkv"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    earlier = tmp_path / "out" / "cut_frames"
    with atomic_folder(str(earlier)) as folder:  # an earlier run's: the project's own, with its marker
        with open(os.path.join(folder, "0000000000_disp.npy"), "wb") as f:
            f.write(b"an earlier run's")
    predict_error(
        capsys,
        [
            "--load_weights_folder",
            model_folders[0],
            "--device",
            "cpu",
            "--image_path",
            str(truncated),
            "--save_npy",
            "--output_dir",
            str(tmp_path / "out"),
        ],
        str(truncated),
        "truncated",
    )
    assert sorted(os.listdir(tmp_path / "out")) == ["cut_frames"]
    assert sorted(os.listdir(earlier)) == sorted([OWNER_MARKER, "0000000000_disp.npy"])
    assert (earlier / "0000000000_disp.npy").read_bytes() == b"an earlier run's"
