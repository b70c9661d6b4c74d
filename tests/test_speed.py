"""The speed-ups: fused losses equal the straightforward ones, the fast input pipelines give the
exact pipeline's items (up to the resize filter), device jitter matches PIL's, the KITTI cache
tool and the benchmark run end to end."""

import json
import os
import random
import tempfile

import helpers
import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import default_collate

import layers
import options
from conftest import random_batch
from datasets import KITTIRAWDataset, fast_frames, jitter, read_split
from datasets.mono_dataset import all_image_keys
from datasets.synthetic.kitti_frames import DRIVE, make_tiny_kitti
from model import FSREModel, image_keys
from speed import device_inputs, reference
from speed.acceleration import Acceleration
from speed.benchmark import PATHS, trainer_options
from tools import benchmark, prepare_kitti
from trainer import speed_path_asked
from training.loaders import loader_image_keys, worker_pipeline
from utils.machine import cpu_model, machine_summary

KITTI_SIZE = (1242, 375)
HEIGHT, WIDTH = 96, 320
FUSED_RTOL = 1e-5  # fused and straightforward forms differ only by float rounding
SCALE0_MEAN_TOL = 0.01  # antialiased bicubic (fast) vs LANCZOS (exact), scale 0, in [0, 1] units
SCALE_MEAN_TOL = 0.02  # the smaller scales: bicubic from the training size vs LANCZOS from the native size
JITTER_MEAN_TOL = 0.01  # float jitter (fast) vs PIL's uint8 jitter, which rounds after each adjustment
JITTER_MAX_TOL = 0.08  # the hue shift rounds in PIL's 8-bit HSV
# TorchCodec's and Pillow's bundled libjpeg-turbo builds may round the inverse DCT differently by one level;
# here (torchcodec 0.17, Pillow 13 with libjpeg-turbo 3.2) they are equal, as torchvision.io's decoder was
JPEG_DECODER_TOL = 1


@pytest.fixture(scope="module")
def kitti_size(tmp_path_factory):
    """A drive of four KITTI-size PNG frames."""
    return make_tiny_kitti(
        str(tmp_path_factory.mktemp("kitti_size")),
        num_frames=4,
        exts=("png",),
        width=KITTI_SIZE[0],
        height=KITTI_SIZE[1],
    )


def model_options(*extra):
    return options.parse_args(["--weights_init", "scratch", "--height", "64", "--width", "96", *extra])


def test_fused_dssim_and_sgt_equal_the_straightforward_forms():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 24, 40, generator=g), torch.rand(2, 3, 24, 40, generator=g)
    with reference.straightforward_kernels():
        straightforward = layers.dssim(x, y)
    torch.testing.assert_close(layers.dssim(x, y), straightforward, rtol=FUSED_RTOL, atol=1e-7)
    torch.testing.assert_close(reference.dssim_reference(x, y), straightforward, rtol=0, atol=0)

    features = torch.randn(2, 8, 12, 20, generator=g, requires_grad=True)
    labels = torch.randint(0, 3, (2, 1, 12, 20), generator=g)
    results = {}
    for fused in (False, True):
        with reference.straightforward_kernels(not fused):
            loss, boundary = layers.semantic_triplet_loss(features, labels, 5, 0.3)
            (grad,) = torch.autograd.grad(loss, features)
        results[fused] = (loss, boundary, grad)
    assert results[True][1].any() and torch.equal(results[True][1], results[False][1])
    torch.testing.assert_close(results[True][0], results[False][0], rtol=FUSED_RTOL, atol=0)
    torch.testing.assert_close(results[True][2], results[False][2], rtol=FUSED_RTOL, atol=1e-6)


def test_model_losses_are_the_same_with_fused_and_straightforward_kernels():
    opts = model_options()
    torch.manual_seed(0)
    model = FSREModel(opts)
    inputs = random_batch(2, 64, 96)
    losses = {}
    for fused in (False, True):
        torch.manual_seed(1)  # the auto-mask's noise
        with reference.straightforward_kernels(not fused):
            _, losses[fused] = model(inputs)
    assert set(losses[True]) == set(losses[False]) and "sgt/1" in losses[True]
    for key, value in losses[False].items():
        torch.testing.assert_close(losses[True][key], value, rtol=FUSED_RTOL, atol=1e-7, msg=key)


def dataset(tiny, pipeline, is_train):
    lines = read_split(os.path.join(tiny.split_dir, "train_files.txt"))
    return KITTIRAWDataset(
        tiny.data_path,
        lines,
        HEIGHT,
        WIDTH,
        [0, -1, 1],
        is_train=is_train,
        input_pipeline=pipeline,
        load_labels=True,
    )


def batch_of(tiny, pipeline, is_train, seed=0):
    """Two items through a pipeline, collated and completed by DeviceInputs, with the same random draws."""
    random.seed(seed)
    torch.manual_seed(seed)
    ds = dataset(tiny, pipeline, is_train)
    return device_inputs.DeviceInputs("cpu", 4)(default_collate([ds[0], ds[1]]))


@pytest.mark.slow
@pytest.mark.parametrize("pipeline", ["fast", "fast_workers"])
def test_fast_pipelines_give_the_exact_pipelines_items(kitti_size, pipeline):
    exact, fast = batch_of(kitti_size, "exact", False), batch_of(kitti_size, pipeline, False)
    assert set(map(str, fast)) == set(map(str, exact))
    for key, value in exact.items():
        assert fast[key].shape == value.shape and fast[key].dtype == value.dtype, key
        if key[0] in ("color", "color_aug"):
            tolerance = SCALE0_MEAN_TOL if key[2] == 0 else SCALE_MEAN_TOL
            assert (fast[key] - value).abs().mean() < tolerance, key
        else:
            assert torch.equal(fast[key], value), key  # intrinsics and labels are the exact pipeline's
    assert not torch.equal(fast[("color", 0, 0)], exact[("color", 0, 0)])  # a different filter, not a copy

    # training items: the same flips and jitter draws for the same seeds
    exact, fast = batch_of(kitti_size, "exact", True, seed=3), batch_of(kitti_size, pipeline, True, seed=3)
    assert torch.equal(fast[("K", 0)], exact[("K", 0)]) and torch.equal(
        fast[("seg", 0, 0)], exact[("seg", 0, 0)]
    )
    for f in (0, -1, 1):
        assert (
            fast[("color_aug", f, 0)] - exact[("color_aug", f, 0)]
        ).abs().mean() < SCALE0_MEAN_TOL + JITTER_MEAN_TOL


@pytest.mark.slow
@pytest.mark.parametrize("extra", [(), ("--use_stereo",), ("--use_stereo", "--frame_ids", "0")])
def test_a_training_step_reads_exactly_the_models_image_keys(extra):
    opts = model_options("--config", "baseline", *extra)
    keys = image_keys(opts)
    frames = [0] + options.source_frame_ids(opts)
    assert ("color", 0, 3) in keys and ("color", frames[-1], 0) in keys and ("color_aug", 0, 0) in keys
    assert ("color", frames[-1], 1) not in keys and ("color_aug", 0, 1) not in keys
    torch.manual_seed(0)
    model = FSREModel(opts)
    full = random_batch(2, 64, 96, frame_ids=frames)
    if "--use_stereo" in extra:
        full["stereo_T"] = torch.eye(4).repeat(2, 1, 1)
    images = {key for key in full if key[0] in ("color", "color_aug")}
    assert keys <= images
    torch.manual_seed(1)
    _, reference = model(full)
    torch.manual_seed(1)
    _, losses = model({k: v for k, v in full.items() if k not in images - keys})  # the other keys are unread
    assert losses["loss"] == reference["loss"]
    for key in keys:  # and every key of image_keys is read
        with pytest.raises(KeyError):
            model({k: v for k, v in full.items() if k != key})


@pytest.mark.slow
def test_the_loaders_make_the_models_images_unless_asked_for_all(tmp_path):
    assert loader_image_keys(model_options()) == image_keys(model_options())
    assert loader_image_keys(model_options("--input_images", "all")) is None  # Monodepth2's full set
    from trainer import Trainer

    tiny = make_tiny_kitti(str(tmp_path / "data"), num_frames=4, exts=("png",))
    for extra, expected in (((), image_keys(model_options())), (("--input_images", "all"), None)):
        opts = options.parse_args(
            helpers.train_args(tiny, tmp_path / "log", "--device", "cpu", "--overwrite", *extra, width=96)
        )
        trainer = Trainer(opts)
        expected = expected or all_image_keys([0, -1, 1], 4)
        assert trainer.train_dataset.image_keys == expected
        assert trainer.val_loader.dataset.dataset.image_keys == expected
        trainer.close()


@pytest.mark.parametrize("pipeline", ["exact", "fast", "fast_workers"])
def test_pipelines_make_only_the_models_image_keys_with_the_same_values(kitti_size, pipeline):
    opts = model_options("--height", str(HEIGHT), "--width", str(WIDTH))
    keys = image_keys(opts)
    lines = read_split(os.path.join(kitti_size.split_dir, "train_files.txt"))

    def batch(pipeline, wanted):
        random.seed(5)
        torch.manual_seed(5)
        ds = KITTIRAWDataset(
            kitti_size.data_path,
            lines,
            HEIGHT,
            WIDTH,
            [0, -1, 1],
            is_train=True,
            input_pipeline=pipeline,
            load_labels=True,
            image_keys=wanted,
        )
        items = [ds[(i, seed)] for i, seed in enumerate((5, 8))]
        return device_inputs.DeviceInputs("cpu", 4, wanted)(default_collate(items))

    every, only = batch(pipeline, None), batch(pipeline, keys)
    assert {k for k in only if k[0] in ("color", "color_aug")} == keys
    for key, value in only.items():  # the same images (and draws) as when every key is made, bit for bit
        assert torch.equal(value, every[key]), key
    assert not torch.equal(only[("color", 0, 0)], only[("color_aug", 0, 0)])  # an item with a jitter draw
    assert set(every) - set(only) == all_image_keys([0, -1, 1], 4) - keys
    with pytest.raises(ValueError, match="name frames or scales"):
        KITTIRAWDataset(kitti_size.data_path, lines, HEIGHT, WIDTH, [0, -1, 1], image_keys={("color", 2, 0)})


# the fast pipelines' items differ from the exact pipeline's by the resize filter (antialiased bicubic
# once, vs LANCZOS per scale from the native size), which moves the losses of a batch by at most:
PIPELINE_LOSS_RTOL = {"photometric": 0.03, "smoothness": 0.02, "sgt": 0.02, "semantic": 1e-3, "loss": 5e-3}


@pytest.mark.slow
@pytest.mark.parametrize("is_train", [False, True])
def test_fast_path_losses_are_the_straightforward_paths_within_tolerance(kitti_size, is_train):
    opts = model_options("--height", str(HEIGHT), "--width", str(WIDTH))
    keys = image_keys(opts)
    lines = read_split(os.path.join(kitti_size.split_dir, "train_files.txt"))
    torch.manual_seed(0)
    model = FSREModel(opts)
    losses = {}
    for pipeline, fused in (("exact", False), ("fast", True), ("fast_workers", True)):
        ds = KITTIRAWDataset(
            kitti_size.data_path,
            lines,
            HEIGHT,
            WIDTH,
            [0, -1, 1],
            is_train=is_train,
            input_pipeline=pipeline,
            load_labels=True,
            image_keys=keys,
        )
        items = [ds[(i, 11 + i)] if is_train else ds[i] for i in range(2)]
        batch = device_inputs.DeviceInputs("cpu", 4, keys)(default_collate(items))
        torch.manual_seed(1)  # the auto-mask's noise
        with reference.straightforward_kernels(not fused), torch.no_grad():
            _, losses[pipeline] = model(batch)
    for pipeline in ("fast", "fast_workers"):
        assert set(losses[pipeline]) == set(losses["exact"])
        for key, exact in losses["exact"].items():
            rtol = PIPELINE_LOSS_RTOL[key.split("/")[0]]
            torch.testing.assert_close(
                losses[pipeline][key], exact, rtol=rtol, atol=0, msg=f"{pipeline} {key}"
            )
        assert (
            losses[pipeline]["photometric/0"] != losses["exact"]["photometric/0"]
        )  # other inputs, not a copy
    for key, value in losses["fast"].items():  # the GPU path, run on the CPU, and the CPU path agree closely
        torch.testing.assert_close(losses["fast_workers"][key], value, rtol=1e-3, atol=0, msg=key)


def test_device_jitter_matches_pil_colour_jitter_with_fixed_draws(kitti_size):
    path = os.path.join(kitti_size.data_path, DRIVE, "image_02", "data", "0000000001.png")
    image = Image.open(path).convert("RGB").resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS)
    draws = [
        ([0, 1, 2, 3], [1.2, 0.8, 1.15, 0.07]),
        ([3, 2, 1, 0], [0.8, 1.2, 0.85, -0.1]),
        ([1, 3, 0, 2], [1.1, 0.9, 1.2, 0.05]),
        ([0, 1, 2, 3], [1.0, 1.0, 1.0, 0.0]),
    ]
    images = TF.to_tensor(image)[None].repeat(len(draws), 1, 1, 1)
    order = torch.tensor([o for o, _ in draws])
    factors = torch.tensor([f for _, f in draws])
    sparse = jitter.jitter_batch(images, factors, order)  # the CPU path: only drawn adjustments
    dense = images
    for position in range(4):  # the CUDA path, run here on the CPU
        op = order[:, position]
        dense = jitter.adjust_each(dense, op, factors.gather(1, op[:, None])[:, 0])
    torch.testing.assert_close(sparse, dense, rtol=0, atol=1e-5)
    assert torch.equal(sparse[-1], images[-1])  # the identity draw leaves the image untouched
    for j, (o, f) in enumerate(draws[:-1]):
        reference = TF.to_tensor(jitter.jitter_pil(image, jitter.JitterDraw(torch.tensor(o), *f)))
        difference = (sparse[j] - reference).abs()
        assert difference.mean() < JITTER_MEAN_TOL and difference.max() < JITTER_MAX_TOL, (o, f)
        assert (sparse[j] - images[j]).abs().mean() > 5 * difference.mean()  # the jitter did something


def test_fast_frames_decode_the_pixels_that_pil_decodes(tmp_path):
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (37, 53, 4), dtype=np.uint8)
    images = {
        "rgb.png": Image.fromarray(rgba[..., :3]),
        "rgba.png": Image.fromarray(rgba),
        "grey.png": Image.fromarray(rgba[..., 0]),
        "palette.png": Image.fromarray(rgba[..., :3]).quantize(64),
        "rgb.jpg": Image.fromarray(rgba[..., :3]),
        "grey.jpg": Image.fromarray(rgba[..., 0]),
    }
    for name, image in images.items():
        path = str(tmp_path / name)
        image.save(path)
        with Image.open(path) as img:
            expected = torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1)
        decoded = fast_frames.read_frame_uint8(path, 37, 53, do_flip=False)  # the native size: no resize
        assert decoded.dtype == torch.uint8 and decoded.shape == (3, 37, 53), name
        if name.endswith(".png"):
            assert torch.equal(decoded, expected), name
        else:
            assert (decoded.int() - expected.int()).abs().max() <= JPEG_DECODER_TOL, name
        assert torch.equal(fast_frames.read_frame_uint8(path, 37, 53, do_flip=True), decoded.flip(-1)), name


def test_fast_frames_name_a_missing_or_undecodable_frame(tmp_path):
    with pytest.raises(ValueError, match=f"^{tmp_path}/missing.png: file not found$"):
        fast_frames.read_frame_uint8(str(tmp_path / "missing.png"), 8, 8, False)
    (tmp_path / "text.png").write_text("not an image\n")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "whole.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "whole.png").read_bytes()[:-30])
    for name in ("text.png", "cut.png"):
        with pytest.raises(ValueError, match=f"^{tmp_path}/{name}: cannot decode the frame"):
            fast_frames.read_frame_uint8(str(tmp_path / name), 16, 16, False)


def test_prepare_kitti_writes_resized_frames_and_labels_in_the_same_layout(tmp_path):
    tiny = make_tiny_kitti(str(tmp_path / "src"), num_frames=4)
    cache = str(tmp_path / "cache")
    counts = prepare_kitti.prepare(tiny.data_path, cache, 32, 96, ext="jpg", num_workers=2, progress=False)
    assert counts == {"files_written": 8 + 8, "files_skipped": 0, "labels": 8, "other_files": 4 + 2}
    frame = os.path.join(cache, DRIVE, "image_03", "data", "0000000002.jpg")
    with Image.open(frame) as img:
        assert img.size == (96, 32) and img.format == "JPEG"
    label = os.path.join(cache, "segmentation", DRIVE, "image_02", "0000000001.png")
    with (
        Image.open(label) as img,
        Image.open(os.path.join(tiny.data_path, os.path.relpath(label, cache))) as source,
    ):
        assert not os.path.islink(label) and img.size == (96, 32) and img.mode == source.mode  # palette kept
    assert os.path.islink(os.path.join(cache, DRIVE, "velodyne_points", "data", "0000000001.bin"))
    assert json.load(open(os.path.join(cache, prepare_kitti.SETTINGS_FILE)))["width"] == 96
    assert (
        prepare_kitti.prepare(tiny.data_path, cache, 32, 96, ext="jpg", progress=False)["files_skipped"] == 16
    )
    lines = read_split(os.path.join(tiny.split_dir, "train_files.txt"))
    item = KITTIRAWDataset(cache, lines, 32, 96, [0, -1, 1], img_ext="jpg", input_pipeline="fast")[0]
    assert item[("color_u8", 0)].shape == (3, 32, 96)
    # the exact pipeline reads the labels it makes from the native maps, flipped or not
    native, cached = (
        KITTIRAWDataset(root, lines, 32, 96, [0], is_train=True, load_labels=True, img_ext=ext)
        for root, ext in ((tiny.data_path, "png"), (cache, "jpg"))
    )
    flips = set()
    for seed in range(6):
        a, b = native[(1, seed)], cached[(1, seed)]
        assert torch.equal(a[("seg", 0, 0)], b[("seg", 0, 0)]), seed
        rng = random.Random(seed)  # the item's draws: colour augmentation, then flip
        rng.random()
        flips.add(rng.random() > 0.5)
    assert flips == {True, False}
    with pytest.raises(FileNotFoundError, match="holds no frames"):
        prepare_kitti.prepare(str(tmp_path / "src" / "split"), str(tmp_path / "x"), 32, 96, progress=False)


@pytest.mark.parametrize("size", [(1242, 375), (1241, 376), (1224, 370), (1238, 374), (1226, 370)])
def test_labels_resized_once_equal_the_exact_pipelines_for_kitti_frame_sizes(size):
    """Nearest resize then flip (the cache) equals flip then nearest resize (the exact pipeline)."""
    ids = np.random.default_rng(0).integers(0, 34, size[::-1]).astype(np.uint8)
    label = Image.fromarray(ids)
    for target in ((640, 192), (1024, 320), (320, 96)):
        flip = Image.Transpose.FLIP_LEFT_RIGHT
        exact = label.transpose(flip).resize(target, prepare_kitti.LABEL_FILTER)
        cached = (
            label.resize(target, prepare_kitti.LABEL_FILTER)
            .transpose(flip)
            .resize(target, Image.Resampling.NEAREST)
        )
        assert np.array_equal(np.asarray(exact), np.asarray(cached)), target


def test_amp_needs_cuda():
    opts = model_options("--amp", "bf16")
    with pytest.raises(ValueError, match="--amp bf16 needs a CUDA device"):
        Acceleration(FSREModel(opts), opts, torch.device("cpu"))


def test_options_of_a_folder_older_than_the_speed_options_carry_their_defaults(tmp_path):
    """An opt.json written before the speed options loads with the parser's defaults for them, so that
    the speed path and the loader read them as plain attributes (the defaults are written once)."""
    speed_options = ("input_pipeline", "input_images", "amp", "channels_last", "compile")
    opts = model_options("--input_pipeline", "fast", "--input_images", "all", "--channels_last")
    path = tmp_path / "opt.json"
    path.write_text(json.dumps({k: v for k, v in vars(opts).items() if k not in speed_options}))
    loaded = options.load_options(str(path))
    defaults = options.build_parser().parse_args([])
    expected = {
        "input_pipeline": "exact",
        "input_images": "model",
        "amp": "off",
        "channels_last": False,
        "compile": False,
    }
    assert {name: getattr(loaded, name) for name in speed_options} == expected
    assert all(getattr(loaded, name) == getattr(defaults, name) for name in speed_options)
    assert not speed_path_asked(loaded) and worker_pipeline(loaded, torch.device("cpu")) == "exact"
    assert loader_image_keys(loaded) == image_keys(loaded)


@pytest.mark.slow
def test_benchmark_runs_end_to_end_and_writes_json(tmp_path):
    tiny = make_tiny_kitti(str(tmp_path / "data"), num_frames=4, exts=("png",))
    output = tmp_path / "bench.json"
    report = benchmark.main(
        helpers.benchmark_args(
            tiny,
            *("--steps", "2", "--input_batches", "2", "--inference_runs", "2", "--configs", "baseline"),
            *("--baseline", "--output", str(output)),
        )
    )
    saved = json.loads(output.read_text())
    assert saved["results"] == json.loads(json.dumps(report["results"]))
    assert [(r["config"], r["path"]) for r in saved["results"]] == [
        ("baseline", p) for p in ("exact", "default", "fast")
    ]
    for row in saved["results"]:
        assert row["train_samples_per_s"] > 0 and row["input_samples_per_s"] > 0 and row["inference_ms"] > 0
        assert row["peak_memory_gib"] is None  # measured on CUDA only
        assert row["projected_20_epochs_h"] == pytest.approx(20 * 39810 / row["train_samples_per_s"] / 3600)
    exact, default, fast = saved["results"]
    for path, row in (("default", default), ("fast", fast)):
        speedup = saved["speedups"]["baseline"][path]
        assert speedup["input"] == pytest.approx(row["input_samples_per_s"] / exact["input_samples_per_s"])
    assert saved["paper_table2"]["full"]["training_time"] == "18h 20m"
    assert saved["machine"]["device"] == f"{cpu_model()}, {os.cpu_count()} cores"  # the CPU model named
    assert saved["machine"]["summary"] == machine_summary(torch.device("cpu"))


def test_benchmark_paths_are_monodepth2s_loader_the_defaults_and_the_fast_path_on_its_cache():
    args = benchmark.build_parser().parse_args(
        [
            "--data_path",
            "raw",
            "--img_ext",
            "png",
            "--fast_data_path",
            "cache",
            "--fast_img_ext",
            "jpg",
            "--device",
            "cpu",
        ]
    )
    with tempfile.TemporaryDirectory() as log_dir:
        runs = {path: trainer_options(args, "full", path, log_dir) for path in PATHS}
    settings = {path: (o.data_path, o.img_ext, o.input_pipeline, o.input_images) for path, o in runs.items()}
    assert settings == {
        "exact": ("raw", "png", "exact", "all"),
        "default": ("raw", "png", "exact", "model"),
        "fast": ("cache", "jpg", "fast", "model"),
    }


@pytest.mark.gpu
def test_autocast_losses_stay_within_tolerance_of_fp32():
    device = torch.device("cuda")
    inputs = {k: v.to(device) for k, v in random_batch(2, 64, 96).items()}
    losses = {}
    for amp in ("off", "bf16"):
        opts = model_options("--amp", amp)
        torch.manual_seed(0)
        model = FSREModel(opts).to(device)
        Acceleration(model, opts, device)
        torch.manual_seed(1)
        _, losses[amp] = model(inputs)
    assert losses["bf16"][("loss")].dtype == torch.float32
    for key in ("loss", "photometric/0", "semantic", "sgt/1"):
        torch.testing.assert_close(losses["bf16"][key], losses["off"][key], rtol=2e-2, atol=1e-3, msg=key)


@pytest.mark.gpu
def test_device_inputs_on_cuda_match_the_cpu_path_without_synchronising(kitti_size):
    keys = image_keys(model_options("--height", str(HEIGHT), "--width", str(WIDTH)))
    lines = read_split(os.path.join(kitti_size.split_dir, "train_files.txt"))
    ds = KITTIRAWDataset(
        kitti_size.data_path,
        lines,
        HEIGHT,
        WIDTH,
        [0, -1, 1],
        is_train=True,
        input_pipeline="fast",
        load_labels=True,
        image_keys=keys,
    )
    batch = default_collate([ds[(i, 7 + i)] for i in range(2)])
    batch[fast_frames.JITTER_FACTORS_KEY] = torch.tensor([[1.2, 0.8, 1.1, 0.05], [0.9, 1.15, 0.85, -0.08]])
    batch[fast_frames.JITTER_ORDER_KEY] = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0]])
    on_cpu = device_inputs.DeviceInputs("cpu", 4, keys)(batch)
    pinned = {key: value.pin_memory() if torch.is_tensor(value) else value for key, value in batch.items()}
    torch.cuda.set_sync_debug_mode("error")  # any host-device synchronisation raises
    try:
        on_cuda = device_inputs.DeviceInputs("cuda", 4, keys)(pinned)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert {k for k in on_cuda if k[0] in ("color", "color_aug")} == keys
    for key in keys:
        assert on_cuda[key].is_cuda
        torch.testing.assert_close(on_cuda[key].cpu(), on_cpu[key], rtol=0, atol=1e-4, msg=str(key))


@pytest.mark.slow
@pytest.mark.gpu
def test_fast_bf16_channels_last_training_runs_on_cuda(tmp_path):
    tiny = make_tiny_kitti(str(tmp_path / "data"), exts=("jpg",))
    opts = options.parse_args(
        helpers.train_args(
            tiny,
            tmp_path / "log",
            *("--img_ext", "jpg", "--num_epochs", "1", "--max_steps", "3", "--device", "cuda"),
            *("--input_pipeline", "fast", "--amp", "bf16", "--channels_last", "--no_validation"),
            *("--keep_checkpoints", "1"),
        )
    )
    from trainer import Trainer

    trainer = Trainer(opts)
    assert trainer.train_dataset.input_pipeline == "fast"
    trainer.train()
    assert trainer.step == 3 and trainer.loop.nonfinite_total == 0
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
