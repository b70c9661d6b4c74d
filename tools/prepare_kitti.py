"""One-time cache of KITTI frames pre-resized to the training size, optionally converted to JPEG.

    python -m tools.prepare_kitti --data_path kitti_data --output_path kitti_data_192x640 --ext jpg
    python train.py --data_path kitti_data_192x640 --img_ext jpg --input_pipeline fast

Frames are resized with the exact pipeline's LANCZOS, pseudo-labels with its nearest filter, every other file
is linked; ``--no_resize`` only converts PNG to JPEG. An interrupted run resumes. docs/performance.md gives
the whole account."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Sequence

from tqdm import tqdm

import utils
from datasets.mono_dataset import LABEL_FILTER, RESIZE_FILTER, open_image  # the exact pipeline's filters
from options import non_negative_int, positive_int
from utils import InputError, MissingFileError

logger = logging.getLogger("prepare_kitti")

LABEL_PATTERN = re.compile(
    r"(^|/)segmentation/.+\.png$", re.IGNORECASE
)  # pseudo-labels at their default place
FRAME_PATTERN = re.compile(
    r"(^|/)(image_0[0-3]/data|sequences/\d+/image_[0-3])/[^/]+\.(png|jpe?g)$", re.IGNORECASE
)
DEFAULT_JPEG_QUALITY = 92  # Monodepth2's README conversion
MAX_JPEG_QUALITY = 95  # Pillow: above 95 JPEG files grow without a visible gain
SETTINGS_FILE = "prepare_kitti.json"
EXTENSION_FORMATS = {".png": "PNG", ".jpg": "JPEG"}


def is_frame(relative_path: str) -> bool:
    """Whether a path relative to the data root is a camera frame (not a label, depth map or scan)."""
    return FRAME_PATTERN.search(relative_path.replace(os.sep, "/")) is not None


def is_label(relative_path: str) -> bool:
    """Whether a path relative to the data root is a segmentation pseudo-label PNG."""
    return LABEL_PATTERN.search(relative_path.replace(os.sep, "/")) is not None


def output_name(relative_path: str, ext: str | None) -> str:
    """The cached frame's relative path: the same, with the extension changed when ``ext`` is given."""
    return os.path.splitext(relative_path)[0] + "." + ext if ext else relative_path


def convert_frame(job: tuple[str, str, int | None, int | None, int]) -> bool:
    """Resize (when a size is given) and save one frame or label map atomically; False when it already
    existed.

    A label map (single channel, a target ending in ``.png`` below ``segmentation/``) keeps its mode and
    is resized with the exact pipeline's nearest filter, so the exact pipeline reads the same labels.
    """
    source, target, height, width, quality = job
    if os.path.exists(target):
        return False
    label = is_label(target)
    # InputError naming a file that is unreadable, truncated or too large to decode
    image = open_image(source)
    image = image.copy() if label else image.convert("RGB")
    if height is not None and image.size != (width, height):
        image = image.resize((width, height), LABEL_FILTER if label else RESIZE_FILTER)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    file_format = EXTENSION_FORMATS.get(os.path.splitext(target)[1].lower(), "JPEG")
    tmp = f"{target}.{os.getpid()}.tmp"
    try:
        image.save(tmp, format=file_format, **({"quality": quality} if file_format == "JPEG" else {}))
        os.replace(tmp, target)
    except OSError as error:
        raise InputError(f"{target}: cannot write the cached frame ({error})") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return True


def mirror_file(source: str, target: str, copy: bool) -> None:
    """Link (or copy) a non-frame file into the cache, atomically; existing targets are kept."""
    if os.path.lexists(target):
        return
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = f"{target}.{os.getpid()}.tmp"
    if copy:
        shutil.copy2(source, tmp)
    else:
        os.symlink(os.path.abspath(source), tmp)
    os.replace(tmp, target)


def prepare(
    data_path: str,
    output_path: str,
    height: int | None,
    width: int | None,
    ext: str | None = None,
    quality: int = DEFAULT_JPEG_QUALITY,
    num_workers: int = 1,
    copy: bool = False,
    progress: bool = True,
) -> dict:
    """Write the cache; returns counts of frames and labels written and skipped (together), of the label
    maps among them, and of other files mirrored."""
    if not os.path.isdir(data_path):
        raise MissingFileError(f"--data_path {data_path} is not a folder")
    source, target = os.path.realpath(data_path), os.path.realpath(output_path)
    if source == target:
        raise InputError("--output_path must differ from --data_path (frames would be overwritten)")
    if os.path.commonpath([source, target]) in (source, target):
        raise InputError(
            f"--output_path {output_path} and --data_path {data_path} must not lie inside one another "
            "(a later run would cache the cache)"
        )
    sources: dict[str, str] = {}  # cached frame -> its source; a PNG wins over a JPEG copy of the frame
    others, labels = [], []
    for root, dirs, files in os.walk(data_path):
        dirs.sort()
        for name in sorted(files):
            relative = os.path.relpath(os.path.join(root, name), data_path)
            if is_frame(relative):
                target = output_name(relative, ext)
                if target not in sources or relative.lower().endswith(".png"):
                    sources[target] = relative
            elif is_label(relative) and height is not None:
                labels.append(relative)  # resized like the frames, kept as a label PNG
            else:
                others.append(relative)
    jobs = [
        (os.path.join(data_path, source), os.path.join(output_path, target), height, width, quality)
        for target, source in sorted(sources.items()) + [(label, label) for label in labels]
    ]
    if not sources:
        raise MissingFileError(
            f"--data_path {data_path} holds no frames in KITTI's layout "
            "(image_0X/data/* or sequences/NN/image_X/*)"
        )
    os.makedirs(output_path, exist_ok=True)
    for relative in others:
        mirror_file(os.path.join(data_path, relative), os.path.join(output_path, relative), copy)
    written = 0
    with tqdm(total=len(jobs), unit="file", desc="prepare_kitti", disable=not progress) as bar:
        if num_workers > 1:
            with ProcessPoolExecutor(num_workers) as pool:
                for done in pool.map(convert_frame, jobs, chunksize=16):
                    written += done
                    bar.update()
        else:
            for job in jobs:
                written += convert_frame(job)
                bar.update()
    settings = {
        "source": os.path.abspath(data_path),
        "height": height,
        "width": width,
        "ext": ext,
        "quality": quality,
        "frames": len(sources),
        "labels": len(labels),
    }
    tmp = os.path.join(output_path, SETTINGS_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump(settings, f, indent=2)
    os.replace(tmp, os.path.join(output_path, SETTINGS_FILE))
    return {
        "files_written": written,
        "files_skipped": len(jobs) - written,
        "labels": len(labels),
        "other_files": len(others),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=utils.HelpFormatter)
    parser.add_argument("--data_path", required=True, help="KITTI data in Monodepth2's layout")
    parser.add_argument("--output_path", required=True, help="where the cache is written (same layout)")
    parser.add_argument("--height", type=positive_int, default=192, help="frame height in the cache")
    parser.add_argument("--width", type=positive_int, default=640, help="frame width in the cache")
    parser.add_argument("--no_resize", action="store_true", help="keep the native size (conversion only)")
    parser.add_argument(
        "--ext",
        choices=["png", "jpg"],
        default=None,
        help="file type of the cached frames; default: keep each frame's own",
    )
    parser.add_argument("--quality", type=int, default=DEFAULT_JPEG_QUALITY, help="JPEG quality (1..95)")
    parser.add_argument(
        "--num_workers",
        type=non_negative_int,
        default=os.cpu_count() or 1,
        help="parallel processes (0 or 1: none)",
    )
    parser.add_argument(
        "--copy", action="store_true", help="copy the non-frame files instead of linking them"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: prints what was written."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 1 <= args.quality <= MAX_JPEG_QUALITY:
        parser.error(f"--quality must lie in 1..{MAX_JPEG_QUALITY}, got {args.quality}")
    utils.setup_logging()
    size = (None, None) if args.no_resize else (args.height, args.width)
    counts = prepare(
        args.data_path,
        args.output_path,
        *size,
        ext=args.ext,
        quality=args.quality,
        num_workers=args.num_workers,
        copy=args.copy,
    )
    print(
        f"{counts['files_written']} frames and label maps written ({counts['labels']} label maps in all), "
        f"{counts['files_skipped']} already there, "
        f"{counts['other_files']} other files {'copied' if args.copy else 'linked'} -> {args.output_path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(utils.run_cli(main))
