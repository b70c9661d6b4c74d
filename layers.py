"""Geometry, photometric error and the loss terms of FSRE-Depth, as small functions on tensors.

Every function here is pure (tensors in, tensors out) and testable alone; the trainer wires them.
Defaults are those of the authors' implementation (docs/fidelity.md); their quirks are kept and
named in the docstrings.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

MIN_DEPTH = 0.1
MAX_DEPTH = 100.0
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2
SSIM_WEIGHT = 0.85  # of the photometric error; the remaining 0.15 goes to L1
PROJECTION_EPS = 1e-7
AXIS_ANGLE_EPS = 1e-7
IDENTITY_NOISE_STD = 1e-5  # breaks ties between identity and warped errors
SMOOTHNESS_EPS = 1e-7
SGT_PAD_LABEL = -1  # the authors pad labels with -1, so neighbours outside the image are negatives
SGT_MIN_SQUARED_DISTANCE = 1e-9


# --------------------------------------------------------------------------------------------
# Depth and camera motion
# --------------------------------------------------------------------------------------------
def disp_to_depth(
    disp: torch.Tensor, min_depth: float = MIN_DEPTH, max_depth: float = MAX_DEPTH
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sigmoid output -> (scaled disparity in [1/max, 1/min], depth = 1 / scaled disparity)."""
    min_disp = 1 / max_depth
    max_disp = 1 / min_depth
    scaled_disp = min_disp + (max_disp - min_disp) * disp
    return scaled_disp, 1 / scaled_disp


def rot_from_axisangle(vec: torch.Tensor) -> torch.Tensor:
    """Axis-angle (B, 3) or (B, 1, 3) -> 4x4 rotation matrices (B, 4, 4), Monodepth2's formula."""
    vec = vec.reshape(-1, 3)
    angle = torch.linalg.vector_norm(vec, dim=1, keepdim=True)
    axis = vec / (angle + AXIS_ANGLE_EPS)
    ca, sa = torch.cos(angle), torch.sin(angle)
    c = 1 - ca
    x, y, z = axis[:, 0:1], axis[:, 1:2], axis[:, 2:3]
    xs, ys, zs = x * sa, y * sa, z * sa
    xc, yc, zc = x * c, y * c, z * c
    xyc, yzc, zxc = x * yc, y * zc, z * xc
    zero, one = torch.zeros_like(x), torch.ones_like(x)
    # fmt: off
    rows = [
        x * xc + ca, xyc - zs,    zxc + ys,    zero,
        xyc + zs,    y * yc + ca, yzc - xs,    zero,
        zxc - ys,    yzc + xs,    z * zc + ca, zero,
        zero,        zero,        zero,        one,
    ]
    # fmt: on
    return torch.cat(rows, dim=1).view(-1, 4, 4)


def translation_matrix(translation: torch.Tensor) -> torch.Tensor:
    """Translation (B, 3) or (B, 1, 3) -> homogeneous 4x4 matrices (B, 4, 4)."""
    t = translation.reshape(-1, 3)
    eye = torch.eye(4, device=t.device, dtype=t.dtype).repeat(t.shape[0], 1, 1)
    return torch.cat([eye[:, :, :3], torch.cat([t, torch.ones_like(t[:, :1])], 1).unsqueeze(2)], 2)


def transformation_from_parameters(
    axisangle: torch.Tensor, translation: torch.Tensor, invert: bool = False
) -> torch.Tensor:
    """Pose-decoder outputs -> 4x4 transform T·R, or its inverse R^T·(-t) when ``invert``."""
    rotation = rot_from_axisangle(axisangle)
    t = translation.reshape(-1, 3)
    if invert:
        rotation = rotation.transpose(1, 2)
        t = -t
    shift = translation_matrix(t)
    return rotation @ shift if invert else shift @ rotation


# --------------------------------------------------------------------------------------------
# Projection and warping
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=16)
def _pixel_grid(height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype),
        torch.arange(width, device=device, dtype=dtype),
        indexing="ij",
    )
    return torch.stack(
        [xs.reshape(-1), ys.reshape(-1), torch.ones(height * width, device=device, dtype=dtype)], 0
    )


def pixel_grid(
    height: int, width: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Homogeneous pixel coordinates (3, H·W): rows x, y, 1, row-major over the image."""
    return _pixel_grid(height, width, torch.device(device), dtype)


def backproject_depth(depth: torch.Tensor, inv_K: torch.Tensor) -> torch.Tensor:
    """Depth (B, 1, H, W) and inverse intrinsics (B, 4, 4) -> homogeneous 3D points (B, 4, H·W)."""
    b, _, h, w = depth.shape
    pix = pixel_grid(h, w, depth.device, depth.dtype)
    cam = (inv_K[:, :3, :3] @ pix) * depth.reshape(b, 1, -1)
    return torch.cat([cam, torch.ones_like(cam[:, :1])], 1)


def project_3d(
    points: torch.Tensor,
    K: torch.Tensor,
    T: torch.Tensor,
    height: int,
    width: int,
    eps: float = PROJECTION_EPS,
) -> torch.Tensor:
    """3D points (B, 4, H·W) seen from a camera moved by T -> sampling grid (B, H, W, 2) in [-1, 1].

    Pixel coordinates are normalised by W - 1 and H - 1, matching ``align_corners=True``.
    """
    b = points.shape[0]
    P = (K @ T)[:, :3, :]
    cam = P @ points
    pix = cam[:, :2] / (cam[:, 2:3] + eps)
    pix = pix.view(b, 2, height, width).permute(0, 2, 3, 1)
    scale = pix.new_tensor([width - 1, height - 1])
    return (pix / scale - 0.5) * 2


def warp(source: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Sample a source image at a projected grid (bilinear, border padding, align_corners=True)."""
    return F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=True)


# --------------------------------------------------------------------------------------------
# Photometric error
# --------------------------------------------------------------------------------------------
def dssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(1 - SSIM) / 2 per pixel and channel, clamped to [0, 1]; 3x3 means on reflection-padded inputs.

    The fused form pools the five statistics in one ``avg_pool2d`` call (the same arithmetic per
    element as Monodepth2's five poolings, ``speed.reference.dssim_reference``, so equal to it up to
    float rounding, in fewer kernel launches).
    """
    channels = x.shape[1]
    padded = F.pad(torch.cat([x, y], 1), (1, 1, 1, 1), mode="reflect")
    px, py = padded[:, :channels], padded[:, channels:]
    stats = F.avg_pool2d(torch.cat([padded, px * px, py * py, px * py], 1), 3, 1)
    mu_x, mu_y, mean_xx, mean_yy, mean_xy = stats.split(channels, 1)
    sigma_x = mean_xx - mu_x**2
    sigma_y = mean_yy - mu_y**2
    sigma_xy = mean_xy - mu_x * mu_y
    n = (2 * mu_x * mu_y + SSIM_C1) * (2 * sigma_xy + SSIM_C2)
    d = (mu_x**2 + mu_y**2 + SSIM_C1) * (sigma_x + sigma_y + SSIM_C2)
    return torch.clamp((1 - n / d) / 2, 0, 1)


def reprojection_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel photometric error (B, 1, H, W): 0.85·DSSIM + 0.15·L1, averaged over channels."""
    l1 = (target - pred).abs().mean(1, keepdim=True)
    return SSIM_WEIGHT * dssim(pred, target).mean(1, keepdim=True) + (1 - SSIM_WEIGHT) * l1


def min_reprojection(
    warped_errors: torch.Tensor,
    identity_errors: torch.Tensor | None = None,
    noise_std: float = IDENTITY_NOISE_STD,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel minimum over source frames, with Monodepth2's auto-masking.

    ``warped_errors`` (B, F, H, W) holds the error of each warped source frame; ``identity_errors``
    (B, F, H, W), of the unwarped ones. Gaussian noise of ``noise_std`` is added to the identity
    errors, which join the minimum: pixels that do not move with the camera pick them and so
    contribute no gradient. Returns the minimum (B, 1, H, W) and the auto-mask (B, 1, H, W), True
    where a warped frame won.
    """
    if identity_errors is None:
        return warped_errors.min(1, keepdim=True)[0], torch.ones_like(warped_errors[:, :1], dtype=torch.bool)
    identity_errors = identity_errors + torch.randn_like(identity_errors) * noise_std
    combined = torch.cat([identity_errors, warped_errors], 1)
    best, idx = combined.min(1, keepdim=True)
    return best, idx >= identity_errors.shape[1]


def smoothness_loss(disp: torch.Tensor, image: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Edge-aware smoothness of a disparity map (divided by its mean first, as Monodepth2 does)."""
    if normalize:
        disp = disp / (disp.mean((2, 3), keepdim=True) + SMOOTHNESS_EPS)
    grad_disp_x = (disp[:, :, :, :-1] - disp[:, :, :, 1:]).abs()
    grad_disp_y = (disp[:, :, :-1, :] - disp[:, :, 1:, :]).abs()
    grad_img_x = (image[:, :, :, :-1] - image[:, :, :, 1:]).abs().mean(1, keepdim=True)
    grad_img_y = (image[:, :, :-1, :] - image[:, :, 1:, :]).abs().mean(1, keepdim=True)
    return (grad_disp_x * torch.exp(-grad_img_x)).mean() + (grad_disp_y * torch.exp(-grad_img_y)).mean()


# --------------------------------------------------------------------------------------------
# Semantic terms
# --------------------------------------------------------------------------------------------
def semantic_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """Cross-entropy of segmentation logits (B, C, H, W) against train ids (B, [1,] H, W).

    Pixels labelled ``ignore_index`` (the dataset's ignore id) do not count; a batch without any
    labelled pixel gives 0 (torch would give NaN).
    """
    if labels.dim() == 4:
        labels = labels[:, 0]
    labels = labels.long()
    per_pixel = F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction="none")
    valid = (labels != ignore_index).sum()
    return per_pixel.sum() / valid.clamp(min=1)


def downsample_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Label map (B, 1, H, W) -> (B, 1, h, w) with torch's ``nearest`` (top-left pixel of each block)."""
    return F.interpolate(labels.float(), size=size, mode="nearest").to(labels.dtype)


def sgt_neighbourhoods(labels: torch.Tensor, kernel_size: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive neighbours (B, K², h, w) and boundary pixels (B, 1, h, w) of a label map (B, 1, h, w).

    A neighbour in the K×K patch (the centre included) with the pixel's label is a positive, any
    other a negative. Neighbours outside the image are negatives (quirk: the authors pad labels
    with -1) and 255 is an ordinary label. Boundary pixels have at least K-1 of each.
    """
    b, _, h, w = labels.shape
    pad = kernel_size // 2
    lab = labels.float()  # label ids, 255 and the -1 padding are exact in float32
    padded = F.pad(lab, (pad, pad, pad, pad), value=SGT_PAD_LABEL)
    neighbour_labels = F.unfold(padded, kernel_size).view(b, kernel_size * kernel_size, h, w)
    positive = neighbour_labels == lab
    n_pos = positive.sum(1, keepdim=True)
    n_neg = kernel_size * kernel_size - n_pos
    boundary = (n_pos >= kernel_size - 1) & (n_neg >= kernel_size - 1)
    return positive, boundary


def neighbour_cosines(unit: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Dot products (B, K², h, w) of each unit feature (B, C, h, w) with its K×K neighbours (zero outside).

    The fused form takes one shifted view of the zero-padded features per neighbour, so it never
    materialises the (B, C·K², h, w) unfolded copy (K² times the features' memory, kept for the
    backward pass; the authors' unfold is ``speed.reference.neighbour_cosines_reference``). The two
    agree up to float rounding; neighbours are ordered row by row, as ``F.unfold`` orders them.
    """
    b, c, h, w = unit.shape
    pad = kernel_size // 2
    padded = F.pad(unit, (pad, pad, pad, pad))
    return torch.stack(
        [
            (padded[:, :, dy : dy + h, dx : dx + w] * unit).sum(1)
            for dy in range(kernel_size)
            for dx in range(kernel_size)
        ],
        1,
    )


def semantic_triplet_loss(
    features: torch.Tensor, labels: torch.Tensor, kernel_size: int = 5, margin: float = 0.3
) -> tuple[torch.Tensor, torch.Tensor]:
    """Semantics-guided triplet loss on one feature level, and its boundary-pixel mask.

    ``features`` (B, C, h, w); ``labels`` (B, 1, h, w) at the same size; positives, negatives and
    boundary pixels as in ``sgt_neighbourhoods``. Distances are sqrt(max(1e-9, 2 - 2·cos))
    between L2-normalised features (zero outside the image, so cos = 0 there). Each boundary
    pixel adds max(0, mean positive distance - mean negative distance + margin); the loss is the
    mean over the boundary pixels of the whole batch, and 0 where there are none (a fix: the
    authors' mean gives NaN there, while their gradients are those of a 0 term).
    """
    b, c, h, w = features.shape
    if labels.shape[-2:] != (h, w):
        raise ValueError(f"labels {tuple(labels.shape[-2:])} and features {(h, w)} differ in size")
    kk = kernel_size * kernel_size
    unit = F.normalize(features, dim=1)
    cos = neighbour_cosines(unit, kernel_size)  # (B, K², h, w)
    dist = torch.sqrt(torch.clamp(2 - 2 * cos, min=SGT_MIN_SQUARED_DISTANCE))

    positive, boundary = sgt_neighbourhoods(labels, kernel_size)
    pos = positive.to(dist.dtype)
    n_pos = pos.sum(1, keepdim=True)
    mean_pos = (dist * pos).sum(1, keepdim=True) / n_pos.clamp(min=1)
    mean_neg = (dist * (1 - pos)).sum(1, keepdim=True) / (kk - n_pos).clamp(min=1)
    per_pixel = F.relu(mean_pos - mean_neg + margin)
    mask = boundary.to(per_pixel.dtype)
    loss = (per_pixel * mask).sum() / mask.sum().clamp(min=1)
    return loss, boundary
