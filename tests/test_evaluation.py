"""Evaluation: metrics, crop, median scaling, ground-truth export, released folders, predict, per class,
pose."""

import json
import math
import os
import shutil
import struct
import zlib

import numpy as np
import pytest
import torch
from foreign_folders import write_authors_folder, write_monodepth2_folder
from PIL import Image

import evaluate_depth
import options
import predict
import utils
from checkpoints import model_folder
from datasets import CLASS_NAMES, ground_truth
from datasets.kitti_utils import generate_depth_map
from datasets.synthetic.kitti_frames import DATE, DRIVE, make_tiny_kitti, write_calibration
from evaluation import depth as eval_depth
from evaluation import pose
from evaluation.metrics import DEPTH_METRIC_NAMES, depth_errors_of_image, evaluation_mask, garg_crop_mask
from model import FSREModel
from networks import JointDecoder, PoseDecoder, ResnetEncoder
from tools import evaluate_per_class
from utils.colormap import colormap, resize_bilinear

GT_H, GT_W = 375, 1242


# ---------------------------------------------------------------------------------------------
# metrics, crop and median scaling
# ---------------------------------------------------------------------------------------------
def test_metrics_of_a_constant_prediction_by_hand():
    gt = np.full((GT_H, GT_W), 10.0, dtype=np.float32)
    disp = np.full((1, 96, 320), 0.05, dtype=np.float32)  # depth 20 everywhere
    errors, ratios = eval_depth.evaluate_predictions(disp, [gt], garg_crop=True, median_scaling=False)
    expected = [
        1.0,
        10.0,
        10.0,
        math.log(2),
        0.0,
        0.0,
        0.0,
    ]  # |20-10|/10, 100/10, sqrt(100), log 2, no delta hits
    assert errors[0].tolist() == pytest.approx(expected, rel=1e-6)
    errors, ratios = eval_depth.evaluate_predictions(disp, [gt], garg_crop=True, median_scaling=True)
    assert ratios[0] == pytest.approx(0.5)
    assert errors[0].tolist() == pytest.approx([0, 0, 0, 0, 1, 1, 1], abs=1e-6)


def test_garg_crop_bounds_and_depth_range():
    mask = garg_crop_mask(GT_H, GT_W)
    rows, cols = mask.any(1).nonzero()[:, 0], mask.any(0).nonzero()[:, 0]
    assert (rows.min().item(), rows.max().item()) == (153, 370)  # int(0.408 * 375), int(0.992 * 375) - 1
    assert (cols.min().item(), cols.max().item()) == (44, 1196)
    gt = torch.zeros(GT_H, GT_W)
    gt[100, 500] = 10  # above the crop
    gt[200, 500] = 90  # beyond 80 m
    gt[200, 600] = 10
    assert evaluation_mask(gt, garg_crop=True).nonzero().tolist() == [[200, 600]]
    assert len(evaluation_mask(gt, garg_crop=False).nonzero()) == 3


def test_median_scaling_uses_numpys_median_and_clamps_after_scaling():
    gt = np.zeros((GT_H, GT_W), dtype=np.float32)
    gt[200, 100:104] = [1, 2, 3, 4]  # even count: median 2.5
    disp = np.full((1, GT_H, GT_W), 1.0, dtype=np.float32)  # depth 1 everywhere
    _, ratios = eval_depth.evaluate_predictions(disp, [gt], garg_crop=True, median_scaling=True)
    assert ratios[0] == pytest.approx(2.5)
    far = np.full((1, GT_H, GT_W), 1e-4, dtype=np.float32)  # depth 1e4, clamped to 80
    errors, _ = eval_depth.evaluate_predictions(far, [gt], garg_crop=True, median_scaling=False)
    assert errors[0][0] == pytest.approx(
        np.mean(np.abs(np.array([1, 2, 3, 4]) - 80) / np.array([1, 2, 3, 4]))
    )


def test_post_processing_blends_towards_each_side():
    left = np.full((1, 4, 40), 1.0)
    right = np.full((1, 4, 40), 3.0)
    out = eval_depth.post_process_disparity(left, right)
    assert out[0, 0, 0] == pytest.approx(3.0)  # the left edge trusts the flipped prediction
    assert out[0, 0, -1] == pytest.approx(1.0)  # the right edge the plain one
    assert out[0, 0, 20] == pytest.approx(2.0)  # the middle averages
    assert np.allclose(eval_depth.post_process_disparity(left, left), left)


# ---------------------------------------------------------------------------------------------
# ground-truth export
# ---------------------------------------------------------------------------------------------
def test_velodyne_points_of_a_known_plane_land_at_the_right_pixels_and_depths(tmp_path):
    width, height = 200, 100
    write_calibration(str(tmp_path / DATE), width, height)
    # velodyne: x forward, y left, z up; the calibration turns it into camera axes with no offset
    points = np.array(
        [
            [10.0, 0.0, 0.0, 1.0],  # straight ahead -> principal point (100, 50)
            [10.0, -1.0, 0.5, 1.0],  # 1 m right, 0.5 m up at 10 m: u = 100 + 10, v = 50 - 5
            [20.0, -2.0, 1.0, 1.0],  # same pixel, twice as far: the nearer point stays
            [-5.0, 0.0, 0.0, 1.0],
        ],  # behind the sensor: dropped
        dtype=np.float32,
    )
    velo = tmp_path / "scan.bin"
    points.tofile(velo)
    depth = generate_depth_map(str(tmp_path / DATE), str(velo), 2, vel_depth=True)
    assert depth.shape == (height, width)
    # pixel = round(projection) - 1
    assert depth[49, 99] == 10.0
    assert depth[44, 109] == 10.0
    assert np.count_nonzero(depth) == 2


def test_export_writes_one_map_per_line_and_loads_back(tmp_path):
    tiny = make_tiny_kitti(str(tmp_path), num_frames=4, exts=("png",))
    test_file = tmp_path / "test_files.txt"
    test_file.write_text(f"{DRIVE} 0000000001 l\n{DRIVE} 2 l\n")
    out = tmp_path / "gt" / "gt_depths.npz"
    assert ground_truth.export(tiny.data_path, "eigen", str(test_file), str(out)) == 2
    maps = ground_truth.load_ground_truth(str(out))
    assert len(maps) == 2 and maps[0].shape == (tiny.height, tiny.width) and maps[0].dtype == np.float32
    assert set(np.unique(maps[1])) == {0.0, 10.0}  # the fixture's wall, at the Velodyne's x
    # Monodepth2's format (an object array under "data") is never unpickled; converted once, it reads
    legacy = tmp_path / "legacy.npz"
    np.savez_compressed(legacy, data=np.array(maps + [np.ones((3, 3), np.float32)], dtype=object))
    with pytest.raises(utils.InputError, match="--convert_monodepth2"):
        ground_truth.load_ground_truth(str(legacy))
    assert ground_truth.convert_monodepth2(str(legacy), str(tmp_path / "converted.npz")) == 3
    converted = ground_truth.load_ground_truth(str(tmp_path / "converted.npz"))
    assert [m.tolist() for m in converted] == [m.tolist() for m in maps + [np.ones((3, 3), np.float32)]]


# ---------------------------------------------------------------------------------------------
# released model folders
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_authors_folder_loads_exactly_and_matches_hand_loaded_networks(tmp_path):
    states = write_authors_folder(str(tmp_path))
    encoder, decoder, spec = model_folder.load_depth_model(str(tmp_path))
    assert (spec.layout, spec.num_layers, spec.semantics, spec.cma_layers) == ("fsre", 18, True, (0, 1, 2))
    assert (spec.height, spec.width, spec.num_heads, spec.cma_ratio) == (192, 640, 4, 2)

    hand_encoder = ResnetEncoder(18)
    hand_encoder.load_state_dict(
        {k: v for k, v in states["encoder"].items() if not k.startswith("encoder.fc.")}
    )
    hand_decoder = JointDecoder(hand_encoder.num_ch_enc)  # the full model's defaults
    hand_decoder.load_state_dict(states["decoder"])
    images = torch.rand(2, 3, 64, 192)
    ours = decoder(encoder(images))
    theirs = hand_decoder.eval()(hand_encoder.eval()(images))
    for key in [("disp", s) for s in range(4)] + [("seg_logits", 0)]:
        assert torch.equal(ours[key], theirs[key]), key

    pose_encoder, pose_decoder, _ = model_folder.load_pose_model(str(tmp_path))
    hand_pose = PoseDecoder(hand_encoder.num_ch_enc, 1)
    hand_pose.load_state_dict(states["pose"])
    pose_in = ResnetEncoder(18, num_input_images=2)
    pose_in.load_state_dict(
        {k: v for k, v in states["pose_encoder"].items() if not k.startswith("encoder.fc.")}
    )
    pair = torch.rand(1, 6, 64, 192)
    assert all(
        torch.equal(a, b) for a, b in zip(pose_decoder(pose_encoder(pair)), hand_pose(pose_in.eval()(pair)))
    )


def test_monodepth2_folder_loads_exactly_and_matches_hand_loaded_networks(tmp_path):
    states = write_monodepth2_folder(str(tmp_path), height=96, width=320)
    encoder, decoder, spec = model_folder.load_depth_model(str(tmp_path))
    assert (spec.layout, spec.semantics, spec.cma_layers, spec.height, spec.width) == (
        "monodepth2",
        False,
        (),
        96,
        320,
    )
    hand_encoder = ResnetEncoder(18)
    hand_encoder.load_state_dict(
        {k: v for k, v in states["encoder"].items() if not k.startswith("encoder.fc.")}
    )
    hand_decoder = JointDecoder(hand_encoder.num_ch_enc, semantics=False, cma_layers=())
    hand_decoder.depth_decoder.load_state_dict(states["depth"])
    images = torch.rand(1, 3, 96, 320)
    assert torch.equal(
        decoder(encoder(images))[("disp", 0)], hand_decoder(hand_encoder.eval()(images))[("disp", 0)]
    )
    _, pose_decoder, spec = model_folder.load_pose_model(str(tmp_path))
    assert spec.pose_frames == 2 and pose_decoder.net[3].out_channels == 12


def test_folder_with_missing_or_misshapen_key_names_it(tmp_path):
    states = write_authors_folder(str(tmp_path), with_pose=False)
    decoder = dict(states["decoder"])
    del decoder["att_s_to_d.2.fuse.1.bias"]
    decoder["seg_decoder.decoder.10.conv.bias"] = torch.zeros(20)
    torch.save(decoder, tmp_path / "decoder.pth")
    with pytest.raises(model_folder.CheckpointError) as err:
        model_folder.load_depth_model(str(tmp_path))
    message = str(err.value)
    assert "decoder.pth" in message and "att_s_to_d.2.fuse.1.bias" in message
    assert "seg_decoder.decoder.10.conv.bias: file (20,), network (19,)" in message
    with pytest.raises(model_folder.CheckpointError, match="neither decoder.pth"):
        os.remove(tmp_path / "decoder.pth")
        model_folder.load_depth_model(str(tmp_path))


def test_checkpoints_are_read_without_running_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    torch.save({"encoder.conv1.weight": Payload()}, tmp_path / "encoder.pth")
    with pytest.raises(model_folder.CheckpointError, match="cannot read"):
        model_folder.read_state(str(tmp_path / "encoder.pth"))
    assert not (tmp_path / "pwned").exists()


@pytest.mark.slow
def test_project_folders_of_every_configuration_round_trip(tmp_path):
    for config in ("baseline", "cma", "full"):
        opts = options.parse_args(
            ["--weights_init", "scratch", "--config", config, "--height", "64", "--width", "192"]
        )
        model = FSREModel(opts).eval()
        folder = model_folder.save_model_folder(str(tmp_path / config), model.networks(), opts)
        encoder, decoder, spec = model_folder.load_depth_model(folder)
        assert (spec.height, spec.width, spec.semantics) == (64, 192, config != "baseline")
        images = torch.rand(1, 3, 64, 192)
        assert torch.equal(
            decoder(encoder(images))[("disp", 0)], model.decoder(model.encoder(images))[("disp", 0)]
        )


# ---------------------------------------------------------------------------------------------
# end to end on a tiny drive
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A tiny drive, a test split folder with exported ground truth, and two random model folders."""
    root = tmp_path_factory.mktemp("eval")
    tiny = make_tiny_kitti(str(root), num_frames=5, exts=("png",))
    split = root / "testsplit"
    split.mkdir()
    (split / "test_files.txt").write_text("".join(f"{DRIVE} {i} l\n" for i in range(5)))
    ground_truth.export(tiny.data_path, "eigen", str(split / "test_files.txt"), str(split / "gt_depths.npz"))
    folders = {}
    for config in ("baseline", "full"):
        torch.manual_seed(0)
        opts = options.parse_args(
            ["--weights_init", "scratch", "--config", config, "--height", "64", "--width", "192"]
        )
        folders[config] = model_folder.save_model_folder(str(root / config), FSREModel(opts).networks(), opts)
    return tiny, split, folders


@pytest.mark.slow
def test_evaluate_depth_end_to_end_and_saved_predictions_give_the_same_metrics(evaluated, capsys):
    tiny, split, folders = evaluated
    common = ["--data_path", tiny.data_path, "--eval_split", str(split), "--num_workers", "0", "--garg_crop"]
    metrics = evaluate_depth.main([*common, "--load_weights_folder", folders["full"], "--save_pred_disps"])
    assert metrics == 0
    table = capsys.readouterr().out
    assert "abs_rel" in table and "&" in table
    saved = json.load(open(os.path.join(folders["full"], "metrics_testsplit.json")))
    assert saved["frames"] == 5 and saved["median_scaling"] and 0 < saved["metrics"]["abs_rel"] < 1
    disps = np.load(os.path.join(folders["full"], "disps_testsplit_split.npy"))
    assert disps.shape == (5, 64, 192)
    ext_json = str(split / "ext.json")
    evaluate_depth.main(
        [
            *common,
            "--ext_disp_to_eval",
            os.path.join(folders["full"], "disps_testsplit_split.npy"),
            "--output_json",
            ext_json,
        ]
    )
    assert json.load(open(ext_json))["metrics"] == pytest.approx(saved["metrics"])


def test_prediction_file_with_the_wrong_count_is_rejected(evaluated, tmp_path):
    tiny, split, _ = evaluated
    np.save(tmp_path / "short.npy", np.ones((3, 64, 192), np.float32))
    with pytest.raises(
        ValueError, match=r"short.npy holds 3 predictions but .*test_files.txt lists 5 frames"
    ):
        evaluate_depth.main(
            [
                "--data_path",
                tiny.data_path,
                "--eval_split",
                str(split),
                "--ext_disp_to_eval",
                str(tmp_path / "short.npy"),
            ]
        )


@pytest.mark.slow
def test_predict_writes_real_pictures_and_arrays(evaluated, tmp_path):
    tiny, _, folders = evaluated
    frames = os.path.join(tiny.data_path, DRIVE, "image_02", "data")
    assert (
        predict.main(
            [
                "--load_weights_folder",
                folders["full"],
                "--image_path",
                frames,
                "--output_dir",
                str(tmp_path),
                "--batch_size",
                "2",
                "--depth_scale",
                "5.4",
            ]
        )
        == 0
    )
    for i in range(5):
        stem = tmp_path / f"{i:010d}"
        disp = np.load(f"{stem}_disp.npy")
        assert disp.shape == (64, 192)
        assert np.allclose(np.load(f"{stem}_depth.npy"), 5.4 / disp)
        with Image.open(f"{stem}_disp.png") as png:
            assert png.size == (tiny.width, tiny.height) and png.mode == "RGB"
            # the disparity at the image's size through the magma lookup, not a flat image
            expected = colormap(resize_bilinear(disp, tiny.height, tiny.width))
            assert (
                np.array_equal(np.asarray(png), expected)
                and len(np.unique(expected.reshape(-1, 3), axis=0)) > 1
            )
        with Image.open(f"{stem}_seg.png") as png:
            assert png.size == (tiny.width, tiny.height)
    predict.main(
        [
            "--load_weights_folder",
            folders["baseline"],
            "--image_path",
            os.path.join(frames, "0000000000.png"),
            "--output_dir",
            str(tmp_path / "b"),
        ]
    )
    assert sorted(os.listdir(tmp_path / "b")) == [
        "0000000000_depth.npy",
        "0000000000_disp.npy",
        "0000000000_disp.png",
    ]


def bomb_png(path, side: int = 20000) -> None:
    """A PNG whose header claims side x side pixels (a decompression bomb), with almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 16))
            + chunk(b"IEND", b"")
        )


def error_lines(capsys) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("error:") or ": error:" in line]


def test_predict_skips_unreadable_files_in_a_folder_and_names_them_in_one_line(evaluated, tmp_path, capsys):
    tiny, _, folders = evaluated
    frames = tmp_path / "frames"
    shutil.copytree(os.path.join(tiny.data_path, DRIVE, "image_02", "data"), frames)
    (frames / "0000000002.png").write_text("not a picture")
    bomb_png(frames / "0000000003.png")
    out = tmp_path / "out"
    code = utils.run_cli(
        predict.main,
        [
            "--load_weights_folder",
            folders["baseline"],
            "--image_path",
            str(frames),
            "--output_dir",
            str(out),
            "--batch_size",
            "2",
        ],
    )
    errors = error_lines(capsys)
    assert code == 2 and len(errors) == 1, errors
    assert "2 file(s)" in errors[0] and "0000000002.png" in errors[0] and "0000000003.png" in errors[0]
    written = sorted(f for f in os.listdir(out) if f.endswith("_disp.png"))
    assert written == [f"{i:010d}_disp.png" for i in (0, 1, 4)]  # every readable image, in order


def test_predict_refuses_bad_paths_and_options_in_one_line_before_writing(evaluated, tmp_path, capsys):
    tiny, _, folders = evaluated
    frame = os.path.join(tiny.data_path, DRIVE, "image_02", "data", "0000000000.png")
    notes, bomb, out = tmp_path / "notes.txt", tmp_path / "bomb.png", tmp_path / "out"
    notes.write_text("hello")
    bomb_png(bomb)
    common = ["--load_weights_folder", folders["baseline"], "--output_dir", str(out)]
    for bad in (notes, bomb):
        assert utils.run_cli(predict.main, [*common, "--image_path", frame, str(bad)]) == 2
        errors = error_lines(capsys)
        assert len(errors) == 1 and str(bad) in errors[0], errors
    with pytest.raises(SystemExit) as exit_info:
        predict.main([*common, "--image_path", frame, "--batch_size", "0"])
    assert exit_info.value.code == 2 and "--batch_size" in error_lines(capsys)[0]
    broken = tmp_path / "broken_model"
    shutil.copytree(folders["baseline"], broken)
    (broken / "opt.json").write_text('{"height": 64,')
    assert (
        utils.run_cli(
            predict.main,
            ["--load_weights_folder", str(broken), "--output_dir", str(out), "--image_path", frame],
        )
        == 2
    )
    errors = error_lines(capsys)
    assert len(errors) == 1 and "opt.json" in errors[0], errors
    assert not out.exists()


def test_per_class_table_keeps_model_names_whole():
    rows = [None] * len(CLASS_NAMES)
    rows[CLASS_NAMES.index("road")] = {"abs_rel": 0.25}
    table = evaluate_per_class.format_table(
        {"a model with a long name": rows, "b": rows}, "abs_rel"
    ).splitlines()
    assert table[0] == "         class | a model with a long name |            b"
    assert table[1 + CLASS_NAMES.index("road")] == "          road |                   0.2500 |       0.2500"
    assert table[1 + CLASS_NAMES.index("sky")] == "           sky |                        - |            -"


def test_per_class_sums_pool_to_the_image_metrics_for_a_single_class():
    rng = np.random.default_rng(0)
    gt = np.where(rng.random((GT_H, GT_W)) < 0.05, rng.uniform(2, 70, (GT_H, GT_W)), 0).astype(np.float32)
    disp = rng.uniform(0.02, 0.5, (64, 192)).astype(np.float32)
    ids = np.zeros((GT_H, GT_W), dtype=np.uint8)  # every pixel "road"
    sums = evaluate_per_class.class_sums(gt, disp, ids, 19, True, True, 1.0)
    pooled = evaluate_per_class.metrics_from_sums(sums)[0]
    image, _ = depth_errors_of_image(torch.from_numpy(gt), torch.from_numpy(disp))
    assert [pooled[n] for n in DEPTH_METRIC_NAMES] == pytest.approx(image.tolist(), rel=1e-9)
    assert evaluate_per_class.metrics_from_sums(sums)[1] is None


def per_class_run(evaluated, out, *extra):
    tiny, split, folders = evaluated
    evaluate_per_class.main(
        [
            "--data_path",
            tiny.data_path,
            "--eval_split",
            str(split),
            "--num_workers",
            "0",
            "--load_weights_folder",
            folders["baseline"],
            folders["full"],
            "--output_dir",
            str(out),
            *extra,
        ]
    )
    return json.load(open(out / "per_class_testsplit.json"))


def test_per_class_evaluation_writes_table_and_json(evaluated, tmp_path, capsys):
    result = per_class_run(evaluated, tmp_path, "--no_chart")
    assert "road" in capsys.readouterr().out
    assert set(result["models"]) == {"baseline", "full"}
    road = result["models"]["full"]["road"]
    assert road is not None and road["pixels"] > 0 and 0 <= road["abs_rel"] < 1
    assert result["models"]["full"]["person"] is None  # no person pixel in the fixture
    assert sorted(os.listdir(tmp_path)) == ["per_class_testsplit.json"]


@pytest.mark.slow
@pytest.mark.needs("matplotlib")
def test_per_class_evaluation_draws_its_chart(evaluated, tmp_path):  # the chart's content: test_figures.py
    per_class_run(evaluated, tmp_path)
    assert (tmp_path / "per_class_testsplit.png").is_file() and (
        tmp_path / "per_class_testsplit.pdf"
    ).is_file()


# ---------------------------------------------------------------------------------------------
# pose
# ---------------------------------------------------------------------------------------------
def test_ate_by_hand():
    steps = [np.eye(4) for _ in range(4)]
    for i, step in enumerate(steps):
        step[0, 3] = 1.0 + i  # forward steps of 1, 2, 3, 4 m
    xyz = pose.dump_xyz(steps)
    assert xyz[:, 0].tolist() == [0, 1, 3, 6, 10]
    assert pose.compute_ate(xyz, xyz) == pytest.approx(0)
    assert pose.compute_ate(xyz, xyz * 0.5) == pytest.approx(0)  # scale is aligned away
    shifted = xyz.copy()
    shifted[-1, 1] = 1.0  # one point 1 m off, after optimal scale the error stays
    assert pose.compute_ate(xyz, shifted) > 0.01


def test_pose_ground_truth_and_predictions_on_a_tiny_sequence(tmp_path):
    seq = tmp_path / "sequences" / "09" / "image_2"
    seq.mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (64, 192, 3), dtype=np.uint8)).save(
            seq / f"{i:06d}.png"
        )
    (tmp_path / "poses").mkdir()
    rows = [
        np.hstack([np.eye(3), [[0], [0], [float(i)]]]).reshape(-1) for i in range(4)
    ]  # 1 m forward per frame
    np.savetxt(tmp_path / "poses" / "09.txt", np.array(rows))
    gt_local = pose.local_ground_truth(str(tmp_path / "poses" / "09.txt"))
    assert len(gt_local) == 3 and np.allclose(gt_local[0][:3, 3], [0, 0, -1])
    assert pose.snippet_ates(gt_local, gt_local) == pytest.approx(np.zeros(3))

    folder = tmp_path / "model"
    write_authors_folder(str(folder), height=64, width=192)
    test_file = tmp_path / "test_files_09.txt"
    test_file.write_text("9 0 l\n9 1 l\n9 2 l\n")
    poses = pose.predict_poses(str(folder), str(tmp_path), str(test_file), "png", 2, 0, torch.device("cpu"))
    assert poses.shape == (3, 4, 4) and np.allclose(poses[:, 3], [0, 0, 0, 1])
    assert np.allclose(poses[:, :3, :3] @ poses[:, :3, :3].transpose(0, 2, 1), np.eye(3), atol=1e-5)


def test_missing_ground_truth_is_one_line_naming_the_file(tmp_path, capsys):
    split = tmp_path / "split"
    split.mkdir()
    (split / "test_files.txt").write_text(f"{DRIVE} 1 l\n")
    disps = tmp_path / "disps.npy"
    np.save(disps, np.full((1, 32, 96), 0.1, np.float32))
    code = utils.run_cli(evaluate_depth.main, ["--ext_disp_to_eval", str(disps), "--eval_split", str(split)])
    assert code == utils.EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(split / "gt_depths.npz") in err and "Traceback" not in err
