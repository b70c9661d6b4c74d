"""make_pseudo_labels.py on a tiny KITTI-layout drive: a random-weight SegFormer built from a tiny config (no
download) and model files (torch.export and TorchScript) with known output; layout, encoding, loader round
trip, resuming after a kill; files that are not models are refused without being unpickled."""

import json
import os
import pickle
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import datasets
import utils
from conftest import PROCESS_DEADLINE_S, PROJECT_DIR, require
from datasets import pseudo_labels
from datasets.cityscapes import CLASS_NAMES, LABEL_TO_TRAIN, NUM_CLASSES, TRAIN_TO_LABEL
from datasets.synthetic.kitti_frames import DRIVE, NATIVE_HEIGHT, NATIVE_WIDTH
from tools import make_pseudo_labels as mpl
from utils.files import is_temporary, temporary_path

PROCESSOR_SIZE = {"height": 64, "width": 128}
KILL_AFTER = 3  # labels written before the first run is killed
KILL_TIMEOUT_S = PROCESS_DEADLINE_S
ROAD, CAR, SKY, PERSON = (CLASS_NAMES.index(name) for name in ("road", "car", "sky", "person"))  # train ids


@pytest.fixture(scope="module")
def segformer_dir(tmp_path_factory):
    """A random-weight SegFormer with Cityscapes' classes in reversed order, saved with its processor."""
    require("transformers", "safetensors")
    import transformers

    torch.manual_seed(0)
    names = list(CLASS_NAMES)[::-1]  # channel c is class 18 - c: the tool must map by name
    config = transformers.SegformerConfig(
        num_encoder_blocks=2,
        depths=[1, 1],
        sr_ratios=[2, 1],
        hidden_sizes=[8, 16],
        patch_sizes=[7, 3],
        strides=[4, 2],
        num_attention_heads=[1, 1],
        mlp_ratios=[2, 2],
        decoder_hidden_size=16,
        num_labels=NUM_CLASSES,
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
        initializer_range=0.5,
    )  # large random weights: many classes in the output
    folder = str(tmp_path_factory.mktemp("segformer"))
    transformers.SegformerForSemanticSegmentation(config).save_pretrained(folder)
    transformers.SegformerImageProcessor(size=PROCESSOR_SIZE).save_pretrained(folder)
    return folder


def needed_labels(tiny, seg_path, sides=("line",)):
    """Label paths the split's lines need, worked out from the files by hand."""
    paths = set()
    for name in ("train_files.txt", "val_files.txt"):
        for line in open(os.path.join(tiny.split_dir, name)).read().split("\n"):
            if line:
                folder, index, side = line.split()
                for s in (side,) if sides == ("line",) else sides:
                    camera = {"l": "image_02", "r": "image_03"}[s]
                    paths.add(os.path.join(seg_path, folder, camera, f"{int(index):010d}.png"))
    return paths


def written_labels(seg_path):
    """Label PNGs under a label root, summary folder and temporaries (``is_temporary``, a killed write)
    excluded."""
    found = set()
    for root, dirs, files in os.walk(seg_path):
        dirs[:] = [d for d in dirs if d != pseudo_labels.SUMMARY_FOLDER]
        found |= {os.path.join(root, f) for f in files if f.endswith(".png") and not is_temporary(f)}
    return found


def read_ids(path):
    with Image.open(path) as image:
        assert image.mode == "P" and image.size == (NATIVE_WIDTH, NATIVE_HEIGHT), path
        return np.asarray(image)


def run(tiny, seg_path, model, *extra):
    argv = [
        "--data_path",
        tiny.data_path,
        "--split",
        tiny.split_dir,
        "--seg_path",
        str(seg_path),
        "--model",
        model,
        "--device",
        "cpu",
        *extra,
    ]
    assert mpl.main(argv) == 0
    with open(os.path.join(seg_path, pseudo_labels.SUMMARY_FOLDER, pseudo_labels.SUMMARY_NAME)) as f:
        return json.load(f)


def frame_of_label(tiny, label_path, seg_path):
    rel = os.path.relpath(label_path, seg_path).split(os.sep)
    return os.path.join(tiny.data_path, *rel[:-1], "data", rel[-1])


@pytest.mark.needs("transformers", "safetensors")
def test_segformer_labels_every_needed_frame_in_the_loaders_layout(tiny, segformer_dir, tmp_path):
    import transformers

    seg_path = tmp_path / "labels"
    summary = run(
        tiny, seg_path, segformer_dir, "--batch_size", "3", "--num_workers", "2", "--num_overlays", "2"
    )
    labels = written_labels(seg_path)
    assert (
        labels == needed_labels(tiny, str(seg_path)) and len(labels) == 7
    )  # 6 training lines + 1 new val frame
    assert summary["frames_labelled"] == 7 and summary["frames_skipped"] == 0

    # independent expectation: the checkpoint's own processor and post-processing, class names looked up by
    # hand
    processor = transformers.AutoImageProcessor.from_pretrained(segformer_dir)
    model = transformers.AutoModelForSemanticSegmentation.from_pretrained(segformer_dir).eval()
    channel_to_train = torch.tensor([CLASS_NAMES.index(model.config.id2label[c]) for c in range(NUM_CLASSES)])
    histogram = np.zeros(NUM_CLASSES, dtype=np.int64)
    agree = total = 0
    for path in sorted(labels):
        ids = read_ids(path)
        assert set(np.unique(ids)) <= set(TRAIN_TO_LABEL.tolist())  # only the 19 classes' label ids
        image = Image.open(frame_of_label(tiny, path, str(seg_path))).convert("RGB")
        with torch.inference_mode():
            outputs = model(**processor(images=image, return_tensors="pt"))
        channels = processor.post_process_semantic_segmentation(outputs, target_sizes=[image.size[::-1]])[0]
        expected = channel_to_train[channels].numpy()
        agree += int((LABEL_TO_TRAIN[ids] == expected).sum())
        total += ids.size
        histogram += np.bincount(LABEL_TO_TRAIN[ids].ravel(), minlength=NUM_CLASSES)
    assert agree >= 0.999 * total  # batched vs single-image float sums may flip a rare near-tie
    assert (histogram > 0).sum() >= 4  # a map of many classes, so a wrong channel order would show
    assert [summary["class_pixels"][name] for name in CLASS_NAMES] == histogram.tolist()
    assert len(summary["overlays"]) == 2
    for overlay in summary["overlays"]:
        assert Image.open(overlay).size == (NATIVE_WIDTH, NATIVE_HEIGHT)

    # the training dataset reads them back into the expected train ids
    lines = datasets.read_split(os.path.join(tiny.split_dir, "train_files.txt"))
    dataset = datasets.KITTIRAWDataset(
        tiny.data_path, lines, NATIVE_HEIGHT, NATIVE_WIDTH, [0], 1, load_labels=True, seg_path=str(seg_path)
    )
    for index, line in enumerate(lines):
        folder, frame, side = line.split()
        path = os.path.join(seg_path, folder, f"image_0{2 if side == 'l' else 3}", f"{int(frame):010d}.png")
        seg = dataset[index][("seg", 0, 0)][0].numpy()
        assert np.array_equal(seg, LABEL_TO_TRAIN[read_ids(path)]) and seg.max() < NUM_CLASSES

    # a second run writes nothing
    before = {path: (os.stat(path).st_mtime_ns, open(path, "rb").read()) for path in labels}
    again = run(tiny, seg_path, segformer_dir, "--num_workers", "0")
    assert (
        again["frames_labelled"] == 0
        and again["frames_skipped"] == 7
        and sum(again["class_pixels"].values()) == 0
    )
    assert {
        path: (os.stat(path).st_mtime_ns, open(path, "rb").read()) for path in written_labels(seg_path)
    } == before


@pytest.mark.needs("transformers", "safetensors")
def test_segformer_run_killed_half_way_resumes_to_the_same_files(tiny, segformer_dir, tmp_path):
    args = ["--sides", "both", "--batch_size", "1", "--num_workers", "0", "--num_overlays", "0"]
    reference = tmp_path / "reference"
    run(tiny, reference, segformer_dir, *args)
    expected = needed_labels(tiny, str(reference), sides=("l", "r"))
    assert written_labels(reference) == expected and len(expected) == 12

    seg_path = tmp_path / "labels"
    argv = [
        sys.executable,
        "-m",
        "tools.make_pseudo_labels",
        "--data_path",
        tiny.data_path,
        "--split",
        tiny.split_dir,
        "--seg_path",
        str(seg_path),
        "--model",
        segformer_dir,
        "--device",
        "cpu",
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), "PYTHONPATH": PROJECT_DIR}
    process = subprocess.Popen(
        argv, cwd=PROJECT_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + KILL_TIMEOUT_S
    try:
        while (
            len(written_labels(seg_path)) < KILL_AFTER
            and process.poll() is None
            and time.monotonic() < deadline
        ):
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    survived = written_labels(seg_path)
    assert process.returncode == -signal.SIGKILL and KILL_AFTER <= len(survived) < len(expected)

    with open(
        temporary_path(sorted(survived)[0], pid=process.pid), "wb"
    ) as f:  # the killed run's, half-written
        f.write(b"\x89PNG partial")
    summary = run(tiny, seg_path, segformer_dir, *args)
    assert summary["frames_skipped"] == len(survived) and summary["frames_labelled"] == len(expected) - len(
        survived
    )
    finished = written_labels(seg_path)
    assert {os.path.relpath(p, seg_path) for p in finished} == {
        os.path.relpath(p, reference) for p in expected
    }
    for path in finished:
        assert (
            open(path, "rb").read()
            == open(os.path.join(reference, os.path.relpath(path, seg_path)), "rb").read()
        )
    leftovers = [f for _, _, files in os.walk(seg_path) for f in files if ".tmp" in f]
    assert leftovers == []


class RegionModel(torch.nn.Module):
    """Known logits: sky on the top third, road on the left, car on the right, person where red > 0.5."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        b, _, h, w = images.shape
        logits = images.new_zeros(b, 19, h, w)  # on the images' device
        logits[:, 0, :, : w // 2] = 1.0
        logits[:, 13, :, w // 2 :] = 1.0
        logits[:, 10, : h // 3] = 2.0
        logits[:, 11] = (images[:, 0] > 0.5).float() * 3.0
        return logits


def region_label_ids(image_path):
    """The label ids RegionModel must produce for an image file."""
    red = np.asarray(Image.open(image_path).convert("RGB"))[..., 0]
    h, w = red.shape
    train = np.full((h, w), ROAD, dtype=np.uint8)
    train[:, w // 2 :] = CAR
    train[: h // 3] = SKY
    train[red / 255.0 > 0.5] = PERSON
    return TRAIN_TO_LABEL[train]


def dynamic_image_shapes():
    """A dynamic batch size, height and width of an image batch (B, 3, H, W) for torch.export (which
    works out the sizes the model accepts: RegionModel's slices need H >= 6, W >= 4)."""
    auto = torch.export.Dim.AUTO
    return ({0: auto, 2: auto, 3: auto},)


@pytest.fixture(scope="module")
def region_files(tmp_path_factory):
    """RegionModel as a torch.export program (.pt2) and as TorchScript (.pt)."""
    root = tmp_path_factory.mktemp("models")
    program = torch.export.export(
        RegionModel(), (torch.rand(2, 3, 64, 208),), dynamic_shapes=dynamic_image_shapes()
    )
    torch.export.save(program, str(root / "regions.pt2"))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is deprecated", category=FutureWarning)
        torch.jit.script(RegionModel()).save(str(root / "regions.pt"))
    return {"export": str(root / "regions.pt2"), "torchscript": str(root / "regions.pt")}


@pytest.fixture(scope="module")
def region_model(region_files):
    return region_files["export"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["export", "torchscript"])
def test_model_file_writes_exactly_the_known_ids(tiny, region_files, tmp_path, kind):
    assert pseudo_labels.model_file_kind(region_files[kind]) == kind
    seg_path = tmp_path / "labels"
    summary = run(
        tiny, seg_path, region_files[kind], "--batch_size", "4", "--num_workers", "2"
    )  # batches of 4, 3
    labels = written_labels(seg_path)
    assert labels == needed_labels(tiny, str(seg_path)) and summary["frames_labelled"] == 7
    pixels = np.zeros(NUM_CLASSES, dtype=np.int64)
    for path in labels:
        expected = region_label_ids(frame_of_label(tiny, path, str(seg_path)))
        assert np.array_equal(read_ids(path), expected), path
        pixels += np.bincount(LABEL_TO_TRAIN[expected].ravel(), minlength=NUM_CLASSES)
    assert (
        pixels[PERSON] > 0 and pixels[ROAD] > 0
    )  # the red test cut through the frames: inputs were in [0, 1]
    assert [summary["class_pixels"][name] for name in CLASS_NAMES] == pixels.tolist()


def test_image_folders_are_mirrored_below_the_label_root(region_model, tmp_path):
    images = tmp_path / "drive"
    rng = np.random.default_rng(1)
    sources = {"cam/a.png": (30, 40), "cam/sub/b.png": (20, 50), "c.jpg": (30, 40)}
    for rel, shape in sources.items():
        os.makedirs(os.path.dirname(images / rel), exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8)).save(images / rel)
    seg_path = images / "labels"  # inside the image folder: its PNGs must not be taken for images
    argv = [
        "--image_dirs",
        str(images),
        "--seg_path",
        str(seg_path),
        "--model",
        region_model,
        "--device",
        "cpu",
        "--batch_size",
        "3",
        "--num_workers",
        "0",
    ]
    for labelled, extra in ((1, ["--limit", "1"]), (2, []), (0, [])):
        assert mpl.main(argv + extra) == 0
        summary = json.load(open(seg_path / pseudo_labels.SUMMARY_FOLDER / pseudo_labels.SUMMARY_NAME))
        assert summary["frames_needed"] == 3 and summary["frames_labelled"] == labelled
    for rel in sources:
        label = seg_path / "drive" / (os.path.splitext(rel)[0] + ".png")
        assert np.array_equal(np.asarray(Image.open(label)), region_label_ids(images / rel)), rel


def test_bad_models_and_options_are_refused_clearly(tiny, tmp_path, monkeypatch, capsys):
    names = {i: name.replace(" ", "_").upper() for i, name in enumerate(reversed(CLASS_NAMES))}
    assert pseudo_labels.channel_to_label_ids(names, "m").tolist() == TRAIN_TO_LABEL[::-1].tolist()
    with pytest.raises(ValueError, match="unknown: car park"):
        pseudo_labels.channel_to_label_ids({**names, 3: "car park"}, "m")
    generic = {i: f"LABEL_{i}" for i in range(NUM_CLASSES)}
    with pytest.raises(ValueError, match="not Cityscapes"):
        pseudo_labels.channel_to_label_ids(generic, "m")
    in_order = pseudo_labels.channel_to_label_ids(generic, "m", assume_train_id_order=True)
    assert in_order.tolist() == TRAIN_TO_LABEL.tolist()

    with pytest.raises(ValueError, match="--normalize is for model files"):
        pseudo_labels.load_segmenter("nvidia/some-checkpoint", torch.device("cpu"), normalize="imagenet")
    red = pseudo_labels.UnitRangeInput("imagenet")(Image.new("RGB", (2, 2), (255, 0, 0)))[:, 0, 0]
    assert torch.allclose(red, torch.tensor([(1 - 0.485) / 0.229, -0.456 / 0.224, -0.406 / 0.225]))

    monkeypatch.setitem(sys.modules, "transformers", None)  # as if it were not installed
    with pytest.raises(ImportError, match="pip install -r requirements/pseudo-labels.txt"):
        pseudo_labels.load_segmenter("nvidia/some-checkpoint", torch.device("cpu"))

    wrong = str(tmp_path / "wrong.pt2")
    torch.export.save(
        torch.export.export(
            torch.nn.Conv2d(3, 18, 1), (torch.rand(2, 3, 5, 7),), dynamic_shapes=dynamic_image_shapes()
        ),
        wrong,
    )
    with pytest.raises(ValueError, match="--resize_to and --sliding_window are for transformers checkpoints"):
        pseudo_labels.load_segmenter(wrong, torch.device("cpu"), resize_to=(8, 8))
    with pytest.raises(ValueError, match=r"must return \(B, 19, h, w\).*got \(1, 18, 5, 7\)"):
        pseudo_labels.load_segmenter(wrong, torch.device("cpu")).logits(torch.rand(1, 3, 5, 7))

    with pytest.raises(SystemExit):
        mpl.main(
            [
                "--data_path",
                tiny.data_path,
                "--split",
                tiny.split_dir,
                "--device",
                "cpu",
                "--precision",
                "fp16",
            ]
        )
    assert "--precision fp16 needs a CUDA device" in capsys.readouterr().err

    bad_split = tmp_path / "bad.txt"
    bad_split.write_text(f"{DRIVE} 1 l\n{DRIVE} 99 l\n")
    argv = [
        "--data_path",
        tiny.data_path,
        "--split",
        str(bad_split),
        "--model",
        wrong,
        "--seg_path",
        str(tmp_path),
    ]
    with pytest.raises(FileNotFoundError, match=f"0000000099.png: frame of {bad_split}:2 not found"):
        pseudo_labels.split_frames(tiny.data_path, str(tmp_path), [str(bad_split)])
    assert utils.run_cli(mpl.main, argv) == utils.EXIT_ERROR  # one line, no traceback
    assert capsys.readouterr().err.startswith(f"error: {tiny.data_path}")


@pytest.mark.gpu
def test_half_precision_on_the_gpu_writes_the_same_known_ids(tiny, region_model, tmp_path):
    for precision in ("fp16", "bf16"):
        seg_path = tmp_path / precision
        run(tiny, seg_path, region_model, "--precision", precision, "--device", "cuda")
        for path in written_labels(seg_path):
            assert np.array_equal(read_ids(path), region_label_ids(frame_of_label(tiny, path, str(seg_path))))


def test_sliding_windows_cover_the_frame_and_average_overlaps():
    assert pseudo_labels.window_starts(23, 6, 4) == [0, 4, 8, 12, 16, 17]
    assert pseudo_labels.window_starts(5, 8, 6) == [0]
    images = torch.rand(2, NUM_CLASSES, 10, 23)
    assert torch.allclose(pseudo_labels.sliding_window_logits(lambda x: x, images, (4, 6)), images, atol=1e-6)
    # a model that answers each window's mean: overlaps average the windows' means
    ones = torch.ones(1, 1, 4, 10)
    ones[..., 6:] = 3.0
    out = pseudo_labels.sliding_window_logits(
        lambda x: x.mean((2, 3), keepdim=True), ones, (4, 6), stride_fraction=0.5
    )
    # windows start at 0, 3, 4: means 1, (3 * 1 + 3 * 3) / 6 = 2, (2 * 1 + 4 * 3) / 6 = 7 / 3
    expected = torch.tensor(
        [
            1,
            1,
            1,
            1.5,
            (1 + 2 + 7 / 3) / 3,
            (1 + 2 + 7 / 3) / 3,
            (2 + 7 / 3) / 2,
            (2 + 7 / 3) / 2,
            (2 + 7 / 3) / 2,
            7 / 3,
        ]
    )
    assert torch.allclose(out[0, 0, 0], expected)


@pytest.mark.needs("transformers", "safetensors")
def test_segformer_sliding_window_labels_match_the_windows_by_hand(tiny, segformer_dir, tmp_path):
    import transformers

    seg_path = tmp_path / "labels"
    summary = run(
        tiny, seg_path, segformer_dir, "--sliding_window", "--batch_size", "2", "--num_workers", "0"
    )
    assert summary["frames_labelled"] == 7
    processor = transformers.AutoImageProcessor.from_pretrained(segformer_dir)
    model = transformers.AutoModelForSemanticSegmentation.from_pretrained(segformer_dir).eval()
    channel_to_train = torch.tensor([CLASS_NAMES.index(model.config.id2label[c]) for c in range(NUM_CLASSES)])
    win_h, win_w = PROCESSOR_SIZE["height"], PROCESSOR_SIZE["width"]
    stride = round(win_w * pseudo_labels.SLIDE_STRIDE)
    assert NATIVE_HEIGHT == win_h and win_w < NATIVE_WIDTH <= win_w + stride  # two windows
    agree = total = 0
    for path in sorted(written_labels(seg_path)):
        image = Image.open(frame_of_label(tiny, path, str(seg_path))).convert("RGB")
        x = processor(images=image, do_resize=False, return_tensors="pt")["pixel_values"]
        assert x.shape[-2:] == (NATIVE_HEIGHT, NATIVE_WIDTH)
        logits = torch.zeros(1, NUM_CLASSES, NATIVE_HEIGHT, NATIVE_WIDTH)
        count = torch.zeros(NATIVE_WIDTH)
        for x0 in (0, NATIVE_WIDTH - win_w):  # the left window and the one flush with the right edge
            with torch.inference_mode():
                window = model(pixel_values=x[..., x0 : x0 + win_w]).logits
            logits[..., x0 : x0 + win_w] += torch.nn.functional.interpolate(
                window, size=(win_h, win_w), mode="bilinear", align_corners=False
            )
            count[x0 : x0 + win_w] += 1
        expected = channel_to_train[(logits / count).argmax(1)[0]].numpy()
        agree += int((LABEL_TO_TRAIN[read_ids(path)] == expected).sum())
        total += expected.size
    assert agree >= 0.999 * total


class Marker:
    """Unpickling this writes a file: proof that a pickle was (or was not) loaded."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_files_that_are_not_models_are_refused_in_one_line_unread(tiny, tmp_path, capsys):
    marker = tmp_path / "unpickled"
    files = {
        "model.pkl": "a pickle, which is never loaded",
        "weights.pt": "a torch.save file",
        "module.pth": "a torch.save file",
        "old.pt": "a pickle, which is never loaded",
        "notes.txt": "not a model file",
        "zipped.pt2": "a zip archive that is neither a torch.export program nor TorchScript",
    }
    with open(tmp_path / "model.pkl", "wb") as f:
        pickle.dump(Marker(str(marker)), f)
    torch.save(torch.nn.Conv2d(3, 19, 1).state_dict(), tmp_path / "weights.pt")
    torch.save({"model": torch.nn.Conv2d(3, 19, 1), "marker": Marker(str(marker))}, tmp_path / "module.pth")
    torch.save(
        torch.nn.Conv2d(3, 19, 1).state_dict(), tmp_path / "old.pt", _use_new_zipfile_serialization=False
    )
    (tmp_path / "notes.txt").write_text("a segmentation model\n")
    import zipfile

    with zipfile.ZipFile(tmp_path / "zipped.pt2", "w") as archive:
        archive.writestr("zipped/readme.txt", "hello")
    for name, reason in files.items():
        argv = [
            "--data_path",
            tiny.data_path,
            "--split",
            tiny.split_dir,
            "--seg_path",
            str(tmp_path / "labels"),
            "--model",
            str(tmp_path / name),
            "--device",
            "cpu",
        ]
        assert utils.run_cli(mpl.main, argv) == utils.EXIT_ERROR, name
        err = capsys.readouterr().err
        assert (
            err.splitlines()[-1].startswith(f"error: --model {tmp_path / name}: {reason}")
            and "Traceback" not in err
        )
    assert not marker.exists()  # nothing was unpickled
    with pytest.raises(FileNotFoundError, match="no such model file"):
        pseudo_labels.load_segmenter(str(tmp_path / "missing.pt2"), torch.device("cpu"))


def test_a_program_exported_with_a_fixed_batch_gets_a_clear_error(tiny, tmp_path, capsys):
    fixed = str(tmp_path / "fixed.pt2")
    torch.export.save(torch.export.export(RegionModel(), (torch.rand(2, 3, 64, 208),)), fixed)
    argv = [
        "--data_path",
        tiny.data_path,
        "--split",
        tiny.split_dir,
        "--seg_path",
        str(tmp_path / "labels"),
        "--model",
        fixed,
        "--device",
        "cpu",
        "--batch_size",
        "3",
        "--num_workers",
        "0",
    ]
    assert utils.run_cli(mpl.main, argv) == utils.EXIT_ERROR
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith(
        f"error: {fixed}: the model fails on an input of shape (3, 3, 64, 208)"
    )
    assert "Traceback" not in err
