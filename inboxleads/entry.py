"""The `inboxleads` command's entry point: signals first, then everything else.

Kept to the standard library until the handlers are in place, so that a
Ctrl-C in the first instant of the process already stops it in order.
"""

from __future__ import annotations

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
    try:
        from .cli import main as cli_main

        cli_main()
    finally:
        stops.ignore()
        if stderr is not None:
            # The last lines (the summary) go out if stderr takes them in time.
            stderr.drain()
