"""``evaluate_depth.py --scaling camera_height``: each test frame scaled by the model's own road and the
camera's height (deploy/metric/camera_height.py, no ground truth used) instead of Monodepth2's median, and
the report of that scale against the ground truth's median scale (docs/metric_depth.md)."""

from __future__ import annotations

import argparse
import logging
from typing import Sequence

import numpy as np
import torch

import utils
from checkpoints import model_folder
from datasets.camera import check_camera_fits
from deploy.metric import camera_height
from deploy.metric.camera_height import ScaleEstimate, ScaleRefusal
from evaluation.metrics import depth_errors_of_image, evaluated_depths

logger = logging.getLogger(__name__)

SCALE_ERROR_PERCENTILE = 90  # --scaling camera_height reports the scale error's median and this percentile
LISTED_REFUSALS = 3  # frames without a camera-height scale named in the log


def check_camera_height_scaling(opts: argparse.Namespace) -> None:
    """--scaling camera_height needs the model (its segmentation of each frame), ground truth, no other
    scaling, and a camera height (given, or each folders sequence's); the ground options need it."""
    camera_height.check_dependent_options(opts, opts.scaling == "camera_height", "--scaling camera_height")
    if opts.scaling != "camera_height":
        if opts.camera_height is not None:
            raise utils.InputError(
                "--camera_height is for --scaling camera_height (the default scaling is median)"
            )
        return
    if opts.ext_disp_to_eval:
        raise utils.InputError(
            "--scaling camera_height needs the model's segmentation of every frame: give "
            "--load_weights_folder instead of --ext_disp_to_eval"
        )
    if opts.eval_stereo or opts.disable_median_scaling:
        raise utils.InputError(
            "--scaling camera_height replaces median scaling: drop --eval_stereo and --disable_median_scaling"
        )
    if opts.eval_split == "benchmark" or opts.no_eval:
        raise utils.InputError(
            "--scaling camera_height scales the evaluated depths: it needs ground truth "
            "(not --eval_split benchmark or --no_eval)"
        )
    if opts.camera_height is None and opts.dataset != "folders":
        raise utils.InputError(
            "--scaling camera_height needs --camera_height METRES (KITTI's camera is 1.65 m above the road)"
        )


def camera_heights(dataset, given: float | None) -> list[float]:
    """The camera height of every test item: ``given``, else its sequence's (--dataset folders)."""
    if given is not None:
        return [given] * len(dataset)
    heights = []
    for entry in dataset.entries:
        camera = dataset.sequence(entry.folder).camera
        if camera.camera_height is None:
            raise utils.InputError(
                f"{camera.source}: no camera_height (metres above the road) for --scaling "
                f"camera_height: add it there, or give --camera_height"
            )
        heights.append(camera.camera_height)
    return heights


def check_metric_cameras(dataset) -> None:
    """--dataset folders: each sequence's intrinsics must be fit for metres (``check_camera_fits``, the one
    validator: the frame size named in the file, a road camera's field of view); its warnings logged."""
    if not hasattr(dataset, "sequence"):
        return  # KITTI: its calibration files, for its frames
    for folder in sorted({entry.folder for entry in dataset.entries}):
        sequence = dataset.sequence(folder)
        for problem in check_camera_fits(
            sequence.camera, sequence.width, sequence.height, sequence.folder, metric=True
        ):
            logger.warning("%s (%s): %s", sequence.camera.source, sequence.folder, problem)


class FrameScales:
    """The ``on_batch`` of ``predict_disparities``: each test frame's camera-height scale (a ScaleEstimate, or
    the ScaleRefusal that says why it has none) and the ground pixels (h, w) it was estimated from, in order.
    Built before any prediction: the camera heights found and the cameras checked."""

    def __init__(self, dataset, spec: model_folder.ModelSpec, opts: argparse.Namespace) -> None:
        self.heights = camera_heights(dataset, opts.camera_height)
        check_metric_cameras(dataset)
        self.settings = camera_height.ground_settings(opts, self.heights[0])
        if self.settings.source == "segmentation" and not spec.semantics:
            raise utils.InputError(
                f"{opts.load_weights_folder} has no segmentation head to find the road with: "
                f"give --ground_from lowest_band (the bottom of the image taken as road)"
            )
        self.depth_range = (spec.min_depth, spec.max_depth)
        self.estimates: list[ScaleEstimate | ScaleRefusal] = []
        self.grounds: list[np.ndarray] = []

    def __call__(self, disps: np.ndarray, seg_logits: np.ndarray | None, inputs: dict) -> None:
        for j, disp in enumerate(disps):
            logits = None if seg_logits is None else seg_logits[j]
            self.grounds.append(self.settings.ground(disp, logits, self.depth_range))  # computed once
            self.estimates.append(
                self.settings.frame_scale(
                    disp,
                    logits,
                    inputs[("K", 0)][j].numpy(),
                    camera_height=self.heights[len(self.estimates)],
                    ground=self.grounds[-1],
                )
            )


def ground_median_scale(
    gt: torch.Tensor, pred: torch.Tensor, ground: np.ndarray, garg_crop: bool
) -> float | None:
    """The ground truth's median scale over the ground pixels (``ground`` (h, w) at the prediction's size)
    alone: what a perfect estimate from the road would give; None where no ground pixel has ground truth."""
    mask = torch.from_numpy(np.ascontiguousarray(ground, dtype=np.float32))[None, None]
    on_ground = torch.nn.functional.interpolate(mask, size=gt.shape[-2:], mode="nearest")[0, 0] > 0
    result = evaluated_depths(torch.where(on_ground, gt, torch.zeros_like(gt)), pred, garg_crop, True, 1.0)
    return None if result is None else result[3].item()


def evaluate_camera_height_scaling(
    pred_disps: np.ndarray,
    gt_depths: Sequence[np.ndarray],
    garg_crop: bool,
    estimates: Sequence[ScaleEstimate | ScaleRefusal],
    grounds: Sequence[np.ndarray] | None = None,
) -> tuple[np.ndarray, dict]:
    """Per-image metrics (M, 7) with each image scaled by its camera-height estimate (frames without one: the
    median of the others'), and the report: each estimate's ratio to the ground truth's median scale, over
    the image and (with ``grounds``, each frame's ground pixels) over the ground alone, which separates
    the estimate's error from the model's placing of its road relative to the rest of the scene."""
    found = [e for e in estimates if isinstance(e, ScaleEstimate)]
    refusals = [(i, e.reason) for i, e in enumerate(estimates) if isinstance(e, ScaleRefusal)]
    if not found:
        raise camera_height.GroundNotVisible(
            f"no test frame shows enough road for a camera-height scale (frame 0: {refusals[0][1]})"
        )
    fallback = float(np.median([e.scale for e in found]))
    errors, ratios, ground_ratios, per_frame = [], [], [], []
    for i, (pred, gt, estimate) in enumerate(zip(pred_disps, gt_depths, estimates)):
        own = isinstance(estimate, ScaleEstimate)
        per_frame.append(
            {
                "scale": estimate.scale,
                "inlier_share": estimate.inlier_share,
                "pixels_used": estimate.pixels_used,
                "pitch_degrees": estimate.pitch_degrees,
                "roll_degrees": estimate.roll_degrees,
            }
            if own
            else estimate.as_dict()
        )
        gt_t = torch.from_numpy(np.asarray(gt, dtype=np.float32))
        pred_t = torch.from_numpy(np.ascontiguousarray(pred))
        scale = estimate.scale if own else fallback
        result = depth_errors_of_image(gt_t, pred_t, garg_crop, False, scale)
        if result is None:
            continue
        errors.append(result[0].numpy())
        if own:  # the ground truth's median scale of the same pixels (Monodepth2's ratio)
            median_scale = evaluated_depths(gt_t, pred_t, garg_crop, True, 1.0)[3].item()
            ratios.append(scale / median_scale)
            per_frame[-1].update(gt_median_scale=median_scale, ratio_to_gt_median=ratios[-1])
            ground_scale = (
                None if grounds is None else ground_median_scale(gt_t, pred_t, grounds[i], garg_crop)
            )
            if ground_scale is not None:
                ground_ratios.append(scale / ground_scale)
                per_frame[-1].update(
                    gt_ground_median_scale=ground_scale, ratio_to_gt_ground_median=ground_ratios[-1]
                )
    ratios = np.array(ratios)
    scale_errors = np.abs(ratios - 1)
    for i, reason in refusals[:LISTED_REFUSALS]:
        logger.warning(
            "test frame %d: no camera-height scale (%s): scaled by the median of the others", i, reason
        )
    report = {
        "camera_height_m": sorted({e.camera_height for e in found}),
        "ground": found[0].ground,
        "ground_orientation": found[0].orientation,
        "frames_estimated": len(found),
        "frames_refused": len(refusals),
        "fallback_scale": fallback,
        "ratio_to_gt_median": {"median": float(np.median(ratios)), "std": float(np.std(ratios))},
        "scale_error": {
            "median": float(np.median(scale_errors)),
            f"p{SCALE_ERROR_PERCENTILE}": float(np.percentile(scale_errors, SCALE_ERROR_PERCENTILE)),
        },
        "inlier_share_median": float(np.median([e.inlier_share for e in found])),
        "ratio_to_gt_ground_median": (
            {"median": float(np.median(ground_ratios)), "std": float(np.std(ground_ratios))}
            if ground_ratios
            else None
        ),
        "per_frame": per_frame,
    }
    return np.array(errors), report


def camera_height_summary(report: dict) -> str:
    """The lines printed beside the metrics table (as Monodepth2 prints its median-scaling ratios)."""
    error = report["scale_error"]
    ratio = report["ratio_to_gt_median"]
    lines = [
        f" camera-height scale / ground-truth median scale | med: {ratio['median']:0.3f} | "
        f"std: {ratio['std']:0.3f} | scale error med: {error['median']:.1%} | "
        f"p{SCALE_ERROR_PERCENTILE}: {error[f'p{SCALE_ERROR_PERCENTILE}']:.1%} | frames estimated: "
        f"{report['frames_estimated']} of {report['frames_estimated'] + report['frames_refused']}"
    ]
    ground = report.get("ratio_to_gt_ground_median")
    if ground is not None:
        lines.append(
            f" the same on the ground pixels alone | med: {ground['median']:0.3f} | std: {ground['std']:0.3f}"
        )
    return "\n".join(lines)
