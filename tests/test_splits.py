"""Split files: the manifest against the published files, the download path, custom split folders.

The tests that need the public split files read them where the project keeps them once
``python -m splits`` has downloaded and checked them (splits/), and skip with that advice otherwise.
"""

import functools
import http.server
import os
import shutil
import threading

import pytest

import splits

NOT_DOWNLOADED = "the public split files are not downloaded: run python -m splits"


@pytest.fixture(scope="module")
def public_splits():
    """splits/ once every public split file is there and matches the manifest's sha256 (else skip)."""
    if splits.check_copy(splits.SPLITS_DIR):
        pytest.skip(NOT_DOWNLOADED)
    return splits.SPLITS_DIR


def copy_split_files(source, dest):
    """Copy the manifest's files (only those) from one folder to another, in their layout."""
    for relpath in splits.manifest()["files"]:
        os.makedirs(os.path.dirname(os.path.join(dest, relpath)), exist_ok=True)
        shutil.copyfile(os.path.join(source, relpath), os.path.join(dest, relpath))


def test_manifest_matches_the_published_split_files(public_splits):
    for relpath, info in splits.manifest()["files"].items():
        assert splits.split_file(relpath) == os.path.join(
            public_splits, relpath
        )  # found, not downloaded again
        if info["lines"] is not None:
            with open(os.path.join(public_splits, relpath), "rb") as f:
                assert len(f.read().splitlines()) == info["lines"], relpath
    assert splits.manifest()["files"]["eigen/test_files.txt"]["lines"] == 697
    assert splits.manifest()["files"]["eigen_zhou/train_files.txt"]["lines"] == 39810


def test_splits_dir_is_used_as_given(public_splits, tmp_path):
    local = tmp_path / "copy"
    copy_split_files(public_splits, local)
    assert splits.check_copy(str(local)) == []
    train, val = splits.training_files("eigen_zhou", str(local))
    assert train == str(local / "eigen_zhou" / "train_files.txt")
    assert val == str(local / "eigen_zhou" / "val_files.txt")
    assert splits.test_files("odom_9", str(local)) == str(local / "odom" / "test_files_09.txt")


def test_missing_local_copy_and_unknown_split_name_the_culprit(tmp_path):
    with pytest.raises(splits.SplitError, match="eigen_zhou/train_files.txt not found"):
        splits.training_files("eigen_zhou", str(tmp_path))
    with pytest.raises(splits.SplitError, match="unknown split 'eigen_zhuo'"):
        splits.training_files("eigen_zhuo")
    with pytest.raises(splits.SplitError, match="no train_files.txt"):
        splits.training_files(str(tmp_path))


def test_custom_split_folder(tmp_path):
    (tmp_path / "train_files.txt").write_text("a 1 l\n")
    assert splits.training_files(str(tmp_path)) == (str(tmp_path / "train_files.txt"), None)
    (tmp_path / "val_files.txt").write_text("a 2 l\n")
    assert splits.training_files(str(tmp_path))[1] == str(tmp_path / "val_files.txt")


@pytest.fixture
def served_splits(public_splits, tmp_path, monkeypatch):
    """An HTTP server on localhost serving a copy of the split files, set as the manifest's source."""
    root = tmp_path / "served"
    copy_split_files(public_splits, root)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    real_manifest = splits.manifest()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    monkeypatch.setattr(splits, "manifest", lambda: {**real_manifest, "source": url})
    dest = tmp_path / "dest"
    yield root, dest
    server.shutdown()


def test_download_checks_the_sum_and_writes_whole_files(served_splits):
    root, dest = served_splits
    path = splits.download("eigen/test_files.txt", str(dest))
    assert open(path).read() == open(root / "eigen" / "test_files.txt").read()
    (root / "odom" / "test_files_09.txt").write_text("tampered\n")
    with pytest.raises(splits.SplitError, match="sha256"):
        splits.download("odom/test_files_09.txt", str(dest))
    assert os.listdir(dest / "odom") == []  # nothing half-written or unverified left behind
