"""The public KITTI split files, obtained on first use from Monodepth2's repository.

The project does not ship copies of these third-party files: ``manifest.json`` lists each file
with its sha256 and line count, ``python -m splits`` downloads and checks them into this folder,
and ``--splits_dir`` points at a local copy instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import urllib.error
import urllib.request

from utils import InputError

SPLITS_DIR = os.path.dirname(os.path.abspath(__file__))
MANIFEST_PATH = os.path.join(SPLITS_DIR, "manifest.json")
DOWNLOAD_TIMEOUT_S = 60

TRAIN_SPLITS = ("eigen_zhou", "eigen_full", "odom", "benchmark")
TEST_SPLIT_FILES = {
    "eigen": "eigen/test_files.txt",
    "eigen_benchmark": "eigen_benchmark/test_files.txt",
    "odom_9": "odom/test_files_09.txt",
    "odom_10": "odom/test_files_10.txt",
    "benchmark": "benchmark/test_files.txt",
}

logger = logging.getLogger(__name__)


class SplitError(InputError):
    """A split file that cannot be had, or does not match the manifest."""


def manifest() -> dict:
    """The manifest: source URL and, per file, its sha256, size and line count."""
    with open(MANIFEST_PATH) as f:
        return json.load(f)


def sha256_of(path: str) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(relpath: str, dest_dir: str = SPLITS_DIR) -> str:
    """Fetch one manifest file from Monodepth2's repository, check its sha256, write it atomically."""
    info = manifest()
    if relpath not in info["files"]:
        raise SplitError(f"{relpath} is not in {MANIFEST_PATH}")
    url = info["source"] + relpath
    dest = os.path.join(dest_dir, relpath)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = f"{dest}.{os.getpid()}.part"
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(tmp, "wb") as out:
            out.write(response.read())
        actual = sha256_of(tmp)
        if actual != info["files"][relpath]["sha256"]:
            raise SplitError(
                f"{url} has sha256 {actual}, the manifest expects {info['files'][relpath]['sha256']}"
            )
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError) as err:
        raise SplitError(
            f"cannot download {url} ({err}); copy Monodepth2's splits folder here and pass "
            f"--splits_dir, or run `python -m splits` where the internet is reachable"
        ) from err
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    logger.info("downloaded %s", dest)
    return dest


def split_file(relpath: str, splits_dir: str | None = None) -> str:
    """Path of a public split file: from ``splits_dir`` when given, else this folder (downloaded on first
    use)."""
    if splits_dir is not None:
        path = os.path.join(splits_dir, relpath)
        if not os.path.isfile(path):
            raise SplitError(f"{path} not found (--splits_dir {splits_dir})")
        expected = manifest()["files"].get(relpath)
        if expected and sha256_of(path) != expected["sha256"]:
            logger.warning("%s differs from the published file (sha256 mismatch): using it as it is", path)
        return path
    path = os.path.join(SPLITS_DIR, relpath)
    if os.path.isfile(path):
        return path
    return download(relpath)


def training_files(split: str, splits_dir: str | None = None) -> tuple[str, str | None]:
    """(train_files.txt, val_files.txt or None) of a named training split or of a custom split folder."""
    if os.path.isdir(split):
        train = os.path.join(split, "train_files.txt")
        if not os.path.isfile(train):
            raise SplitError(f"custom split folder {split} has no train_files.txt")
        val = os.path.join(split, "val_files.txt")
        return train, val if os.path.exists(val) else None  # a val_files.txt that is no file fails when read
    if split not in TRAIN_SPLITS:
        raise SplitError(
            f"unknown split {split!r}: use one of {', '.join(TRAIN_SPLITS)} or a folder holding "
            "train_files.txt and val_files.txt"
        )
    return split_file(f"{split}/train_files.txt", splits_dir), split_file(
        f"{split}/val_files.txt", splits_dir
    )


def test_files(split: str, splits_dir: str | None = None) -> str:
    """test_files.txt of a named test split or of a custom split folder."""
    if os.path.isdir(split):
        path = os.path.join(split, "test_files.txt")
        if not os.path.isfile(path):
            raise SplitError(f"custom split folder {split} has no test_files.txt")
        return path
    if split not in TEST_SPLIT_FILES:
        raise SplitError(
            f"unknown test split {split!r}: use one of {', '.join(TEST_SPLIT_FILES)} or a folder "
            "holding test_files.txt"
        )
    return split_file(TEST_SPLIT_FILES[split], splits_dir)


def check_copy(folder: str) -> list[str]:
    """Problems of a local copy of the split files against the manifest (empty when it matches)."""
    problems = []
    for relpath, info in manifest()["files"].items():
        path = os.path.join(folder, relpath)
        if not os.path.isfile(path):
            problems.append(f"{path}: missing")
        elif sha256_of(path) != info["sha256"]:
            problems.append(f"{path}: sha256 differs from the manifest")
    return problems
