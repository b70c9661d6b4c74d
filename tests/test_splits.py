"""Split files: the manifest against the published copy, the download path, custom split folders."""
import functools
import http.server
import os
import shutil
import threading

import pytest

import splits
from conftest import SHARED_SPLITS_DIR

needs_shared = pytest.mark.skipif(not os.path.isdir(SHARED_SPLITS_DIR), reason="../shared/splits not present")


@needs_shared
def test_manifest_matches_the_published_split_files():
    assert splits.check_copy(SHARED_SPLITS_DIR) == []
    for relpath, info in splits.manifest()["files"].items():
        if info["lines"] is not None:
            with open(os.path.join(SHARED_SPLITS_DIR, relpath), "rb") as f:
                assert len(f.read().splitlines()) == info["lines"], relpath
    assert splits.manifest()["files"]["eigen/test_files.txt"]["lines"] == 697
    assert splits.manifest()["files"]["eigen_zhou/train_files.txt"]["lines"] == 39810


@needs_shared
def test_splits_dir_is_used_as_given():
    train, val = splits.training_files("eigen_zhou", SHARED_SPLITS_DIR)
    assert train == os.path.join(SHARED_SPLITS_DIR, "eigen_zhou", "train_files.txt")
    assert val == os.path.join(SHARED_SPLITS_DIR, "eigen_zhou", "val_files.txt")
    assert splits.test_files("odom_9", SHARED_SPLITS_DIR).endswith(os.path.join("odom", "test_files_09.txt"))


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
def served_splits(tmp_path, monkeypatch):
    """An HTTP server on localhost serving a copy of the split files, set as the manifest's source."""
    if not os.path.isdir(SHARED_SPLITS_DIR):
        pytest.skip("../shared/splits not present")
    root = tmp_path / "served"
    shutil.copytree(SHARED_SPLITS_DIR, root)
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
