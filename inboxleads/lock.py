"""The run lock: one run at a time per campaign and journal, so two cron runs never
overlap.

The lock is the operating system's (`flock` on POSIX, `LockFileEx` on Windows,
through `filelock`), held on a private file beside the journal: it goes with the
process, so a run that was killed leaves no stale lock behind. Where neither
exists, `filelock` falls back to a lock file that records its owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from collections.abc import Callable
from pathlib import Path

from .errors import Interrupted, JournalError, LockHeld
from .files import HAS_MODES, make_folder

with warnings.catch_warnings():
    # Without fcntl (not a Windows, not a full POSIX system) filelock warns at import
    # that it falls back to its soft lock: a fact for the docs, not for every run.
    warnings.simplefilter("ignore")
    import filelock

# Between two attempts while --wait-lock waits: short, so a stop is taken at once.
LOCK_POLL_S = 0.1


class RunLock:
    """An exclusive lock on `path`, taken without blocking: a held lock is `LockHeld`,
    or polled for (`acquire_async`) while the run may still be stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock: filelock.BaseFileLock | None = None

    def acquire(self) -> None:
        """Take the lock, or raise `LockHeld`."""
        if not self.try_acquire():
            raise self._held()

    async def acquire_async(self, wait: bool, given_up: Callable[[], bool]) -> None:
        """Take the lock; with `wait`, poll until it is free or `given_up()` (a stop)."""
        while not self.try_acquire():
            if not wait:
                raise self._held()
            if given_up():
                raise Interrupted("stopped while waiting for another run's lock")
            await asyncio.sleep(LOCK_POLL_S)

    def try_acquire(self) -> bool:
        """Take the lock if it is free (`JournalError`: the lock file cannot be made)."""
        try:
            make_folder(self.path.parent)
            if HAS_MODES:
                lock = filelock.FileLock(self.path, mode=0o600, thread_local=False)
            else:  # an explicit mode would be set with os.fchmod
                lock = filelock.FileLock(self.path, thread_local=False)
            lock.acquire(blocking=False)
        except filelock.Timeout:
            return False
        except OSError as exc:
            raise JournalError(f"the lock {self.path}: {exc.strerror or exc}") from None
        self._lock = lock
        return True

    def _held(self) -> LockHeld:
        return LockHeld(
            f"another inboxleads run holds {self.path}; it is still sending to this "
            "campaign (use --wait-lock to wait for it)"
        )

    def release(self) -> None:
        """Let the next run in (nothing happens when the lock was not taken)."""
        if self._lock is not None:
            lock, self._lock = self._lock, None
            with contextlib.suppress(OSError):  # closing its file ends the lock anyway
                lock.release()
