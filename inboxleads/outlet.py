"""stderr that never holds the program up.

Whatever reads our stderr may stop reading (a log shipper that hangs, a
terminal paused with Ctrl-S, `2>&1 | slow-consumer`): a plain write then
blocks, and a blocked main thread runs no event loop and no signal handler.
`Outlet` takes its place as `sys.stderr` in the real process: `write` only
queues the text, and a daemon thread writes it out in order. When the queue
holds more than `LIMIT` characters (nobody has read for a long while), new
writes are dropped and counted, never waited on. A broken or closed stderr
loses the text, nothing else.

At exit, `drain` gives the thread a bounded time to write what is queued (the
final summary), so the process always ends.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
import time
from typing import TextIO

LIMIT = 1 << 20  # characters queued before new writes are dropped
DRAIN_S = 2.0  # at exit, how long the queue may take to go out


class Outlet(io.TextIOBase):
    """A text stream whose writes are done by a thread of its own (see the module)."""

    def __init__(self, target: TextIO, *, limit: int = LIMIT) -> None:
        super().__init__()
        self._target = target
        self._limit = limit
        self._cond = threading.Condition()
        self._queue: list[str] = []
        self._size = 0
        self._busy = False
        self._broken = False
        self._thread: threading.Thread | None = None
        self.dropped = 0
        # Bytes go straight to a descriptor of our own: a thread blocked in the
        # write then holds no lock the interpreter needs at exit. A Windows
        # console is written through its stream (it wants text, not bytes).
        self._fd = -1
        with contextlib.suppress(OSError, ValueError, AttributeError, io.UnsupportedOperation):
            if not (sys.platform == "win32" and target.isatty()):
                self._fd = os.dup(target.fileno())

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._target, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str:  # type: ignore[override]
        return getattr(self._target, "errors", None) or "backslashreplace"

    def isatty(self) -> bool:
        try:
            return self._target.isatty()
        except (OSError, ValueError):
            return False

    def fileno(self) -> int:
        return self._target.fileno()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if not text:
            return 0
        with self._cond:
            if self._broken:
                return len(text)
            if self._size + len(text) > self._limit:
                self.dropped += len(text)
                return len(text)
            self._queue.append(text)
            self._size += len(text)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="inboxleads-stderr", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        return len(text)

    def flush(self) -> None:
        """Nothing to wait for: the thread writes as soon as it can (see `drain`)."""

    def drain(self, timeout_s: float = DRAIN_S) -> bool:
        """Wait up to `timeout_s` for everything queued to be written; True when it was."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._broken or not (self._queue or self._busy), timeout_s
            )

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queue))
                text = "".join(self._queue)
                self._queue.clear()
                self._size = 0
                self._busy = True
            try:
                self._write(text)
                broken = False
            except (OSError, ValueError):
                broken = True
            with self._cond:
                self._busy = False
                if broken:
                    self._broken = True
                    self._queue.clear()
                    self._size = 0
                self._cond.notify_all()
            if broken:
                return

    def _write(self, text: str) -> None:
        if self._fd < 0:
            self._target.write(text)
            self._target.flush()
            return
        data = memoryview(text.encode(self.encoding, self.errors))
        while data:
            try:
                data = data[os.write(self._fd, data) :]
            except BlockingIOError:
                # Someone made the shared descriptor non-blocking: wait until it takes more.
                time.sleep(0.05)


def install() -> Outlet | None:
    """Put an `Outlet` in place of `sys.stderr`; None when there is no stderr to wrap."""
    target = sys.stderr
    if target is None or isinstance(target, Outlet):
        return None
    outlet = Outlet(target)
    sys.stderr = outlet
    return outlet
