"""Encoders (--encoder, --pose_encoder, --num_layers): ResNet-18 stays the authors' network bit for bit, and
each timm family (a mobile convnet with five levels, ConvNeXt and PVT v2 with four) trains, resumes,
round-trips its weights folder, evaluates, predicts and exports on the CPU with random weights; bad names
are one line, exit code 2."""

import json
import os
import subprocess
import sys

import helpers
import numpy as np
import pytest
import torch
from helpers import option_error

import evaluate_depth
import options
import predict
import train
import utils
from checkpoints import model_folder
from checkpoints.files import content_digest, read_state
from conftest import PROJECT_DIR, random_batch, read_checkpoint_keys, require
from datasets import ground_truth
from datasets.synthetic.kitti_frames import DRIVE, make_tiny_kitti
from deploy import depth_graph
from model import FSREModel
from networks import JointDecoder, PoseDecoder, ResnetEncoder, build_encoder
from tools import export_model
from trainer import Trainer
from utils.machine import machine_summary

HEIGHT, WIDTH = 64, 128
# one small model per family: a mobile convnet with a stride-2 level, a ConvNeXt and a hierarchical
# transformer with four levels (the stride-2 level made from stride 4)
FAMILIES = ("timm:mobilenetv3_small_100", "timm:convnext_atto", "timm:pvt_v2_b0")
FINGERPRINT = os.path.join(PROJECT_DIR, "tests", "data", "resnet18_fingerprint.json")
# float32 sums of ~10^5 terms in another order differ by about 1e-7 * sqrt(10^5) ~ 3e-5 of the largest term
LOSS_RTOL = 1e-4
# the SGT distance sqrt(2 - 2 cos) of near-parallel features turns the rounding of cos (~1e-7 sqrt(C), C up to
# 256) into up to sqrt(2e-6) ~ 1.4e-3 for those pixels, a small share of the mean: measured 1.1e-4 with one
# thread against the file's value from two (issue 22's test of the naive loop works in float64 for this
# reason)
SGT_LOSS_RTOL = 1e-3


def fresh_model(*args: str, seed: int = 0) -> FSREModel:
    torch.manual_seed(seed)
    argv = ["--weights_init", "scratch", "--height", str(HEIGHT), "--width", str(WIDTH), *args]
    return FSREModel(options.parse_args(argv))


# ------------------------------------------------------------------------------------------------
# ResNet: today's network, --num_layers as its alias, no timm needed
# ------------------------------------------------------------------------------------------------
def test_resnet18_default_is_the_network_built_before_encoders_were_selectable():
    with open(FINGERPRINT) as f:
        fingerprint = json.load(f)
    model = fresh_model()
    assert {name: content_digest(net.state_dict()) for name, net in model.networks().items()} == fingerprint[
        "state_digests"
    ]
    # every way of naming it gives the same options, and the networks are those built by hand as before
    default = vars(options.parse_args([]))
    for args in (["--encoder", "resnet18"], ["--num_layers", "18"], ["--pose_encoder", "resnet18"]):
        assert vars(options.parse_args(args)) == default, args
    torch.manual_seed(0)
    encoder = ResnetEncoder(18)
    decoder = JointDecoder(encoder.num_ch_enc)
    pose_encoder = ResnetEncoder(18, num_input_images=2)
    pose = PoseDecoder(pose_encoder.num_ch_enc)
    by_hand = [encoder, decoder, pose_encoder, pose]
    for net, hand in zip(model.networks().values(), by_hand, strict=True):
        assert all(
            torch.equal(a, b)
            for a, b in zip(net.state_dict().values(), hand.state_dict().values(), strict=True)
        )
    images = torch.rand(1, 3, 64, 192)
    model.eval(), decoder.eval(), encoder.eval()
    with torch.no_grad():
        ours, by_hand_disp = model.decoder(model.encoder(images)), decoder(encoder(images))
        assert torch.equal(ours[("disp", 0)], by_hand_disp[("disp", 0)])
    _, losses = model.train()(random_batch(2, 64, 192))  # the training step's losses, as before
    assert set(losses) == set(fingerprint["losses"])
    for key, value in fingerprint["losses"].items():
        rtol = SGT_LOSS_RTOL if key.startswith("sgt/") else LOSS_RTOL
        assert losses[key].item() == pytest.approx(value, rel=rtol), key


def test_resnet18_files_keep_the_authors_keys_and_entries(tmp_path):
    model = fresh_model()
    opts = options.parse_args(["--weights_init", "scratch", "--height", "64", "--width", "192"])
    folder = model_folder.save_model_folder(str(tmp_path / "w"), model.networks(), opts)
    encoder_file = read_state(os.path.join(folder, "encoder.pth"))
    tensors = {k for k, v in encoder_file.items() if torch.is_tensor(v)}
    assert tensors == {k for k in read_checkpoint_keys("fsre_encoder.txt") if not k.startswith("encoder.fc.")}
    assert set(encoder_file) - tensors == {"height", "width", "epoch", "step"}  # no encoder name: keys say it
    saved = options.load_options(os.path.join(folder, "opt.json"))
    recorded = (saved.encoder, saved.pose_encoder, saved.num_layers, saved.timm_version)
    assert recorded == ("resnet18", "resnet18", 18, None)
    assert model_folder.inspect_model_folder(folder).encoder == "resnet18"


def test_num_layers_is_the_alias_of_a_resnet_encoder_and_sets_the_pose_encoder_as_before():
    for args, expected in (
        (["--num_layers", "50"], ("resnet50", "resnet50", 50)),
        (["--encoder", "resnet34"], ("resnet34", "resnet34", 34)),
        (["--encoder", "resnet50", "--pose_encoder", "resnet18"], ("resnet50", "resnet18", 50)),
        ([], ("resnet18", "resnet18", 18)),
    ):
        opts = options.parse_args(args)
        assert (opts.encoder, opts.pose_encoder, opts.num_layers) == expected, args


def cli_error(capsys, argv) -> str:
    """train.py with options it refuses: exit code 2, one error line; its message."""
    return option_error(capsys, train.main, argv)


def test_conflicting_or_unknown_encoder_names_are_one_line(capsys):
    assert cli_error(capsys, ["--encoder", "resnet50", "--num_layers", "18"]) == (
        "--num_layers 18 names ResNet-18, --encoder resnet50 another network: give one of them "
        "(--num_layers N is --encoder resnetN)"
    )
    assert cli_error(capsys, ["--encoder", "vgg16"]).startswith(
        "--encoder: unknown encoder 'vgg16': give one of resnet18, resnet34, resnet50, resnet101, resnet152"
    )
    assert cli_error(capsys, ["--pose_encoder", "timm:"]).startswith(
        "--pose_encoder: unknown encoder 'timm:'"
    )


def test_a_missing_timm_is_one_line_naming_the_requirements_file(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # what an environment without timm gives: ImportError
    message = cli_error(capsys, ["--encoder", "timm:convnext_atto"])
    assert message == (
        "timm encoders (--encoder timm:NAME) need timm, which is not installed: "
        "pip install -r requirements/timm.txt"
    )


@pytest.mark.slow
def test_resnet_encoders_never_import_timm():
    code = (
        "import sys, options, model; from checkpoints import model_folder\n"
        "opts = options.parse_args(['--weights_init', 'scratch', '--height', '64', '--width', '64'])\n"
        "model.FSREModel(opts)\n"
        "assert 'timm' not in sys.modules, 'timm imported'\n"
    )
    env = {**os.environ, "PYTHONPATH": PROJECT_DIR}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]


# ------------------------------------------------------------------------------------------------
# timm: names, levels, weights
# ------------------------------------------------------------------------------------------------
@pytest.mark.needs("timm")
def test_unknown_and_single_scale_timm_models_are_one_line(capsys):
    assert cli_error(capsys, ["--encoder", "timm:no_such_net"]).startswith(
        "--encoder timm:no_such_net: timm "
    )
    message = cli_error(capsys, ["--encoder", "timm:vit_tiny_patch16_224"])
    assert message.startswith(
        "--encoder timm:vit_tiny_patch16_224: no multi-scale features the decoders can use"
    )
    assert "missing 4, 8, 32" in message
    message = cli_error(
        capsys, ["--encoder", "timm:swin_tiny_patch4_window7_224", "--height", "64", "--width", "192"]
    )
    assert message.startswith("--encoder timm:swin_tiny_patch4_window7_224 does not take 64x192 images")


@pytest.mark.needs("timm")
@pytest.mark.parametrize(
    "name,levels,made",
    [("timm:mobilenetv3_small_100", 5, False), ("timm:convnext_atto", 4, True), ("timm:pvt_v2_b0", 4, True)],
)
def test_timm_features_reach_the_decoders_at_strides_2_to_32(name, levels, made):
    model = fresh_model("--encoder", name, "--config", "baseline")  # the full model: in the fixture below
    encoder = model.encoder
    assert len(encoder.encoder.feature_info.channels()) == levels and (encoder.stride2 is not None) == made
    with torch.no_grad():
        features = encoder(torch.rand(2, 3, HEIGHT, WIDTH))
        assert torch.isfinite(model(random_batch(2, HEIGHT, WIDTH))[1]["loss"])
    assert [tuple(f.shape[-2:]) for f in features] == [(HEIGHT // s, WIDTH // s) for s in (2, 4, 8, 16, 32)]
    assert [f.shape[1] for f in features] == list(encoder.num_ch_enc)
    if made:  # the stride-2 level: half the stride-4 feature's channels
        assert encoder.num_ch_enc[0] == encoder.num_ch_enc[1] // 2
    # the pose network stays ResNet-18 unless --pose_encoder says otherwise
    assert isinstance(model.pose_encoder, ResnetEncoder) and model.pose_encoder.name == "resnet18"
    pose = build_encoder(name, num_input_images=2, all_levels=False)
    assert pose.name == name and len(pose(torch.rand(1, 6, HEIGHT, WIDTH))) == 1


@pytest.mark.needs("timm")
def test_timm_weights_come_from_a_placed_file_and_a_missing_one_names_where_it_goes(tmp_path, monkeypatch):
    import timm
    from huggingface_hub import constants as hub  # read when timm downloads, not when it is imported

    from networks import timm_encoder

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)  # as without a network, also on machines that have one
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hf"))  # an empty Hugging Face cache
    reference = timm.create_model("convnext_atto", pretrained=False)
    placed = timm_encoder.local_weights_file("convnext_atto")
    assert placed == str(tmp_path / "torch" / "hub" / "checkpoints" / "timm" / "convnext_atto.safetensors")
    with pytest.raises(timm_encoder.PretrainedWeightsUnavailable) as err:
        timm_encoder.TimmEncoder("convnext_atto", pretrained=True)
    message = str(err.value)
    assert "\n" not in message and placed in message and "--weights_init scratch" in message
    assert "https://huggingface.co/timm/convnext_atto" in message
    os.makedirs(os.path.dirname(placed))
    torch.save(reference.state_dict(), placed[: -len(".safetensors")] + ".pth")
    encoder = timm_encoder.TimmEncoder("convnext_atto", pretrained=True)
    state = encoder.encoder.state_dict()
    expected = reference.state_dict()["stages.2.blocks.0.conv_dw.weight"]
    assert torch.equal(state["stages_2.blocks.0.conv_dw.weight"], expected)
    pose = timm_encoder.TimmEncoder("convnext_atto", pretrained=True, num_input_images=2, all_levels=False)
    stem = reference.state_dict()["stem.0.weight"]
    assert torch.allclose(pose.encoder.state_dict()["stem_0.weight"], torch.cat([stem, stem], 1) / 2)


# ------------------------------------------------------------------------------------------------
# each family end to end: train, resume, weights folder, evaluate, predict, export
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def split_drive(tmp_path_factory):
    """A tiny drive of 6 frames with a test split and its ground truth, shared read-only."""
    root = tmp_path_factory.mktemp("encoders")
    data = make_tiny_kitti(str(root), num_frames=6, exts=("png",))
    split = root / "testsplit"
    split.mkdir()
    (split / "test_files.txt").write_text("".join(f"{DRIVE} {i} l\n" for i in range(3)))
    ground_truth.export(data.data_path, "eigen", str(split / "test_files.txt"), str(split / "gt_depths.npz"))
    return data, split


def train_args(data, log_dir, name, *extra):
    """One epoch of the encoder ``name`` without validation, logging every step and keeping one checkpoint."""
    return helpers.train_args(
        data,
        log_dir,
        *("--log_frequency", "1", "--num_log_images", "1", "--keep_checkpoints", "1", "--no_validation"),
        *("--encoder", name, "--num_epochs", "1", *extra),
        height=HEIGHT,
        width=WIDTH,
    )


@pytest.fixture(scope="module", params=FAMILIES)
def trained(request, split_drive, tmp_path_factory):
    """One family (the full model) trained for one step, half an epoch (checkpoint and weights_0 written),
    then resumed in mid-epoch for the second (weights_0 rewritten); its tests are marked as needing timm."""
    require("timm")
    data, _ = split_drive
    log_dir = tmp_path_factory.mktemp("runs")
    args = train_args(data, log_dir, request.param)
    opts = options.parse_args([*args, "--max_steps", "1"])
    utils.seed_everything(opts.seed)  # what the trainer does before it builds the model
    initial = FSREModel(opts).state_dict()
    first_run = Trainer(opts)
    first_run.train()
    folder = str(log_dir / "fsre" / "models" / "weights_0")
    first = model_folder_state(folder, args)
    resumed = Trainer(options.parse_args([*args, "--max_steps", "2", "--resume"]))
    resumed_state = {k: v.clone() for k, v in resumed.model.state_dict().items()}
    resumed.train()
    return {
        "name": request.param,
        "args": args,
        "initial": initial,
        "first_run": first_run,
        "first": first,
        "resumed_state": resumed_state,
        "resumed": resumed,
        "folder": folder,
    }


def model_folder_state(folder, args):
    model = FSREModel(options.parse_args(args))
    model_folder.load_model_folder(folder, model.networks())
    return model.state_dict()


@pytest.mark.slow
@pytest.mark.needs("timm")
def test_a_training_step_is_finite_and_moves_every_encoder_parameter(trained):
    run = trained
    assert run["first_run"].step == 1 and run["first_run"].loop.nonfinite_total == 0
    # Adam moves every parameter whose gradient is not zero: the gradient reaches all of the encoder
    still = [
        k
        for k, v in run["first"].items()
        if k.startswith("encoder.")
        and v.is_floating_point()
        and "running_" not in k
        and torch.equal(v, run["initial"][k])
    ]
    assert not still, still[:5]


@pytest.mark.slow
@pytest.mark.needs("timm")
def test_resume_continues_from_the_checkpoint_and_the_folder_round_trips(trained):
    run = trained
    assert run["resumed"].step == 2 and run["resumed"].loop.nonfinite_total == 0
    # resuming loaded exactly what the first run saved
    for key, value in run["first"].items():
        assert torch.equal(run["resumed_state"][key], value), key
    # the second step's weights folder loads back bit for bit into a fresh network
    final = model_folder_state(run["folder"], run["args"])
    for key, value in run["resumed"].model.state_dict().items():
        assert torch.equal(final[key], value), key
    assert any(not torch.equal(final[k], run["first"][k]) for k in final if k.startswith("encoder."))
    encoder_file = read_state(os.path.join(run["folder"], "encoder.pth"))
    import timm

    assert (encoder_file["encoder"], encoder_file["timm_version"]) == (run["name"], timm.__version__)
    saved = options.load_options(os.path.join(run["folder"], "opt.json"))
    assert (saved.encoder, saved.pose_encoder, saved.num_layers, saved.timm_version) == (
        run["name"],
        "resnet18",
        None,
        timm.__version__,
    )
    spec = model_folder.inspect_model_folder(run["folder"])
    assert (spec.encoder, spec.pose_encoder, spec.num_layers) == (run["name"], "resnet18", None)


@pytest.mark.slow
@pytest.mark.needs("timm")
def test_another_encoder_is_refused_at_resume_and_at_load_with_the_reason(trained):
    run = trained
    args = train_args_with(run["args"], "--encoder", "resnet18")
    with pytest.raises(utils.InputError) as err:
        Trainer(options.parse_args([*args, "--max_steps", "3", "--resume"]))
    assert str(err.value).startswith(f"--encoder {run['name']} -> resnet18")
    assert "holds the weights of another network" in str(err.value)
    resnet = fresh_model()
    with pytest.raises(model_folder.CheckpointError) as err:
        model_folder.load_model_folder(run["folder"], resnet.networks())
    assert str(err.value) == (
        f"{os.path.join(run['folder'], 'encoder.pth')} was written with the encoder "
        f"{run['name']}, not resnet18: build the network with --encoder {run['name']} "
        f"(or start from another folder)"
    )


def train_args_with(args, option, value):
    args = list(args)
    args[args.index(option) + 1] = value
    return args


@pytest.mark.slow
@pytest.mark.needs("timm")
def test_evaluate_and_predict_rebuild_the_network_from_the_folder(trained, split_drive, tmp_path, capsys):
    data, split = split_drive
    folder = trained["folder"]
    assert (
        evaluate_depth.main(
            [
                "--data_path",
                data.data_path,
                "--eval_split",
                str(split),
                "--num_workers",
                "0",
                "--load_weights_folder",
                folder,
                "--output_json",
                str(tmp_path / "m.json"),
            ]
        )
        == 0
    )
    metrics = json.load(open(tmp_path / "m.json"))
    assert metrics["frames"] == 3 and all(np.isfinite(v) for v in metrics["metrics"].values())
    image = os.path.join(data.data_path, DRIVE, "image_02", "data", "0000000001.png")
    assert (
        predict.main(["--load_weights_folder", folder, "--image_path", image, "--output_dir", str(tmp_path)])
        == 0
    )
    disp = np.load(tmp_path / "0000000001_disp.npy")
    assert disp.shape == (HEIGHT, WIDTH) and np.isfinite(disp).all() and disp.std() > 0


@pytest.mark.slow
@pytest.mark.needs("timm")
@pytest.mark.parametrize(
    "fmt", [pytest.param("onnx", marks=pytest.mark.needs("onnx", "onnxruntime")), "export"]
)
def test_export_passes_the_check_against_pytorch(trained, tmp_path, fmt):
    out = str(tmp_path / ("depth.onnx" if fmt == "onnx" else "depth.pt2"))
    argv = ["--load_weights_folder", trained["folder"], "--format", fmt, "--output", out]
    assert export_model.main(argv) == 0
    exported = depth_graph.load_exported(out)
    assert exported.metadata["encoder"] == trained["name"]
    assert exported.metadata["options"]["encoder"] == trained["name"]


@pytest.mark.needs("timm")
def test_a_reproduce_row_may_name_an_encoder_and_its_cost_is_that_encoders(tmp_path):
    from reproduce import runner, tables

    path = tmp_path / "encoders.json"
    path.write_text(
        json.dumps(
            {
                "name": "encoders",
                "rows": [
                    {"name": "ResNet-18", "train": "--config full"},
                    {"name": "ConvNeXt", "train": ["--config", "full", "--encoder", "timm:convnext_atto"]},
                ],
            }
        )
    )
    runs = runner.plan(tables.load_user_table(str(path)), runner.Settings("/data", str(tmp_path), [0]))
    train_argv = [run.stages[0].command.argv for run in runs]
    assert "--encoder" not in train_argv[0]
    assert train_argv[1][train_argv[1].index("--encoder") + 1] == "timm:convnext_atto"
    opts = options.parse_args(["--encoder", "timm:convnext_atto"])
    bench = runner.benchmark_command(opts, str(tmp_path), []).argv
    assert bench[bench.index("--encoders") + 1] == "timm:convnext_atto"
    assert "--encoders" not in runner.benchmark_command(options.parse_args([]), str(tmp_path), []).argv


@pytest.mark.slow
@pytest.mark.needs("timm")
def test_benchmark_measures_encoders_side_by_side(tmp_path, capsys):
    from tools import benchmark

    made = tmp_path / "made"
    assert option_error(
        capsys, benchmark.cli, ["--make_data", str(made), "--encoders", "timm:no_such_net"]
    ).startswith("--encoders timm:no_such_net: timm ")
    assert not made.exists()  # refused before any frame is written
    tiny = make_tiny_kitti(str(tmp_path / "data"), num_frames=4, exts=("png",))
    report = benchmark.main(
        helpers.benchmark_args(
            tiny,
            *("--steps", "1", "--input_batches", "1", "--inference_runs", "1", "--configs", "full"),
            *("--encoders", "resnet18", "timm:convnext_atto", "--output", str(tmp_path / "b.json")),
        )
    )
    rows = report["results"]
    assert [row["encoder"] for row in rows] == ["resnet18", "timm:convnext_atto"]
    assert rows[0]["depth_parameters"] == 11_176_512 + 14_072_567  # the authors' encoder and joint decoder
    assert rows[0]["parameters"] == 11_176_512 + 14_072_567 + 11_185_920 + 1_313_030
    assert all(
        row["flops"] > 0 and row["train_samples_per_s"] > 0 and row["inference_ms"] > 0 for row in rows
    )
    assert rows[1]["flops"] != rows[0]["flops"] and rows[1]["pose_encoder"] == "resnet18"
    table = capsys.readouterr().out
    assert "timm:convnext_atto" in table and "GFLOPs" in table
    assert machine_summary(torch.device("cpu")) in table  # the machine is named
