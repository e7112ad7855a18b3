"""wall: whole-process wall time of ours over the peer's, against a server answering in 0.2 s."""

from __future__ import annotations

import math
import statistics
from typing import Any

from benchmarks.context import CHUNK, CLIENTS, Context, Row, campaign_span, run_client
from benchmarks.server import Sandbox

WALL_HANDLES = 400_000
WALL_HANDLES_QUICK = 100_000
WALL_LATENCY_S = 0.2
WALL_CONCURRENCY = 8
WALL_RUNS = 3
WALL_TARGET = 1.00


def bench_wall(ctx: Context) -> None:
    """Whole-process wall time of ours over the peer's, both at concurrency 8 against a
    server answering in 0.2 s: medians of `WALL_RUNS` runs each, alternating, one server."""
    handles = WALL_HANDLES_QUICK if ctx.quick else WALL_HANDLES
    path = ctx.handles_file(handles)
    walls: dict[str, list[float]] = {who: [] for who in CLIENTS}
    spans: dict[str, list[float]] = {who: [] for who in CLIENTS}
    short: list[str] = []
    with Sandbox("--latency", f"{WALL_LATENCY_S:g}") as server:
        for _ in range(WALL_RUNS):
            for who in CLIENTS:
                campaign = ctx.campaign(f"wall{who}")
                run, delivered = run_client(ctx, server, who, path, campaign, WALL_CONCURRENCY)
                # Runs follow one another, so the server's last answer is this run's.
                spans[who].append(campaign_span(server.state(), campaign))
                walls[who].append(run.wall_s)
                if delivered != handles:
                    short.append(f"{who} delivered {delivered:,}")
    wall = {who: statistics.median(walls[who]) for who in CLIENTS}
    span = {who: statistics.median(spans[who]) for who in CLIENTS}
    ratio = wall["ours"] / wall["peer"]
    ideal = math.ceil(math.ceil(handles / CHUNK) / WALL_CONCURRENCY) * WALL_LATENCY_S
    detail: dict[str, Any] = {
        "handles": handles,
        "latency_s": WALL_LATENCY_S,
        "concurrency": WALL_CONCURRENCY,
        "ideal_s": round(ideal, 3),
        "all_delivered": not short,
    }
    for who in CLIENTS:
        detail[f"{who}_median_wall_s"] = round(wall[who], 3)
        detail[f"{who}_median_server_span_s"] = round(span[who], 3)
        detail[f"{who}_wall_s"] = [round(value, 3) for value in walls[who]]
        detail[f"{who}_server_span_s"] = [round(value, 3) for value in spans[who]]
    ctx.add(
        Row(
            "wall",
            f"wall, ours / peer ({handles:,} handles, c={WALL_CONCURRENCY})",
            ratio,
            "x",
            f"<= {WALL_TARGET:.2f}x",
            ratio <= WALL_TARGET and not short,
            f"ours {wall['ours']:.2f} s vs peer {wall['peer']:.2f} s (medians of {WALL_RUNS}); "
            f"server spans {span['ours']:.2f} vs {span['peer']:.2f} s; ideal {ideal:.1f} s"
            + (f"; {', '.join(short)}" if short else ""),
            detail,
        )
    )
