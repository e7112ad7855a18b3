"""startup: `inboxleads --help` and the first request's arrival, over `python -c pass`."""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.context import CLIENTS, Context, Row, first_request_at, run_client
from benchmarks.launcher import run_measured
from benchmarks.sections.wall import WALL_CONCURRENCY
from benchmarks.server import Sandbox

STARTUP_RUNS = 10
FIRST_REQUEST_RUNS = 7
FIRST_REQUEST_HANDLES = 2000
STARTUP_TARGET_S = 0.15
FIRST_REQUEST_TARGET_S = 0.15


def _median_wall(argv: list[str], runs: int, cwd: Path) -> float:
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd)  # warm
    return statistics.median(run_measured(argv, cwd=cwd, timeout_s=60).wall_s for _ in range(runs))


def bench_startup(ctx: Context) -> None:
    """`inboxleads --help`, and the first request of ours and of the peer, over
    `python -c pass`: medians."""
    bare = _median_wall([sys.executable, "-c", "pass"], STARTUP_RUNS, ctx.work)
    ours = _median_wall([*ctx.client, "--help"], STARTUP_RUNS, ctx.work)
    over = ours - bare
    detail: dict[str, Any] = {"python_s": round(bare, 4), "inboxleads_help_s": round(ours, 4)}
    note = f"{ours:.3f} s vs {bare:.3f} s for python -c pass, medians of {STARTUP_RUNS}"
    if over > STARTUP_TARGET_S:
        detail["top_imports"] = costly_imports(ctx)
        note += "; slowest imports: " + ", ".join(
            f"{name} {ms:.0f} ms" for name, ms in detail["top_imports"][:4]
        )
    ctx.add(
        Row(
            "startup",
            "inboxleads --help over python -c pass",
            over,
            "s",
            f"<= {STARTUP_TARGET_S:.2f} s",
            over <= STARTUP_TARGET_S,
            note,
            detail,
        )
    )
    first = first_requests(ctx)
    delay = {who: statistics.median(first[who]) - bare for who in CLIENTS}
    detail = {
        "handles": FIRST_REQUEST_HANDLES,
        "python_s": round(bare, 4),
        "ours_over_python_s": round(delay["ours"], 4),
        "peer_over_python_s": round(delay["peer"], 4),
        "ours_s": [round(value, 4) for value in first["ours"]],
        "peer_s": [round(value, 4) for value in first["peer"]],
    }
    ctx.add(
        Row(
            "startup",
            "first request over python -c pass",
            delay["ours"],
            "s",
            f"<= {FIRST_REQUEST_TARGET_S:.2f} s",
            delay["ours"] <= FIRST_REQUEST_TARGET_S,
            f"peer {delay['peer']:.3f} s; from process start to the first request's arrival "
            f"(ours: the look-up; peer: its first POST), medians of {FIRST_REQUEST_RUNS}, "
            f"minus {bare:.3f} s",
            detail,
        )
    )


def first_requests(ctx: Context) -> dict[str, list[float]]:
    """Seconds from each client's process start to its first request's arrival at the
    server, `FIRST_REQUEST_RUNS` runs each after a warm-up, alternating; one server."""
    path = ctx.handles_file(FIRST_REQUEST_HANDLES, prefix="first")
    first: dict[str, list[float]] = {who: [] for who in CLIENTS}
    with Sandbox() as server:
        for index in range(FIRST_REQUEST_RUNS + 1):
            for who in CLIENTS:
                campaign = ctx.campaign(f"first{who}")
                run, _ = run_client(ctx, server, who, path, campaign, WALL_CONCURRENCY)
                # Both clocks are CLOCK_MONOTONIC, system-wide on Linux.
                arrived = first_request_at(server.state(), campaign)
                if index:  # the first of each warms the page cache
                    first[who].append(arrived - run.started_s)
    return first


def costly_imports(ctx: Context) -> list[tuple[str, float]]:
    """Top-level imports of `inboxleads --help` by cumulative time (ms), from -X importtime."""
    run = run_measured(
        [sys.executable, "-X", "importtime", "-m", "inboxleads", "--help"], cwd=ctx.work
    )
    costs: dict[str, float] = {}
    for line in run.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if match and len(match.group(3)) <= 3:  # nested one level under the main module
            name = match.group(4)
            costs[name] = max(costs.get(name, 0.0), int(match.group(2)) / 1000)
    return sorted(costs.items(), key=lambda item: -item[1])[:10]
