"""Geometry, photometric error and loss terms against values worked out by hand."""

import math

import pytest
import torch
import torch.nn.functional as F

import layers
from conftest import make_intrinsics
from evaluation.metrics import compute_depth_errors


# ---------------------------------------------------------------------------------------------
# depth and motion
# ---------------------------------------------------------------------------------------------
def test_disp_to_depth_endpoints_and_midpoint():
    scaled, depth = layers.disp_to_depth(torch.tensor([0.0, 1.0, 0.5]), 0.1, 100.0)
    assert torch.allclose(scaled, torch.tensor([0.01, 10.0, 0.01 + 9.99 * 0.5]))
    assert torch.allclose(depth, torch.tensor([100.0, 0.1, 1 / 5.005]))


def monodepth2_rot_from_axisangle(vec):
    """Monodepth2's formula, written out element by element as in its layers.py."""
    angle = torch.norm(vec, 2, 2, True)
    axis = vec / (angle + 1e-7)
    ca, sa = torch.cos(angle), torch.sin(angle)
    C = 1 - ca
    x, y, z = axis[..., 0].unsqueeze(1), axis[..., 1].unsqueeze(1), axis[..., 2].unsqueeze(1)
    xs, ys, zs = x * sa, y * sa, z * sa
    xC, yC, zC = x * C, y * C, z * C
    xyC, yzC, zxC = x * yC, y * zC, z * xC
    rot = torch.zeros((vec.shape[0], 4, 4))
    rot[:, 0, 0] = torch.squeeze(x * xC + ca)
    rot[:, 0, 1] = torch.squeeze(xyC - zs)
    rot[:, 0, 2] = torch.squeeze(zxC + ys)
    rot[:, 1, 0] = torch.squeeze(xyC + zs)
    rot[:, 1, 1] = torch.squeeze(y * yC + ca)
    rot[:, 1, 2] = torch.squeeze(yzC - xs)
    rot[:, 2, 0] = torch.squeeze(zxC - ys)
    rot[:, 2, 1] = torch.squeeze(yzC + xs)
    rot[:, 2, 2] = torch.squeeze(z * zC + ca)
    rot[:, 3, 3] = 1
    return rot


def test_rotation_matches_monodepth2_and_is_orthonormal():
    vec = torch.randn(5, 1, 3, generator=torch.Generator().manual_seed(1)) * 0.3
    rot = layers.rot_from_axisangle(vec)
    assert torch.equal(rot, monodepth2_rot_from_axisangle(vec))
    r = rot[:, :3, :3]
    assert torch.allclose(r @ r.transpose(1, 2), torch.eye(3).expand(5, 3, 3), atol=1e-6)


def test_quarter_turn_about_z_maps_x_to_y():
    rot = layers.rot_from_axisangle(torch.tensor([[0.0, 0.0, math.pi / 2]]))
    assert torch.allclose(rot[0] @ torch.tensor([1.0, 0, 0, 1]), torch.tensor([0.0, 1, 0, 1]), atol=1e-6)


def test_inverted_transformation_is_the_inverse():
    g = torch.Generator().manual_seed(2)
    axisangle, translation = torch.randn(3, 1, 3, generator=g) * 0.1, torch.randn(3, 1, 3, generator=g)
    M = layers.transformation_from_parameters(axisangle, translation)
    M_inv = layers.transformation_from_parameters(axisangle, translation, invert=True)
    assert torch.allclose(M @ M_inv, torch.eye(4).expand(3, 4, 4), atol=1e-6)
    # T·R: rotate first, then translate
    assert torch.allclose(M[:, :3, 3], translation[:, 0])


# ---------------------------------------------------------------------------------------------
# projection and warping
# ---------------------------------------------------------------------------------------------
def grid_to_pixels(grid, height, width):
    return torch.stack([(grid[..., 0] / 2 + 0.5) * (width - 1), (grid[..., 1] / 2 + 0.5) * (height - 1)], -1)


def test_backproject_then_project_with_identity_returns_pixel_grid():
    b, h, w = 2, 6, 10
    K = make_intrinsics(b, h, w)
    depth = torch.rand(b, 1, h, w) * 50 + 1
    points = layers.backproject_depth(depth, torch.linalg.inv(K))
    assert torch.allclose(points[:, 2], depth.view(b, -1), rtol=1e-5)  # z is the depth
    grid = layers.project_3d(points, K, torch.eye(4).expand(b, 4, 4), h, w)
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    assert torch.allclose(grid_to_pixels(grid, h, w), torch.stack([xs, ys], -1).expand(b, h, w, 2), atol=1e-4)


def test_known_translation_shifts_pixels_by_fx_t_over_z():
    b, h, w, z, tx = 1, 8, 16, 10.0, 1.0
    K = make_intrinsics(b, h, w)
    T = torch.eye(4).unsqueeze(0).clone()
    T[0, 0, 3] = tx
    points = layers.backproject_depth(torch.full((b, 1, h, w), z), torch.linalg.inv(K))
    pixels = grid_to_pixels(layers.project_3d(points, K, T, h, w), h, w)
    shift = K[0, 0, 0] * tx / z  # 0.58 * 16 / 10 = 0.928 pixels
    xs = torch.arange(w, dtype=torch.float32)
    assert torch.allclose(pixels[0, :, :, 0], (xs + shift).expand(h, w), atol=1e-4)
    assert torch.allclose(
        pixels[0, :, :, 1], torch.arange(h, dtype=torch.float32).view(h, 1).expand(h, w), atol=1e-4
    )


def test_warp_with_identity_pose_returns_source_and_translation_shifts_a_ramp():
    b, h, w = 1, 8, 16
    K = make_intrinsics(b, h, w)
    source = torch.rand(b, 3, h, w)
    points = layers.backproject_depth(torch.full((b, 1, h, w), 5.0), torch.linalg.inv(K))
    same = layers.warp(source, layers.project_3d(points, K, torch.eye(4).expand(b, 4, 4), h, w))
    assert torch.allclose(same, source, atol=1e-5)

    ramp = torch.arange(w, dtype=torch.float32).expand(b, 3, h, w).contiguous()
    T = torch.eye(4).unsqueeze(0).clone()
    T[0, 0, 3] = 1.0
    shifted = layers.warp(ramp, layers.project_3d(points, K, T, h, w))
    shift = K[0, 0, 0] / 5.0
    inside = (torch.arange(w) + shift) <= w - 1
    assert torch.allclose(
        shifted[0, 0, :, inside], (torch.arange(w)[inside] + shift).expand(h, -1).float(), atol=1e-4
    )
    assert torch.allclose(shifted[0, 0, :, ~inside], torch.tensor(w - 1.0))  # border padding


# ---------------------------------------------------------------------------------------------
# photometric error
# ---------------------------------------------------------------------------------------------
def test_ssim_and_reprojection_of_identical_images_are_zero():
    x = torch.rand(2, 3, 12, 20)
    assert torch.allclose(layers.dssim(x, x), torch.zeros_like(x), atol=1e-6)
    assert torch.allclose(layers.reprojection_error(x, x), torch.zeros(2, 1, 12, 20), atol=1e-6)


def test_ssim_and_reprojection_of_constant_images_by_hand():
    a, b = 0.2, 0.6
    x, y = torch.full((1, 3, 5, 5), a, dtype=torch.float64), torch.full((1, 3, 5, 5), b, dtype=torch.float64)
    ssim = (2 * a * b + 0.01**2) / (a * a + b * b + 0.01**2)  # the variances are 0
    expected_dssim = (1 - ssim) / 2  # 0.199950...
    assert torch.allclose(layers.dssim(x, y), torch.full_like(x, expected_dssim), atol=1e-8)
    expected = 0.85 * expected_dssim + 0.15 * abs(a - b)
    assert torch.allclose(
        layers.reprojection_error(x, y), torch.full((1, 1, 5, 5), expected, dtype=torch.float64), atol=1e-8
    )
    # float32: E[x²] - E[x]² leaves ~1e-8 of the variance, 1e-5 of C2 = 9e-4 (as in Monodepth2)
    assert torch.allclose(
        layers.dssim(x.float(), y.float()), torch.full((1, 3, 5, 5), expected_dssim), atol=5e-5
    )


def test_automasking_picks_the_identity_error_where_it_is_smaller():
    # pixel 0: identity 0.2 beats warped 0.3/0.5; pixel 1: warped 0.1 beats identity 0.2/0.3
    warped = torch.tensor([[0.5, 0.1], [0.3, 0.4]]).view(1, 2, 1, 2)
    identity = torch.tensor([[0.2, 0.2], [0.9, 0.3]]).view(1, 2, 1, 2)
    best, automask = layers.min_reprojection(warped, identity)
    assert torch.allclose(best.view(-1), torch.tensor([0.2, 0.1]), atol=1e-4)
    assert automask.view(-1).tolist() == [False, True]
    best, automask = layers.min_reprojection(warped, None)
    assert torch.allclose(best.view(-1), torch.tensor([0.3, 0.1]))
    assert automask.all()


def test_smoothness_of_constant_disparity_is_zero_and_of_a_ramp_by_hand():
    image = torch.rand(1, 3, 4, 6)
    assert layers.smoothness_loss(torch.full((1, 1, 4, 6), 0.3), image).item() == 0
    ramp = torch.arange(1, 5, dtype=torch.float32).view(1, 1, 1, 4).expand(1, 1, 2, 4)
    # normalised by the mean 2.5: steps of 0.4 along x, none along y
    assert layers.smoothness_loss(ramp, torch.zeros(1, 3, 2, 4)).item() == pytest.approx(0.4, abs=1e-6)
    edges = torch.arange(4, dtype=torch.float32).view(1, 1, 1, 4).expand(1, 3, 2, 4)  # image steps of 1
    assert layers.smoothness_loss(ramp, edges).item() == pytest.approx(0.4 * math.exp(-1), abs=1e-6)


# ---------------------------------------------------------------------------------------------
# semantic terms
# ---------------------------------------------------------------------------------------------
def test_cross_entropy_ignores_255():
    logits = torch.randn(1, 3, 2, 2, generator=torch.Generator().manual_seed(3))
    labels = torch.tensor([[[[0, 255], [2, 1]]]])
    log_p = logits.log_softmax(1)[0]
    expected = -(log_p[0, 0, 0] + log_p[2, 1, 0] + log_p[1, 1, 1]) / 3
    assert layers.semantic_loss(logits, labels, 255).item() == pytest.approx(expected.item(), rel=1e-6)
    everything_ignored = layers.semantic_loss(logits, torch.full((1, 1, 2, 2), 255), 255)
    assert everything_ignored.item() == 0


def test_label_downsampling_takes_the_top_left_pixel_of_each_block():
    labels = torch.arange(16).view(1, 1, 4, 4)
    assert layers.downsample_labels(labels, (2, 2)).view(-1).tolist() == [0, 2, 8, 10]


TWO_LABELS = torch.tensor([[0, 0, 0, 1, 1, 1]] * 4).view(1, 1, 4, 6)  # left half 0, right half 1


def test_sgt_boundary_pixels_and_counts_on_a_two_label_map():
    positive, boundary = layers.sgt_neighbourhoods(TWO_LABELS, kernel_size=3)
    expected_boundary = torch.tensor(
        [
            [1, 1, 1, 1, 1, 1],  # the image border: padded neighbours are negatives
            [1, 0, 1, 1, 0, 1],  # inside, only the columns next to the label edge
            [1, 0, 1, 1, 0, 1],
            [1, 1, 1, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(boundary[0, 0], expected_boundary)
    n_pos = positive.sum(1)[0]
    assert n_pos[1, 2] == 6 and n_pos[1, 1] == 9  # next to the edge: two columns of its label
    assert n_pos[0, 0] == 4  # corner: itself, right, below, diagonal
    assert n_pos[0, 2] == 4  # top row next to the edge: 3 outside, 2 of the other label
    assert positive[0, 4, 1, 2]  # the centre is always a positive


def test_sgt_loss_value_for_constant_features():
    # All features equal: distance ~0 to every pixel inside the image, sqrt(2) to the zero padding.
    # Interior boundary pixels (4) have only inside negatives: 0 - 0 + 0.3 each. Border pixels
    # (16) have >= 3 padded negatives among <= 5, so the mean negative distance > 0.3 + ~0: 0.
    features = torch.ones(1, 2, 4, 6, requires_grad=True)
    loss, boundary = layers.semantic_triplet_loss(features, TWO_LABELS, kernel_size=3, margin=0.3)
    assert boundary.sum() == 20
    assert loss.item() == pytest.approx(4 * 0.3 / 20, abs=1e-6)


def test_sgt_loss_is_zero_for_features_that_separate_the_labels():
    features = F.one_hot(TWO_LABELS[:, 0], 2).permute(0, 3, 1, 2).float()
    loss, _ = layers.semantic_triplet_loss(features, TWO_LABELS, kernel_size=3, margin=0.3)
    assert loss.item() == 0


def test_sgt_without_boundary_pixels_is_zero_not_nan():
    features = torch.randn(2, 4, 1, 1, requires_grad=True)  # 1 positive, 24 negatives: no boundary
    loss, boundary = layers.semantic_triplet_loss(features, torch.zeros(2, 1, 1, 1, dtype=torch.long))
    assert not boundary.any() and loss.item() == 0
    loss.backward()
    assert torch.equal(features.grad, torch.zeros_like(features))


def naive_sgt(features, labels, k, margin):
    """Loop-by-loop transcription of the authors' SGT, as docs/fidelity.md describes it."""
    b, c, h, w = features.shape
    unit = F.normalize(features, dim=1)
    total, count = 0.0, 0
    r = k // 2
    for n in range(b):
        for y in range(h):
            for x in range(w):
                pos, neg = [], []
                for dy in range(-r, r + 1):
                    for dx in range(-r, r + 1):
                        yy, xx = y + dy, x + dx
                        inside = 0 <= yy < h and 0 <= xx < w
                        other = unit[n, :, yy, xx] if inside else torch.zeros(c, dtype=unit.dtype)
                        dist = math.sqrt(max(1e-9, 2 - 2 * float(unit[n, :, y, x] @ other)))
                        same = inside and labels[n, 0, yy, xx] == labels[n, 0, y, x]
                        (pos if same else neg).append(dist)
                if len(pos) >= k - 1 and len(neg) >= k - 1:
                    total += max(0.0, sum(pos) / len(pos) - sum(neg) / len(neg) + margin)
                    count += 1
    return total / count


@pytest.mark.parametrize("k", [3, 5])
def test_sgt_matches_a_naive_per_pixel_loop(k):
    # In float64: a pixel's distance to itself is sqrt(max(1e-9, 2 - 2 cos)) with cos = 1 up to rounding. In
    # float32 that rounding (~1e-7, machine-dependent: summation order, FMA) passes the 1e-9 floor and the
    # square root turns it into ~3e-4, which is not what this test checks. In float64 it stays below 1e-15,
    # under the floor, so both sides take sqrt(1e-9) exactly; every other distance here is > 0.2 (random
    # features), so the two sums differ by a few float64 ulps of their terms: 1e-12 relative is a bound with a
    # wide margin.
    g = torch.Generator().manual_seed(k)
    features = torch.randn(2, 4, 5, 7, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 1, 255])[torch.randint(0, 3, (2, 1, 5, 7), generator=g)]
    loss, _ = layers.semantic_triplet_loss(features, labels, kernel_size=k, margin=0.3)
    assert loss.dtype == torch.float64
    assert loss.item() == pytest.approx(naive_sgt(features, labels, k, 0.3), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------
def test_depth_metrics_by_hand():
    errors = compute_depth_errors(torch.tensor([1.0, 2.0]), torch.tensor([2.0, 2.0]))
    expected = [0.5, 0.5, math.sqrt(0.5), math.log(2) / math.sqrt(2), 0.5, 0.5, 0.5]
    assert errors.tolist() == pytest.approx(expected, rel=1e-6)
