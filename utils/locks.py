"""An exclusive OS lock on a file (``flock``) that names its holder: one run per run folder, one download
of a released model at a time."""

from __future__ import annotations

import fcntl
import logging
import os
import time
import weakref

from utils import HOST, InputError

logger = logging.getLogger(__name__)

_HELD_LOCKS: weakref.WeakSet[FileLock] = weakref.WeakSet()  # this process's locks (forked workers close them)


class FileLock:
    """An exclusive OS lock (``flock``) on ``<folder>/<name>``, held for the life of a run or of a download.

    The kernel releases it when the holder exits or dies; a second holder is refused with one line
    that names the first (process id, host, start time, as the holder wrote them into the file) and
    ``busy_hint``, or waits for it with ``acquire(wait=True)``.
    """

    def __init__(self, folder: str, name: str, busy_hint: str = "wait for it to end") -> None:
        self.path = os.path.join(folder, name)
        self.busy_hint = busy_hint
        self.file = None

    def acquire(self, wait: bool = False) -> FileLock:
        """Take the lock or raise InputError naming its holder; with ``wait``, block until the holder lets
        it go (the kernel wakes this process: no polling), saying in the log whom it waits for."""
        file = open(self.path, "a+")
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or "one that has not said who it is"
            if wait:
                logger.info("waiting for %s, held by a process (%s)", self.path, holder)
                fcntl.flock(file, fcntl.LOCK_EX)
            else:
                file.close()
                raise InputError(
                    f"{os.path.dirname(self.path)} is in use by another run ({holder}): {self.busy_hint}"
                ) from None
        file.truncate(0)
        file.write(f"pid {os.getpid()} on host {HOST}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        file.flush()
        self.file = file
        _HELD_LOCKS.add(self)
        return self

    def release(self) -> None:
        """Let the lock go (the file stays: removing it would race with a process opening it)."""
        if self.file is not None:
            _HELD_LOCKS.discard(self)
            self.file.close()
            self.file = None


def close_inherited_locks() -> None:
    """In a forked child (a loader worker): close the locks' files it inherited, so that a lock dies with
    the process that took it and not with the last of its children."""
    for lock in list(_HELD_LOCKS):
        lock.release()
