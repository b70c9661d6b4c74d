"""Files and folders written whole or not at all, and the leftovers of writers that were killed.

``atomic_write`` and ``atomic_folder`` write under a temporary name beside the target and rename it
when done, so that a reader sees the old file or the whole new one, never half of one. The temporary
names record their writer (host, process id), so that ``remove_stale_temporaries`` and
``recover_folder`` clear only what dead writers of this host left. ``save_json``, ``save_array``
and ``save_png`` are the common writes, atomically.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
from typing import Iterator

import numpy as np
from PIL import Image

from utils import HOST, UnwritableError

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


def _clear_stale(directory: str, name: str) -> str | None:
    """Remove a dead writer's leftover ``name`` (restore a folder that was set aside and not replaced)."""
    match = _WRITER_NAME.match(name)
    if match is None or process_alive(int(match["pid"])):
        return None
    path = os.path.join(directory, name)
    target = os.path.join(directory, match["root"] + (match["ext"] or ""))
    if match["mark"] == ASIDE and not os.path.lexists(target):
        os.replace(path, target)
        return f"restored {target} (its replacement was cut short)"
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.remove(path)
    return f"removed {path} (left by process {match['pid']}, which is gone)"


def remove_stale_temporaries(folder: str) -> list[str]:
    """Clear what killed writers of this host left under ``folder``; return what was done.

    Temporary files and folders of processes that are gone are removed, a folder set aside by an
    ``atomic_folder`` replacement that was cut short is put back; a live writer's are left alone.
    """
    done = []
    for directory, dirs, files in os.walk(folder):
        for name in sorted(dirs + files):
            action = _clear_stale(directory, name)
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
    return [action for name in names if (action := _clear_stale(parent, name))]


@contextlib.contextmanager
def atomic_write(path: str) -> Iterator[str]:
    """Yield a temporary path to write; on success it is renamed to ``path``, on failure removed.

    A reader never sees a half-written ``path``: it is the old file or the whole new one.
    """
    tmp = temporary_path(path)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except UnwritableError:
        raise
    except OSError as err:
        raise UnwritableError(f"cannot write {path}: {err.strerror or err}") from err
    finally:
        if os.path.isfile(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_folder(folder: str) -> Iterator[str]:
    """Yield a temporary folder to fill; on success it replaces ``folder`` (``replace_folder``), on failure
    it is removed. A reader never sees a half-written folder; what a killed earlier replacement of
    ``folder`` left is cleared (or restored) first."""
    folder = folder.rstrip(os.sep)
    recover_folder(folder)
    tmp = _writer_path(folder, TEMPORARY, keep_extension=False)
    os.makedirs(tmp)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_folder(tmp, folder)


def replace_folder(new: str, folder: str) -> None:
    """Rename ``new`` to ``folder``: an existing ``folder`` is renamed aside first and removed last, so
    that at every moment ``folder`` is the whole old one, the whole new one, or (after a kill between
    the two renames) restorable from the aside copy by ``recover_folder``."""
    aside = None
    if os.path.lexists(folder):
        aside = _writer_path(folder, ASIDE, keep_extension=False)
        os.replace(folder, aside)
    os.replace(new, folder)
    if aside is not None:
        shutil.rmtree(aside)


def save_json(data: dict, path: str) -> None:
    """Write JSON atomically."""
    with atomic_write(path) as tmp, open(tmp, "w") as f:
        json.dump(data, f, indent=2)


def save_array(array: np.ndarray, path: str) -> None:
    """np.save atomically."""
    with atomic_write(path) as tmp:
        np.save(tmp, array)


def save_png(array: np.ndarray, path: str) -> None:
    """Save an RGB (or grey) uint8 image as PNG, atomically."""
    with atomic_write(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
