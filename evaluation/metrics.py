"""Monodepth2's depth evaluation protocol for one image: the Garg crop, the valid ground truth, median
scaling and clamping, and the seven standard metrics.

Shared by evaluate_depth.py (``evaluation/depth.py``), the trainer's validation, the per-class tables
and the error maps of figures; the numbers are Monodepth2's (docs/fidelity.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DEPTH_METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")


def compute_depth_errors(gt: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """The seven standard depth metrics of valid ground-truth points (1-D tensors), in
    ``DEPTH_METRIC_NAMES`` order."""
    thresh = torch.maximum(gt / pred, pred / gt)
    a1 = (thresh < 1.25).to(gt.dtype).mean()
    a2 = (thresh < 1.25**2).to(gt.dtype).mean()
    a3 = (thresh < 1.25**3).to(gt.dtype).mean()
    rmse = torch.sqrt(((gt - pred) ** 2).mean())
    rmse_log = torch.sqrt(((torch.log(gt) - torch.log(pred)) ** 2).mean())
    abs_rel = ((gt - pred).abs() / gt).mean()
    sq_rel = ((gt - pred) ** 2 / gt).mean()
    return torch.stack([abs_rel, sq_rel, rmse, rmse_log, a1, a2, a3])


# Monodepth2's evaluation protocol (Eigen split): Garg crop as fractions of the ground-truth size.
GARG_CROP = (0.40810811, 0.99189189, 0.03594771, 0.96405229)  # top, bottom, left, right
MIN_EVAL_DEPTH = 1e-3
MAX_EVAL_DEPTH = 80.0


def garg_crop_mask(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Boolean (H, W) mask of the Garg crop, with Monodepth2's integer rounding."""
    top, bottom = int(GARG_CROP[0] * height), int(GARG_CROP[1] * height)
    left, right = int(GARG_CROP[2] * width), int(GARG_CROP[3] * width)
    mask = torch.zeros(height, width, dtype=torch.bool, device=device)
    mask[top:bottom, left:right] = True
    return mask


def evaluation_mask(gt_depth: torch.Tensor, garg_crop: bool = True) -> torch.Tensor:
    """Valid ground truth: MIN < gt < MAX inside the Garg crop (Eigen), or gt > 0 (improved ground truth)."""
    if not garg_crop:
        return gt_depth > 0
    mask = (gt_depth > MIN_EVAL_DEPTH) & (gt_depth < MAX_EVAL_DEPTH)
    return mask & garg_crop_mask(*gt_depth.shape[-2:], device=gt_depth.device)


def _median(x: torch.Tensor) -> torch.Tensor:
    """NumPy's median (the mean of the two middle values for an even count), unlike torch.median."""
    return torch.quantile(x, 0.5)


def evaluated_depths(
    gt_depth: torch.Tensor,
    pred_disp: torch.Tensor,
    garg_crop: bool = True,
    median_scaling: bool = True,
    pred_depth_scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """The evaluation protocol of one image, up to the metrics: scaled disparity (h, w) resized bilinearly
    to the ground truth (H, W), depth = ``pred_depth_scale`` / disparity, per-image median scaling when
    asked, clamped to [1e-3, 80]. Returns (mask (H, W), ground truth and prediction at the mask's pixels
    in float64, median ratio), or None when no ground-truth pixel is valid; shared by the metrics, the
    per-class pooling and the error maps of figures."""
    height, width = gt_depth.shape[-2:]
    disp = F.interpolate(
        pred_disp.reshape(1, 1, *pred_disp.shape[-2:]).float(),
        size=(height, width),
        mode="bilinear",
        align_corners=False,
    )[0, 0]
    pred_depth = pred_depth_scale / disp
    mask = evaluation_mask(gt_depth, garg_crop)
    if not mask.any():
        return None
    gt, pred = gt_depth[mask].double(), pred_depth[mask].double()
    ratio = _median(gt) / _median(pred) if median_scaling else torch.ones((), dtype=torch.float64)
    pred = torch.clamp(pred * ratio, MIN_EVAL_DEPTH, MAX_EVAL_DEPTH)
    return mask, gt, pred, ratio


def depth_errors_of_image(
    gt_depth: torch.Tensor,
    pred_disp: torch.Tensor,
    garg_crop: bool = True,
    median_scaling: bool = True,
    pred_depth_scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Metrics of one image (``evaluated_depths``' protocol): (metrics in ``DEPTH_METRIC_NAMES`` order,
    median ratio), or None when no ground-truth pixel is valid."""
    result = evaluated_depths(gt_depth, pred_disp, garg_crop, median_scaling, pred_depth_scale)
    if result is None:
        return None
    _, gt, pred, ratio = result
    return compute_depth_errors(gt, pred), ratio
