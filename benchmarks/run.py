"""Benchmarks of `inboxleads add` against the sandbox server on loopback.

Every figure with a target is a ratio against the peer (`benchmarks/peer_async.py`,
the minimal concurrent sender) measured in the same run, or a time over bare Python:

  wall       whole-process wall time, ours / the peer, both at concurrency 8 against a
             server answering in 0.2 s, 400,000 handles: medians of 3 runs each,
             alternating (target <= 1.00x)
  cost       client CPU (user + sys) per million identifiers and peak RSS, ours / the
             peer, both at concurrency 4 against an instant server, best of 2 each
             (targets <= 1.3x and <= 1.00x); a --dry-run's CPU for information
  startup    `inboxleads --help` over `python -c pass`, and the time from process start
             to the first request's arrival at the server over `python -c pass`,
             medians (targets <= 0.15 s; the peer's first request beside ours)
  polite     429 answers when 16 requests in flight meet a limit of 4 per 1 s window,
             40 batches of 100 (target <= 5; the peer has no retries: not run)
  ratelimit  goodput as a fraction of a 20 requests/s limit and the share of 429s, in
             batches of 10: primary 1200 per 60 s window (targets >= 0.97, <= 1 %),
             secondary 20 per 1 s window (target >= 0.90); the look-up counts as a
             request
  latency    efficiency at concurrency 1, 4, 8, 16 against a server answering in 0.1 s
             (informational)
  peers      ours (concurrency 8) against a sequential httpx script and against
             split | xargs -P 8 curl, same data, same server (informational)

    .venv/bin/python benchmarks/run.py            # the full run (about 5 minutes)
    .venv/bin/python benchmarks/run.py --quick    # smaller inputs (about 1.5 minutes)
    .venv/bin/python benchmarks/run.py --only wall,startup --json results.json

Servers are started as `python -m inboxleads sandbox --port 0 ...` in their own
processes and stopped with SIGTERM, also on Ctrl-C or failure. Inputs are
generated into a temporary directory that is removed at the end.
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    # Run as a script, Python puts this file's folder on the path, not the package's parent.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks.cli import command_line

    command_line()
