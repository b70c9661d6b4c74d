"""Stop signals: SIGTERM and SIGINT end a run after the current step with its state saved, exit code 128 + N;
loader workers ignore them and are stopped by the main process (why: docs/training.md)."""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing
import signal
import threading
from typing import Iterator

from utils.locks import close_inherited_locks

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
SIGNAL_EXIT_BASE = 128  # a run stopped by signal N exits with 128 + N, as shells report it
WORKER_EXIT_TIMEOUT_S = 5.0  # how long the exit waits for each killed worker
_exit_cleanup_registered = False


class StopSignal:
    """Turns SIGTERM and SIGINT into a flag that the training loop reads after each step.

    A second SIGINT (Ctrl-C twice) restores the default behaviour and re-raises it; a repeated SIGTERM
    is ignored, so that the state being saved is not cut short.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict = {}

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None:
            if signum == signal.SIGINT:
                self.uninstall()
                signal.raise_signal(signum)
            return
        self.signum = signum
        logger.warning(
            "received %s: the state is saved after this step, then the run stops", signal.Signals(signum).name
        )

    @property
    def received(self) -> bool:
        """Whether a stop signal has come."""
        return self.signum is not None

    def install(self) -> "StopSignal":
        """Install the handlers (only possible in the main thread; elsewhere signals keep their default). A
        signal ignored when the run starts (``nohup``, a shell's background job for SIGINT) stays ignored."""
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                if signal.getsignal(signum) is not signal.SIG_IGN:
                    self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def uninstall(self) -> None:
        """Put back the handlers that were there before ``install``."""
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}


@contextlib.contextmanager
def blocked_while_starting_workers() -> Iterator[None]:
    """Block the stop signals in this thread (forked loader workers inherit the mask); a signal that
    arrives meanwhile is handled when the block ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def loader_worker_init(worker_id: int) -> None:
    """``worker_init_fn`` of the training and validation loaders: ignore the stop signals (the main
    process stops the workers when it has saved), unblock them, and let go of the run lock."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    close_inherited_locks()


def stop_workers_at_exit() -> None:
    """Make the interpreter's exit kill the loader workers still alive (persistent workers of a Trainer
    not closed, an iterator left behind by an exception): they ignore SIGTERM, the signal that
    multiprocessing's exit handler sends them before joining them without a timeout."""
    global _exit_cleanup_registered
    if not _exit_cleanup_registered:
        atexit.register(_kill_daemon_children)  # atexit runs last-registered first: before multiprocessing's
        _exit_cleanup_registered = True


def _kill_daemon_children() -> None:
    # torch's SIGCHLD handler reports a killed worker as an error; at exit nobody needs that report
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for process in multiprocessing.active_children():
        if process.daemon:  # loader workers are daemonic; the exit would end them anyway
            process.kill()
            process.join(WORKER_EXIT_TIMEOUT_S)


class Interrupted(Exception):
    """A run stopped by a signal; ``exit_code`` is 128 + the signal number. The message says the state is
    saved in ``path`` and --resume continues it, or, given, ``message`` (the demo's stops before training)."""

    def __init__(self, signum: int, path: str | None, message: str | None = None) -> None:
        said = message or f"the state is saved in {path}; continue with --resume"
        super().__init__(f"stopped by {signal.Signals(signum).name}; {said}")
        self.exit_code = SIGNAL_EXIT_BASE + signum
