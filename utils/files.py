"""Files and folders written whole or not at all, and the leftovers of writers that were killed.

``atomic_write`` and ``atomic_folder`` write under a temporary name (naming host and process) beside the
target and rename it when done; ``save_json``, ``save_array`` and ``save_png`` are the common writes. Nothing
the project did not write is replaced or removed: its folders carry ``OWNER_MARKER``, its files in unmarked
folders are listed in ``FILES_RECORD``, and anything else is refused (``OwnershipError``: one line, exit 2).
The rules (legacy folders, leftovers, the record's batches): docs/data.md, "Where the demo keeps its scenes,
and what it never touches" and "Files in a folder you named"."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import itertools
import json
import logging
import os
import re
import shutil
import threading
from typing import Any, Iterator

import numpy as np
from PIL import Image

from utils import HOST, UnwritableError

logger = logging.getLogger(__name__)

OWNER_MARKER = ".fsre_depth_folder"  # in every folder the project made and may replace or clean
OWNER_TEXT = "made by FSRE-Depth, which may replace or clean this folder; remove this file to keep it\n"
LEGACY_CHECKSUMS = "checksums.sha256"  # model folders of older versions: sha256sum's format
# the files a model folder of an older version may hold (checkpoints/model_folder.py's), the encoder always
LEGACY_MODEL_FILES = frozenset(
    ("encoder.pth", "decoder.pth", "pose_encoder.pth", "pose.pth", "adam.pth", "opt.json")
)
LEGACY_REQUIRED = "encoder.pth"
_DIGEST_CHUNK = 1 << 20


class OwnershipError(UnwritableError):
    """A file or folder in the way that the project did not write: refused, left as it is."""


def mark_owned(folder: str) -> None:
    """Write the marker that says ``folder`` is the project's (it made it, and may replace or clean it)."""
    with open(os.path.join(folder, OWNER_MARKER), "w") as f:
        f.write(OWNER_TEXT)


def _legacy_verified(folder: str) -> bool:
    """Whether an unmarked folder is a model folder that older versions wrote: its checksums.sha256 lists
    exactly its files (no subfolder), all of a model folder's names (``LEGACY_MODEL_FILES``, the encoder
    among them), and every file's SHA-256 is the one listed."""
    listing = os.path.join(folder, LEGACY_CHECKSUMS)
    try:
        names = set(os.listdir(folder)) - {LEGACY_CHECKSUMS}
        with open(listing) as f:
            listed = dict(reversed(line.rstrip("\n").split("  ", 1)) for line in f if line.strip())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    if set(listed) != names or LEGACY_REQUIRED not in names or not names <= LEGACY_MODEL_FILES:
        return False
    for name, expected in listed.items():
        path = os.path.join(folder, name)
        if os.path.islink(path) or not os.path.isfile(path):
            return False
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(_DIGEST_CHUNK), b""):
                digest.update(chunk)
        if digest.hexdigest() != expected:
            return False
    return True


def owned(folder: str) -> bool:
    """Whether ``folder`` (a real folder, not a link) is the project's: it holds the marker, or it is an
    older version's model folder whose checksums verify (``_legacy_verified``)."""
    if os.path.islink(folder) or not os.path.isdir(folder):
        return False
    return os.path.isfile(os.path.join(folder, OWNER_MARKER)) or _legacy_verified(folder)


def _empty_folder(path: str) -> bool:
    return os.path.isdir(path) and not os.path.islink(path) and not os.listdir(path)


def check_replaceable(folder: str) -> None:
    """Raise OwnershipError unless ``folder`` is absent, an empty folder or one the project made (``owned``):
    a file, a link or a folder of someone else's is never replaced."""
    if not os.path.lexists(folder):
        return
    if os.path.islink(folder):
        raise OwnershipError(f"{folder} is a link, not a folder FSRE-Depth made: it is left as it is")
    if not os.path.isdir(folder):
        raise OwnershipError(
            f"{folder} is a file, not a folder: it is left as it is; give the path of a new or empty folder"
        )
    if not _empty_folder(folder) and not owned(folder):
        raise OwnershipError(
            f"{folder} holds files FSRE-Depth did not write (it has no {OWNER_MARKER}): it is left as it "
            "is; give a new or empty folder, or move those files away yourself"
        )


TEMPORARY, ASIDE = ".tmp", ".old"  # a file or folder being written; a folder being replaced
_WRITES = itertools.count()  # next() is atomic under the GIL: names are unique per thread too
# <target><mark>-<host>-<pid>-<n><extension>: the writer is recorded, so that a leftover is removed only
# once its writer is dead (a writer on another host, e.g. over NFS, is never judged)
_WRITER_NAME = re.compile(
    rf"^(?P<root>.+)(?P<mark>{re.escape(TEMPORARY)}|{re.escape(ASIDE)})-{re.escape(HOST)}"
    r"-(?P<pid>\d+)-\d+(?P<ext>\.[^.]*)?$"
)


def _writer_path(path: str, mark: str, pid: int | None = None, keep_extension: bool = True) -> str:
    root, ext = os.path.splitext(path) if keep_extension else (path, "")
    return f"{root}{mark}-{HOST}-{os.getpid() if pid is None else pid}-{next(_WRITES)}{ext}"


def temporary_path(path: str, pid: int | None = None) -> str:
    """Where ``atomic_write`` writes ``path`` first: beside it, named for its writer (host, process
    ``pid``, a number unique in the process), the extension last so that Pillow and NumPy pick the
    same format, e.g. ``a/b.png`` -> ``a/b.tmp-host-4242-0.png``."""
    return _writer_path(path, TEMPORARY, pid)


def is_temporary(name: str) -> bool:
    """Whether a file or folder name is a temporary (or set-aside) name of ``atomic_write`` or
    ``atomic_folder``."""
    return (
        re.search(rf"({re.escape(TEMPORARY)}|{re.escape(ASIDE)})-[^/]+-\d+-\d+(\.[^.]*)?$", name) is not None
    )


def process_alive(pid: int) -> bool:
    """Whether a process of this host has the id ``pid`` (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clear_stale(directory: str, name: str, files_owned: bool) -> str | None:
    """Remove a dead writer's leftover ``name`` (restore a folder that was set aside and not replaced) when
    its name and a marker prove it the project's: a folder's own marker (or nothing in it), a temporary
    file's folder's (``files_owned``). Anything else named like a leftover is left, and logged."""
    match = _WRITER_NAME.match(name)
    if match is None or process_alive(int(match["pid"])):
        return None
    path = os.path.join(directory, name)
    is_folder = os.path.isdir(path) and not os.path.islink(path)
    if is_folder:
        proven = owned(path) or _empty_folder(path)
    else:  # the project never sets a file aside; its temporary files are proven by their folder's marker
        proven = match["mark"] == TEMPORARY and files_owned and os.path.isfile(path)
    if not proven:
        logger.info("left %s as it is: named like a leftover of FSRE-Depth, but not marked as its own", path)
        return None
    target = os.path.join(directory, match["root"] + (match["ext"] or ""))
    if match["mark"] == ASIDE and not os.path.lexists(target):
        os.replace(path, target)
        return f"restored {target} (its replacement was cut short)"
    if is_folder:
        shutil.rmtree(path)
    else:
        os.remove(path)
    return f"removed {path} (left by process {match['pid']}, which is gone)"


def remove_stale_temporaries(folder: str, files_proven: bool = False) -> list[str]:
    """Clear what killed writers of this host left under ``folder``; return what was done.

    Temporary folders of processes that are gone are removed, a folder set aside by an ``atomic_folder``
    replacement that was cut short is put back (each only with its marker); temporary files only when
    ``folder`` carries the marker, or ``files_proven`` (the caller's own marker proves the folder its, as
    an unfinished import's ``.incomplete``). A live writer's are left alone.
    """
    done = []
    files_owned = files_proven or owned(folder)
    for directory, dirs, files in os.walk(folder):
        for name in sorted(dirs + files):
            action = _clear_stale(directory, name, files_owned)
            if action:
                done.append(action)
                if name in dirs:
                    dirs.remove(name)
    return done


def recover_folder(folder: str) -> list[str]:
    """``remove_stale_temporaries`` for the leftovers of one folder's replacement (``<folder>.tmp-...``,
    ``.old-...``)."""
    parent, base = os.path.split(os.path.abspath(folder.rstrip(os.sep)))
    if not os.path.isdir(parent):
        return []
    names = [
        n
        for n in sorted(os.listdir(parent))
        if (m := _WRITER_NAME.match(n)) and m["root"] == base and not m["ext"]
    ]
    return [action for name in names if (action := _clear_stale(parent, name, False))]


FILES_RECORD = ".fsre_depth_files"  # in an unmarked folder: the files the project wrote there
RECORD_HEADER = (
    "# files FSRE-Depth wrote into this folder, which it may replace: [name, inode, size, mtime_ns]\n"
)
RECORD_COMPACT_BYTES = 1 << 16  # a record larger than this is compacted at a command's end, when mostly stale
RECORD_BATCH = 64  # new names of one folder kept in memory before they are appended to its record


def marked_within(directory: str) -> bool:
    """Whether ``directory`` or a folder above it has the project's marker (its files are the project's)."""
    current = os.path.abspath(directory)
    while True:
        if os.path.isfile(os.path.join(current, OWNER_MARKER)):
            return True
        parent = os.path.dirname(current)
        if parent == current:
            return False
        current = parent


def _identity(path: str) -> tuple[int, int, int] | None:
    """(inode, size, mtime_ns) of a plain file (not a link), else None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not os.path.isfile(path) or os.path.islink(path):
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _parse_record(text: str) -> dict[str, tuple[int, int, int]] | None:
    """The entries of a record's text by name (the latest of each), None when it is not the project's."""
    if not text.startswith(RECORD_HEADER):
        return None
    found: dict[str, tuple[int, int, int]] = {}
    for line in text[len(RECORD_HEADER) :].split("\n")[:-1]:  # a line without its newline is unfinished
        try:
            name, ino, size, mtime = json.loads(line)
            found[str(name)] = (int(ino), int(size), int(mtime))
        except (ValueError, TypeError):
            continue
    return found


def _read_record(folder: str) -> dict[str, tuple[int, int, int]]:
    """The files a folder's record lists, by name (the latest entry of each); empty without a record of
    the project's (a file of that name without the header is not one, and is never written to)."""
    path = os.path.join(folder, FILES_RECORD)
    found: dict[str, tuple[int, int, int]] = {}
    try:
        with open(path, encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_SH)
            text = f.read()
    except (OSError, UnicodeDecodeError):
        return found
    return _parse_record(text) or found


class _Records:
    """This process's view of the folders' records: what it read, and the new entries it has yet to append."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.known: dict[str, dict[str, tuple[int, int, int]]] = {}
        self.pending: dict[str, list[list]] = {}
        self.warned: set[str] = set()

    def proves(self, folder: str, name: str, identity: tuple[int, int, int]) -> bool:
        """Whether the record of ``folder`` (this process's entries first, then the file) lists ``name`` as
        the file it is now."""
        with self.lock:
            if self.known.get(folder, {}).get(name) == identity:
                return True
        on_disk = _read_record(folder)
        with self.lock:
            self.known.setdefault(folder, {}).update(on_disk)
            for entry in self.pending.get(folder, ()):
                self.known[folder][entry[0]] = tuple(entry[1:])
            return self.known[folder].get(name) == identity

    def add(self, folder: str, name: str, identity: tuple[int, int, int]) -> None:
        """Note that the project wrote ``name`` into ``folder``; append the folder's batch once it is full."""
        with self.lock:
            self.known.setdefault(folder, {})[name] = identity
            batch = self.pending.setdefault(folder, [])
            batch.append([name, *identity])
            due = len(batch) >= RECORD_BATCH
        if due:
            self.flush(folder)

    def flush(self, only: str | None = None) -> None:
        """Append the pending entries to their folders' records (``only`` one's), each under an fcntl lock
        of the record."""
        with self.lock:
            if only is None:
                pending, self.pending = self.pending, {}
            else:
                pending = {only: self.pending.pop(only, [])}
        for folder, entries in pending.items():
            # removed since, with what was written there: nothing to record
            if not entries or not os.path.isdir(folder):
                continue
            path = os.path.join(folder, FILES_RECORD)
            data = "".join(json.dumps(entry) + "\n" for entry in entries).encode("utf-8")
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)  # released when fd is closed
                    head = os.pread(fd, len(RECORD_HEADER), 0)
                    if head and head != RECORD_HEADER.encode("utf-8"):
                        raise OSError(f"{path} is not FSRE-Depth's record: it is left as it is")
                    os.write(fd, (b"" if head else RECORD_HEADER.encode("utf-8")) + data)
                    if only is None and os.fstat(fd).st_size > RECORD_COMPACT_BYTES:
                        _compact(fd)
                finally:
                    os.close(fd)
            except OSError as err:
                if folder not in self.warned:
                    self.warned.add(folder)
                    logger.warning(
                        "could not record the files written into %s (%s): a later run will not replace them",
                        folder,
                        err,
                    )


def _compact(fd: int) -> None:
    """Rewrite a record (its lock held) with only the latest entry of each name, when most of its lines are
    older entries of files written again since (a command's outputs rewritten by each rerun)."""
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, _DIGEST_CHUNK):
        chunks.append(chunk)
    text = b"".join(chunks).decode("utf-8", errors="replace")
    entries = _parse_record(text)
    if entries is None or text.count("\n") <= 2 * (len(entries) + 1):
        return
    lines = "".join(json.dumps([name, *identity]) + "\n" for name, identity in entries.items())
    os.ftruncate(fd, 0)
    os.write(fd, (RECORD_HEADER + lines).encode("utf-8"))  # O_APPEND: from the start of the emptied file


_RECORDS = _Records()
atexit.register(_RECORDS.flush)


def record_written(path: str) -> None:
    """Note that the project has just written the file ``path`` (only needed outside a marked folder; a
    temporary name is the project's by its name, and removed or renamed by its writer)."""
    folder, name = os.path.split(os.path.abspath(path))
    if is_temporary(name):
        return
    identity = _identity(path)
    if identity is not None and not marked_within(folder):
        _RECORDS.add(folder, name, identity)


def flush_records() -> None:
    """Append the files this process wrote to their folders' records now (done at exit anyway)."""
    _RECORDS.flush()


def project_file(path: str) -> bool:
    """Whether the file ``path`` is the project's: a plain file inside a marked folder, or the file a
    folder's record lists under its name (same inode, size and modification time)."""
    folder, name = os.path.split(os.path.abspath(path))
    if name in (OWNER_MARKER, FILES_RECORD):
        return False
    if os.path.islink(path) or not os.path.isfile(path):
        return False
    if marked_within(folder):
        return True
    identity = _identity(path)
    return identity is not None and _RECORDS.proves(folder, name, identity)


def check_file_replaceable(path: str) -> None:
    """Raise OwnershipError unless ``path`` is absent or a file the project wrote (``project_file``)."""
    if not os.path.lexists(path) or project_file(path):
        return
    if os.path.isdir(path) and not os.path.islink(path):
        what = "is a folder"
    elif os.path.islink(path):
        what = "is a link"
    else:
        what = "exists and FSRE-Depth did not write it (or it was changed since)"
    raise OwnershipError(
        f"{path} {what}: it is left as it is; move it away yourself, or write into another folder"
    )


def remove_file(path: str) -> None:
    """Remove the file ``path`` only when the project wrote it (``project_file``), else OwnershipError."""
    if not os.path.lexists(path):
        return
    check_file_replaceable(path)
    os.remove(path)


@contextlib.contextmanager
def atomic_write(path: str) -> Iterator[str]:
    """Yield a temporary path to write; on success it is renamed to ``path``, on failure removed.

    A reader never sees a half-written ``path``: it is the old file or the whole new one. An existing
    ``path`` that is not the project's (``check_file_replaceable``) is refused before anything is written,
    and checked again before the rename; a new file outside a marked folder is recorded as the project's.
    """
    check_file_replaceable(path)
    tmp = temporary_path(path)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        yield tmp
        check_file_replaceable(path)
        os.replace(tmp, path)
        record_written(path)
    except UnwritableError:
        raise
    except OSError as err:
        raise UnwritableError(f"cannot write {path}: {err.strerror or err}") from err
    finally:
        if os.path.isfile(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_folder(folder: str) -> Iterator[str]:
    """Yield a temporary folder (with the marker) to fill; on success it replaces ``folder``
    (``replace_folder``), on failure it is removed. A reader never sees a half-written folder; what a
    killed earlier replacement of ``folder`` left is cleared (or restored) first, and a ``folder`` that
    is not the project's is refused before anything is written (``check_replaceable``)."""
    folder = folder.rstrip(os.sep)
    try:
        recover_folder(folder)
        check_replaceable(folder)
        tmp = _writer_path(folder, TEMPORARY, keep_extension=False)
        os.makedirs(tmp)
    except UnwritableError:
        raise
    except OSError as err:
        raise UnwritableError(f"cannot write {folder}: {err.strerror or err}") from err
    try:
        mark_owned(tmp)
        yield tmp
        replace_folder(tmp, folder)
    except BaseException:
        if os.path.isdir(tmp):  # still ours: not renamed into place
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_folder(new: str, folder: str) -> None:
    """Rename ``new`` to ``folder``: an existing ``folder`` (only an empty one or the project's:
    ``check_replaceable``) is renamed aside first and removed last, so that at every moment ``folder``
    is the whole old one, the whole new one, or (after a kill between the two renames) restorable from
    the aside copy by ``recover_folder``."""
    check_replaceable(folder)
    aside = None
    if os.path.lexists(folder):
        aside = _writer_path(folder, ASIDE, keep_extension=False)
        os.replace(folder, aside)
    os.replace(new, folder)
    if aside is not None:
        shutil.rmtree(aside)


def remove_folder(folder: str) -> None:
    """Remove ``folder`` and everything in it, only when it is the project's (``owned``) or empty;
    OwnershipError otherwise, with nothing removed."""
    if not os.path.lexists(folder):
        return
    check_replaceable(folder)
    shutil.rmtree(folder)


def save_json(data: dict, path: str) -> None:
    """Write JSON atomically."""
    with atomic_write(path) as tmp, open(tmp, "w") as f:
        json.dump(data, f, indent=2)


def read_json(path: str) -> Any:
    """A JSON file's contents, or None when it is missing, unreadable or not JSON (a record that a killed
    writer never finished counts as no record)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):  # ValueError: not JSON, or not UTF-8
        return None


def save_array(array: np.ndarray, path: str) -> None:
    """np.save atomically."""
    with atomic_write(path) as tmp:
        np.save(tmp, array)


def save_png(array: np.ndarray, path: str) -> None:
    """Save an RGB (or grey) uint8 image as PNG, atomically."""
    with atomic_write(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
