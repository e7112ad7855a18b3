"""cost: client CPU per million identifiers and peak RSS, ours over the peer's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.context import CLIENTS, Context, Row, run_client
from benchmarks.launcher import Measured, run_measured
from benchmarks.server import Sandbox

COST_CONCURRENCY = 4
COST_RUNS = 2
CPU_TARGET = 1.3
RSS_TARGET = 1.00


def bench_cost(ctx: Context) -> None:
    """Client CPU per million identifiers and peak RSS, ours over the peer's, both at
    concurrency 4 against an instant server: best of `COST_RUNS` runs each, alternating."""
    handles = ctx.cost_handles
    path = ctx.handles_file(handles)
    runs: dict[str, list[Measured]] = {who: [] for who in CLIENTS}
    short: list[str] = []
    with Sandbox() as server:
        for _ in range(COST_RUNS):
            for who in CLIENTS:
                campaign = ctx.campaign(f"cost{who}")
                run, delivered = run_client(ctx, server, who, path, campaign, COST_CONCURRENCY)
                runs[who].append(run)
                if delivered != handles:
                    short.append(f"{who} delivered {delivered:,}")
    # Start-up included: it is part of what a run costs.
    per_million = 1_000_000 / handles
    best = {who: min(runs[who], key=lambda run: run.cpu_s) for who in CLIENTS}
    cpu = {who: best[who].cpu_s * per_million for who in CLIENTS}
    rss = {who: min(run.maxrss_mb for run in runs[who]) for who in CLIENTS}
    cpu_ratio = cpu["ours"] / cpu["peer"]
    rss_ratio = rss["ours"] / rss["peer"]
    detail: dict[str, Any] = {
        "handles": handles,
        "concurrency": COST_CONCURRENCY,
        "all_delivered": not short,
    }
    for who in CLIENTS:
        detail[f"{who}_cpu_s_per_million"] = round(cpu[who], 3)
        detail[f"{who}_maxrss_mb"] = round(rss[who], 1)
        detail[f"{who}_runs"] = [
            {
                "user_s": round(run.user_s, 3),
                "sys_s": round(run.sys_s, 3),
                "wall_s": round(run.wall_s, 3),
                "maxrss_mb": round(run.maxrss_mb, 1),
            }
            for run in runs[who]
        ]
    size = "" if handles == 1_000_000 else f", x{per_million:g} from {handles:,}"
    ours, peer = best["ours"], best["peer"]
    ctx.add(
        Row(
            "cost",
            "client CPU per million identifiers, ours / peer",
            cpu_ratio,
            "x",
            f"<= {CPU_TARGET:.2f}x",
            cpu_ratio <= CPU_TARGET and not short,
            f"ours {cpu['ours']:.2f} s (user {ours.user_s:.2f} + sys {ours.sys_s:.2f}) vs "
            f"peer {cpu['peer']:.2f} s (user {peer.user_s:.2f} + sys {peer.sys_s:.2f}), "
            f"best of {COST_RUNS}{size}" + (f"; {', '.join(short)}" if short else ""),
            detail,
        )
    )
    ctx.add(
        Row(
            "cost",
            "client peak RSS, ours / peer",
            rss_ratio,
            "x",
            f"<= {RSS_TARGET:.2f}x",
            rss_ratio <= RSS_TARGET and not short,
            f"ours {rss['ours']:.0f} MB vs peer {rss['peer']:.0f} MB, best of {COST_RUNS}, "
            f"{handles:,} identifiers",
            detail,
        )
    )
    # Where the CPU goes: the same input read, checked and batched, nothing sent.
    dry = dry_run(ctx, path)
    ctx.add(
        Row(
            "cost",
            "  of which reading (--dry-run) CPU-s",
            dry.cpu_s,
            "s",
            note=f"informational: the same {handles:,} identifiers, nothing sent",
            detail={"user_s": round(dry.user_s, 3), "sys_s": round(dry.sys_s, 3)},
        )
    )


def dry_run(ctx: Context, path: Path) -> Measured:
    """`inboxleads add --dry-run` over `path`: reading, checking and batching only."""
    argv = [*ctx.client, "add", "dryrun", str(path), "--dry-run", "--json", "--quiet"]
    return run_measured(argv, cwd=ctx.work)
