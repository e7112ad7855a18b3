"""The `inboxleads` command's entry point: signals first, then everything else.

Kept to the standard library until the handlers are in place, so that a
Ctrl-C in the first instant of the process already stops it in order.
"""

from __future__ import annotations

import os
import sys

from . import stops


def main() -> None:
    """Install the signal handlers, then run the command line."""
    stops.install()
    stops.reopen_closed_std_streams()
    # httpx imports its own command line (and with it pygments and rich's syntax
    # highlighting) unless that import fails, when it puts a stub in its place:
    # about 40 ms of every start, for a tool that never runs it.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    from . import outlet

    stderr = outlet.install()
    status: int | None = None
    try:
        from .cli import main as cli_main

        cli_main()
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else None
        raise
    finally:
        stops.ignore()
        if stderr is not None:
            # The last lines (the summary) go out if stderr takes them in time.
            stderr.drain()
        if status is not None:
            _exit_now(status)


def _exit_now(status: int) -> None:
    """End the process without freeing its objects one by one (after a million leads,
    that took 0.1 s), once the output is out; returns, for the usual exit, when it
    cannot be flushed or a tracer or profiler will want to write what it saw."""
    if sys.gettrace() is not None or sys.getprofile() is not None:
        return
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):
        return
    os._exit(status)
