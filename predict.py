"""Predict depth for images and videos: \
``python predict.py --load_weights_folder W|--model NAME|--exported FILE --image_path PATH...``.

Images get ``<name>_disp.npy``, ``<name>_depth.npy``, ``<name>_disp.png`` and ``<name>_seg.png`` (models with
a segmentation head); videos, and folders with ``--video``, one ``<name>_depth.mp4``. The models and inputs:
deploy/predictors.py; the files written: deploy/writers.py; metres from the camera's height: deploy/metric/.
The outputs: the README's "Prediction" and docs/own_data.md, "Step 5"; metres: docs/metric_depth.md."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from typing import Sequence

import options
import utils
from checkpoints import released
from datasets.video_files import fps_option, is_video, probe
from deploy.metric import camera_height
from deploy.metric.prediction import metric_setup, unscaled_message
from deploy.predictors import (
    FRAMES_FOLDER_SUFFIX,
    check_explicit,
    folder_images,
    image_frames,
    listed,
    load_predictor,
    output_stem,
    video_frames,
)
from deploy.writers import PANELS, VIDEO_SUFFIX, check_outputs, predict, predict_video

logger = logging.getLogger(__name__)

FRAMES_FPS = 10.0  # depth video rate of a folder of frames (KITTI's, import_video's default)


# -- command line ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=utils.HelpFormatter)
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--load_weights_folder", help="model folder (any supported layout)")
    released.add_model_option(model, parser)
    model.add_argument(
        "--exported",
        "--onnx",
        dest="exported",
        metavar="FILE",
        help="a file written by python -m tools.export_model: .onnx (run by onnxruntime), "
        ".pt2 (torch.export) or .pt (TorchScript)",
    )
    parser.add_argument(
        "--image_path", required=True, nargs="+", help="images, folders of images, and/or videos"
    )
    parser.add_argument(
        "--output_dir",
        type=options.folder_path,
        default=None,
        help="where outputs go (default: beside each input)",
    )
    parser.add_argument(
        "--depth_scale",
        type=options.positive_float,
        default=1.0,
        help="depth = depth_scale / disparity (5.4 gives metres for stereo-trained models)",
    )
    parser.add_argument("--batch_size", type=options.positive_int, default=8, help="images per forward pass")
    utils.add_device_option(parser)
    g = parser.add_argument_group("depth videos (of video files, and of folders with --video)")
    g.add_argument("--video", action="store_true", help="a folder of frames becomes one depth video")
    g.add_argument(
        "--panels",
        nargs="+",
        default=["depth"],
        choices=PANELS,
        help="side by side, left to right: the input, the colour-mapped disparity, the segmentation "
        "overlay (models with a segmentation head)",
    )
    g.add_argument(
        "--fps",
        type=fps_option,
        default=None,
        help=f"rate of the depth video: a video's frames are kept at this rate (default: all, at its own "
        f"rate); a folder's frames play at it (default {FRAMES_FPS:g})",
    )
    g.add_argument("--save_npy", action="store_true", help="also each frame's _disp.npy and _depth.npy")
    g = parser.add_argument_group(
        "metric depth from the camera's height above the road (docs/metric_depth.md)"
    )
    g.add_argument(
        "--camera_height",
        type=camera_height.camera_height_option,
        default=None,
        metavar="METRES",
        help="the camera's height above the road: _depth.npy in metres, scaled per image so that "
        "the road the model segments lies this far below the camera; <name>_scale.json "
        "holds the scale and its confidence; depth videos get a colour bar in metres "
        "(--depth_scale does not apply)",
    )
    g.add_argument(
        "--intrinsics",
        default=None,
        metavar="FILE",
        help="the camera's intrinsics.json (fx, fy, cx, cy in pixels of the input frames, and their width "
        "and height; docs/own_data.md); default: intrinsics.json in the input's folder or the one above",
    )
    camera_height.add_ground_options(g)
    g.add_argument(
        "--scale_window",
        type=camera_height.smoothing_window,
        default=None,
        help="videos: the scale is the median of the per-frame estimates over this many frames "
        "centred on each, an odd number (frames without road take their neighbours'); 1: every frame its "
        f"own; default {camera_height.DEFAULT_SMOOTHING_WINDOW}",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    opts = parser.parse_args(argv)
    utils.setup_logging()
    released.resolve_model_option(opts)
    camera_height.check_dependent_options(opts, opts.camera_height is not None, "--camera_height")
    images, folders, videos = [], [], []
    for path in opts.image_path:
        if os.path.isdir(path):
            folders.append(path)
        elif not os.path.exists(path):
            raise utils.MissingFileError(f"{path}: no such image, video or folder")
        else:
            check_explicit(path)
            (videos if is_video(path) else images).append(path)
    if opts.video and images:
        parser.error(
            "--video makes depth videos of folders of frames and of videos, "
            f"not of single images ({images[0]})"
        )
    check_outputs(opts, images, folders, videos)
    predictor = load_predictor(opts.load_weights_folder, opts.exported, utils.pick_device(opts.device))
    if "seg" in opts.panels and not predictor.has_segmentation and (videos or opts.video):
        parser.error("--panels seg needs a model with a segmentation head")
    metric = metric_setup(opts, predictor, images + folders + videos)
    if opts.output_dir:
        os.makedirs(opts.output_dir, exist_ok=True)
    failures: list[str] = []
    for folder in folders if opts.video else []:
        paths = folder_images(folder)
        if not paths:
            raise utils.MissingFileError(f"{folder}: no images ({', '.join(utils.IMAGE_EXTENSIONS)})")
        stem = output_stem(folder, opts.output_dir)
        frames = image_frames(paths, stem + FRAMES_FOLDER_SUFFIX, failures)
        count = predict_video(
            predictor,
            frames,
            stem + VIDEO_SUFFIX,
            opts.fps or FRAMES_FPS,
            opts.panels,
            opts.batch_size,
            opts.depth_scale,
            opts.save_npy,
            len(paths),
            metric=metric,
            source=folder,
        )
        logger.info("wrote %s (%d frames)", stem + VIDEO_SUFFIX, count)
    for video in videos:
        stem = output_stem(video, opts.output_dir)
        info = probe(video)
        fps = opts.fps or info.fps or FRAMES_FPS
        total = info.expected_frames
        if total is not None and opts.fps is not None and info.fps:
            total = math.ceil(total * min(1.0, opts.fps / info.fps))
        count = predict_video(
            predictor,
            video_frames(video, stem, opts.fps),
            stem + VIDEO_SUFFIX,
            fps,
            opts.panels,
            opts.batch_size,
            opts.depth_scale,
            opts.save_npy,
            total,
            timed=opts.fps is None,
            metric=metric,
            source=video,
        )
        logger.info("wrote %s (%d frames)", stem + VIDEO_SUFFIX, count)
    paths = images + [p for folder in ([] if opts.video else folders) for p in folder_images(folder)]
    if not paths and not videos and not opts.video:
        raise utils.MissingFileError(
            f"no images ({', '.join(utils.IMAGE_EXTENSIONS)}) in {', '.join(folders)}"
        )
    if paths:
        stems = predict(
            predictor, paths, opts.output_dir, opts.depth_scale, opts.batch_size, failures, metric=metric
        )
        if stems:
            logger.info("wrote predictions for %d images (%s_disp.png ...)", len(stems), stems[0])
    unscaled = [] if metric is None else metric.unscaled
    if failures and unscaled:  # both closing lines in one
        raise utils.InputError(
            f"{len(failures)} file(s) could not be read and were skipped: {listed(failures)}; and "
            f"{unscaled_message(unscaled)}"
        )
    if failures:
        raise utils.InputError(
            f"{len(failures)} file(s) could not be read and were skipped: {listed(failures)}"
        )
    if unscaled:
        raise camera_height.GroundNotVisible(unscaled_message(unscaled))
    return 0


if __name__ == "__main__":
    sys.exit(utils.run_cli(main))
