"""Command-line options of training (and the model options shared by evaluation and tools).

Defaults are the authors' (docs/fidelity.md). ``--config`` picks one of the
Table 2 configurations and sets the defaults of the options it implies; an option given
explicitly always wins.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from typing import Callable, Sequence

import splits
import utils
from datasets import DATASETS, NUM_CLASSES
from networks import encoders
from networks.resnet_encoder import NETWORK_STRIDE
from utils.files import atomic_write

# Table 2 of the paper's supplementary material configurations: what each one turns on.
CONFIGS: dict[str, dict] = {
    "baseline": {"semantic_weight": 0.0, "sgt_weight": 0.0, "cma_layers": []},
    "semantics": {"semantic_weight": 0.3, "sgt_weight": 0.0, "cma_layers": []},
    "cma": {"semantic_weight": 0.3, "sgt_weight": 0.0, "cma_layers": [0, 1, 2]},
    "sgt": {"semantic_weight": 0.3, "sgt_weight": 0.1, "cma_layers": []},
    "full": {"semantic_weight": 0.3, "sgt_weight": 0.1, "cma_layers": [0, 1, 2]},
}
SCALE_WEIGHTINGS = ("fsre", "monodepth2")
RESUME_LATEST = "latest"  # --resume without a path
NETWORK_NAMES = (
    "encoder",
    "decoder",
    "pose_encoder",
    "pose",
)  # FSREModel.networks(): the files of a model folder
# The smallest image side the networks take: the decoders pad their deepest feature (at the stride of 32)
# by reflection, which needs 2 pixels, so 2 x 32 = 64 (ResNet and timm encoders alike; 32 gives 1 pixel).
MIN_IMAGE_SIDE = 2 * NETWORK_STRIDE
MAX_SEED = 2**62  # well inside the 64-bit seeds of NumPy and torch, also after adding ranks and epochs
AUTHORS_WORKERS = 12  # the authors' --num_workers, used where this process may use that many CPUs
DEMO_VARIANTS = (
    "mono",
    "stereo",
)  # train.py --demo: the paper's monocular model, or a stereo-assisted variant


def image_side_error(value: int) -> str | None:
    """Why ``value`` cannot be an image side (height or width) of the networks, or None when it can."""
    if value <= 0 or value % NETWORK_STRIDE:
        return (
            f"must be a positive multiple of {NETWORK_STRIDE} "
            f"(the encoder downsamples by {NETWORK_STRIDE}), got {value}"
        )
    if value < MIN_IMAGE_SIDE:
        return (
            f"must be at least {MIN_IMAGE_SIDE}: the decoders pad the deepest feature (1/{NETWORK_STRIDE} of "
            f"the image) by reflection, which needs 2 pixels, got {value}"
        )
    return None


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity where the system says, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_workers(requested: int | None, preferred: int = AUTHORS_WORKERS) -> int:
    """Loader processes: as requested, else ``preferred`` capped by the CPUs this process may use (more
    workers than CPUs only contend, and torch warns of them; the workers do not change the data)."""
    return min(preferred, available_cpus()) if requested is None else requested


def check_image_size(height: int, width: int) -> None:
    """Raise InputError unless both sides are multiples of the encoder's stride (32) the networks take."""
    for name, value in (("height", height), ("width", width)):
        problem = image_side_error(value)
        if problem:
            raise utils.InputError(f"{name} {problem}")


def _number(value: str, kind: type, minimum: float, inclusive: bool) -> int | float:
    """``value`` as an int or a finite float of at least (or above) ``minimum``; ArgumentTypeError
    otherwise."""
    try:
        number = kind(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {value!r}"
        ) from None
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {value!r}")
    if number < minimum or (number == minimum and not inclusive):
        raise argparse.ArgumentTypeError(
            f"must be {'at least' if inclusive else 'greater than'} {minimum}, got {value}"
        )
    return number


def positive_int(value: str) -> int:
    """argparse type: an integer >= 1 (counts, frequencies, sizes)."""
    return _number(value, int, 1, inclusive=True)


def folder_path(value: str) -> str:
    """argparse type of a folder option: a non-empty path (an empty one once silently meant the current
    folder, or the default)."""
    if not value.strip():
        raise argparse.ArgumentTypeError("an empty path: name a folder")
    return value


def non_negative_int(value: str) -> int:
    """argparse type: an integer >= 0 (worker processes, optional counts)."""
    return _number(value, int, 0, inclusive=True)


def positive_float(value: str) -> float:
    """argparse type: a finite number > 0 (depths, learning rates, factors)."""
    return _number(value, float, 0, inclusive=False)


def non_negative_float(value: str) -> float:
    """argparse type: a finite number >= 0 (loss weights, margins)."""
    return _number(value, float, 0, inclusive=True)


def seed_value(value: str) -> int:
    """argparse type of --seed: NumPy and torch take seeds of 0 .. 2^63 - 1 (seed + rank + epoch stay
    within)."""
    number = non_negative_int(value)
    if number > MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_SEED}, got {value}")
    return number


def image_side(value: str) -> int:
    """argparse type of --height and --width (of training and of every tool that builds the networks)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None
    problem = image_side_error(number)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return number


def build_parser() -> argparse.ArgumentParser:
    """The training parser, options grouped as in ``--help``."""
    parser = argparse.ArgumentParser(
        description="Train FSRE-Depth (or any Table 2 configuration) on KITTI or data in its layout.",
        formatter_class=utils.HelpFormatter,
    )

    g = parser.add_argument_group("data")
    g.add_argument(
        "--data_path",
        default=os.path.join(utils.PROJECT_DIR, "kitti_data"),
        help="root of the KITTI raw data (Monodepth2's layout)",
    )
    g.add_argument(
        "--seg_path",
        default=None,
        help="root of the segmentation pseudo-labels; default <data_path>/segmentation",
    )
    g.add_argument(
        "--split",
        default="eigen_zhou",
        help=f"training split: one of {', '.join(splits.TRAIN_SPLITS)}, or a folder holding "
        "train_files.txt and val_files.txt",
    )
    g.add_argument(
        "--splits_dir",
        default=None,
        help="folder with local copies of the split files; default: the project's cache, "
        "filled from Monodepth2's repository on first use",
    )
    g.add_argument(
        "--dataset",
        default="kitti",
        choices=sorted(DATASETS),
        help="layout of --data_path: KITTI raw, KITTI odometry, the KITTI depth benchmark, or folders of "
        "your own image sequences (docs/own_data.md)",
    )
    g.add_argument(
        "--img_ext",
        default="png",
        choices=["png", "jpg"],
        help="frame file type (the authors' released numbers come from PNG frames)",
    )
    g.add_argument("--height", type=image_side, default=192, help="input image height")
    g.add_argument("--width", type=image_side, default=640, help="input image width")
    g.add_argument(
        "--num_workers",
        type=non_negative_int,
        default=None,
        help=f"data-loading processes per GPU process (default: the authors' {AUTHORS_WORKERS}, at most the "
        "CPUs this process may use; opt.json records the number used)",
    )

    g = parser.add_argument_group("model")
    g.add_argument(
        "--config",
        default="full",
        choices=sorted(CONFIGS),
        help="Table 2 configuration: sets the defaults of --semantic_weight, --sgt_weight, --cma_layers",
    )
    g.add_argument(
        "--encoder",
        default=None,
        metavar="NAME",
        help=f"depth encoder, shared with the segmentation decoder: "
        f"{', '.join(encoders.RESNET_NAMES)} (torchvision's; default "
        f"{encoders.DEFAULT_ENCODER}, the authors') or timm:NAME, any timm model with "
        "multi-scale features (pip install -r requirements/timm.txt; docs/encoders.md)",
    )
    g.add_argument(
        "--num_layers",
        type=int,
        default=None,
        choices=[18, 34, 50, 101, 152],
        help="ResNet depth: --num_layers N is --encoder resnetN (and --pose_encoder resnetN)",
    )
    g.add_argument(
        "--pose_encoder",
        default=None,
        metavar="NAME",
        help="pose encoder, named as --encoder; default: the depth encoder when it is a ResNet "
        f"(as --num_layers always did), {encoders.DEFAULT_ENCODER} for a timm encoder",
    )
    g.add_argument(
        "--weights_init",
        default="pretrained",
        choices=["pretrained", "scratch"],
        help="ImageNet-initialised encoders (torchvision's or timm's weights) or random ones",
    )
    g.add_argument(
        "--cma_layers",
        type=int,
        nargs="*",
        default=CONFIGS["full"]["cma_layers"],
        help="the paper's CMA layers l (0 = 1/16 scale .. 4 = full scale); the authors' "
        "--cma_layers 3 2 1 is l = 0 1 2. Empty: no CMA",
    )
    g.add_argument("--num_heads", type=positive_int, default=4, help="CMA heads")
    g.add_argument("--cma_ratio", type=positive_int, default=2, help="CMA embedding ratio r (E = heads·C·r)")
    g.add_argument(
        "--num_classes", type=positive_int, default=19, help="segmentation classes (Cityscapes train ids)"
    )
    g.add_argument("--scales", type=int, nargs="+", default=[0, 1, 2, 3], help="disparity scales in the loss")
    g.add_argument(
        "--frame_ids", type=int, nargs="+", default=[0, -1, 1], help="frames of a sample, target first"
    )
    g.add_argument(
        "--use_stereo", action="store_true", help="add the other camera of the stereo pair as a source"
    )
    g.add_argument("--min_depth", type=positive_float, default=0.1, help="depth of the largest disparity")
    g.add_argument("--max_depth", type=positive_float, default=100.0, help="depth of the smallest disparity")

    g = parser.add_argument_group("losses")
    g.add_argument(
        "--semantic_weight",
        type=non_negative_float,
        default=CONFIGS["full"]["semantic_weight"],
        help="cross-entropy weight; 0 removes the segmentation decoder",
    )
    g.add_argument(
        "--sgt_weight",
        type=non_negative_float,
        default=CONFIGS["full"]["sgt_weight"],
        help="semantics-guided triplet loss weight; 0 disables it",
    )
    g.add_argument("--sgt_margin", type=non_negative_float, default=0.3, help="SGT margin m")
    g.add_argument(
        "--sgt_kernel_size", type=int, default=5, help="SGT patch size K (the paper uses 7 at 320x1024)"
    )
    g.add_argument(
        "--sgt_levels",
        type=int,
        nargs="+",
        default=[3, 2, 1],
        help="depth-decoder levels of the SGT loss (level s is at 1/2^s scale)",
    )
    g.add_argument("--disparity_smoothness", type=non_negative_float, default=1e-3, help="smoothness weight")
    g.add_argument("--disable_automasking", action="store_true", help="no identity errors in the minimum")
    g.add_argument(
        "--avg_reprojection", action="store_true", help="average over source frames instead of the minimum"
    )
    g.add_argument(
        "--photometric_warmup",
        type=non_negative_int,
        default=0,
        metavar="STEPS",
        help="for the first STEPS training steps the photometric loss averages the warped frames' errors "
        "and leaves the unwarped frames out, then the paper's minimum with auto-masking: a start for "
        "monocular training from scratch on footage that moves far between frames (docs/own_data.md)",
    )
    g.add_argument(
        "--scale_weighting",
        default="fsre",
        choices=SCALE_WEIGHTINGS,
        help="fsre: each scale's photometric and smoothness terms / 2^s, summed (the authors'); "
        "monodepth2: photometric undivided, smoothness / 2^s, averaged over scales",
    )

    g = parser.add_argument_group("optimisation")
    g.add_argument(
        "--batch_size", type=positive_int, default=12, help="total batch over all GPUs and processes"
    )
    g.add_argument("--learning_rate", type=positive_float, default=1.5e-4, help="Adam learning rate")
    g.add_argument("--num_epochs", type=positive_int, default=20, help="epochs")
    g.add_argument(
        "--lr_milestones",
        type=positive_int,
        nargs="*",
        default=[10, 15],
        help="epochs at whose start the learning rate is multiplied by --lr_gamma",
    )
    g.add_argument(
        "--lr_gamma", type=positive_float, default=0.1, help="learning-rate factor at each milestone"
    )
    g.add_argument("--seed", type=seed_value, default=0, help="random seed (per process: seed + rank)")
    g.add_argument(
        "--max_steps", type=positive_int, default=None, help="stop after this many steps (smoke tests, demos)"
    )

    g = parser.add_argument_group("system")
    utils.add_device_option(g)
    g.add_argument(
        "--no_cuda", action="store_true", help="train on the CPU even with a GPU (Monodepth2's flag)"
    )
    g.add_argument(
        "--sync_bn",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="SyncBatchNorm under DistributedDataParallel on CUDA (the authors')",
    )
    g.add_argument(
        "--dist_backend", default=None, help="torch.distributed backend; default nccl on CUDA, gloo on CPU"
    )
    g.add_argument(
        "--deterministic",
        action="store_true",
        help="torch.use_deterministic_algorithms (warn only where CUDA has no deterministic kernel)",
    )
    g.add_argument(
        "--input_check",
        default="sample",
        choices=["sample", "full", "none"],
        help="before training: sample = every needed file exists and a few items decode; "
        "full = every item decodes; none = skip",
    )

    g = parser.add_argument_group("speed (all off by default: the defaults are the authors' pipeline)")
    g.add_argument(
        "--input_pipeline",
        default="exact",
        choices=["exact", "fast"],
        help="exact: every scale resized from the native frame by Pillow's LANCZOS and jittered via "
        "PIL in the workers (the authors'); fast: workers decode with TorchCodec and send "
        "uint8 frames at the training size (antialiased bicubic); only the images the model reads "
        "are made (every frame and its jittered copy at scale 0, the target at every scale), "
        "scales and jitter on the device, batched (in the workers on a CPU-only run); a "
        "deviation, see README",
    )
    g.add_argument(
        "--input_images",
        default="model",
        choices=["model", "all"],
        help="model: the loader makes only the images the model reads (every frame and its jittered "
        "copy at scale 0, the target at every scale; model.image_keys), the same values, less "
        "work; all: Monodepth2's full set (every frame at every scale, plain and jittered), for "
        "variants that read more",
    )
    g.add_argument(
        "--amp",
        default="off",
        choices=["off", "bf16", "fp16"],
        help="autocast the networks (CUDA only); geometry and every loss stay float32",
    )
    g.add_argument("--channels_last", action="store_true", help="NHWC memory order for the networks")
    g.add_argument(
        "--compile", action="store_true", help="torch.compile every network (first steps are slow)"
    )

    g = parser.add_argument_group("logging and checkpoints")
    g.add_argument(
        "--log_dir",
        type=folder_path,
        default=os.path.join(os.path.expanduser("~"), "tmp"),
        help="where runs are written",
    )
    g.add_argument("--model_name", default="fsre", help="folder of this run inside --log_dir")
    g.add_argument("--log_frequency", type=positive_int, default=250, help="steps between TensorBoard logs")
    g.add_argument("--save_frequency", type=positive_int, default=1, help="epochs between checkpoints")
    g.add_argument("--num_log_images", type=non_negative_int, default=4, help="images per TensorBoard figure")
    g.add_argument("--no_validation", action="store_true", help="skip the validation pass after each epoch")
    weights = g.add_mutually_exclusive_group()
    weights.add_argument("--load_weights_folder", default=None, help="model folder to start from")
    weights.add_argument(
        "--model",
        default=None,
        metavar="NAME",
        help="start from a released model (python predict.py --list_models), downloaded and cached on "
        "first use (docs/released_models.md); train.py resolves it to --load_weights_folder",
    )
    g.add_argument(
        "--models_to_load",
        nargs="+",
        default=list(NETWORK_NAMES),
        choices=NETWORK_NAMES,
        help="networks to load from --load_weights_folder",
    )

    g = parser.add_argument_group("resuming and robustness")
    fresh_or_not = g.add_mutually_exclusive_group()
    fresh_or_not.add_argument(
        "--resume",
        nargs="?",
        const=RESUME_LATEST,
        default=None,
        metavar="CHECKPOINT",
        help="continue the run from its newest checkpoint that loads (or from CHECKPOINT); "
        "without any checkpoint yet, start fresh",
    )
    fresh_or_not.add_argument(
        "--overwrite",
        action="store_true",
        help="start a fresh run in a run folder that holds one: the earlier run's files are "
        "moved to <model_name>.replaced-<time> beside it (nothing is deleted)",
    )
    g.add_argument(
        "--checkpoint_every",
        type=int,
        default=0,
        help="steps between training-state checkpoints (0: only after each epoch and on a stop signal)",
    )
    g.add_argument(
        "--keep_checkpoints", type=int, default=3, help="training-state checkpoints kept (the newest)"
    )
    g.add_argument(
        "--max_nonfinite_steps",
        type=int,
        default=10,
        help="steps with a non-finite loss are skipped; stop after this many in a row",
    )

    g = parser.add_argument_group("demo")
    g.add_argument(
        "--demo",
        action="store_true",
        help="generate synthetic KITTI scenes once, train the full model on them for a few minutes "
        "(the paper's recipe: monocular, 96x320, 9 epochs) and evaluate before and after (other "
        "options given still apply)",
    )
    g.add_argument(
        "--demo_variant",
        default=DEMO_VARIANTS[0],
        choices=DEMO_VARIANTS,
        help="mono: the paper's recipe, monocular full model with auto-masking (reproduce/demo.py); stereo: "
        "with the stereo partner as a source and --min_depth 2 at 64x192 (Monodepth2's MS), "
        "which learns sooner",
    )
    g.add_argument(
        "--demo_data",
        type=folder_path,
        default=None,
        help="cache folder of the demo's scenes (new, empty or made by the demo: any other folder is "
        "refused); default $FSRE_DEMO_DATA/synthetic_kitti_mono (mono) or $FSRE_DEMO_DATA/synthetic_kitti "
        "(stereo), else the same folders under ~/.cache/fsre_depth",
    )
    return parser


def _config_defaults(argv: Sequence[str] | None) -> dict:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default="full", choices=sorted(CONFIGS))
    known, _ = pre.parse_known_args(argv)
    return dict(CONFIGS[known.config])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse training options from ``argv`` (a list, or the command line when None) and check them."""
    parser = build_parser()
    parser.set_defaults(**_config_defaults(argv))
    opts = parser.parse_args(argv)
    opts.num_workers = default_workers(opts.num_workers)  # the number used, as opt.json records it
    check(opts, parser)
    return opts


def check(opts: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> None:
    """Reject option combinations that cannot work, naming the options at fault."""

    def fail(message: str) -> None:
        if parser is not None:
            parser.error(message)
        raise utils.InputError(message)

    resolve_encoders(opts, fail)
    if opts.cma_layers and opts.semantic_weight <= 0:
        fail(
            "--cma_layers needs the segmentation decoder: "
            "give --semantic_weight > 0 or --cma_layers with no value"
        )
    if any(not 0 <= layer <= 4 for layer in opts.cma_layers):
        fail(f"--cma_layers takes the paper's layers 0..4, got {opts.cma_layers}")
    if opts.frame_ids[0] != 0:
        fail(f"--frame_ids must start with the target frame 0, got {opts.frame_ids}")
    if any(s not in (0, 1, 2, 3) for s in opts.scales) or 0 not in opts.scales:
        fail(f"--scales must include 0 and lie in 0..3, got {opts.scales}")
    if any(not 0 <= s <= 4 for s in opts.sgt_levels):
        fail(f"--sgt_levels must lie in 0..4, got {opts.sgt_levels}")
    if opts.sgt_kernel_size < 3 or opts.sgt_kernel_size % 2 == 0:
        fail(f"--sgt_kernel_size must be an odd number >= 3, got {opts.sgt_kernel_size}")
    if len(opts.frame_ids) == 1 and not opts.use_stereo:
        fail("--frame_ids 0 alone needs --use_stereo: there is no source frame to warp")
    for name in ("frame_ids", "scales", "sgt_levels", "cma_layers"):
        values = getattr(opts, name)
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            fail(f"--{name} lists {', '.join(map(str, twice))} more than once, got {values}")
    if opts.max_depth <= opts.min_depth:
        fail(
            f"--max_depth ({opts.max_depth}) must exceed --min_depth ({opts.min_depth}): they bound the "
            "depths the disparities map to"
        )
    if needs_labels(opts) and opts.num_classes < NUM_CLASSES:
        fail(
            f"--num_classes {opts.num_classes} cannot hold "
            f"the pseudo-labels' {NUM_CLASSES} Cityscapes train ids "
            f"(give at least {NUM_CLASSES}, or --semantic_weight 0 --sgt_weight 0 to train without labels)"
        )
    if opts.keep_checkpoints < 1:
        fail(f"--keep_checkpoints must be at least 1, got {opts.keep_checkpoints}")
    if opts.checkpoint_every < 0:
        fail(f"--checkpoint_every must be 0 or positive, got {opts.checkpoint_every}")
    if opts.max_nonfinite_steps < 1:
        fail(f"--max_nonfinite_steps must be at least 1, got {opts.max_nonfinite_steps}")


def resolve_encoders(
    opts: argparse.Namespace, fail: Callable[[str], None] | None = None, encoder_option: str = "--encoder"
) -> None:
    """Settle ``--encoder``, its alias ``--num_layers`` and ``--pose_encoder`` in ``opts``, and record
    timm's version when a timm encoder is used (``timm_version``, else None); ``fail`` (default: raise
    InputError) gets one line for an unknown or unsuitable encoder, or a missing timm, naming the option
    that gave it (``encoder_option``: how the command spells ``--encoder``, e.g. tools.benchmark's
    ``--encoders``)."""

    def refuse(message: str) -> None:
        if fail is not None:
            fail(message)
        raise utils.InputError(message)

    if opts.encoder is None:
        opts.encoder = encoders.resnet_name(opts.num_layers) if opts.num_layers else encoders.DEFAULT_ENCODER
    names = {"encoder": encoder_option, "pose_encoder": "--pose_encoder"}
    for option in ("encoder", "pose_encoder"):
        problem = getattr(opts, option) and encoders.encoder_name_error(getattr(opts, option))
        if problem:
            refuse(f"{names[option]}: {problem}")
    depth = encoders.resnet_depth(opts.encoder)
    if opts.num_layers is not None and depth != opts.num_layers:
        refuse(
            f"--num_layers {opts.num_layers} names ResNet-{opts.num_layers}, --encoder {opts.encoder} "
            f"another network: give one of them (--num_layers N is --encoder resnetN)"
        )
    opts.num_layers = depth  # None for a timm encoder
    if opts.pose_encoder is None:
        opts.pose_encoder = opts.encoder if depth is not None else encoders.DEFAULT_ENCODER
    used = [
        (names[option], getattr(opts, option))
        for option in ("encoder", "pose_encoder")
        if encoders.is_timm(getattr(opts, option))
    ]
    opts.timm_version = None
    if used:
        from networks import timm_encoder  # timm is optional: only timm encoders import it

        try:
            timm_encoder.import_timm()  # first: describe() remembers its answers
            for option, name in used:
                timm_encoder.describe(encoders.timm_model_name(name), option)
                timm_encoder.check_input_size(encoders.timm_model_name(name), opts.height, opts.width, option)
        except (utils.InputError, utils.DependencyError) as err:
            refuse(str(err))
        opts.timm_version = timm_encoder.timm_version()


def uses_semantics(opts: argparse.Namespace) -> bool:
    """Whether the model has a segmentation decoder."""
    return opts.semantic_weight > 0 or bool(opts.cma_layers)


def needs_labels(opts: argparse.Namespace) -> bool:
    """Whether training reads segmentation pseudo-labels."""
    return opts.semantic_weight > 0 or opts.sgt_weight > 0


def source_frame_ids(opts: argparse.Namespace) -> list:
    """Frames warped into the target: the temporal neighbours, then "s" for the stereo partner."""
    return list(opts.frame_ids[1:]) + (["s"] if opts.use_stereo else [])


def save_options(opts: argparse.Namespace, path: str) -> None:
    """Write the options as JSON, atomically (temporary file, then rename)."""
    with atomic_write(path) as tmp, open(tmp, "w") as f:
        json.dump(vars(opts), f, indent=2, sort_keys=True)


def read_options_file(path: str) -> dict:
    """The dict of an options file written by ``save_options``; InputError naming the file when it is not
    one."""
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
    except (ValueError, UnicodeDecodeError) as err:  # json.JSONDecodeError is a ValueError
        raise utils.InputError(f"{path}: not a readable options file ({err})") from err
    if not isinstance(saved, dict):
        raise utils.InputError(f"{path}: not an options file (a JSON {type(saved).__name__}, not an object)")
    return saved


def load_options(path: str) -> argparse.Namespace:
    """Options saved by ``save_options``, completed with today's defaults for options added since."""
    opts = build_parser().parse_args([])
    saved = read_options_file(path)
    vars(opts).update(saved)
    resolve_encoders(opts)  # a file written before --encoder: its --num_layers says which ResNet
    if "timm_version" in saved:  # the version that trained it, not the one installed now
        opts.timm_version = saved["timm_version"]
    return opts
