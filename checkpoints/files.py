"""Reading and writing checkpoint files safely: whole or absent, checked against their checksums, and
never running code on load.

Two kinds of checksum, both SHA-256: a training-state checkpoint carries the digest of its own
content (``CONTENT_DIGEST_KEY``: tensors' bytes, dtypes and shapes, every plain value, the structure);
a model folder holds ``checksums.sha256`` listing each file's digest (``sha256sum -c`` reads it).
Files without one (released folders, files of earlier versions) load unchecked.
"""

from __future__ import annotations

import hashlib
import os

import torch

from utils import ProjectError
from utils.files import atomic_write

CHECKSUM_FILE = "checksums.sha256"  # in a model folder, in sha256sum's format
CONTENT_DIGEST_KEY = "sha256"  # in a training-state checkpoint
READ_CHUNK = 1 << 20


class CheckpointError(ProjectError, RuntimeError):
    """A checkpoint file that cannot be read, is damaged or does not fit the network it is loaded into."""


# ------------------------------------------------------------------------------------------------
# checksums
# ------------------------------------------------------------------------------------------------
def file_digest(path: str) -> str:
    """SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(READ_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _feed(digest, value) -> None:
    if torch.is_tensor(value):
        flat = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"tensor {flat.dtype} {tuple(value.shape)};".encode())
        digest.update(memoryview(flat.view(torch.uint8).numpy()))
    elif isinstance(value, dict):
        digest.update(f"dict {len(value)};".encode())
        for key in sorted(value, key=repr):
            _feed(digest, key)
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"{type(value).__name__} {len(value)};".encode())
        for item in value:
            _feed(digest, item)
    else:
        digest.update(f"{type(value).__name__} {value!r};".encode())


def content_digest(state) -> str:
    """SHA-256 of a state's content, the same before saving and after loading (on any device)."""
    digest = hashlib.sha256()
    _feed(digest, state)
    return digest.hexdigest()


def write_checksums(folder: str) -> None:
    """List the digest of every file of ``folder`` in its ``checksums.sha256``."""
    names = sorted(
        n for n in os.listdir(folder) if n != CHECKSUM_FILE and os.path.isfile(os.path.join(folder, n))
    )
    with open(os.path.join(folder, CHECKSUM_FILE), "w") as f:
        f.writelines(f"{file_digest(os.path.join(folder, name))}  {name}\n" for name in names)


def listed_digest(path: str) -> str | None:
    """The digest that the ``checksums.sha256`` beside ``path`` lists for it, or None (no list, or not in
    it)."""
    listing = os.path.join(os.path.dirname(path), CHECKSUM_FILE)
    if not os.path.isfile(listing):
        return None
    with open(listing, errors="replace") as f:
        for line in f:
            digest, _, name = line.rstrip("\n").partition("  ")
            if name == os.path.basename(path):
                return digest
    return None


def verify_file(path: str) -> None:
    """Raise CheckpointError when ``path`` differs from the digest its folder's ``checksums.sha256`` lists."""
    expected = listed_digest(path)
    if expected is not None and file_digest(path) != expected:
        raise CheckpointError(
            f"{path} is damaged: its SHA-256 differs from the one in {CHECKSUM_FILE} beside it"
        )


# ------------------------------------------------------------------------------------------------
# reading and writing
# ------------------------------------------------------------------------------------------------
def read_state(path: str) -> dict:
    """A .pth file's dict, on the CPU, checked against its checksum where it has one, without running
    any code it may hold."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path} not found")
    verify_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"cannot read {path}: {reason}") from err
    if isinstance(state, dict) and CONTENT_DIGEST_KEY in state:
        expected = state.pop(CONTENT_DIGEST_KEY)
        if content_digest(state) != expected:
            raise CheckpointError(f"{path} is damaged: its content differs from the SHA-256 stored in it")
    return state


def save_state(obj, path: str) -> None:
    """torch.save through a Python file, so that a failed write (disk full, no permission) is an OSError
    with its errno, as for any other file (torch's own writer reports a RuntimeError)."""
    with open(path, "wb") as f:
        try:
            torch.save(obj, f)
        except RuntimeError as err:  # a write failed part-way (disk full): torch says "unexpected pos"
            cause = write_failure(err)
            if cause is None:
                raise
            raise cause from err


def write_failure(err: BaseException) -> OSError | None:
    """The OSError (with its errno: ENOSPC, EFBIG, EIO ...) behind an error of torch's writer, if any."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def atomic_save(obj, path: str, with_digest: bool = False) -> None:
    """Save to a temporary name, then rename: the file is whole or absent. ``with_digest``: store the
    content's SHA-256 in the dict, which ``read_state`` checks."""
    if with_digest:
        obj = {**obj, CONTENT_DIGEST_KEY: content_digest(obj)}
    with atomic_write(path) as tmp:
        save_state(obj, tmp)
