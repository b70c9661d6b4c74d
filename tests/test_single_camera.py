"""One dashcam, no second camera: the paper's monocular method (full model, frames -1 and +1 as sources,
auto-masking on) runs end to end on a lossy 30 fps H.264 video: import at 10 fps, splits, training
steps, evaluation against the generator's dense depth (docs/own_data.md, "One camera")."""

from __future__ import annotations

import itertools
import json
import os

import helpers
import numpy as np
import pytest
import torch
from PIL import Image

import evaluate_depth
import options
from conftest import require
from datasets.folders import read_sequence
from tools import import_video, prepare_sequences
from trainer import Trainer

WIDTH, HEIGHT = 208, 64  # frames of the synthetic videos (KITTI's aspect ratio, even sides)
FRAMES = 7  # per drive at 10 fps: 19 video frames at 30 fps
STEPS = 2  # the 5 training lines in batches of 2 (the last, short batch is dropped)


@pytest.fixture(scope="module")
def dashcam(tmp_path_factory):
    """Two single-camera synthetic drives as a dashcam records them: lossy H.264 at 30 fps, with truth."""
    require("av")
    from datasets.synthetic.video import generate_videos

    out = str(tmp_path_factory.mktemp("dashcam"))
    generate_videos(out, num_drives=2, frames=FRAMES, width=WIDTH, height=HEIGHT, workers=1)
    return out


@pytest.mark.slow
@pytest.mark.needs("av")
def test_one_camera_video_trains_the_full_monocular_model_with_auto_masking(dashcam, tmp_path):
    data = str(tmp_path / "data")
    videos = [os.path.join(dashcam, f"drive_0{k}.mp4") for k in (1, 2)]
    # 1. the README's import: JPEG frames at 10 fps, one sequence per video, no second camera
    intrinsics = os.path.join(dashcam, "intrinsics.json")
    assert import_video.main([*videos, "--out", data, "--intrinsics", intrinsics]) == 0
    sequence = read_sequence(data, "drive_01")
    assert len(sequence.frames) == FRAMES and not sequence.right
    assert sequence.frames[0].endswith(".jpg")
    grey = [np.asarray(Image.open(p).convert("L"), dtype=np.float64) for p in sequence.frames]
    steps = [np.abs(b - a).mean() for a, b in itertools.pairwise(grey)]
    assert min(steps) > 5  # grey levels: every kept frame is a new view (about 1 m on), none repeated
    # 2. splits: drive_02 held out with its ground truth
    splits = os.path.join(data, "splits")
    assert (
        prepare_sequences.main(["--data_path", data, "--test_sequences", "drive_02", "--num_workers", "0"])
        == 0
    )
    with open(os.path.join(splits, "train_files.txt")) as f:
        assert f.read().split()[:3] == ["drive_01", "1", "l"]
    # 3. the paper's method, monocular: the full model (semantics from the generator's labels, CMA, SGT)
    opts = options.parse_args(
        helpers.train_args(
            (data, splits),
            tmp_path / "runs",
            *("--dataset", "folders", "--seg_path", os.path.join(dashcam, "segmentation")),
            *("--max_steps", str(STEPS), "--num_epochs", "1", "--log_frequency", "100", "--no_validation"),
        )
    )
    assert opts.frame_ids == [0, -1, 1] and not opts.use_stereo and not opts.disable_automasking
    trainer = Trainer(opts)
    before = {k: v.clone() for k, v in trainer.models["pose"].state_dict().items()}
    trainer.train()
    assert trainer.step == STEPS
    moved = [
        k
        for k, v in trainer.models["pose"].state_dict().items()
        if v.is_floating_point() and not torch.equal(v, before[k])
    ]
    assert moved  # the pose network learns from the photometric loss alone (no stereo pair)
    # auto-masking is on: the unwarped source frames win somewhere, the warped ones elsewhere
    trainer.model.eval()
    with torch.no_grad():
        outputs, losses = trainer.process_batch(next(iter(trainer.train_loader)))
    mask = outputs[("automask", 0)].float().mean().item()
    assert 0 < mask < 1 and torch.isfinite(losses["loss"])
    # 4. evaluation against the held-out drive's dense depth (Monodepth2's protocol, median scaling)
    metrics_file = str(tmp_path / "metrics.json")
    assert (
        evaluate_depth.main(
            [
                "--dataset",
                "folders",
                "--data_path",
                data,
                "--eval_split",
                splits,
                "--gt_depths",
                os.path.join(dashcam, "drive_02_depth.npz"),
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
    with open(metrics_file) as f:
        result = json.load(f)
    assert result["frames"] == FRAMES and 0 < result["metrics"]["abs_rel"] < 1
