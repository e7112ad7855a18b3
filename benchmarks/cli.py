"""The command line: options, the run of the sections, the results."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, NoReturn

from benchmarks.context import (
    CHUNK,
    CLIENTS,
    Context,
    Row,
    answers_by_status,
    campaign_span,
    client_command,
    first_request_at,
    leads_span,
    run_client,
    run_ours,
)
from benchmarks.launcher import (
    HERE,
    ROOT,
    Measured,
    cleanup_children,
    compile_package,
    run_measured,
    terminate_on_signals,
)
from benchmarks.server import Sandbox

DEFAULT_SVG = ROOT / "docs" / "benchmark-efficiency.svg"
SECTIONS = ("wall", "cost", "startup", "polite", "ratelimit", "latency", "peers")

# wall: a latency-bound upload, ours against the peer
WALL_HANDLES = 400_000
WALL_HANDLES_QUICK = 100_000
WALL_LATENCY_S = 0.2
WALL_CONCURRENCY = 8
WALL_RUNS = 3
WALL_TARGET = 1.00

# cost: against an instant server
COST_CONCURRENCY = 4
COST_RUNS = 2
CPU_TARGET = 1.3
RSS_TARGET = 1.00

# startup
STARTUP_RUNS = 10
FIRST_REQUEST_RUNS = 7
FIRST_REQUEST_HANDLES = 2000
STARTUP_TARGET_S = 0.15
FIRST_REQUEST_TARGET_S = 0.15

# polite: many requests in flight against a tight limit
POLITE_LIMIT = 4  # requests per 1 s window
POLITE_HANDLES = 4000
POLITE_BATCH = 100
POLITE_CONCURRENCY = 16
POLITE_MAX_429 = 5

# ratelimit
RATE = 20  # requests per second, whichever window expresses it
RATE_BATCH = 10
GOODPUT_PRIMARY = 0.97
SHARE_429_PRIMARY = 1.0  # percent
GOODPUT_SECONDARY = 0.90

# latency and peers (informational)
CONCURRENCIES = (1, 4, 8, 16)
LATENCY_S = 0.1
PEER_CONCURRENCY = 8


# -- sections -------------------------------------------------------------------------


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


def bench_polite(ctx: Context) -> None:
    """429 answers when 16 requests in flight meet a limit of 4 per 1 s window."""
    path = ctx.handles_file(POLITE_HANDLES, prefix="polite")
    options = ("--rate-limit", str(POLITE_LIMIT), "--rate-window", "1")
    campaign = ctx.campaign("polite")
    with Sandbox(*options) as server:
        run, summary = run_ours(
            ctx,
            server,
            path,
            campaign,
            *("--batch-size", str(POLITE_BATCH), "--concurrency", str(POLITE_CONCURRENCY)),
        )
        state = server.state()
    answers = answers_by_status(state)
    refused = answers.get(429, 0)
    delivered = int(summary["delivered"])
    complete = delivered == POLITE_HANDLES
    ok = answers.get(200, 0)
    # At 4 a window, `ok` requests need ceil(ok / 4) windows: the last starts one earlier.
    ideal = (math.ceil(ok / POLITE_LIMIT) - 1) * 1.0
    detail = {
        "limit": POLITE_LIMIT,
        "window_s": 1.0,
        "handles": POLITE_HANDLES,
        "batch_size": POLITE_BATCH,
        "concurrency": POLITE_CONCURRENCY,
        "by_status": state["by_status"],
        "lookups": state.get("lookups", {}),
        "answers_429": refused,
        "delivered": delivered,
        "client_wall_s": round(run.wall_s, 3),
        "server_span_s": round(campaign_span(state, campaign), 3),
        "ideal_span_s": ideal,
        "max_in_flight": state.get("max_in_flight"),
    }
    label = f"{POLITE_LIMIT}/1s, c={POLITE_CONCURRENCY}, {POLITE_HANDLES // POLITE_BATCH} batches"
    ctx.add(
        Row(
            "polite",
            f"429 answers ({label})",
            refused,
            "n",
            f"<= {POLITE_MAX_429}",
            refused <= POLITE_MAX_429 and complete,
            f"of {sum(answers.values())} answers, look-up included; the peer has no retries "
            "and is not run here",
            detail,
        )
    )
    ctx.add(
        Row(
            "polite",
            "  wall time",
            run.wall_s,
            "s",
            note=f"informational: {delivered:,} of {POLITE_HANDLES:,} delivered; server span "
            f"{detail['server_span_s']:.2f} s, ideal {ideal:.0f} s for {ok} requests at "
            f"{POLITE_LIMIT}/s",
            detail=detail,
        )
    )


def bench_ratelimit(ctx: Context) -> None:
    """Goodput under 20 requests/s, in batches of 10."""
    # Seconds of requests at the limit, per variant: (primary, secondary).
    seconds = (8, 5) if ctx.quick else (20, 15)
    # Primary: a per-minute sliding window, as the real API counts. Shorter than the
    # window, it measures how evenly the client paces; the 1 s window tests 429
    # avoidance over many windows, with a reset header of 1 s resolution.
    variants = [
        (RATE * 60, 60.0, "primary", seconds[0], GOODPUT_PRIMARY),
        (RATE, 1.0, "secondary", seconds[1], GOODPUT_SECONDARY),
    ]
    for limit, window, role, duration, goodput_target in variants:
        uploads = RATE * duration
        path = ctx.handles_file(uploads * RATE_BATCH, prefix=f"r{limit}")
        options = ("--rate-limit", str(limit), "--rate-window", f"{window:g}")
        campaign = ctx.campaign("rate")
        with Sandbox(*options) as server:
            run, summary = run_ours(ctx, server, path, campaign, "--batch-size", str(RATE_BATCH))
            state = server.state()
        answers = answers_by_status(state)
        total = sum(answers.values()) + sum(state.get("faults", {}).values())
        # The look-up uses a slot of the budget like an upload: its 200 counts as goodput
        # and the span starts at its arrival.
        ok = answers.get(200, 0)
        span = campaign_span(state, campaign)
        goodput = ok / span / RATE
        share_429 = 100.0 * answers.get(429, 0) / total if total else 0.0
        delivered = summary["delivered"] == uploads * RATE_BATCH
        label = f"{limit}/{window:g}s"
        detail = {
            "limit": limit,
            "window_s": window,
            "requests": total,
            "by_status": state["by_status"],
            "lookups": state.get("lookups", {}),
            "server_span_s": round(span, 3),
            "client_wall_s": round(run.wall_s, 3),
            "all_delivered": delivered,
        }
        ctx.add(
            Row(
                "ratelimit",
                f"goodput / 20 req/s ({label}, {role})",
                goodput,
                "",
                f">= {goodput_target:.2f}",
                goodput >= goodput_target and delivered,
                f"{ok} x 200 (look-up included) in {span:.1f} s from the look-up's arrival "
                "to the last answer; the peer has no pacing and is not run"
                + ("" if delivered else "; NOT ALL DELIVERED"),
                detail,
            )
        )
        primary = role == "primary"
        ctx.add(
            Row(
                "ratelimit",
                f"429 share ({label}, {role})",
                share_429,
                "%",
                f"<= {SHARE_429_PRIMARY:g} %" if primary else "",
                share_429 <= SHARE_429_PRIMARY if primary else None,
                f"{answers.get(429, 0)} of {total} answers"
                + ("" if primary else "; informational"),
                detail,
            )
        )


def bench_latency(ctx: Context) -> None:
    """Efficiency against a 0.1 s server at each concurrency, a fresh server each
    (informational)."""
    path = ctx.handles_file(ctx.handles)
    for concurrency in CONCURRENCIES:
        with Sandbox("--latency", str(LATENCY_S)) as server:
            campaign = ctx.campaign(f"lat{concurrency}")
            run, summary = run_ours(ctx, server, path, campaign, "--concurrency", str(concurrency))
            state = server.state()
        batches = int(summary["batches"])
        ideal = math.ceil(batches / concurrency) * LATENCY_S
        span = leads_span(state)
        efficiency = ideal / span
        delivered = summary["delivered"] == ctx.handles and state["by_status"] == {"200": batches}
        detail = {
            "concurrency": concurrency,
            "handles": ctx.handles,
            "batches": batches,
            "ideal_s": round(ideal, 3),
            "server_span_s": round(span, 3),
            "client_wall_s": round(run.wall_s, 3),
            "client_cpu_s": round(run.cpu_s, 3),
            "server_cpu_s": round(server.cpu_s, 3),
            "max_in_flight": state.get("max_in_flight"),
            "all_delivered": delivered,
        }
        ctx.latency_points.append(
            {"concurrency": concurrency, "efficiency": efficiency, "wall": ideal / run.wall_s}
        )
        ctx.add(
            Row(
                "latency",
                f"efficiency, concurrency {concurrency}",
                efficiency,
                "",
                note=f"informational: ideal {ideal:.1f} s / span {span:.2f} s; "
                f"client wall {run.wall_s:.2f} s" + ("" if delivered else "; NOT ALL DELIVERED"),
                detail=detail,
            )
        )


def bench_peers(ctx: Context) -> None:
    """Ours at concurrency 8, the sequential script and split | xargs curl, one server."""
    path = ctx.handles_file(ctx.handles)
    runs: dict[str, Measured] = {}
    campaigns: dict[str, str] = {}
    notes: dict[str, str] = {}
    curl = shutil.which("curl")
    with Sandbox("--latency", str(LATENCY_S)) as server:
        env = server.env()
        campaigns["ours"] = ctx.campaign("peerours")
        runs["ours"], _ = run_ours(
            ctx, server, path, campaigns["ours"], "--concurrency", str(PEER_CONCURRENCY)
        )
        campaigns["sequential"] = ctx.campaign("peerseq")
        runs["sequential"] = run_measured(
            [sys.executable, str(HERE / "peer_sequential.py"), campaigns["sequential"], str(path)],
            env=env,
            cwd=ctx.work,
        )
        if curl is None:
            notes["xargs"] = "skipped: curl is not installed"
        else:
            campaigns["xargs"] = ctx.campaign("peerxargs")
            chunks = ctx.work / "chunks"
            shutil.rmtree(chunks, ignore_errors=True)
            chunks.mkdir()
            runs["xargs"] = run_measured(
                ["sh", str(HERE / "peer_xargs.sh"), campaigns["xargs"], str(path), str(chunks)],
                env=env,
                cwd=ctx.work,
            )
            codes = runs["xargs"].stdout.split()
            bad = [c for c in codes if c != "200"]
            if bad:
                notes["xargs"] = f"{len(bad)} of {len(codes)} requests not 200"
        held = server.state()["campaigns"]
        members = {
            name: held.get(campaign, {}).get("members", 0) for name, campaign in campaigns.items()
        }
    ours = runs["ours"]
    batches = math.ceil(ctx.handles / 2000)
    ideal = {
        "ours": math.ceil(batches / PEER_CONCURRENCY) * LATENCY_S,
        "sequential": batches * LATENCY_S,
        "xargs": math.ceil(batches / 8) * LATENCY_S,
    }
    for name in ("sequential", "xargs"):
        peer = runs.get(name)
        label = "sequential httpx script" if name == "sequential" else "split + xargs -P 8 curl"
        if peer is None:
            ctx.add(Row("peers", f"{label}: skipped", None, "", note=notes.get(name, "")))
            continue
        complete = peer.returncode == 0 and members.get(name) == ctx.handles
        note = notes.get(name, "") or ("" if complete else f"exit {peer.returncode}, incomplete")
        detail = {
            "peer": name,
            "peer_wall_s": round(peer.wall_s, 3),
            "peer_cpu_s": round(peer.cpu_s, 3),
            "peer_maxrss_mb": round(peer.maxrss_mb, 1),
            "ours_wall_s": round(ours.wall_s, 3),
            "ours_cpu_s": round(ours.cpu_s, 3),
            "ours_maxrss_mb": round(ours.maxrss_mb, 1),
            "members": members.get(name),
            "complete": complete,
            "peer_ideal_s": round(ideal[name], 3),
            "ours_ideal_s": round(ideal["ours"], 3),
        }
        ctx.add(
            Row(
                "peers",
                f"wall: ours (c=8) / {label}",
                ours.wall_s / peer.wall_s,
                "x",
                note=f"{ours.wall_s:.2f} s vs {peer.wall_s:.2f} s; ideal/wall "
                f"{ideal['ours'] / ours.wall_s:.2f} vs {ideal[name] / peer.wall_s:.2f}"
                + (f"; {note}" if note else ""),
                detail=detail,
            )
        )
        ctx.add(
            Row(
                "peers",
                f"CPU: ours (c=8) / {label}",
                ours.cpu_s / peer.cpu_s,
                "x",
                note=f"{ours.cpu_s:.2f} s vs {peer.cpu_s:.2f} s (user+sys, children included)",
                detail=detail,
            )
        )
    if members.get("ours") != ctx.handles:
        ctx.add(Row("peers", "ours: incomplete", None, "", note=f"members {members.get('ours')}"))


RUNNERS: dict[str, Callable[[Context], None]] = {
    "wall": bench_wall,
    "cost": bench_cost,
    "startup": bench_startup,
    "polite": bench_polite,
    "ratelimit": bench_ratelimit,
    "latency": bench_latency,
    "peers": bench_peers,
}


# -- reporting ------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What this ran on."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "nproc": cpus,
        "cpu_model": model or platform.processor() or "unknown",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def table(rows: list[Row]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| section | measure | value | target | met | notes |",
        "|---|---|---:|---|---|---|",
    ]
    for row in rows:
        met = "" if row.met is None else ("yes" if row.met else "**no**")
        lines.append(
            f"| {row.section} | {row.measure.strip()} | {row.shown()} | {row.target} | {met} "
            f"| {row.note} |"
        )
    return "\n".join(lines)


def efficiency_svg(points: list[dict[str, float]], title: str) -> str:
    """Efficiency against concurrency as a small standalone SVG (log2 x axis)."""
    width, height = 640, 420
    left, right, top, bottom = 70, 50, 50, 100
    plot_w, plot_h = width - left - right, height - top - bottom
    xs = [math.log2(c) for c in CONCURRENCIES]
    x_min, x_max = min(xs), max(xs)

    def px(concurrency: float) -> float:
        return left + (math.log2(concurrency) - x_min) / (x_max - x_min) * plot_w

    def py(value: float) -> float:
        return top + (1.0 - min(max(value, 0.0), 1.05) / 1.05) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="24" text-anchor="middle" font-size="14">{title}</text>',
    ]
    for tick in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        y = py(tick)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#ddd"/>'
        )
        parts.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{tick:.1f}</text>')
    for concurrency in CONCURRENCIES:
        x = px(concurrency)
        parts.append(
            f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" stroke="#eee"/>'
        )
        parts.append(
            f'<text x="{x:.1f}" y="{top + plot_h + 18}" text-anchor="middle">{concurrency}</text>'
        )
    parts += [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" '
        'stroke="black"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="black"/>',
        f'<text x="{left + plot_w / 2}" y="{top + plot_h + 38}" text-anchor="middle">'
        "concurrency (requests in flight)</text>",
        f'<text x="18" y="{top + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 18 {top + plot_h / 2})">efficiency (ideal / measured)</text>',
    ]
    series = (
        ("efficiency", "#1f5fbf", "server span (first arrival to last answer)"),
        ("wall", "#d2691e", "client process wall time"),
    )
    for index, (key, colour, label) in enumerate(series):
        coords = [(px(p["concurrency"]), py(p[key])) for p in points]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        dash = "" if index == 0 else ' stroke-dasharray="4 3"'
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>'
        )
        for (x, y), point in zip(coords, points, strict=True):
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>')
            if index == 0:
                parts.append(
                    f'<text x="{x + 6:.1f}" y="{y - 8:.1f}" fill="{colour}">{point[key]:.2f}</text>'
                )
        legend_y = top + plot_h + 62 + index * 18
        parts.append(
            f'<line x1="{left + 16}" y1="{legend_y}" x2="{left + 46}" y2="{legend_y}" '
            f'stroke="{colour}" stroke-width="2"{dash}/>'
        )
        parts.append(f'<text x="{left + 52}" y="{legend_y + 4}">{label}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


# -- main -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark inboxleads against the sandbox server on loopback."
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="100,000 handles for wall, latency and peers (cost keeps 1,000,000), shorter runs",
    )
    parser.add_argument(
        "--only", metavar="NAME[,NAME]", help=f"sections to run, of: {', '.join(SECTIONS)}"
    )
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="PATH",
        help="write the results as JSON to PATH (or stdout, and the table to stderr)",
    )
    parser.add_argument(
        "--svg",
        metavar="PATH",
        help=f"write the efficiency plot here (default with 1,000,000 handles: {DEFAULT_SVG})",
    )
    parser.add_argument(
        "--handles",
        type=int,
        help="identifiers per run of cost, latency and peers (default 1,000,000; "
        "100,000 for latency and peers with --quick)",
    )
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(SECTIONS)
    unknown = [name for name in names if name not in SECTIONS]
    if unknown:
        parser.error(f"unknown section {unknown[0]!r}; choose from {', '.join(SECTIONS)}")
    args.sections = [name for name in SECTIONS if name in names]
    return args


@contextlib.contextmanager
def stdout_to_stderr(active: bool) -> Iterator[None]:
    """Progress and the table go to stderr when stdout carries the JSON."""
    if not active:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    terminate_on_signals()
    handles = args.handles or (100_000 if args.quick else 1_000_000)
    # A million even with --quick: from 100,000, start-up and noise would swamp the ratio.
    cost_handles = args.handles or 1_000_000
    started = time.monotonic()
    failures: list[str] = []
    json_to_stdout = args.json == "-"
    with (
        stdout_to_stderr(json_to_stdout),
        tempfile.TemporaryDirectory(prefix="inboxleads-bench-") as work,
    ):
        ctx = Context(args.quick, Path(work), handles, cost_handles, client_command())
        compile_package()
        info = machine()
        print(
            f"inboxleads benchmarks ({'quick' if args.quick else 'full'}, {handles:,} handles) "
            f"on {info['nproc']} x {info['cpu_model']}, Python {info['python']}",
            flush=True,
        )
        if info["loadavg_at_start"][0] > 0.5:
            print(
                f"note: load average {info['loadavg_at_start'][0]} before starting: other "
                "processes are using the CPU, and wall-time ratios will suffer",
                flush=True,
            )
        interrupted: int | None = None
        try:
            for name in args.sections:
                section_start = time.monotonic()
                print(f"[{name}]", flush=True)
                try:
                    RUNNERS[name](ctx)
                except (RuntimeError, OSError, KeyError, ValueError) as exc:
                    failures.append(f"{name}: {exc}")
                    ctx.add(Row(name, "FAILED", None, "", met=False, note=str(exc)[:300]))
                print(f"  ({time.monotonic() - section_start:.1f} s)", flush=True)
        except KeyboardInterrupt:
            interrupted = 130
        except SystemExit as exc:  # SIGTERM or SIGHUP, see terminate_on_signals
            interrupted = exc.code if isinstance(exc.code, int) else 1
        finally:
            cleanup_children()
        if interrupted is not None:
            failures.append("interrupted")
            print("\ninterrupted: servers stopped; results so far:", flush=True)
        elapsed = time.monotonic() - started
        print()
        print(table(ctx.rows))
        print(f"\ntotal {elapsed:.1f} s")
        svg_path = Path(args.svg) if args.svg else None
        if svg_path is None and handles == 1_000_000 and "latency" in args.sections:
            svg_path = DEFAULT_SVG
        if svg_path is not None and len(ctx.latency_points) == len(CONCURRENCIES):
            title = f"Latency-bound efficiency: {handles:,} handles, {LATENCY_S:g} s per request"
            svg_path.parent.mkdir(parents=True, exist_ok=True)
            svg_path.write_text(efficiency_svg(ctx.latency_points, title), encoding="utf-8")
            print(f"plot written to {svg_path}")
    result = {
        "machine": info,
        "quick": args.quick,
        "handles": handles,
        "cost_handles": cost_handles,
        "sections": args.sections,
        "elapsed_s": round(elapsed, 1),
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "rows": [asdict(row) for row in ctx.rows],
        "failures": failures,
    }
    if args.json:
        text = json.dumps(result, indent=2)
        if json_to_stdout:
            print(text)
        else:
            Path(args.json).write_text(text + "\n", encoding="utf-8")
    if interrupted is not None:
        return interrupted
    return 1 if failures else 0


def command_line() -> NoReturn:
    """`main` with its exit status, for `benchmarks/run.py` and `python -m benchmarks`."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # before main's own handler is in place, or after it
        cleanup_children()
        sys.exit(130)
