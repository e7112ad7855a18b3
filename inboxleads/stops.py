"""Signals, from the first instant of the process to its exit.

The command's entry point calls `install` before it imports anything heavy,
so SIGINT (Ctrl-C), SIGTERM, SIGHUP (unless ignored, as under nohup) and, on
Windows, SIGBREAK never raise
KeyboardInterrupt and never print a traceback. A handler only records the
signal and passes it on to whoever is attached (the running `add` job, which
hands it to its event loop thread-safely); a signal that comes before a run
is attached is kept and replayed when one attaches, so the run starts
stopped and still prints its summary.

Once a run is aborting (or a second signal came during start-up),
`arm_watchdog` bounds the time it may take to finish: if the process is still
alive when the watchdog fires (a write blocked on a full pipe, say), it exits
there and then.

Only `os` and `signal` are imported up front: this module runs before the
rest, and every millisecond before `install` is one in which Ctrl-C would
still raise KeyboardInterrupt.
"""

from __future__ import annotations

import os
import signal
import sys

# Not `typing.TYPE_CHECKING`: importing typing alone takes milliseconds here.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    from collections.abc import Callable
    from types import FrameType
    from typing import Any, TypeVar

    T = TypeVar("T")

SIGBREAK: int | None = getattr(signal, "SIGBREAK", None)
SIGHUP: int | None = getattr(signal, "SIGHUP", None)
# The signals that stop a run, and the exit status each gives.
EXIT_STATUS: dict[int, int] = {signal.SIGINT: 130, signal.SIGTERM: 143}
if SIGBREAK is not None:
    EXIT_STATUS[SIGBREAK] = 143
if SIGHUP is not None:
    # The terminal closed (an ssh session dropped): the status a hang-up always gave,
    # now with the summary and the reports.
    EXIT_STATUS[SIGHUP] = 129
NAMES: dict[int, str] = {
    signal.SIGINT: "the run was interrupted (SIGINT)",
    signal.SIGTERM: "the run was terminated (SIGTERM)",
}
if SIGBREAK is not None:
    NAMES[SIGBREAK] = "the run was terminated (Ctrl-Break)"
if SIGHUP is not None:
    NAMES[SIGHUP] = "the terminal hung up (SIGHUP)"

# After an abort (second signal, grace over, a bug), the process ends within this many
# seconds: in order if it can, else by the watchdog.
WATCHDOG_S = 1.8

_received: list[int] = []
_pending: list[int] = []
_target: Callable[[int], None] | None = None
_previous: dict[int, Any] = {}
_watchdog: threading.Timer | None = None
# The standard descriptors that were closed when the process started (now /dev/null).
closed_at_start: set[int] = set()


def _handle(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    target = _target
    if target is not None:
        target(signum)
        return
    _pending.append(signum)
    if len(_pending) > 1:
        # Start-up goes on, and the run it starts ends at once with its summary;
        # should start-up itself be stuck, the watchdog ends the process.
        arm_watchdog(WATCHDOG_S, EXIT_STATUS.get(_pending[0], 130))


def install() -> bool:
    """Install the handlers; False when they already were, or cannot be (not the
    main thread). Called from the main thread only, like `uninstall`."""
    if _previous:
        return False
    for signum in EXIT_STATUS:
        if signum == SIGHUP and signal.getsignal(signum) == signal.SIG_IGN:
            continue  # under nohup: a hang-up is not meant to stop anything
        try:
            _previous[signum] = signal.signal(signum, _handle)
        except ValueError:  # not the main thread
            uninstall()
            return False
    return True


def uninstall() -> None:
    """Put back the handlers that were there before `install`."""
    for signum, handler in _previous.items():
        signal.signal(signum, handler)
    _previous.clear()
    _pending.clear()


def exit_status(signum: int) -> int:
    """The exit status a run stopped by `signum` ends with."""
    return EXIT_STATUS.get(signum, 143)


def describe(signum: int) -> str:
    """What stopped the run, for its summary's `stop_reason`."""
    return NAMES.get(signum, f"signal {signum}")


def deadline_reason(seconds: float) -> str:
    """The `stop_reason` of a run that reached its --max-time."""
    return f"--max-time {seconds:g} s reached"


def received() -> list[int]:
    """Every stop signal the process has received so far, in order."""
    return list(_received)


def ignore() -> None:
    """The process has said all it will: from now on the stop signals are ignored.

    At exit the interpreter puts back the default action of every signal that
    has a Python handler, so a signal during its shutdown would end the process
    by that signal and hide the exit status already reported; an ignored one
    stays ignored."""
    for signum in EXIT_STATUS:
        try:
            signal.signal(signum, signal.SIG_IGN)
        except ValueError:  # not the main thread
            return


def attach(target: Callable[[int], None]) -> None:
    """Send every signal to `target` (called in the main thread, from the handler);
    the signals that came before are replayed now."""
    global _target
    _target = target
    while _pending:
        target(_pending.pop(0))


def detach() -> None:
    """Stop sending signals to the attached target."""
    global _target
    _target = None


def wait_for(work: Callable[[], T], what: str, max_time: float | None) -> T:
    """Run `work` (which may wait for good: a pipe, a fifo to open) in a thread of its
    own, so that a signal or --max-time still ends the run, with its summary, while it
    waits: `Interrupted` then, and the thread is left to its wait. The signals that
    count are those no run has taken yet (see `attach`)."""
    import threading
    import time

    from .errors import ExitStatus, Interrupted

    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as exc:  # handed to the caller below
            failure.append(exc)

    worker = threading.Thread(target=run, name="inboxleads-wait", daemon=True)
    worker.start()
    deadline = None if max_time is None else time.monotonic() + max_time

    while worker.is_alive():
        worker.join(0.05)
        stopped_meanwhile(what)
        if max_time is not None and deadline is not None and time.monotonic() >= deadline:
            raise Interrupted(
                f"stopped while waiting for {what}", ExitStatus.PARTIAL, deadline_reason(max_time)
            )
    if failure:
        raise failure[0]
    return outcome[0]


def stopped_meanwhile(what: str, patience_s: float = 0.0) -> None:
    """Raise `Interrupted` when a stop signal came while waiting for `what`, or comes
    within `patience_s`: a terminal that hangs up ends a read (EIO, or the end of the
    input) a moment before its SIGHUP arrives, and a loaded machine may take a second
    or more to deliver it."""
    import time

    from .errors import ExitStatus, Interrupted

    end = time.monotonic() + patience_s
    while True:
        if _pending:
            signum = _pending[0]
            why = f"stopped while waiting for {what}"
            raise Interrupted(why, ExitStatus(exit_status(signum)), describe(signum))
        if time.monotonic() >= end:
            return
        time.sleep(0.05)


def arm_watchdog(seconds: float, status: int) -> None:
    """Exit with `status` in `seconds` unless the process has ended by then."""
    import threading

    global _watchdog
    if _watchdog is not None:
        return
    _watchdog = threading.Timer(
        seconds, _hard_exit, (status, "the run could not finish in time; exiting now")
    )
    _watchdog.daemon = True
    _watchdog.start()


def disarm_watchdog() -> None:
    """The process is ending in order: the watchdog is not needed."""
    global _watchdog
    if _watchdog is not None:
        _watchdog.cancel()
        _watchdog = None


def _hard_exit(status: int, why: str) -> None:
    # The line is written from a thread of its own: stderr may be a pipe nobody
    # reads, and a blocked write must not keep the process alive.
    import threading

    line = f"inboxleads: {why}\n".encode()
    writer = threading.Thread(target=_write_stderr, args=(line,), daemon=True)
    writer.start()
    writer.join(0.2)
    os._exit(status)


def _write_stderr(data: bytes) -> None:
    try:
        os.write(2, data)
    except OSError:
        return


def reopen_closed_std_streams() -> None:
    """Put /dev/null on descriptors 0-2 where they are closed (`>&-`, `2>&-`), so that no
    file the run opens takes their numbers and receives what was meant for them."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            closed_at_start.add(fd)
            try:
                null = os.open(os.devnull, os.O_RDWR)
            except OSError:
                return
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            # Python found the descriptor closed and left its stream None, so the
            # option parser would write its usage errors to stdout, into a --json pipe.
            name = ("stdin", "stdout", "stderr")[fd]
            if fd > 0 and getattr(sys, name) is None:
                setattr(sys, name, open(fd, "w", encoding="utf-8", closefd=False))  # noqa: SIM115
