"""Monodepth2's depth evaluation protocol: options, prediction of a test split, metrics, submission files.

``evaluate(opts)`` (what ``python evaluate_depth.py`` runs) loads a model
folder of this project, of the authors or of Monodepth2 (recognised from its keys), predicts the
disparity of every test frame, and compares it with the ground truth that export_gt_depth.py wrote:
the disparity is resized bilinearly to the ground truth's size, depth = 1 / disparity, scaled by
each image's median ratio (mono) or by 5.4 (``--eval_stereo``), clamped to [1e-3, 80]. ``eigen``
evaluates 1e-3 < gt < 80 inside the Garg crop; ``eigen_benchmark`` every gt > 0. ``benchmark``
writes the KITTI submission PNGs instead. The metrics are printed and written as JSON.
"""

from __future__ import annotations

import argparse
import logging
import os
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
from datasets.camera import check_camera_fits
from deploy import camera_height, depth_graph
from evaluation.ground_truth import ground_truth_file, load_ground_truth
from evaluation.metrics import DEPTH_METRIC_NAMES, MAX_EVAL_DEPTH, depth_errors_of_image, evaluated_depths
from fileio.atomic import atomic_write, save_array, save_json

logger = logging.getLogger(__name__)

# Stereo-trained models use a nominal baseline of 0.1; KITTI's is 0.54 m.
STEREO_SCALE_FACTOR = 5.4
BENCHMARK_SIZE = (1216, 352)  # (width, height) of the KITTI depth-prediction submissions
BENCHMARK_PNG_SCALE = 256.0
POST_PROCESS_EDGE = 0.05  # Monodepth's post-processing blends the left 5 % of the image
POST_PROCESS_RAMP = 20.0
SCALINGS = ("median", "camera_height")  # --scaling: Monodepth2's per-image median ratio, or the road's plane
SCALE_ERROR_PERCENTILE = 90  # --scaling camera_height reports the scale error's median and this percentile
LISTED_REFUSALS = 3  # frames without a camera-height scale named in the log
PREFERRED_WORKERS = 4  # default loader processes, at most the CPUs this process may use


def build_parser() -> argparse.ArgumentParser:
    """Evaluation options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=utils.HelpFormatter)
    parser.add_argument(
        "--data_path",
        default=os.path.join(utils.PROJECT_DIR, "kitti_data"),
        help="KITTI raw root (for benchmark: the test_depth_prediction_anonymous folder)",
    )
    parser.add_argument(
        "--load_weights_folder", help="model folder (this project's, the authors' or Monodepth2's)"
    )
    parser.add_argument(
        "--eval_split",
        default="eigen",
        help="eigen, eigen_benchmark, benchmark, or a folder with test_files.txt (and gt_depths.npz)",
    )
    parser.add_argument(
        "--splits_dir", default=None, help="local copy of the split files (default: download)"
    )
    parser.add_argument(
        "--gt_depths", default=None, help="ground-truth file (default: splits/<split>/gt_depths.npz)"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--eval_mono", action="store_true", help="median scaling per image (the default)")
    mode.add_argument("--eval_stereo", action="store_true", help="no median scaling; depths x 5.4")
    parser.add_argument("--disable_median_scaling", action="store_true", help="no per-image median scaling")
    parser.add_argument(
        "--pred_depth_scale_factor",
        type=options.positive_float,
        default=1.0,
        help="multiply predicted depths",
    )
    parser.add_argument(
        "--scaling",
        default=SCALINGS[0],
        choices=SCALINGS,
        help="mono models: median: each image scaled by its ground truth's median ratio "
        "(Monodepth2's protocol); camera_height: each image scaled by the model's own "
        "road plane and --camera_height, no ground truth used (docs/metric_depth.md); "
        "reports the ratio of that scale to the median one",
    )
    parser.add_argument(
        "--camera_height",
        type=camera_height.camera_height_option,
        default=None,
        metavar="METRES",
        help="--scaling camera_height: the camera's height above the road (KITTI: 1.65); "
        "default with --dataset folders: each sequence's camera_height "
        "(intrinsics.json)",
    )
    camera_height.add_ground_options(parser)
    parser.add_argument(
        "--garg_crop",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Garg crop and 1e-3 < gt < 80 (default: on for eigen, off otherwise)",
    )
    parser.add_argument(
        "--post_process", action="store_true", help="average with the flipped image's prediction"
    )
    parser.add_argument(
        "--save_pred_disps", action="store_true", help="save disparities as disps_<split>_split.npy"
    )
    parser.add_argument("--ext_disp_to_eval", default=None, help="evaluate disparities from this .npy file")
    parser.add_argument(
        "--eval_eigen_to_benchmark",
        action="store_true",
        help="the --ext_disp_to_eval file is in eigen order: pick the eigen_benchmark frames",
    )
    parser.add_argument("--no_eval", action="store_true", help="only predict (and save)")
    parser.add_argument(
        "--output_json",
        default=None,
        help="metrics file (default: <folder>/metrics_<split>.json; with --scaling camera_height "
        "<folder>/metrics_<split>_camera_height.json, beside the median-scaled one)",
    )
    parser.add_argument("--img_ext", default="png", choices=["png", "jpg"], help="frame file type")
    parser.add_argument(
        "--dataset",
        default="kitti",
        choices=sorted(DATASETS),
        help="layout of --data_path (folders: your own sequences, docs/own_data.md)",
    )
    parser.add_argument("--batch_size", type=options.positive_int, default=16, help="images per forward pass")
    parser.add_argument(
        "--num_workers",
        type=options.non_negative_int,
        default=None,
        help=f"data-loading processes (default: {PREFERRED_WORKERS}, at most the CPUs this process may use)",
    )
    utils.add_device_option(parser)
    return parser


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


# -- --scaling camera_height --------------------------------------------------------------------------
def check_camera_height_scaling(opts: argparse.Namespace) -> None:
    """--scaling camera_height needs the model (its segmentation of each frame), ground truth, no other
    scaling, and a camera height (given, or each folders sequence's); the ground options need it."""
    camera_height.check_dependent_options(opts, opts.scaling == "camera_height", "--scaling camera_height")
    if opts.scaling != "camera_height":
        if opts.camera_height is not None:
            raise utils.InputError(
                "--camera_height is for --scaling camera_height (the default scaling is median)"
            )
        return
    if opts.ext_disp_to_eval:
        raise utils.InputError(
            "--scaling camera_height needs the model's segmentation of every frame: give "
            "--load_weights_folder instead of --ext_disp_to_eval"
        )
    if opts.eval_stereo or opts.disable_median_scaling:
        raise utils.InputError(
            "--scaling camera_height replaces median scaling: drop --eval_stereo and --disable_median_scaling"
        )
    if opts.eval_split == "benchmark" or opts.no_eval:
        raise utils.InputError(
            "--scaling camera_height scales the evaluated depths: it needs ground truth "
            "(not --eval_split benchmark or --no_eval)"
        )
    if opts.camera_height is None and opts.dataset != "folders":
        raise utils.InputError(
            "--scaling camera_height needs --camera_height METRES (KITTI's camera is 1.65 m above the road)"
        )


def camera_heights(dataset, given: float | None) -> list[float]:
    """The camera height of every test item: ``given``, else its sequence's (--dataset folders)."""
    if given is not None:
        return [given] * len(dataset)
    heights = []
    for entry in dataset.entries:
        camera = dataset.sequence(entry.folder).camera
        if camera.camera_height is None:
            raise utils.InputError(
                f"{camera.source}: no camera_height (metres above the road) for --scaling "
                f"camera_height: add it there, or give --camera_height"
            )
        heights.append(camera.camera_height)
    return heights


def check_metric_cameras(dataset) -> None:
    """--dataset folders: each sequence's intrinsics must be fit for metres (``check_camera_fits``, the one
    validator: the frame size named in the file, a road camera's field of view); its warnings logged."""
    if not hasattr(dataset, "sequence"):
        return  # KITTI: its calibration files, for its frames
    for folder in sorted({entry.folder for entry in dataset.entries}):
        sequence = dataset.sequence(folder)
        for problem in check_camera_fits(
            sequence.camera, sequence.width, sequence.height, sequence.folder, metric=True
        ):
            logger.warning("%s (%s): %s", sequence.camera.source, sequence.folder, problem)


def predict_with_camera_height_scales(
    encoder: torch.nn.Module,
    decoder: torch.nn.Module,
    loader: DataLoader,
    spec: model_folder.ModelSpec,
    device: torch.device,
    opts: argparse.Namespace,
) -> tuple[np.ndarray, list, list]:
    """Disparities (N, h, w), each frame's camera-height scale (a ScaleEstimate, or why it has none) and the
    ground pixels (h, w) it was estimated from."""
    heights = camera_heights(loader.dataset, opts.camera_height)
    check_metric_cameras(loader.dataset)
    settings = camera_height.ground_settings(opts, heights[0])
    if settings.source == "segmentation" and not spec.semantics:
        raise utils.InputError(
            f"{opts.load_weights_folder} has no segmentation head to find the road with: "
            f"give --ground_from lowest_band (the bottom of the image taken as road)"
        )
    estimates: list = []
    grounds: list = []

    def estimate(disps: np.ndarray, seg_logits: np.ndarray | None, inputs: dict) -> None:
        for j, disp in enumerate(disps):
            logits = None if seg_logits is None else seg_logits[j]
            grounds.append(settings.ground(disp, logits, (spec.min_depth, spec.max_depth)))  # computed once
            try:
                estimates.append(
                    settings.estimate(
                        disp,
                        logits,
                        inputs[("K", 0)][j].numpy(),
                        heights[len(estimates)],
                        ground=grounds[-1],
                    )
                )
            except camera_height.GroundNotVisible as err:
                estimates.append(str(err))

    pred_disps = predict_disparities(
        encoder, decoder, loader, spec, device, opts.post_process, on_batch=estimate
    )
    return pred_disps, estimates, grounds


def ground_median_scale(
    gt: torch.Tensor, pred: torch.Tensor, ground: np.ndarray, garg_crop: bool
) -> float | None:
    """The ground truth's median scale over the ground pixels (``ground`` (h, w) at the prediction's size)
    alone: what a perfect estimate from the road would give; None where no ground pixel has ground truth."""
    mask = torch.from_numpy(np.ascontiguousarray(ground, dtype=np.float32))[None, None]
    on_ground = torch.nn.functional.interpolate(mask, size=gt.shape[-2:], mode="nearest")[0, 0] > 0
    result = evaluated_depths(torch.where(on_ground, gt, torch.zeros_like(gt)), pred, garg_crop, True, 1.0)
    return None if result is None else result[3].item()


def evaluate_camera_height_scaling(
    pred_disps: np.ndarray,
    gt_depths: Sequence[np.ndarray],
    garg_crop: bool,
    estimates: Sequence,
    grounds: Sequence[np.ndarray] | None = None,
) -> tuple[np.ndarray, dict]:
    """Per-image metrics (M, 7) with each image scaled by its camera-height estimate (frames without one: the
    median of the others'), and the report: each estimate's ratio to the ground truth's median scale, over
    the image and (with ``grounds``, each frame's ground pixels) over the ground alone, which separates
    the estimate's error from the model's placing of its road relative to the rest of the scene."""
    scales = [e.scale for e in estimates if isinstance(e, camera_height.ScaleEstimate)]
    refusals = [(i, e) for i, e in enumerate(estimates) if isinstance(e, str)]
    if not scales:
        raise camera_height.GroundNotVisible(
            f"no test frame shows enough road for a camera-height scale (frame 0: {refusals[0][1]})"
        )
    fallback = float(np.median(scales))
    errors, ratios, ground_ratios, per_frame = [], [], [], []
    for i, (pred, gt, estimate) in enumerate(zip(pred_disps, gt_depths, estimates)):
        per_frame.append(
            {"scale": None, "reason": estimate}
            if isinstance(estimate, str)
            else {
                "scale": estimate.scale,
                "inlier_share": estimate.inlier_share,
                "pixels_used": estimate.pixels_used,
                "pitch_degrees": estimate.pitch_degrees,
                "roll_degrees": estimate.roll_degrees,
            }
        )
        gt_t = torch.from_numpy(np.asarray(gt, dtype=np.float32))
        pred_t = torch.from_numpy(np.ascontiguousarray(pred))
        own = isinstance(estimate, camera_height.ScaleEstimate)
        scale = estimate.scale if own else fallback
        result = depth_errors_of_image(gt_t, pred_t, garg_crop, False, scale)
        if result is None:
            continue
        errors.append(result[0].numpy())
        if own:  # the ground truth's median scale of the same pixels (Monodepth2's ratio)
            median_scale = evaluated_depths(gt_t, pred_t, garg_crop, True, 1.0)[3].item()
            ratios.append(scale / median_scale)
            per_frame[-1].update(gt_median_scale=median_scale, ratio_to_gt_median=ratios[-1])
            ground_scale = (
                None if grounds is None else ground_median_scale(gt_t, pred_t, grounds[i], garg_crop)
            )
            if ground_scale is not None:
                ground_ratios.append(scale / ground_scale)
                per_frame[-1].update(
                    gt_ground_median_scale=ground_scale, ratio_to_gt_ground_median=ground_ratios[-1]
                )
    ratios = np.array(ratios)
    scale_errors = np.abs(ratios - 1)
    for i, reason in refusals[:LISTED_REFUSALS]:
        logger.warning(
            "test frame %d: no camera-height scale (%s): scaled by the median of the others", i, reason
        )
    found = [e for e in estimates if not isinstance(e, str)]
    report = {
        "camera_height_m": sorted({e.camera_height for e in found}),
        "ground": found[0].ground,
        "ground_orientation": found[0].orientation,
        "frames_estimated": len(scales),
        "frames_refused": len(refusals),
        "fallback_scale": fallback,
        "ratio_to_gt_median": {"median": float(np.median(ratios)), "std": float(np.std(ratios))},
        "scale_error": {
            "median": float(np.median(scale_errors)),
            f"p{SCALE_ERROR_PERCENTILE}": float(np.percentile(scale_errors, SCALE_ERROR_PERCENTILE)),
        },
        "inlier_share_median": float(np.median([e.inlier_share for e in found])),
        "ratio_to_gt_ground_median": (
            {"median": float(np.median(ground_ratios)), "std": float(np.std(ground_ratios))}
            if ground_ratios
            else None
        ),
        "per_frame": per_frame,
    }
    return np.array(errors), report


def camera_height_summary(report: dict) -> str:
    """The lines printed beside the metrics table (as Monodepth2 prints its median-scaling ratios)."""
    error = report["scale_error"]
    ratio = report["ratio_to_gt_median"]
    lines = [
        f" camera-height scale / ground-truth median scale | med: {ratio['median']:0.3f} | "
        f"std: {ratio['std']:0.3f} | scale error med: {error['median']:.1%} | "
        f"p{SCALE_ERROR_PERCENTILE}: {error[f'p{SCALE_ERROR_PERCENTILE}']:.1%} | frames estimated: "
        f"{report['frames_estimated']} of {report['frames_estimated'] + report['frames_refused']}"
    ]
    ground = report.get("ratio_to_gt_ground_median")
    if ground is not None:
        lines.append(
            f" the same on the ground pixels alone | med: {ground['median']:0.3f} | std: {ground['std']:0.3f}"
        )
    return "\n".join(lines)


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


def evaluate(opts: argparse.Namespace) -> dict | None:
    """Run the evaluation that ``opts`` describes; return the metrics (None when not evaluating)."""
    name = split_name(opts.eval_split)
    check_camera_height_scaling(opts)
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
    estimates = None
    if pred_disps is None and opts.scaling == "camera_height":
        pred_disps, estimates, grounds = predict_with_camera_height_scales(
            encoder, decoder, loader, spec, device, opts
        )
    if pred_disps is None:
        pred_disps = predict_disparities(encoder, decoder, loader, spec, device, opts.post_process)

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
    if estimates is not None:
        median_scaling = False
        errors, report = evaluate_camera_height_scaling(pred_disps, gt_depths, garg_crop, estimates, grounds)
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
        print(camera_height_summary(report))
    # each protocol its own record: the median-scaled one keeps its name, the camera-height one is named so
    json_suffix = "_camera_height" if report is not None else ""
    json_path = opts.output_json or os.path.join(out_dir, f"metrics_{name}{json_suffix}.json")
    save_json(result, json_path)
    logger.info("metrics written to %s", json_path)
    return metrics
