"""Run `python -m inboxleads ARGS` in an interpreter made to look like Windows where
it matters to the tool, so that its Windows paths run on any POSIX machine:

- no `fcntl`, `termios`, `pty`, `resource`, `pwd` or `grp` (importing them fails);
- none of the `os` functions Windows lacks (`fchmod` before Python 3.13,
  `pathconf`, `mkfifo`, `killpg`...);
- event loops without `add_signal_handler` (NotImplementedError, as on
  Windows), nor `add_reader` (the Proactor loop has none);
- `select.select` that takes sockets only;
- a SIGBREAK (Ctrl-Break): signal 21 here, so that a test can send it.

What it cannot make Windows-like: `sys.platform` stays as it is (libraries keep
their POSIX branch), so the run lock is filelock's soft lock (what a POSIX
system without `flock` gets: a file naming its owner), not `LockFileEx`; files
keep POSIX modes; there is no CRLF text mode and no console.

Usage: `python tests/windows_like.py add CAMPAIGN FILE ...`.
"""

from __future__ import annotations

import asyncio
import os
import runpy
import select
import signal
import stat
import sys
from typing import Any

MISSING_MODULES = ("fcntl", "termios", "pty", "tty", "resource", "pwd", "grp")
# The user and group ids stay: libraries such as platformdirs read them on the POSIX
# branch that sys.platform still chooses here (on Windows they take another), and the
# package's own use of them would fail `mypy --platform win32` in CI.
MISSING_OS = (
    "fchmod",
    "fchown",
    "lchown",
    "chown",
    "pathconf",
    "fpathconf",
    "statvfs",
    "fstatvfs",
    "mkfifo",
    "mknod",
    "killpg",
    "setsid",
    "openpty",
    "forkpty",
    "ttyname",
    "sync",
)
# Windows numbers SIGBREAK 21; on Linux that is SIGTTIN, which the tool does not use.
SIGBREAK = 21


def _not_on_windows(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError


def _sockets_only_select(rlist: Any, wlist: Any, xlist: Any, timeout: Any = None) -> Any:
    for fd in (*rlist, *wlist, *xlist):
        number = fd if isinstance(fd, int) else fd.fileno()
        if not stat.S_ISSOCK(os.fstat(number).st_mode):
            raise OSError(10038, "An operation was attempted on something that is not a socket")
    return _select(rlist, wlist, xlist, timeout)


_select = select.select


def make_windows_like() -> None:
    for name in MISSING_MODULES:
        sys.modules[name] = None  # type: ignore[assignment]
    for name in MISSING_OS:
        if hasattr(os, name):
            delattr(os, name)
    loop_class: Any = asyncio.SelectorEventLoop
    for method in ("add_signal_handler", "remove_signal_handler", "add_reader", "add_writer"):
        setattr(loop_class, method, _not_on_windows)
    select.select = _sockets_only_select
    signal.SIGBREAK = SIGBREAK  # type: ignore[attr-defined]


if __name__ == "__main__":
    make_windows_like()
    sys.argv = ["inboxleads", *sys.argv[1:]]
    runpy.run_module("inboxleads", run_name="__main__", alter_sys=True)
