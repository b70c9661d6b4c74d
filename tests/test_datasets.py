"""Datasets on a tiny KITTI-layout drive of real files: keys, shapes, ranges, flips, jitter, labels, depth."""

import os
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import datasets
from datasets import jitter, mono_dataset
from datasets.cityscapes import LABEL_TO_TRAIN, TRAIN_CLASSES
from datasets.synthetic.kitti_frames import CAR, DRIVE, ROAD, SKY, UNLABELED, WALL_DISTANCE, label_ids

H, W = 64, 192


def dataset(tiny, ext="png", is_train=False, **kwargs):
    lines = datasets.read_split(os.path.join(tiny.split_dir, "train_files.txt"))
    return datasets.KITTIRAWDataset(
        tiny.data_path, lines, H, W, [0, -1, 1], 4, is_train=is_train, img_ext=ext, **kwargs
    )


@pytest.mark.parametrize("ext", ["png", "jpg"])
def test_item_keys_shapes_and_ranges(tiny, ext):
    item = dataset(tiny, ext, load_labels=True)[0]
    for f in (0, -1, 1):
        for s in range(4):
            for kind in ("color", "color_aug"):
                image = item[(kind, f, s)]
                assert image.shape == (3, H // 2**s, W // 2**s) and image.dtype == torch.float32
                assert 0 <= image.min() and image.max() <= 1
    for s in range(4):
        K = item[("K", s)]
        assert torch.allclose(K[0, 0], torch.tensor(0.58 * W / 2**s)) and torch.allclose(
            K[1, 1], torch.tensor(1.92 * H / 2**s)
        )
        assert torch.allclose(K @ item[("inv_K", s)], torch.eye(4), atol=1e-5)
    assert item[("seg", 0, 0)].shape == (1, H, W) and item[("seg", 0, 0)].dtype == torch.int64
    assert item["depth_gt"].shape == (1, 375, 1242)


def test_frames_are_resized_straight_from_the_native_size_with_lanczos(tiny):
    item = dataset(tiny)[0]
    native = Image.open(
        os.path.join(tiny.data_path, DRIVE, "image_02", "data", "0000000001.png")
    )  # line 1: "1 l"
    expected = np.asarray(native.resize((W // 4, H // 4), Image.Resampling.LANCZOS)).astype(np.float32) / 255
    assert torch.allclose(item[("color", 0, 2)], torch.from_numpy(expected).permute(2, 0, 1))


def test_flip_mirrors_frames_labels_ground_truth_and_cx(tiny, monkeypatch):
    plain = dataset(tiny, load_labels=True)
    flipping = dataset(tiny, is_train=True, load_labels=True)
    flipping.K[0, 2] = 0.4  # an off-centre principal point, to see the mirroring (KITTI's 0.5 is a no-op)
    monkeypatch.setattr(mono_dataset.random, "random", lambda: 0.9)  # > 0.5: flip and jitter
    a, b = plain[2], flipping[2]
    for f in (
        0,
        -1,
        1,
    ):  # flipped before resizing; a symmetric filter on a uniform grid commutes with the flip
        assert torch.equal(b[("color", f, 1)], a[("color", f, 1)].flip(-1))
    assert torch.equal(b[("seg", 0, 0)], a[("seg", 0, 0)].flip(-1))
    assert torch.equal(b["depth_gt"], a["depth_gt"].flip(-1))
    assert b[("K", 0)][0, 2].item() == pytest.approx((1 - 0.4) * W)
    assert b[("K", 2)][0, 2].item() == pytest.approx((1 - 0.4) * W / 4)
    assert not torch.equal(b[("color_aug", 0, 0)], b[("color", 0, 0)])


def test_colour_jitter_uses_one_draw_for_every_frame_and_scale(tiny, monkeypatch):
    draws = []

    def fixed_params(*args):
        draws.append(args)
        return (
            torch.tensor([0]),
            1.2,
            1.0,
            1.0,
            0.0,
        )  # only brightness x1.2 (hue 0 would still round-trip HSV)

    monkeypatch.setattr(jitter.transforms.ColorJitter, "get_params", staticmethod(fixed_params))
    values = iter([0.9, 0.1])  # jitter yes, flip no
    monkeypatch.setattr(mono_dataset.random, "random", lambda: next(values))
    item = dataset(tiny, is_train=True)[0]
    assert len(draws) == 1
    assert draws[0] == ((0.8, 1.2), (0.8, 1.2), (0.8, 1.2), (-0.1, 0.1))
    for f in (0, -1, 1):
        for s in range(4):
            # brightness on uint8 then to [0, 1]: clip(round(x * 255 * 1.2)) / 255
            expected = torch.clamp(torch.round(item[("color", f, s)] * 255 * 1.2), 0, 255) / 255
            assert torch.allclose(item[("color_aug", f, s)], expected, atol=1.5 / 255)


def test_label_ids_map_to_train_ids():
    for train_id, (_, label_id) in enumerate(TRAIN_CLASSES):
        assert LABEL_TO_TRAIN[label_id] == train_id
    others = [i for i in range(256) if i not in {label_id for _, label_id in TRAIN_CLASSES}]
    assert (LABEL_TO_TRAIN[others] == 255).all()
    assert (LABEL_TO_TRAIN[[ROAD, CAR, SKY, UNLABELED]] == [0, 13, 10, 255]).all()


def test_labels_are_read_resized_like_pillow_nearest_and_mapped(tiny):
    item = dataset(tiny, load_labels=True)[0]
    ids = torch.from_numpy(label_ids(tiny.height, tiny.width).astype(np.float32))[None, None]
    # Pillow's nearest samples pixel centres: torch's nearest-exact, not its nearest
    resized = F.interpolate(ids, size=(H, W), mode="nearest-exact")[0, 0].numpy().astype(np.uint8)
    assert torch.equal(item[("seg", 0, 0)][0], torch.from_numpy(LABEL_TO_TRAIN[resized].astype(np.int64)))
    assert set(item[("seg", 0, 0)].unique().tolist()) == {0, 10, 13, 255}


def test_pillow_nearest_is_torch_nearest_exact_not_nearest():
    ids = np.random.default_rng(0).integers(0, 34, (375, 1242)).astype(np.uint8)
    pillow = np.asarray(
        Image.fromarray(ids, mode="P").resize((640, 192), Image.Resampling.BILINEAR)
    )  # P forces nearest
    t = torch.from_numpy(ids.astype(np.float32))[None, None]
    assert (F.interpolate(t, size=(192, 640), mode="nearest-exact")[0, 0].numpy() == pillow).all()
    assert (F.interpolate(t, size=(192, 640), mode="nearest")[0, 0].numpy() != pillow).mean() > 0.5


def test_ground_truth_depth_from_velodyne(tiny):
    depth = dataset(tiny)[0]["depth_gt"][0]
    valid = depth > 0
    assert valid.sum() > 500
    # the wall is WALL_DISTANCE ahead; the depth map is resized from native to 375 x 1242 by nearest
    assert torch.allclose(depth[valid], torch.tensor(WALL_DISTANCE), atol=1e-4)


def test_labels_are_only_read_when_asked(tiny):
    assert ("seg", 0, 0) not in dataset(tiny)[0]


def test_other_layouts_paths(tmp_path):
    odom = datasets.KITTIOdomDataset(str(tmp_path), ["9 12 r"], H, W, [0], 1, load_depth=False)
    assert odom.get_image_path("9", 12, "r") == os.path.join(
        str(tmp_path), "sequences", "09", "image_3", "000012.png"
    )
    assert odom.label_path("9", 12, "r") == os.path.join(
        str(tmp_path), "segmentation", "sequences", "09", "image_3", "000012.png"
    )
    raw = datasets.KITTIRAWDataset(
        str(tmp_path), [f"{DRIVE} 5 l"], H, W, [0], 1, img_ext="jpg", seg_path="/labels"
    )
    assert raw.label_path(DRIVE, 5, "l") == os.path.join("/labels", DRIVE, "image_02", "0000000005.png")
    depth = datasets.KITTIDepthDataset(str(tmp_path), [f"{DRIVE} 5 l"], H, W, [0], 1)
    assert depth.depth_path(DRIVE, 5, "l") == os.path.join(
        str(tmp_path), DRIVE, "proj_depth", "groundtruth", "image_02", "0000000005.png"
    )


def test_depth_benchmark_png_ground_truth(tmp_path):
    folder = tmp_path / DRIVE / "proj_depth" / "groundtruth" / "image_02"
    folder.mkdir(parents=True)
    depth = np.zeros((375, 1242), dtype=np.uint16)
    depth[200, 300] = 12.5 * 256
    Image.fromarray(depth).save(folder / "0000000005.png")
    ds = datasets.KITTIDepthDataset(str(tmp_path), [f"{DRIVE} 5 l"], H, W, [0], 1)
    assert ds.load_depth
    gt = ds.get_depth(DRIVE, 5, "l", False)
    assert gt[200, 300] == 12.5 and gt.sum() == 12.5


def test_malformed_split_line_names_file_and_line(tmp_path):
    path = tmp_path / "train_files.txt"
    path.write_text(f"{DRIVE} 1 l\n{DRIVE} one l\n")
    with pytest.raises(ValueError, match=r"train_files.txt:2: frame index 'one'"):
        datasets.read_split(str(path))
    path.write_text(f"{DRIVE} 1 x\n")
    with pytest.raises(ValueError, match=r"train_files.txt:1: side must be l or r"):
        datasets.read_split(str(path))


def test_stereo_item_has_the_other_camera_and_its_baseline(tiny):
    lines = datasets.read_split(os.path.join(tiny.split_dir, "train_files.txt"))
    ds = datasets.KITTIRAWDataset(tiny.data_path, lines[:1], H, W, [0, "s"], 1)  # line 0 is frame 1, "l"
    item = ds[0]
    native = Image.open(
        os.path.join(tiny.data_path, DRIVE, "image_03", "data", "0000000001.png")
    )  # the right camera
    expected = np.asarray(native.resize((W, H), Image.Resampling.LANCZOS)).astype(np.float32) / 255
    assert torch.allclose(item[("color", "s", 0)], torch.from_numpy(expected).permute(2, 0, 1))
    assert item["stereo_T"][0, 3].item() == pytest.approx(-0.1)


def test_random_decisions_come_from_python_random(tiny):
    ds = dataset(tiny, is_train=True)
    random.seed(3)
    torch.manual_seed(3)
    a = ds[1]
    random.seed(3)
    torch.manual_seed(3)
    b = ds[1]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_seeded_items_draw_what_torch_manual_seed_would_and_restore_the_generators():
    from torchvision import transforms

    torch.manual_seed(123)
    random.seed(123)
    before = torch.rand(1), random.random()
    torch.manual_seed(123)
    random.seed(123)
    with mono_dataset.seeded_random(7):
        drawn = (
            random.random(),
            transforms.ColorJitter.get_params((0.8, 1.2), (0.8, 1.2), (0.8, 1.2), (-0.1, 0.1)),
        )
    after = torch.rand(1), random.random()
    assert after == before  # the surrounding states are untouched
    torch.manual_seed(7)
    random.seed(7)
    expected = (
        random.random(),
        transforms.ColorJitter.get_params((0.8, 1.2), (0.8, 1.2), (0.8, 1.2), (-0.1, 0.1)),
    )
    assert (
        drawn[0] == expected[0]
        and torch.equal(drawn[1][0], expected[1][0])
        and drawn[1][1:] == expected[1][1:]
    )
