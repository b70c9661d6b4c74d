"""docs/extending.md as written: each example's code blocks applied to a copy of the project, which then
trains.

The test copies the project's files (``git ls-files``) to tmp_path, applies every block of one example
where its first line says (``# FILE, at the end`` / ``a new file`` / ``before the line: ...`` /
``after the line: ...``), and runs this file as a script inside the copy (its own modules, a fresh
process) to measure what the example promises; the assertions are made here. The same script run in the
unchanged project gives the total loss that ``--second_order_weight 0`` must reproduce bit for bit.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(PROJECT_DIR, "docs", "extending.md")
EXAMPLE_HEADINGS = {"loss": "## 1. ", "encoder": "## 2. ", "dataset": "## 3. "}
HEADER = re.compile(r"^# (?P<file>[\w./-]+\.py), (?P<where>.+)$")
ANCHOR = re.compile(r"(?P<side>before|after) the line: (?P<line>.+)$")
NEW_FILE, AT_THE_END = "a new file", "at the end"
FILES_TOUCHED = "**Files touched:**"
MAX_LOSS_FILES = 3  # the bound (Monodepth2 needs two)
PROCESS_DEADLINE_S = 1800  # ends a hung subprocess only; the test waits for the process to exit

# tiny training runs (as tests/test_training.py): 64x192, a batch of 2, one step, from scratch
HEIGHT, WIDTH, BATCH = 64, 192, 2
SCALES = (0, 1, 2, 3)
SECOND_ORDER_WEIGHT = 0.5  # large enough to move the total far beyond rounding
FLOAT32_EPS = 2.0**-23
TOTAL_ROUNDINGS = 8  # float32 roundings of the term's parts on their way into the total: 4 products, 4 sums
SEED = 0

# Cityscapes' camera in pixels of its 2048x1024 frames (its camera.json files) and its stereo baseline
CITYSCAPES_FX, CITYSCAPES_FY, CITYSCAPES_CX, CITYSCAPES_CY = 2262.52, 2265.30, 1096.98, 513.14
CITYSCAPES_SIZE = (2048, 1024)
CITYSCAPES_BASELINE_M, KITTI_BASELINE_M, MONODEPTH2_STEREO_T = 0.209313, 0.54, 0.1
CITY, SEQUENCE, NUM_FRAMES = "aachen", "000000", 4
FRAME_SIZE = (256, 128)  # (width, height) of the tiny frames: Cityscapes' aspect ratio


# --------------------------------------------------------------------------------------------
# The doc's blocks and how they are applied
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Block:
    """One code block of the doc: the file it goes into, where, its lines, and the doc line it starts on."""

    file: str
    where: str
    code: list[str]
    doc_line: int


def read_examples() -> tuple[dict[str, list[Block]], dict[str, list[str]]]:
    """The placed blocks of each example of docs/extending.md and the files each says it touches."""
    blocks: dict[str, list[Block]] = {name: [] for name in EXAMPLE_HEADINGS}
    paragraphs: dict[str, list[str]] = {name: [] for name in EXAMPLE_HEADINGS}
    section = None
    fence: list[str] | None = None
    fence_start = 0
    with open(DOC, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for number, line in enumerate(lines, 1):
        if fence is not None:
            if line.startswith("```"):
                match = HEADER.match(fence[0]) if fence else None
                if match and section is not None:
                    blocks[section].append(Block(match["file"], match["where"], fence[1:], fence_start))
                fence = None
            else:
                fence.append(line)
        elif line.startswith("```python"):
            fence, fence_start = [], number
        elif line.startswith("## "):
            section = next((name for name, head in EXAMPLE_HEADINGS.items() if line.startswith(head)), None)
        elif section is not None and line.startswith(FILES_TOUCHED):
            paragraph = [line]
            for following in lines[number:]:
                if not following.strip():
                    break
                paragraph.append(following)
            text = re.sub(r"\([^)]*\)", "", " ".join(paragraph))  # the asides name other projects' files
            paragraphs[section] = re.findall(r"`([^`]+)`", text)
    return blocks, paragraphs


def apply_block(root: str, block: Block) -> None:
    """Put a block into the copy of the project at ``root`` where its first line says."""
    path = os.path.join(root, block.file)
    where = f"docs/extending.md:{block.doc_line} ({block.file}, {block.where})"
    code = "\n".join(block.code) + "\n"
    if block.where == NEW_FILE:
        assert not os.path.exists(path), f"{where}: the file exists already"
        with open(path, "w", encoding="utf-8") as f:
            f.write(code)
        return
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if block.where == AT_THE_END:
        text = text.rstrip("\n") + "\n\n\n" + code
    else:
        anchor = ANCHOR.search(block.where)
        assert anchor, f"{where}: say 'at the end', '{NEW_FILE}' or 'before/after the line: ...'"
        lines = text.splitlines(keepends=True)
        found = [i for i, line in enumerate(lines) if line.strip() == anchor["line"].strip()]
        assert len(found) == 1, f"{where}: the line is in {block.file} {len(found)} times, not once"
        at = found[0] + (anchor["side"] == "after")
        text = "".join(lines[:at]) + code + "".join(lines[at:])
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def copy_project(destination: str) -> str:
    """The project's files (tracked, and new ones git does not ignore) copied to ``destination``."""
    listed = subprocess.run(
        ["git", "-C", PROJECT_DIR, "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        source = os.path.join(PROJECT_DIR, name)
        if os.path.isfile(source):  # a file deleted but not yet committed is listed too
            os.makedirs(os.path.dirname(os.path.join(destination, name)), exist_ok=True)
            shutil.copy2(source, os.path.join(destination, name))
    return destination


def run_script(project: str, check: str, work: str) -> dict:
    """This file's ``check`` run inside ``project`` (its modules) in a fresh process; what it measured."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": project}
    script = os.path.join(project, "tests", os.path.basename(__file__))
    result = subprocess.run(
        [sys.executable, script, check, work],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=PROCESS_DEADLINE_S,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    with open(os.path.join(work, f"{check}.json")) as f:
        return json.load(f)


def extended_project(tmp_path, example: str) -> str:
    """A copy of the project with every block of one example applied."""
    root = copy_project(str(tmp_path / "project"))
    blocks, _ = read_examples()
    for block in blocks[example]:
        apply_block(root, block)
    return root


# --------------------------------------------------------------------------------------------
# The tests
# --------------------------------------------------------------------------------------------
def test_each_example_names_the_files_its_blocks_touch():
    blocks, touched = read_examples()
    for example, placed in blocks.items():
        assert placed, f"docs/extending.md: no placed code block under {EXAMPLE_HEADINGS[example]!r}"
        assert sorted({b.file for b in placed}) == sorted(touched[example]), example
    assert len(touched["loss"]) <= MAX_LOSS_FILES


def test_loss_term_example(tmp_path):
    old = run_script(PROJECT_DIR, "total", str(tmp_path))
    project = extended_project(tmp_path, "loss")
    new = run_script(project, "loss", str(tmp_path))

    # the pure function on hand-checkable input: a peak of 1 in a 3x3 map has |0 - 2 + 0| = 2 once in the
    # three rows (x) and once in the three columns (y); an image edge across it (|I(x+1) - I(x-1)| = 1)
    # weighs the x part by exp(-1); a disparity linear in x and y has no curvature
    assert math.isclose(new["peak_flat"], (2 / 3) + (2 / 3), rel_tol=4 * FLOAT32_EPS)
    assert math.isclose(new["peak_edge"], (2 / 3) * math.exp(-1) + (2 / 3), rel_tol=4 * FLOAT32_EPS)
    assert new["ramp"] == 0.0
    # normalised by its mean (1/9) the peak is 9 times larger, up to SMOOTHNESS_EPS (1e-7) relative to 1/9
    assert math.isclose(new["peak_normalised"], 9 * new["peak_flat"], rel_tol=1e-5)

    # in the model: weight 0 is the project without the change, bit for bit, and has no such term
    assert float.fromhex(new["total_off"]) == float.fromhex(old["total"])
    assert new["keys_off"] == old["keys"]
    # a weight > 0: each scale's term is the function of that scale's disparity, and the total grows by
    # exactly the weighted sum (up to float32 rounding of the additions)
    assert sorted(new["keys_on"]) == sorted(old["keys"] + [f"second_order/{s}" for s in SCALES])
    assert new["terms"] == new["expected_terms"]
    added = sum(SECOND_ORDER_WEIGHT * new["terms"][str(s)] / 2**s for s in SCALES)
    total_off, total_on = float.fromhex(new["total_off"]), float.fromhex(new["total_on"])
    assert added > 0
    assert math.isclose(
        total_on, total_off + added, abs_tol=TOTAL_ROUNDINGS * FLOAT32_EPS * (total_on + added)
    )

    # a training step with the option: the term is among its losses
    assert new["train_rc"] == 0
    assert [f"second_order/{s}" in new["train_losses"] for s in SCALES] == [True] * len(SCALES)
    assert all(math.isfinite(v) for v in new["train_losses"].values())


def test_encoder_example(tmp_path):
    project = extended_project(tmp_path, "encoder")
    new = run_script(project, "encoder", str(tmp_path))
    channels, strides = (16, 24, 40, 112, 960), (2, 4, 8, 16, 32)
    expected = [[BATCH, c, HEIGHT // s, WIDTH // s] for c, s in zip(channels, strides)]
    assert new["depth_features"] == expected
    assert new["pose_features"] == expected  # two frames stacked on the channel axis
    assert new["num_ch_enc"] == list(channels) and new["feature_strides"] == list(strides)
    assert new["train_rc"] == 0 and math.isfinite(new["train_losses"]["loss"])
    # the model folder names the encoders, and the loaders of evaluation and prediction rebuild them
    assert new["saved_encoders"] == ["mobilenet_v3", "mobilenet_v3"]
    assert new["loaded"] == ["MobileNetEncoder", "MobileNetEncoder"]


def test_dataset_example(tmp_path):
    project = extended_project(tmp_path, "dataset")
    write_cityscapes_sequence(str(tmp_path / "cityscapes"))
    new = run_script(project, "dataset", str(tmp_path))
    assert new["frames_equal"] == {"0": True, "-1": True, "1": True, "s": True}
    width, height = CITYSCAPES_SIZE
    expected_K = [
        [CITYSCAPES_FX / width * WIDTH, 0, CITYSCAPES_CX / width * WIDTH],
        [0, CITYSCAPES_FY / height * HEIGHT, CITYSCAPES_CY / height * HEIGHT],
    ]
    for row, expected_row in zip(new["K"], expected_K):
        for value, expected_value in zip(row, expected_row):
            assert math.isclose(value, expected_value, rel_tol=4 * FLOAT32_EPS)
    # side l, not flipped: the other camera is to the right (Monodepth2's -0.1), at Cityscapes' baseline
    stereo = -MONODEPTH2_STEREO_T * CITYSCAPES_BASELINE_M / KITTI_BASELINE_M
    assert math.isclose(new["stereo_T"], stereo, rel_tol=4 * FLOAT32_EPS)
    assert new["train_rc"] == 0 and math.isfinite(new["train_losses"]["loss"])


def write_cityscapes_sequence(root: str) -> None:
    """One tiny sequence of both cameras in Cityscapes' layout (textured frames) and a split folder."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(SEED)
    width, height = FRAME_SIZE
    world = rng.integers(0, 256, (height, width + 2 * NUM_FRAMES, 3), dtype=np.uint8)
    for kind, shift in (("leftImg8bit", 0), ("rightImg8bit", 3)):
        folder = os.path.join(root, f"{kind}_sequence", "train", CITY)
        os.makedirs(folder)
        for i in range(NUM_FRAMES):
            frame = np.ascontiguousarray(world[:, i + shift : i + shift + width])
            Image.fromarray(frame).save(os.path.join(folder, f"{CITY}_{SEQUENCE}_{i:06d}_{kind}.png"))
    os.makedirs(os.path.join(root, "split"))
    with open(os.path.join(root, "split", "train_files.txt"), "w") as f:
        f.write("".join(f"train/{CITY}/{SEQUENCE} {i} {side}\n" for i in (1, 2) for side in "lr"))


# --------------------------------------------------------------------------------------------
# What runs inside the copy of the project (python tests/test_extending.py CHECK WORK_DIR)
# --------------------------------------------------------------------------------------------
def train_args(data_path: str, split: str, work: str, name: str, *extra: str) -> list[str]:
    """One training step from scratch on tiny data, without validation."""
    return [
        *("--data_path", data_path, "--split", split, "--log_dir", os.path.join(work, "logs")),
        *("--model_name", name, "--height", str(HEIGHT), "--width", str(WIDTH)),
        *("--batch_size", str(BATCH), "--num_workers", "0", "--weights_init", "scratch"),
        *("--num_epochs", "1", "--max_steps", "1", "--no_validation", "--keep_checkpoints", "1"),
        *("--log_frequency", "1", "--num_log_images", "1", "--seed", str(SEED)),
        *extra,
    ]


def train_once(args: list[str]) -> tuple[int, dict]:
    """train.py's main on ``args``: its exit code and the losses of the last step it took."""
    import model
    import train

    seen: list[dict] = []
    forward = model.FSREModel.forward

    def spy(self, inputs: dict, with_outputs: bool = True, **kwargs) -> tuple[dict, dict]:
        outputs, losses = forward(self, inputs, with_outputs, **kwargs)
        seen.append({key: float(value.detach()) for key, value in losses.items()})
        return outputs, losses

    model.FSREModel.forward = spy
    try:
        code = train.main(args)
    finally:
        model.FSREModel.forward = forward
    return code, seen[-1]


def tiny_kitti(work: str) -> tuple[str, str]:
    """(data path, split folder) of a tiny KITTI drive."""
    from datasets.synthetic.kitti_frames import make_tiny_kitti

    tiny = make_tiny_kitti(os.path.join(work, "kitti"))
    return tiny.data_path, tiny.split_dir


def model_losses(weight: float | None) -> tuple[dict, dict, dict]:
    """(batch, outputs, losses) of the full model from a fixed seed on a fixed random batch; ``weight``
    sets --second_order_weight (None: the option does not exist)."""
    import torch

    import options
    import utils
    from conftest import random_batch
    from model import FSREModel

    opts = options.parse_args(["--height", str(HEIGHT), "--width", str(WIDTH), "--weights_init", "scratch"])
    if weight is not None:
        opts.second_order_weight = weight
    utils.seed_everything(SEED)
    net = FSREModel(opts)
    batch = random_batch(BATCH, HEIGHT, WIDTH)
    torch.manual_seed(SEED)  # the auto-mask's noise
    with torch.no_grad():
        outputs, losses = net(batch)
    return batch, outputs, losses


def check_total(work: str) -> dict:
    """The unchanged project's total loss and loss keys."""
    _, _, losses = model_losses(None)
    return {"total": float(losses["loss"]).hex(), "keys": sorted(losses)}


def check_loss(work: str) -> dict:
    """The new term on hand-made input, in the model with its weight at 0 and above, in a training step."""
    import torch

    import layers

    peak = torch.zeros(1, 1, 3, 3)
    peak[..., 1, 1] = 1
    flat = torch.zeros(1, 3, 3, 3)
    edge = flat.clone()
    edge[..., 2] = 1  # columns 0, 0, 1: |I(x+1) - I(x-1)| = 1 at the middle column
    ramp = torch.arange(12.0).view(1, 1, 3, 4)
    result = {
        "peak_flat": layers.second_order_smoothness(peak, flat, normalize=False).item(),
        "peak_edge": layers.second_order_smoothness(peak, edge, normalize=False).item(),
        "peak_normalised": layers.second_order_smoothness(peak, flat).item(),
        "ramp": layers.second_order_smoothness(ramp, torch.rand(1, 3, 3, 4), normalize=False).item(),
    }
    _, _, off = model_losses(0.0)
    batch, outputs, on = model_losses(SECOND_ORDER_WEIGHT)
    result.update(
        total_off=float(off["loss"]).hex(),
        keys_off=sorted(off),
        total_on=float(on["loss"]).hex(),
        keys_on=sorted(on),
        terms={s: float(on[f"second_order/{s}"]) for s in SCALES},
        expected_terms={
            s: float(layers.second_order_smoothness(outputs[("disp", s)], batch[("color", 0, s)]))
            for s in SCALES
        },
    )
    data_path, split = tiny_kitti(work)
    args = train_args(data_path, split, work, "loss", "--config", "baseline")
    result["train_rc"], result["train_losses"] = train_once(
        args + ["--second_order_weight", str(SECOND_ORDER_WEIGHT)]
    )
    return result


def check_encoder(work: str) -> dict:
    """The new encoder's features, a training step with it, and its model folder loaded back."""
    import torch

    from checkpoints import model_folder
    from networks import build_encoder

    depth = build_encoder("mobilenet_v3")
    pose = build_encoder("mobilenet_v3", num_input_images=2, all_levels=False)
    with torch.no_grad():
        depth_features = depth(torch.rand(BATCH, 3, HEIGHT, WIDTH))
        pose_features = pose(torch.rand(BATCH, 6, HEIGHT, WIDTH))
    data_path, split = tiny_kitti(work)
    args = train_args(data_path, split, work, "encoder", "--encoder", "mobilenet_v3")
    code, losses = train_once(args + ["--pose_encoder", "mobilenet_v3"])
    folder = os.path.join(work, "logs", "encoder", "models", "weights_0")
    spec = model_folder.inspect_model_folder(folder)
    encoder, _, _ = model_folder.load_depth_model(folder)
    pose_encoder, _, _ = model_folder.load_pose_model(folder)
    return {
        "depth_features": [list(f.shape) for f in depth_features],
        "pose_features": [list(f.shape) for f in pose_features],
        "num_ch_enc": list(depth.num_ch_enc),
        "feature_strides": list(depth.feature_strides),
        "train_rc": code,
        "train_losses": losses,
        "saved_encoders": [spec.encoder, spec.pose_encoder],
        "loaded": [type(encoder).__name__, type(pose_encoder).__name__],
    }


def check_dataset(work: str) -> dict:
    """An item of the new dataset against its files and camera, and a training step with it."""
    import torch
    import torchvision.transforms.functional as TF
    from PIL import Image

    from datasets import DATASETS

    root = os.path.join(work, "cityscapes")
    lines = open(os.path.join(root, "split", "train_files.txt")).read().splitlines()
    dataset = DATASETS["cityscapes_sequence"](root, lines, HEIGHT, WIDTH, [0, -1, 1, "s"], is_train=False)
    item = dataset[0]  # train/aachen/000000, frame 1, side l
    files = {0: (1, "leftImg8bit"), -1: (0, "leftImg8bit"), 1: (2, "leftImg8bit"), "s": (1, "rightImg8bit")}
    frames_equal = {}
    for frame_id, (index, kind) in files.items():
        path = os.path.join(
            root, f"{kind}_sequence", "train", CITY, f"{CITY}_{SEQUENCE}_{index:06d}_{kind}.png"
        )
        with Image.open(path) as image:
            expected = TF.to_tensor(image.convert("RGB").resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS))
        frames_equal[str(frame_id)] = torch.equal(item[("color", frame_id, 0)], expected)
    args = train_args(root, os.path.join(root, "split"), work, "dataset", "--config", "baseline")
    code, losses = train_once(args + ["--dataset", "cityscapes_sequence"])
    return {
        "frames_equal": frames_equal,
        "K": item[("K", 0)][:2, :3].tolist(),
        "stereo_T": float(item["stereo_T"][0, 3]),
        "train_rc": code,
        "train_losses": losses,
    }


CHECKS = {"total": check_total, "loss": check_loss, "encoder": check_encoder, "dataset": check_dataset}

if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)  # the same arithmetic in every process that compares totals
    check, work_dir = sys.argv[1], sys.argv[2]
    measured = CHECKS[check](work_dir)
    with open(os.path.join(work_dir, f"{check}.json"), "w") as out:
        json.dump(measured, out)
