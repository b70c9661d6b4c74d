"""Monodepth2's depth evaluation protocol: options, prediction of a test split, metrics, submission files.

``evaluate(opts)`` (``python evaluate_depth.py``) loads a model folder (this project's, the authors' or
Monodepth2's), predicts every test frame and compares it with export_gt_depth.py's ground truth; ``benchmark``
writes KITTI's submission PNGs. Options: ``EvaluationOptions``; ``--scaling camera_height``:
evaluation/camera_height_scaling.py. The protocol, step by step: docs/fidelity.md, "Evaluation"."""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from tqdm import tqdm

import options
import splits
import utils
from checkpoints import model_folder
from datasets import DATASETS, KITTIBenchmarkTestDataset, read_split
from datasets.ground_truth import ground_truth_file, load_ground_truth
from deploy import depth_graph
from evaluation import camera_height_scaling
from evaluation.metrics import DEPTH_METRIC_NAMES, MAX_EVAL_DEPTH, depth_errors_of_image
from utils.files import atomic_write, save_array, save_json

logger = logging.getLogger(__name__)

# Stereo-trained models use a nominal baseline of 0.1; KITTI's is 0.54 m.
STEREO_SCALE_FACTOR = 5.4
BENCHMARK_SIZE = (1216, 352)  # (width, height) of the KITTI depth-prediction submissions
BENCHMARK_PNG_SCALE = 256.0
POST_PROCESS_EDGE = 0.05  # Monodepth's post-processing blends the left 5 % of the image
POST_PROCESS_RAMP = 20.0
SCALINGS = ("median", "camera_height")  # --scaling: Monodepth2's per-image median ratio, or the road's plane
PREFERRED_WORKERS = 4  # default loader processes, at most the CPUs this process may use


@dataclass
class EvaluationOptions:
    """What ``evaluate`` reads, by evaluate_depth.py's option names and with its defaults: for callers that
    evaluate without a command line (the demo)."""

    data_path: str = os.path.join(utils.PROJECT_DIR, "kitti_data")
    load_weights_folder: str | None = None
    eval_split: str = "eigen"
    splits_dir: str | None = None
    gt_depths: str | None = None
    eval_mono: bool = False
    eval_stereo: bool = False
    disable_median_scaling: bool = False
    pred_depth_scale_factor: float = 1.0
    scaling: str = SCALINGS[0]
    camera_height: float | None = None
    ground_from: str | None = None
    ground_classes: list[str] | None = None
    camera_pitch: float | None = None
    camera_roll: float | None = None
    garg_crop: bool | None = None
    post_process: bool = False
    save_pred_disps: bool = False
    ext_disp_to_eval: str | None = None
    eval_eigen_to_benchmark: bool = False
    no_eval: bool = False
    output_json: str | None = None
    img_ext: str = "png"
    dataset: str = "kitti"
    batch_size: int = 16
    num_workers: int | None = None
    device: str | None = None


def split_name(eval_split: str) -> str:
    """A short name for file names: the split, or the custom folder's name."""
    return os.path.basename(os.path.normpath(eval_split)) if os.path.isdir(eval_split) else eval_split


def post_process_disparity(l_disp: np.ndarray, r_disp: np.ndarray) -> np.ndarray:
    """Monodepth's blend of a prediction (N, h, w) with that of the flipped image (flipped back)."""
    _, h, w = l_disp.shape
    m_disp = 0.5 * (l_disp + r_disp)
    ramp, _ = np.meshgrid(np.linspace(0, 1, w), np.linspace(0, 1, h))
    l_mask = (1.0 - np.clip(POST_PROCESS_RAMP * (ramp - POST_PROCESS_EDGE), 0, 1))[None, ...]
    r_mask = l_mask[:, :, ::-1]
    return r_mask * l_disp + l_mask * r_disp + (1.0 - l_mask - r_mask) * m_disp


@torch.no_grad()
def predict_disparities(
    encoder: torch.nn.Module,
    decoder: torch.nn.Module,
    loader: DataLoader,
    spec: model_folder.ModelSpec,
    device: torch.device,
    post_process: bool = False,
    desc: str = "predicting",
    on_batch: Callable | None = None,
) -> np.ndarray:
    """Scaled disparities (N, h, w) float32 of every image the loader yields (key ``("color", 0, 0)``).

    ``on_batch(disparities, seg_logits or None, inputs)`` sees each batch's (post-processed) disparities with
    the segmentation logits of the unflipped images (models with a segmentation head)."""
    segmentation = on_batch is not None and spec.semantics
    # scale 0 only, as predict.py
    graph = depth_graph.DepthGraph(
        encoder, decoder, spec.min_depth, spec.max_depth, segmentation=segmentation
    )
    predictions = []
    for inputs in tqdm(loader, desc=desc, unit="batch"):
        images = inputs[("color", 0, 0)].to(device)
        if post_process:
            images = torch.cat([images, torch.flip(images, [3])], 0)
        outputs = graph(images)
        scaled = outputs[0][:, 0].cpu().numpy()
        if post_process:
            n = scaled.shape[0] // 2
            scaled = post_process_disparity(scaled[:n], scaled[n:, :, ::-1])
        if on_batch is not None:
            on_batch(scaled, outputs[-1][: len(scaled)].cpu().numpy() if segmentation else None, inputs)
        predictions.append(scaled.astype(np.float32))
    return np.concatenate(predictions)


def test_dataset_class(benchmark: bool, dataset: str = "kitti") -> type:
    """The dataset of a test split: the depth benchmark's test images, or frames in a --dataset layout."""
    return KITTIBenchmarkTestDataset if benchmark else DATASETS[dataset]


def load_predictions(path: str, option: str = "--ext_disp_to_eval") -> np.ndarray:
    """Disparities (N, h, w) of an external predictions file (``option`` names it in errors): a plain float
    .npy (never unpickled), finite."""
    if not os.path.isfile(path):
        raise utils.MissingFileError(f"{option} {path}: file not found")
    try:
        disps = np.load(path, allow_pickle=False)
    except ValueError as err:  # an object array, or not a .npy file at all
        raise utils.InputError(f"{option} {path}: not a plain .npy array of disparities ({err})") from None
    except (OSError, EOFError) as err:
        raise utils.InputError(f"{option} {path}: cannot read it ({err})") from None
    if not isinstance(disps, np.ndarray):
        raise utils.InputError(
            f"{option} {path}: an .npz archive; expected one .npy array (N, height, width)"
        )
    if disps.ndim != 3 or disps.dtype.kind != "f" or 0 in disps.shape:
        raise utils.InputError(
            f"{option} {path}: expected float disparities of shape (N, height, width), "
            f"got {disps.dtype} of shape {disps.shape}"
        )
    if not np.isfinite(disps).all():
        raise utils.InputError(f"{option} {path}: holds non-finite disparities (NaN or infinity)")
    return disps


def test_loader(
    data_path: str,
    test_file: str,
    spec: model_folder.ModelSpec,
    benchmark: bool,
    img_ext: str,
    batch_size: int,
    num_workers: int,
    dataset: str = "kitti",
) -> DataLoader:
    """Frames of a test split at the model's size, in file order (``dataset``: a --dataset layout)."""
    dataset_class = test_dataset_class(benchmark, dataset)
    if not os.path.isdir(data_path):
        raise utils.MissingFileError(f"--data_path {data_path} is not a folder")
    dataset = dataset_class(
        data_path,
        read_split(test_file, dataset_class.NEEDS_SIDE),
        spec.height,
        spec.width,
        [0],
        1,
        is_train=False,
        img_ext=img_ext,
        load_depth=False,
    )
    return DataLoader(dataset, batch_size, shuffle=False, num_workers=num_workers, drop_last=False)


def default_workers(requested: int | None) -> int:
    """Loader processes: as requested, else PREFERRED_WORKERS capped by the CPUs this process may use
    (torch warns of more workers than CPUs, and they only contend)."""
    return min(PREFERRED_WORKERS, options.available_cpus()) if requested is None else requested


def evaluate_predictions(
    pred_disps: np.ndarray,
    gt_depths: Sequence[np.ndarray],
    garg_crop: bool,
    median_scaling: bool,
    scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-image metrics (M, 7) and median ratios of images with valid ground truth."""
    errors, ratios = [], []
    for index, (pred, gt) in enumerate(zip(pred_disps, gt_depths)):
        result = depth_errors_of_image(
            torch.from_numpy(np.asarray(gt, dtype=np.float32)),
            torch.from_numpy(np.ascontiguousarray(pred)),
            garg_crop,
            median_scaling,
            scale,
        )
        if result is not None and not torch.isfinite(result[0]).all():
            raise utils.InputError(
                f"prediction {index} (line {index + 1} of the test split): its depth "
                f"metrics are not finite: disparities of 0 (infinite depth) over most of its "
                f"valid pixels? A disparity must be positive"
            )
        if result is not None:
            errors.append(result[0].numpy())
            ratios.append(result[1].item())
    return np.array(errors), np.array(ratios)


def write_benchmark_predictions(pred_disps: np.ndarray, folder: str) -> None:
    """KITTI depth-prediction submission: uint16 PNG (depth x 256) at 1216x352, named by index."""
    os.makedirs(folder, exist_ok=True)
    for idx, disp in enumerate(tqdm(pred_disps, desc="benchmark PNGs", unit="image")):
        resized = torch.nn.functional.interpolate(
            torch.from_numpy(np.ascontiguousarray(disp))[None, None],
            size=BENCHMARK_SIZE[::-1],
            mode="bilinear",
            align_corners=False,
        )[0, 0].numpy()  # as cv2.resize
        depth = np.clip(STEREO_SCALE_FACTOR / resized, 0, MAX_EVAL_DEPTH)
        path = os.path.join(folder, f"{idx:010d}.png")
        with atomic_write(path) as tmp:
            Image.fromarray(np.uint16(depth * BENCHMARK_PNG_SCALE)).save(tmp, format="PNG")


def format_table(metrics: dict) -> str:
    """Monodepth2's two-line metrics table."""
    names = DEPTH_METRIC_NAMES
    return (
        "  "
        + ("{:>8} | " * len(names)).format(*names)
        + "\n"
        + ("&{: 8.3f}  " * len(names)).format(*[metrics[n] for n in names])
        + "\\\\"
    )


def external_predictions(opts: argparse.Namespace, test_file: str, num_lines: int) -> np.ndarray:
    """The disparities of --ext_disp_to_eval (the eigen_benchmark frames of them with
    --eval_eigen_to_benchmark), one per line of the test file."""
    pred_disps = load_predictions(opts.ext_disp_to_eval)
    if opts.eval_eigen_to_benchmark:
        ids = np.load(splits.split_file("benchmark/eigen_to_benchmark_ids.npy", opts.splits_dir))
        if len(ids) and ids.max() >= len(pred_disps):
            raise utils.InputError(
                f"--eval_eigen_to_benchmark: {opts.ext_disp_to_eval} holds {len(pred_disps)} "
                f"predictions, too few for the eigen split (index {int(ids.max())} is needed)"
            )
        pred_disps = pred_disps[ids]
    if len(pred_disps) != num_lines:
        raise utils.InputError(
            f"{opts.ext_disp_to_eval} holds {len(pred_disps)} predictions but "
            f"{test_file} lists {num_lines} frames"
        )
    return pred_disps


def evaluate(opts: EvaluationOptions | argparse.Namespace) -> dict | None:
    """Run the evaluation that ``opts`` (evaluate_depth.py's options) describes; return the metrics (None when
    not evaluating)."""
    name = split_name(opts.eval_split)
    camera_height_scaling.check_camera_height_scaling(opts)
    benchmark = opts.eval_split == "benchmark"
    test_file = splits.test_files(opts.eval_split, opts.splits_dir)
    num_lines = len(
        read_split(test_file, test_dataset_class(benchmark, opts.dataset).NEEDS_SIDE, need_lines=True)
    )
    device = utils.pick_device(opts.device)

    pred_disps = None
    if opts.ext_disp_to_eval is None:
        if not opts.load_weights_folder:
            raise utils.InputError("give --load_weights_folder (or --ext_disp_to_eval)")
        encoder, decoder, spec = model_folder.load_depth_model(opts.load_weights_folder, device)
        logger.info(
            "%s: %s layout, encoder %s, input %dx%d (height x width), semantics %s, CMA layers %s",
            opts.load_weights_folder,
            spec.layout,
            spec.encoder,
            spec.height,
            spec.width,
            spec.semantics,
            list(spec.cma_layers),
        )
        loader = test_loader(
            opts.data_path,
            test_file,
            spec,
            benchmark,
            opts.img_ext,
            opts.batch_size,
            default_workers(opts.num_workers),
            opts.dataset,
        )
        out_dir = opts.load_weights_folder
    else:
        pred_disps = external_predictions(opts, test_file, num_lines)
        out_dir = os.path.dirname(os.path.abspath(opts.ext_disp_to_eval))
    evaluating = not (opts.no_eval or benchmark)
    gt_file = ground_truth_file(opts.gt_depths, opts.eval_split)
    gt_depths = load_ground_truth(gt_file, num_lines, test_file) if evaluating else None  # before predicting
    scales = None
    if pred_disps is None:
        if opts.scaling == "camera_height":
            scales = camera_height_scaling.FrameScales(loader.dataset, spec, opts)
        pred_disps = predict_disparities(
            encoder, decoder, loader, spec, device, opts.post_process, on_batch=scales
        )

    if opts.save_pred_disps:
        path = os.path.join(out_dir, f"disps_{name}_split.npy")
        save_array(pred_disps, path)
        logger.info("saved predicted disparities to %s", path)
    if opts.no_eval:
        return None
    if benchmark:
        folder = os.path.join(out_dir, "benchmark_predictions")
        write_benchmark_predictions(pred_disps, folder)
        logger.info("wrote the benchmark submission PNGs to %s (no ground truth: not evaluating)", folder)
        return None

    median_scaling = not (opts.eval_stereo or opts.disable_median_scaling)
    scale = STEREO_SCALE_FACTOR if opts.eval_stereo else opts.pred_depth_scale_factor
    garg_crop = opts.eval_split == "eigen" if opts.garg_crop is None else opts.garg_crop
    report = None
    if scales is not None:
        median_scaling = False
        errors, report = camera_height_scaling.evaluate_camera_height_scaling(
            pred_disps, gt_depths, garg_crop, scales.estimates, scales.grounds
        )
    else:
        errors, ratios = evaluate_predictions(pred_disps, gt_depths, garg_crop, median_scaling, scale)
    if len(errors) == 0:
        raise utils.InputError(f"no frame of {gt_file} has valid ground truth")
    metrics = dict(zip(DEPTH_METRIC_NAMES, errors.mean(0).tolist()))
    result = {
        "split": name,
        "frames": int(len(errors)),
        "median_scaling": median_scaling,
        "depth_scale": scale,
        "garg_crop": garg_crop,
        "post_process": opts.post_process,
        "metrics": metrics,
    }
    if median_scaling:
        med = float(np.median(ratios))
        result["median_ratio"] = {"median": med, "std": float(np.std(ratios / med))}
        logger.info("median scaling ratios: median %.3f, std %.3f", med, result["median_ratio"]["std"])
    if report is not None:
        result.update(scaling="camera_height", camera_height_scaling=report)
    print(format_table(metrics))
    if report is not None:
        print(camera_height_scaling.camera_height_summary(report))
    # each protocol its own record: the median-scaled one keeps its name, the camera-height one is named so
    json_suffix = "_camera_height" if report is not None else ""
    json_path = opts.output_json or os.path.join(out_dir, f"metrics_{name}{json_suffix}.json")
    save_json(result, json_path)
    logger.info("metrics written to %s", json_path)
    return metrics
